#!/usr/bin/perl
# bench/rss.pl: does a worker's memory stay flat? One worker serves chat
# turns from wrk (bench/turn.lua) until REQUESTS (default 100,000) have
# gone through; its resident set size is printed after each phase. A leak
# of even a few bytes a request shows as a steady climb. Appends the
# figures to bench/results/rss.tsv.
#
#   perl bench/rss.pl [requests]
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../t/lib";
use POSIX qw(strftime);
use Stack;

my $target = shift // 100_000;
-x '/usr/bin/wrk' or die "wrk is not installed (scripts/deps)\n";
my $s = Stack->new(workers => 1, durable => 1, max_seconds => 3600);
my $token = $s->token('rss');
my @convs = map { $s->request(POST => '/chat', token => $token,
    body => { message => "hello $_" })->{json}{conversation_id} } 1 .. 20;
my ($worker) = $s->worker_pids;

sub rss_kib {
	open my $fh, '<', "/proc/$worker/status" or die "worker gone: $!\n";
	while (<$fh>) { return $1 if /^VmRSS:\s+(\d+) kB/ }
	die "no VmRSS\n";
}

local $ENV{TOKEN} = $token;
local $ENV{CONVERSATIONS} = join ',', @convs;
my $done = 0;
my @rows = ([ 0, rss_kib() ]);
printf "%10s %10s\n", 'requests', 'RSS KiB';
printf "%10d %10d\n", @{ $rows[0] };
while ($done < $target) {
	my $out = `wrk -t 2 -c 4 -d 5s -s $FindBin::Bin/turn.lua http://127.0.0.1:@{[ $s->port ]}/chat 2>&1`;
	my ($n) = $out =~ /(\d+) requests in/ or die "wrk: $out\n";
	my ($bad) = $out =~ /non-200: (\d+)/;
	die "wrk saw $bad non-200 answers:\n$out" if $bad;
	$done += $n;
	push @rows, [ $done, rss_kib() ];
	printf "%10d %10d %8.0f/s\n", @{ $rows[-1] }, $n / 5;
}
die "the worker was restarted\n" if ($s->worker_pids)[0] != $worker;
my $growth = $rows[-1][1] - $rows[1][1];
printf "growth after warm-up: %d KiB over %d requests\n", $growth,
    $done - $rows[1][0];

mkdir "$FindBin::Bin/results";
open my $fh, '>>', "$FindBin::Bin/results/rss.tsv" or die;
printf $fh "%s\t%d\t%d\t%d\t%d\n", strftime('%Y-%m-%dT%H:%M:%SZ', gmtime),
    $done, $rows[1][1], $rows[-1][1], $growth;
