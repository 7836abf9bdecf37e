#!/usr/bin/perl
# bench/slow-model.pl: a thousand turns in flight. The mock model answers
# every call after 2 s; 1,000 wrk connections send turns for 30 s through
# nginx to WORKERS workers (as many as clients by default, one turn each
# at a time) run as processes of THREADS threads (50 by default: 20
# processes; THREADS=1 makes each worker a process), which reach
# PostgreSQL through pgbouncer in transaction mode with at most 20 server
# connections. Prints throughput against the ideal (clients / delay),
# errors, the most server connections PostgreSQL saw, and the memory of
# all workers together; appends to bench/results/slow-model.tsv.
#
#   perl bench/slow-model.pl [clients] [seconds]     (1000, 30)
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../t/lib";
use POSIX qw(strftime);
use Time::HiRes qw(sleep time);
use Stack;

my $clients = shift // 1000;
my $seconds = shift // 30;
my $workers = $ENV{WORKERS} // $clients;
my $threads = $ENV{THREADS} // 50;
$workers % $threads == 0 or die "WORKERS must be a multiple of THREADS\n";
my $procs = $workers / $threads;
my $delay_ms = 2000;
-x '/usr/bin/wrk' or die "wrk is not installed (scripts/deps)\n";

my $t0 = time;
my $s = Stack->new(workers => $procs, model => 'mock', durable => 1,
    mock_delay_ms => $delay_ms, pgbouncer => 1,
    pgbouncer_conf => { default_pool_size => 20, max_client_conn =>
    $workers + 100, listen_backlog => $workers + 100 },
    nginx_connections => 4 * $clients + 256, backlog => 4 * $clients,
    access_log => 0, max_seconds => 900, ready_seconds => 120,
    env => { CHAT_MODEL_TIMEOUT_MS => 30000,
    CHAT_WORKER_THREADS => $threads });
printf "stack with %d workers (%d processes of %d threads) up in %.1f s\n",
    $workers, $procs, $threads, time - $t0;
my $token = $s->token('slow');

# One conversation per client, made directly in the database.
$s->sql(q{INSERT INTO conversations (user_id, title)
    SELECT 'slow', 'bench ' || g FROM generate_series(1, $1) g}, $clients);
my $ids = $s->sql(q{SELECT id FROM conversations WHERE user_id = 'slow'
    ORDER BY id});

# PostgreSQL's view of its clients, sampled while the load runs.
my $max_backends = 0;
my $sampler = fork // die;
if ($sampler == 0) {
	my $max = 0;
	my $end = time + $seconds + 10;
	while (time < $end) {
		my $n = $s->sql_value(q{SELECT count(*) FROM pg_stat_activity
		    WHERE backend_type = 'client backend'
		    AND application_name <> 'psql'});
		$max = $n if ($n // 0) > $max;
		print STDERR "sample: ", $n // "undef", "\n" if $ENV{DEBUG_SAMPLER};
		sleep 0.5;
	}
	open my $fh, '>', $s->dir . '/max_backends' or die;
	print $fh "$max\n";
	close $fh;	# _exit flushes nothing
	POSIX::_exit(0);
}

local $ENV{TOKEN} = $token;
local $ENV{CONVERSATIONS} = join ',', map { $_->[0] } @$ids;
# A first short run opens every worker's database and model connections
# (a thousand connects at once); the measured run starts warm.
`wrk -t 2 -c $clients -d 5s --timeout 20s -s $FindBin::Bin/turn.lua http://127.0.0.1:@{[ $s->port ]}/chat 2>&1`;
my $out = `wrk -t 2 -c $clients -d ${seconds}s --timeout 20s -s $FindBin::Bin/turn.lua http://127.0.0.1:@{[ $s->port ]}/chat 2>&1`;
waitpid $sampler, 0;
$max_backends = do { open my $fh, '<', $s->dir . '/max_backends'; <$fh> }
    // 0;
chomp $max_backends;

my ($n) = $out =~ /(\d+) requests in/ or die "wrk: $out\n";
my ($bad) = $out =~ /non-200: (\d+)/;
my ($sock) = $out =~ /Socket errors: (.*)/;
my ($p50) = $out =~ /p50_us (\d+)/;
my ($p99) = $out =~ /p99_us (\d+)/;
my $rate = $n / $seconds;
my $ideal = $clients / ($delay_ms / 1000);

# Memory: what the worker processes hold of their own (anonymous pages),
# their proportional share of the rest, and their VmRSS, summed.
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

printf "%d clients, model delay %d ms, %d s, %d workers (%d processes of "
    . "%d threads)\n", $clients, $delay_ms, $seconds, $nworkers, $count,
    $threads;
printf "turns: %d, %.1f/s = %.1f%% of the ideal %.0f/s (target >= 90%%)\n",
    $n, $rate, 100 * $rate / $ideal, $ideal;
printf "errors: %d non-200, socket errors: %s (target: none)\n", $bad // -1,
    $sock // 'none';
printf "latency: p50 %.0f ms, p99 %.0f ms\n", ($p50 // 0) / 1000,
    ($p99 // 0) / 1000;
printf "PostgreSQL client backends at most: %d (target <= 20)\n",
    $max_backends;
printf "workers' memory: %.0f MiB private, %.0f MiB PSS, %.0f MiB RSS in "
    . "all (%.2f MiB RSS, %.2f MiB PSS a worker)\n", $anon / 1024,
    $pss / 1024, $rss / 1024, $nworkers ? $rss / 1024 / $nworkers : 0,
    $nworkers ? $pss / 1024 / $nworkers : 0;

mkdir "$FindBin::Bin/results";
open my $fh, '>>', "$FindBin::Bin/results/slow-model.tsv" or die;
printf $fh "%s\t%d\t%d\t%d\t%.1f\t%.3f\t%d\t%s\t%d\t%.0f\t%.0f\t%d\t%.0f\n",
    strftime('%Y-%m-%dT%H:%M:%SZ', gmtime), $clients, $nworkers, $seconds,
    $rate, $rate / $ideal, $bad // -1, $sock // '', $max_backends,
    $anon / 1024, $pss / 1024, $threads, $rss / 1024;
