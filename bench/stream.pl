#!/usr/bin/perl
# bench/stream.pl: a thousand streamed turns in flight. As
# bench/slow-model.pl (WORKERS workers as processes of THREADS threads,
# pgbouncer in transaction mode with at most 20 server connections), but
# every turn asks for "Accept: text/event-stream" and the mock model
# streams its default reply as 200 pieces, one every 10 ms (2 s a turn).
#
# 1. Throughput: CLIENTS wrk connections for SECONDS (bench/turn.lua,
#    REQUEST=stream).
#    Prints turns/s against the ideal (clients / 2 s), errors, the most
#    server connections PostgreSQL saw, the workers' memory, and the
#    database writes a streamed turn costs: pg_stat_user_tables' n_tup_ins
#    + n_tup_upd of turn_streams (one a write: each inserts or updates the
#    stream's head, and adds a row of events) across the run over the
#    turns answered
#    in that time (assistant messages stored, so that the turns still
#    running when wrk stops count with their writes).
# 2. Latency: LAT_STREAMS (100) streams at once for LAT_SECONDS (10), read
#    by bench/stream-read; each piece carries the mock's send
#    time (--stamp-pieces), so for every text-delta the delay from the
#    model sending a piece to the client reading it is read time - stamp.
#    Prints p50/p99/max.
# Appends a row to bench/results/stream.tsv.
#
#   perl bench/stream.pl [clients] [seconds]     (1000, 30)
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../t/lib";
use File::Temp qw(tempdir);
use POSIX qw(strftime);
use Time::HiRes qw(sleep time);
use Stack;

my $clients = shift // 1000;
my $seconds = shift // 30;
my $workers = $ENV{WORKERS} // $clients;
my $threads = $ENV{THREADS} // 50;
my $lat_streams = $ENV{LAT_STREAMS} // 100;
my $lat_seconds = $ENV{LAT_SECONDS} // 10;
$workers % $threads == 0 or die "WORKERS must be a multiple of THREADS\n";
$lat_streams <= $workers or die "LAT_STREAMS must be at most WORKERS\n";
my $procs = $workers / $threads;
my ($pieces, $chunk_ms) = (200, 10);
my $turn_ms = $pieces * $chunk_ms;
-x '/usr/bin/wrk' or die "wrk is not installed (scripts/deps)\n";

# Stack starts the mock (a Python script) with the options it knows; this
# wrapper adds the streaming ones. The mock is bench/stream-mock, which
# streams t/mock_model.py's default reply in the same bytes at a fraction
# of its CPU; MOCK_MODEL=t/mock_model.py measures with that one instead.
my $mock = $ENV{MOCK_MODEL} // "$FindBin::Bin/stream-mock";
if (!$ENV{MOCK_MODEL}) {
}
system('make', '-s', '-C', "$FindBin::Bin/..", 'bench/stream-mock',
    'bench/stream-read') == 0 or die "make bench/stream-mock failed\n";
my $opts = qq("--stream-pieces", "$pieces", "--chunk-delay-ms", )
    . qq("$chunk_ms", "--stamp-pieces");
my $tmp = tempdir(CLEANUP => 1);
open my $wrap, '>', "$tmp/mock.py" or die;
print $wrap $mock =~ /\.py\z/ ? <<"PY" : <<"EXEC";
import runpy, sys
sys.argv[0] = "$mock"
sys.argv[1:1] = [$opts]
runpy.run_path("$mock", run_name="__main__")
PY
import os, sys
os.execv("$mock", ["$mock"] + sys.argv[1:] + [$opts])
EXEC
close $wrap;
local $ENV{MOCK_MODEL} = "$tmp/mock.py";

my $t0 = time;
my $s = Stack->new(workers => $procs, model => 'mock', durable => 1,
    pgbouncer => 1,
    pgbouncer_conf => { default_pool_size => 20, max_client_conn =>
    $workers + 100, listen_backlog => $workers + 100 },
    nginx_connections => 4 * $clients + 256, backlog => 4 * $clients,
    access_log => 0, max_seconds => 900, ready_seconds => 120,
    env => { CHAT_MODEL_TIMEOUT_MS => 30000,
    CHAT_WORKER_THREADS => $threads });
printf "stack with %d workers (%d processes of %d threads) up in %.1f s\n",
    $workers, $procs, $threads, time - $t0;
my $token = $s->token('stream');

$s->sql(q{INSERT INTO conversations (user_id, title)
    SELECT 'stream', 'bench ' || g FROM generate_series(1, $1) g}, $clients);
my @ids = map { $_->[0] } @{ $s->sql(q{SELECT id FROM conversations
    WHERE user_id = 'stream' ORDER BY id}) };

# Writes to turn_streams and turns stored so far. PostgreSQL's backends
# report their counts about a second late: callers wait first.
sub counts {
	my $w = $s->sql_value(q{SELECT n_tup_ins + n_tup_upd
	    FROM pg_stat_user_tables WHERE relname = 'turn_streams'}) // 0;
	my $t = $s->sql_value(q{SELECT count(*) FROM messages
	    WHERE user_id = 'stream' AND role = 'assistant'}) // 0;
	return ($w, $t);
}

# CPU time (utime + stime, clock ticks) of the processes alive now, by
# command: where the cores go (the mock is a Python process; wrk, gone
# by the second count, is left out).
sub cpu {
	my %t;
	for my $f (glob '/proc/[0-9]*/stat') {
		open my $fh, '<', $f or next;
		my $l = <$fh> // next;
		my ($comm, $rest) = $l =~ /\((.*)\) (.*)/s or next;
		my @f = split ' ', $rest;
		$t{$comm} += $f[11] + $f[12];
	}
	return \%t;
}

# Turns whose client went away run on (wrk's last ones, as many as there
# are clients): waits until none runs, so that the counts hold all of
# their writes and the latency run has the stack to itself.
sub settle {
	my $end = time + 120;
	sleep 0.5 while time < $end && ($s->sql_value(q{SELECT count(*)
	    FROM turn_streams WHERE NOT done}) // 0) > 0;
	sleep 2;	# the statistics' lag
}

my $max_backends = 0;
my $sampler = fork // die;
if ($sampler == 0) {
	# Until the measured run is over (the parent stops it): the most
	# seen so far, in a file.
	my $max = 0;
	while (1) {
		my $n = $s->sql_value(q{SELECT count(*) FROM pg_stat_activity
		    WHERE backend_type = 'client backend'
		    AND application_name <> 'psql'});
		if (($n // 0) > $max) {
			$max = $n;
			open my $fh, '>', $s->dir . '/max_backends.tmp' or die;
			print $fh "$max\n";
			close $fh;
			rename $s->dir . '/max_backends.tmp',
			    $s->dir . '/max_backends';
		}
		sleep 0.5;
	}
}

local $ENV{TOKEN} = $token;
local $ENV{CONVERSATIONS} = join ',', @ids;
local $ENV{REQUEST} = 'stream';
my $wrk = "wrk -t 2 -c $clients --timeout 20s -s $FindBin::Bin/turn.lua "
    . "http://127.0.0.1:@{[ $s->port ]}/chat";
# A warm-up opens every worker's connections; the turns it leaves running
# finish (a client that goes away does not end its turn) before the
# counts are taken.
`$wrk -d 5s 2>&1`;
settle();
my ($w0, $t0turns) = counts();
my $cpu0 = cpu();
my $out = `$wrk -d ${seconds}s 2>&1`;
my $cpu1 = cpu();
kill 'KILL', $sampler;
waitpid $sampler, 0;
settle();
my ($w1, $t1turns) = counts();
my $ncpu = () = do {
	open my $fh, '<', '/proc/cpuinfo' or die;
	grep /^processor\s*:/, <$fh>;
};
my $tick = POSIX::sysconf(POSIX::_SC_CLK_TCK()) || 100;
my %cpu = map { $_ => (($cpu1->{$_} // 0) - ($cpu0->{$_} // 0)) / $tick }
    qw(python3 stream-mock chat.fcgi nginx postgres pgbouncer);
$max_backends = do { open my $fh, '<', $s->dir . '/max_backends'; <$fh> }
    // 0;
chomp $max_backends;

my ($n) = $out =~ /(\d+) requests in/ or die "wrk: $out\n";
my ($bad) = $out =~ /non-200: (\d+)/;
my ($sock) = $out =~ /Socket errors: (.*)/;
my ($p50) = $out =~ /p50_us (\d+)/;
my ($p99) = $out =~ /p99_us (\d+)/;
my $rate = $n / $seconds;
my $ideal = $clients / ($turn_ms / 1000);
my $turns = $t1turns - $t0turns;
my $writes = $turns ? ($w1 - $w0) / $turns : 0;

my ($anon, $pss, $rss, $count) = (0, 0, 0, 0);
for my $pid ($s->worker_pids) {
	open my $fh, '<', "/proc/$pid/smaps_rollup" or next;
	$count++;
	while (<$fh>) {
		$pss += $1 if /^Pss:\s+(\d+)/;
		$anon += $1 if /^Pss_Anon:\s+(\d+)/;
		$rss += $1 if /^Rss:\s+(\d+)/;
	}
}
my $nworkers = $count * $threads;

# 2. Latency: LAT_STREAMS streams, each posting a streamed turn and, when
# it ends, the next, until LAT_SECONDS are over (bench/stream-read.c,
# which prints the delays it saw, one a line, in microseconds).
my (@delays, $lat_turns, $lat_bad, $stamps);
$lat_turns = $lat_bad = $stamps = 0;
my $lcpu0 = cpu();
my $lt0 = time;
if ($lat_streams) {
	my $ids = join ',', @ids[0 .. $lat_streams - 1];
	my $cmd = join ' ', "$FindBin::Bin/stream-read", $s->port, $token,
	    $ids, $lat_streams, $lat_seconds, $turn_ms;
	my @out = `$cmd`;
	$? == 0 && @out or die "stream-read failed\n";
	($lat_turns, $lat_bad) = split ' ', shift @out;
	chomp @out;
	@delays = @out;
	$stamps = @delays;
}
my ($lcpu1, $lt1) = (cpu(), time);
my %lcpu = map { $_ => (($lcpu1->{$_} // 0) - ($lcpu0->{$_} // 0)) / $tick }
    qw(python3 stream-mock chat.fcgi nginx postgres pgbouncer stream-read);
my $pct = sub { @delays ? $delays[int($_[0] * $#delays)] / 1000 : 0 };
my ($l50, $l99, $lmax) = ($pct->(0.5), $pct->(0.99), $pct->(1));

my %label = (python3 => 'mock (t/mock_model.py)', 'stream-mock' => 'mock',
    'stream-read' => 'stream-read (the client)');
printf "%d clients, %d pieces %d ms apart (%.1f s a turn), %d s, %d workers "
    . "(%d processes of %d threads)\n", $clients, $pieces, $chunk_ms,
    $turn_ms / 1000, $seconds, $nworkers, $count, $threads;
printf "streamed turns: %d, %.1f/s = %.1f%% of the ideal %.0f/s (target >= "
    . "90%%)\n", $n, $rate, 100 * $rate / $ideal, $ideal;
printf "errors: %d non-200, socket errors: %s (target: none)\n", $bad // -1,
    $sock // 'none';
printf "turn time (wrk): p50 %.0f ms, p99 %.0f ms\n", ($p50 // 0) / 1000,
    ($p99 // 0) / 1000;
printf "PostgreSQL client backends at most: %d (target <= 20)\n",
    $max_backends;
printf "workers' memory: %.0f MiB private, %.0f MiB PSS, %.0f MiB RSS in "
    . "all (%.2f MiB RSS, %.2f MiB PSS a worker)\n", $anon / 1024,
    $pss / 1024, $rss / 1024, $nworkers ? $rss / 1024 / $nworkers : 0,
    $nworkers ? $pss / 1024 / $nworkers : 0;
printf "CPU s over the %d s run (%d cores: %d s at most): %s\n", $seconds,
    $ncpu, $ncpu * $seconds, join ', ', map { sprintf '%s %.1f',
    $label{$_} // $_, $cpu{$_} } sort { $cpu{$b} <=> $cpu{$a} }
    grep { $cpu{$_} } keys %cpu;
printf "turn_streams writes: %d inserts+updates for %d turns stored = %.1f "
    . "a streamed turn\n", $w1 - $w0, $turns, $writes;
printf "latency, %d streams for %d s: %d turns (%d bad), %d pieces (%.1f a "
    . "turn); model send -> client read: p50 %.2f ms, p99 %.2f ms, max "
    . "%.2f ms (target p99 < 5 ms)\n", $lat_streams, $lat_seconds,
    $lat_turns, $lat_bad, $stamps, $lat_turns ? $stamps / $lat_turns : 0,
    $l50, $l99, $lmax;
printf "CPU s over the latency run's %.1f s: %s\n", $lt1 - $lt0, join ', ',
    map { sprintf '%s %.1f', $label{$_} // $_, $lcpu{$_} }
    sort { $lcpu{$b} <=> $lcpu{$a} } grep { $lcpu{$_} } keys %lcpu;

mkdir "$FindBin::Bin/results";
open my $fh, '>>', "$FindBin::Bin/results/stream.tsv" or die;
# date clients workers seconds turns/s ratio non200 sockerr backends
# privMiB pssMiB threads rssMiB writes/turn lat_streams lat_p50 lat_p99
# lat_max (ms)
printf $fh "%s\t%d\t%d\t%d\t%.1f\t%.3f\t%d\t%s\t%d\t%.0f\t%.0f\t%d\t%.0f\t"
    . "%.1f\t%d\t%.2f\t%.2f\t%.2f\n",
    strftime('%Y-%m-%dT%H:%M:%SZ', gmtime), $clients, $nworkers, $seconds,
    $rate, $rate / $ideal, $bad // -1, $sock // '', $max_backends,
    $anon / 1024, $pss / 1024, $threads, $rss / 1024, $writes, $lat_streams,
    $l50, $l99, $lmax;
