#!/usr/bin/perl
# t/01-layout.t: the shape of the code that doc/modules.md promises: the
# modules include each other without a circle, each outside library is
# reached from one module only, and no comment points at a document
# that is not in the repository.
use strict;
use warnings;
use FindBin;
use Test::More;

my $ROOT = "$FindBin::Bin/..";
chdir $ROOT or die "$ROOT: $!\n";

sub slurp {
	my ($f) = @_;
	open my $fh, '<', $f or die "$f: $!\n";
	local $/;
	return scalar <$fh>;
}

my @sources = ('chat.fcgi.c', glob('lib/*.c'), glob('lib/*.h'));

# Module X uses module Y when X.c or X.h includes "Y.h".
my %uses;
for my $f (@sources) {
	(my $m = $f) =~ s{\A(?:lib/)?(.*)\.[ch]\z}{$1};
	$uses{$m} //= {};
	for my $h (slurp($f) =~ /^#include "(\w+)\.h"/mg) {
		$uses{$m}{$h} = 1 if $h ne $m;
	}
}

# Depth-first search; a module met again while on the path is a circle.
my (%state, @circle);
sub visit {
	my ($m, @path) = @_;
	return if ($state{$m} // '') eq 'done';
	if (($state{$m} // '') eq 'open') {
		@circle = (@path, $m) unless @circle;
		return;
	}
	$state{$m} = 'open';
	visit($_, @path, $m) for sort keys %{ $uses{$m} // {} };
	$state{$m} = 'done';
}
visit($_) for sort keys %uses;
ok !@circle, 'no module includes itself through others'
    or diag 'circle: ' . join ' -> ', @circle;
ok exists $uses{$_}, "module $_ is there" for qw(text url reply transcript
    openai backend remote offline model tools db turn jwk keyring fetch);

# Each library through one door.
my %door = (
	'fcgiapp.h'	=> qr{\A(?:chat\.fcgi\.c|lib/http\.[ch])\z},
	'libpq-fe.h'	=> qr{\Alib/(?:db\.c|dbconn\.[ch])\z},
	'curl/curl.h'	=> qr{\Alib/(?:remote|fetch)\.c\z},
);
for my $lib (sort keys %door) {
	my @who = grep { slurp($_) =~ /^#include <\Q$lib\E>/m } @sources;
	my @stray = grep { $_ !~ $door{$lib} } @who;
	ok @who && !@stray, "only its module includes <$lib>"
	    or diag "also in: @stray";
}

# The offline model reads the transcript, not the OpenAI format.
unlike slurp('lib/offline.c'), qr/"tool_calls"|"role"/,
    'offline.c reads no OpenAI JSON';
unlike slurp('lib/turn.c'), qr/"function"|"role"|"tool_call_id"/,
    'turn.c writes no OpenAI JSON';

# Comments cite only what is here.
my @ours = (@sources, 'schema.sql', 'nginx.conf', 'Makefile',
    glob('scripts/*'), glob('fuzz/*.c'), 'fuzz/run', glob('t/*.t'),
    glob('t/unit/*.c'), glob('t/lib/*.pm'), glob('bench/*.pl'),
    glob('bench/*.lua'));
my @cites;
for my $f (@ours) {
	next unless -f $f;
	my $n = 0;
	for (split /\n/, slurp($f)) {
		$n++;
		push @cites, "$f:$n: $_"
		    if /\b(?:DESIGN\.md|ADR-\d+|STYLE\.md)|\bissue \d+|\bissue's\b/i;
		for my $doc (/\b(doc\/[\w.-]+\.md)\b/g) {
			push @cites, "$f:$n: $doc is missing" unless -f $doc;
		}
	}
}
ok !@cites, 'no comment cites a document that is not in the repository'
    or diag join "\n", @cites;

done_testing;
