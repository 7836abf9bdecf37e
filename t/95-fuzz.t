#!/usr/bin/perl
# t/95-fuzz.t: every libFuzzer harness in fuzz/ builds against lib/ and
# runs FUZZ_SECONDS (default 5) seconds without a crash, a leak, a
# sanitizer report or a broken check (fuzz/run). Skipped without a clang
# that builds libFuzzer targets (Debian: clang, libclang-rt-dev).
use strict;
use warnings;
use FindBin;
use Test::More;

my $root = "$FindBin::Bin/..";
my $seconds = $ENV{FUZZ_SECONDS} // 5;
$seconds =~ /\A[0-9]+\z/ or BAIL_OUT("FUZZ_SECONDS=$seconds: not a number");

# fuzz/run prints a line per target on stdout and the reports of a failed
# one on stderr; both are wanted here, in order.
open my $run, '-|', "'$root/fuzz/run' $seconds 2>&1"
    or BAIL_OUT("fuzz/run: $!");
my @out = <$run>;
close $run;
my $status = $? >> 8;
if ($status == 77) {
	plan skip_all => 'no clang here that builds libFuzzer targets' .
	    ' (Debian: apt-get install clang libclang-rt-dev)';
}

my %result;
for (@out) {
	$result{$1} = $2 if /\Afuzz: (\w+): (ok|FAILED)\b/;
}
# The harnesses fuzz/run found, each as one test.
my @harnesses = sort map { m{/(\w+)\.c\z} ? $1 : () } glob "$root/fuzz/*.c";
ok @harnesses > 0, 'fuzz/ has harnesses';
for my $t (@harnesses) {
	my ($line) = grep { /\Afuzz: \Q$t\E: / } @out;
	chomp(my $say = $line // "fuzz: $t: no result\n");
	ok +($result{$t} // '') eq 'ok', "$t: $seconds s, no finding"
	    or diag $say;
	note $say if ($result{$t} // '') eq 'ok';
}
is $status, 0, 'fuzz/run exits 0' or diag map { "  $_" } @out;

done_testing;
