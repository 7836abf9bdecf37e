#!/usr/bin/perl
# t/92-unit-valgrind.t: every C unit test again under valgrind's memcheck:
# no invalid access, no uninitialised read, no leak in the pure modules.
use strict;
use warnings;
use FindBin;
use Test::More;

my @units = sort glob "$FindBin::Bin/unit/*.t";
plan skip_all => 'no unit tests built (make units)' unless @units;
for my $t (@units) {
	my $out = `valgrind -q --leak-check=full --errors-for-leak-kinds=all \\
	    --error-exitcode=99 $t 2>&1`;
	my $status = $? >> 8;
	is $status, 0, "$t under valgrind" or diag $out;
	unlike $out, qr/^not ok/m, "$t: its own checks pass too";
}
done_testing;
