#!/usr/bin/perl
# bench/mcp.pl: what an agent's MCP tool call costs beside a chat turn.
# Starts the real stack as bench/perf.pl does (nginx, 8 workers as 2
# processes of 4 threads, PostgreSQL with stock durability, the built-in
# model), gives the user 20 tasks and 8 conversations, then runs wrk
# through nginx at concurrency 8, alternating: turns that call no tool
# (bench/turn.lua, one round trip to the model and two statements) and
# MCP tools/call of list_tasks (REQUEST=mcp, one statement). A
# tools/call should cost at most what a turn without tools costs. Prints
# calls/s, p50 and p99 of each run, and the ratio of each pair.
#
#   perl bench/mcp.pl
#
# Environment: BENCH_SECONDS (6) per run, BENCH_PAIRS (3), BENCH_CONCURRENCY
# (8). The pairs alternate which goes first, so that drift on a shared
# machine falls on both alike.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../t/lib";
use List::Util qw(min);
use POSIX ();
use Stack;

my $SECONDS = $ENV{BENCH_SECONDS} // 6;
my $PAIRS = $ENV{BENCH_PAIRS} // 3;
my $C = $ENV{BENCH_CONCURRENCY} // 8;
-x '/usr/bin/wrk' or die "wrk is not installed (scripts/deps)\n";

my $s = Stack->new(workers => 2, durable => 1, access_log => 0,
    env => { CHAT_WORKER_THREADS => 4 },
    max_seconds => 300 + 4 * $SECONDS * $PAIRS);
my $token = $s->token('bench', exp => time + 86400);
$s->sql(q{INSERT INTO tasks (user_id, title)
    SELECT 'bench', 'task ' || g FROM generate_series(1, 20) g});
my @convs;
for (1 .. 8) {
	my $r = $s->request(POST => '/chat', token => $token,
	    body => { message => 'how are you today' });
	$r->{status} == 200 && !@{ $r->{json}{tool_calls} // [1] }
	    or die "a turn failed or called a tool: $r->{body}\n";
	push @convs, $r->{json}{conversation_id};
}
my $r = $s->request(POST => '/mcp', token => $token, body => {
    jsonrpc => '2.0', id => 1, method => 'tools/call',
    params => { name => 'list_tasks', arguments => {} } });
@{ $r->{json}{result}{structuredContent}{tasks} // [] } == 20
    or die "tools/call list_tasks: $r->{body}\n";

sub wrk {
	my ($kind, $seconds) = @_;
	local $ENV{TOKEN} = $token;
	local $ENV{CONVERSATIONS} = join ',', @convs;
	local $ENV{REQUEST} = $kind;
	my @argv = ('/usr/bin/wrk', '-t', min($C, 2), '-c', $C, '-d',
	    "${seconds}s", '--timeout', '10s', '-s', "$FindBin::Bin/turn.lua",
	    'http://127.0.0.1:' . $s->port
	    . ($kind eq 'turn' ? '/chat' : '/mcp'));
	my $text = `@argv 2>&1`;
	my ($n, $secs) = $text =~ /(\d+) requests in ([\d.]+)s/
	    or die "wrk said:\n$text";
	my ($bad) = $text =~ /non-200: (\d+)/;
	my ($p50, $p99) = $text =~ /p50_us (\d+) p99_us (\d+)/
	    or die "wrk said:\n$text";
	die "$kind: $bad answers of 400 or more\n" if $bad;
	return { rate => $n / $secs, p50 => $p50 / 1000, p99 => $p99 / 1000 };
}

wrk($_, 2) for qw(turn mcp);	# every worker connected, caches warm
printf "concurrency %d, %d s a run, %s\n", $C, $SECONDS,
    POSIX::strftime('%Y-%m-%d %H:%M UTC', gmtime);
printf "%-5s %-5s %9s %8s %8s\n", 'pair', 'kind', 'req/s', 'p50 ms',
    'p99 ms';
for my $pair (1 .. $PAIRS) {
	my %res;
	for my $kind ($pair % 2 ? qw(turn mcp) : qw(mcp turn)) {
		$res{$kind} = wrk($kind, $SECONDS);
		printf "%-5d %-5s %9.0f %8.2f %8.2f\n", $pair, $kind,
		    @{ $res{$kind} }{qw(rate p50 p99)};
	}
	printf "%-5d ratio mcp/turn %.2f (calls/s over turns/s)\n", $pair,
	    $res{mcp}{rate} / $res{turn}{rate};
}
$s->stop;
