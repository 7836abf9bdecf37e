#!/usr/bin/perl
# bench/perf.pl: how close does a chat turn come to what PostgreSQL alone
# can do? Starts the real stack (nginx, WORKERS workers, PostgreSQL with
# stock durability and pg_stat_statements, the built-in model, the
# per-user limits at their defaults), seeds BENCH_USERS conversations of
# 20 messages with SQL, each of a user of its own with 20 tasks, so that
# requests spread over enough users that none reaches a limit (the checks
# run, nothing is refused), then for each concurrency runs:
#
#   turn      wrk + bench/turn.lua through nginx, turns that call no tool;
#             turns/s, p50/p99, statements and round trips per turn (from
#             pg_stat_statements), RSS per worker (VmRSS and RssAnon)
#   stream    the same turns with "Accept: text/event-stream": the offline
#             model's answer as a stream (REQUEST=stream)
#   mcp       MCP tools/call of list_tasks, POST /mcp (REQUEST=mcp), each
#             request of another user, as for turns: a call counts as a
#             turn against CHAT_USER_TURNS_PER_MINUTE
#   minimal   pgbench with the minimal turn: two statements, two commits
#             (store the message and read the newest 40 in one; store the
#             answer and bump updated_at in the other)
#   ours      pgbench replaying the exact statements of our turn, as
#             PostgreSQL's statement log shows a worker sending them (each
#             round trip a pipeline ending in one Sync), each named after
#             the function it calls
#
# Everything it knows of our SQL it learns from PostgreSQL (the log and
# pg_stat_statements), not from the worker's source, so it measures
# whatever the workers send.
#
# Measured in pairs. On a shared machine disk latency and CPU steal drift
# from one run to the next by more than the differences we look for (the
# minimal turn alone ran 717 to 1,003 tps at concurrency 1 in runs one
# after the other on one VM; unpaired, one build's ratio ranged over 0.59
# to 0.81), so a figure is only ever a ratio of two runs side by side:
# each row's ratio is its run's rate over the run beside it, a pair. A
# round runs
#
#   ours, turn, minimal, stream, mcp, minimal
#
# and the next round the same backwards, BENCH_PAIRS rounds. That gives
# each row one pair a round (turn/minimal, stream/minimal, mcp/minimal,
# and turn/ours: what nginx and the workers cost beyond our own SQL),
# always two adjacent runs, and reversing the round flips every pair's
# order, so that a drift in one direction favours the first run of a pair
# in one round and the second in the next. The first minimal run is
# shared by the turn's pair and the stream's, which keeps a round at six
# runs instead of eight (independent pairs); the price is that when that
# run is off, the two rows' ratios are off together in that round, one
# pair each, which a median does not follow as a mean would, and which
# the range printed beside it shows. turn/ours is paired rather than
# ours/minimal because what ours is here to tell is what the hops in
# front of our SQL (nginx, the workers) cost. Each headline ratio is the
# median over the pairs; the other figures (rates, percentiles, CPU,
# SQL) are over all of a kind's runs at a concurrency.
#
# Targets: turn/minimal >= 0.8 at concurrency 1 and 8; p50 at concurrency
# 1 <= 1.25x the minimal turn's; <= 4 MiB per worker. A row whose runs
# had any answer of 400 or more (a refusal by a per-user limit, say; the
# service answers these requests with 200 or an error, never 1xx or 3xx,
# so wrk's status errors are its non-2xx) or socket errors is not a
# measurement, and the report says so loudly. Writes the report to
# bench/results/perf-<UTC time>.txt and appends a row per concurrency to
# bench/results/perf.tsv; the report ends with the table of the README's
# performance section in markdown, ready to paste.
#
#   perl bench/perf.pl
#
# Environment: BENCH_SECONDS (6) per measured run, BENCH_PAIRS (3) rounds,
# so pairs a row, BENCH_WARMUP (2) seconds of wrk before each
# concurrency, BENCH_CONCURRENCY ("1 8"; it was "1 8 32" before paired
# runs, but 32 makes the run half as long again for a point the targets
# do not name),
# BENCH_WORKERS (8: as many as the clients at concurrency 8; more only
# adds database connections to a CPU-bound run), BENCH_THREADS (4:
# workers per process, so 2 processes of 4 threads; 1 makes each worker
# a process of its own),
# BENCH_TRACK_PLANNING (0; 1 adds planning times to
# the SQL tables, at some cost in throughput), BENCH_MINIMAL_MODE
# (extended: pgbench sends the minimal turn's statements unnamed, parsed
# and planned every time, as the minimal turn was first measured;
# prepared: prepared once a connection, as the workers send theirs),
# BENCH_TOKEN (hs256: wrk's
# token is HS256 with the stack's secret; eddsa: an EdDSA token, the
# workers given CHAT_JWT_JWKS as a file of its one Ed25519 public key, to
# see what checking a signature from a provider costs a turn; made with
# the openssl command, so the benchmark needs no Node), BENCH_USERS
# (12000: users, one conversation each; MCP calls run at up to some
# 3,500 a second, under 2 a user in a 6 s run, and a minute holds at
# most six runs through the service, some 6 requests a user on average,
# well under CHAT_USER_TURNS_PER_MINUTE's 30 even where wrk's threads
# meet the same users more often: with 6000, a run at 3,400 calls a
# second had two refused), BENCH_ROWS (all; turn: only the turn, our SQL
# and the minimal turn, for a build from before streamed turns or MCP,
# such as the one before the per-user limits that README compares this
# one with). The default run takes about four minutes.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../t/lib";
use Cwd qw(abs_path);
use Digest::SHA qw(sha1_hex);
use File::Temp qw(tempdir);
use JSON::PP;
use List::Util qw(max min sum);
use MIME::Base64 qw(encode_base64url);
use POSIX qw(strftime);
use Time::HiRes qw(sleep time);
use Stack;

my $ROOT = abs_path("$FindBin::Bin/..");
my $SECONDS = $ENV{BENCH_SECONDS} // 6;
my $PAIRS = $ENV{BENCH_PAIRS} // 3;
$PAIRS =~ /\A[1-9]\d*\z/ or die "BENCH_PAIRS: a positive number\n";
my $WARMUP = $ENV{BENCH_WARMUP} // 2;
my @CONC = split /[\s,]+/, $ENV{BENCH_CONCURRENCY} // '1 8';
my $WORKERS = $ENV{BENCH_WORKERS} // 8;
my $THREADS = $ENV{BENCH_THREADS} // 4;
$WORKERS =~ /\A[1-9]\d*\z/ && $THREADS =~ /\A[1-9]\d*\z/
    && $WORKERS % $THREADS == 0
    or die "BENCH_WORKERS must be a multiple of BENCH_THREADS\n";
my $PROCS = $WORKERS / $THREADS;
my $TRACK_PLANNING = $ENV{BENCH_TRACK_PLANNING} // 0;
my $MINIMAL_MODE = $ENV{BENCH_MINIMAL_MODE} // 'extended';
$MINIMAL_MODE =~ /\A(?:extended|prepared)\z/
    or die "BENCH_MINIMAL_MODE must be extended or prepared\n";
my $TOKEN_KIND = $ENV{BENCH_TOKEN} // 'hs256';
$TOKEN_KIND =~ /\A(?:hs256|eddsa)\z/
    or die "BENCH_TOKEN must be hs256 or eddsa\n";
my $NCONV = $ENV{BENCH_USERS} // 12000;	# seeded conversations, a user each
$NCONV =~ /\A[1-9]\d*\z/ or die "BENCH_USERS: a positive number\n";
my $NTURNS = 5;			# seeded turns of 4 messages each
my $NTASKS = 20;		# a user's tasks, what list_tasks returns
my $USER = 'bench';
my $MESSAGE = 'how are you today';
my $HISTORY = 40;		# CHAT_HISTORY_MESSAGES' default
my %TARGET = (ratio => 0.8, p50 => 1.25, rss_kib => 4096);
# A round of runs (the header says why this order) and the pairs in it,
# by position: each row of the paired table is its run's rate over the
# run beside it.
my $ROWS = $ENV{BENCH_ROWS} // 'all';
$ROWS =~ /\A(?:all|turn)\z/ or die "BENCH_ROWS must be all or turn\n";
my @ROUND = $ROWS eq 'all' ? qw(ours turn minimal stream mcp minimal)
    : qw(ours turn minimal);
# field: the row's name for its median in the report and perf.tsv (the
# range adds _lo and _hi).
my @ALL_PAIRED = (
    { row => 'turn', over => 'minimal', at => [ 1, 2 ], field => 'ratio' },
    { row => 'stream', over => 'minimal', at => [ 3, 2 ],
      field => 'stream_ratio' },
    { row => 'mcp', over => 'minimal', at => [ 4, 5 ], field => 'mcp_ratio' },
    { row => 'turn', over => 'ours', at => [ 1, 0 ],
      field => 'turn_ours_ratio' },
);
my %NAME = (turn => 'turn', stream => 'streamed turn',
    mcp => 'MCP list_tasks', minimal => 'minimal', ours => 'our SQL');
# What this run measures of them; perf.tsv has the columns of them all,
# those of the rows not run left empty.
my @PAIRED = grep { $ROWS eq 'all' || $_->{row} eq 'turn' } @ALL_PAIRED;
# Through nginx, by wrk.
my @ALL_SERVICE = qw(turn stream mcp);
my @SERVICE = $ROWS eq 'all' ? @ALL_SERVICE : qw(turn);

-x '/usr/bin/wrk' or die "wrk is not installed (scripts/deps)\n";
my $PG_BIN = Stack::pg_bin();
-x "$PG_BIN/pgbench" or die "no pgbench in $PG_BIN\n";
-x "$ROOT/chat.fcgi" || $ENV{CHAT_FCGI} or die "no ./chat.fcgi: make all\n";
$SECONDS =~ /\A\d+\z/ && $SECONDS > 0 or die "BENCH_SECONDS: whole seconds\n";

my $t_start = time;
my $tmp = tempdir('todo-chat-perf-XXXXXX', TMPDIR => 1, CLEANUP => 1);

# PostgreSQL as installed: Stack's test settings (no fsync, no
# synchronous commit, no full page writes, wal_level minimal, 16 MB of
# shared buffers, no autovacuum) undone. Left as Stack makes it: the 1 MiB
# WAL segments its template cluster was initdb'd with; but initdb sets
# max_wal_size to 64 segments, which with those is 64 MB instead of the
# stock 1 GB, and a checkpoint came every second or two (each followed
# by full-page images of every page written again): back to the sizes
# of a cluster with 16 MiB segments.
my %stock = (
	max_wal_size		=> '1GB',
	min_wal_size		=> '80MB',
	fsync			=> 'on',
	synchronous_commit	=> 'on',
	full_page_writes	=> 'on',
	wal_level		=> 'replica',
	max_wal_senders		=> 10,
	shared_buffers		=> '128MB',
	autovacuum		=> 'on',
	max_connections		=> 100,
	shared_preload_libraries => 'pg_stat_statements',
	# Planning times cost a spinlock per plan on the statement's shared
	# entry, which our few statements, run by every connection, contend
	# for: off unless asked for.
	'pg_stat_statements.track_planning' => $TRACK_PLANNING ? 'on' : 'off',
	track_wal_io_timing	=> 'on',	# the mean WAL sync
	# Each statement's process, application and transaction, for the
	# log of one turn (capture_turn).
	log_line_prefix		=> 'perf|%p|%a|%v| ',
);
progress("starting the stack: $WORKERS workers ($PROCS processes of "
    . "$THREADS threads), stock durability");
# An EdDSA key pair and the JWKS of its public half, before the stack:
# the workers read the JWKS as they start.
my ($ed_key, $jwks_file);
($ed_key, $jwks_file) = eddsa_setup() if $TOKEN_KIND eq 'eddsa';
# The per-user turn limits at the workers' defaults (Stack turns them
# off for tests).
my $s = Stack->new(workers => $PROCS, pg_conf => \%stock,
    env => { CHAT_WORKER_THREADS => $THREADS,
    CHAT_USER_CONCURRENT_TURNS => undef, CHAT_USER_TURNS_PER_MINUTE => undef,
    $jwks_file ? (CHAT_JWT_JWKS => $jwks_file) : () },
    max_seconds => 600 + @ROUND * $PAIRS * ($SECONDS + 3) * @CONC);
my $dbname = 'todo_chat';

# Monitoring runs in the postgres database, so pg_stat_statements shows
# the workers' statements apart from ours by dbid.
psql('postgres', 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
$s->sql('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
my $settings = psql('postgres', q{SELECT name || '=' ||
    current_setting(name) FROM
    pg_settings WHERE name IN ('fsync', 'synchronous_commit',
    'full_page_writes', 'wal_level', 'shared_buffers', 'wal_segment_size',
    'max_wal_size',
    'autovacuum', 'server_version') ORDER BY name});
my $pg_settings = join ' ', map { $_->[0] } @$settings;

# ---------------------------------------------------------------- seed

progress("seeding $NCONV conversations of " . 4 * $NTURNS . ' messages');
# Whole turns of four messages (user, tool call, tool result, answer), as
# bench/history-length.pl writes them, the conversations' turns
# interleaved as live traffic leaves them.
$s->sql(qq{INSERT INTO conversations (user_id, title)
    SELECT '$USER', 'bench ' || g FROM generate_series(1, $NCONV) g});
$s->sql(qq{INSERT INTO messages (conversation_id, user_id, role, content,
    tool_calls, tool_call_id, reply_to, round)
    SELECT c.id, c.user_id, r.role,
    CASE r.role WHEN 'assistant' THEN CASE WHEN r.k = 1 THEN NULL
     ELSE 'Added it.' END
     WHEN 'tool' THEN '{"task_id": 1, "status": "created"}'
     ELSE 'Add a task number ' || g END,
    CASE WHEN r.k = 1 THEN ('[{"id":"call_' || c.id || '_' || g
     || '","type":"function","function":{"name":"add_task",'
     || '"arguments":"{\\"title\\":\\"x\\"}"}}]')::jsonb END,
    CASE WHEN r.role = 'tool' THEN 'call_' || c.id || '_' || g END,
    NULL, CASE WHEN r.k = 1 THEN 1 END
    FROM conversations c, generate_series(1, $NTURNS) g,
    (VALUES (0, 'user'), (1, 'assistant'), (2, 'tool'), (3, 'assistant'))
     AS r(k, role)
    WHERE c.user_id = '$USER'
    ORDER BY g, c.id, r.k});
# Each conversation its own user, named by its id: pgbench's variable
# for the conversation then names its user too.
$s->sql(qq{UPDATE messages SET user_id = conversation_id::text
    WHERE user_id = '$USER'});
$s->sql(qq{UPDATE conversations SET user_id = id::text
    WHERE user_id = '$USER'});
# Each user's tasks, for the MCP row's list_tasks to read a page of, as
# bench/mcp.pl gives its one user; turns that call no tool never read
# them.
$s->sql(qq{INSERT INTO tasks (user_id, title)
    SELECT c.user_id, 'task ' || g FROM conversations c,
    generate_series(1, $NTASKS) g WHERE c.title LIKE 'bench %'
    ORDER BY c.id, g});
# Each user as their traffic leaves them: the row of their own that a
# turn locks (schema.sql: chat_users, made on a user's first turn) and a
# row of today's use, which a turn adds to rather than makes. A build
# from before them has neither: this script measures it on the same
# data, for a comparison.
$s->sql(q{DO $$ BEGIN IF to_regclass('chat_users') IS NOT NULL THEN
    INSERT INTO chat_users (user_id, conversations, messages)
    SELECT c.user_id, 1, count(*) FROM conversations c
    JOIN messages m ON m.conversation_id = c.id
    WHERE c.title LIKE 'bench %' GROUP BY c.user_id;
    IF EXISTS (SELECT FROM information_schema.columns
     WHERE table_name = 'chat_users' AND column_name = 'tasks') THEN
     UPDATE chat_users SET tasks = } . $NTASKS . q{;
    END IF;
    INSERT INTO usage_days (user_id, day, turns)
    SELECT user_id, (now() AT TIME ZONE 'UTC')::date, 5 FROM chat_users;
    END IF; END $$});
$s->sql('ANALYZE');
psql('postgres', 'CHECKPOINT');
my ($lo, $hi, $n) = @{ $s->sql(qq{SELECT min(id), max(id), count(*)
    FROM conversations WHERE title LIKE 'bench %'})->[0] };
$hi - $lo + 1 == $n && $n == $NCONV
    or die "seeded conversations are not ids $lo..$hi\n";

# A token for each conversation's user; wrk reads them from a file.
progress("signing $NCONV tokens");
my %token = map { $_ => $ed_key ? eddsa_token($ed_key, $_)
    : $s->token("$_", exp => time + 86400) } $lo .. $hi;
write_file("$tmp/tokens", join '', map { "$_ $token{$_}\n" } $lo .. $hi);
my $first = $s->request(POST => '/chat', token => $token{$lo},
    body => { message => $MESSAGE, conversation_id => $lo });
$first->{status} == 200 && !@{ $first->{json}{tool_calls} // [1] }
    or die "a turn failed or called a tool: $first->{status} "
    . "$first->{body}\n";
my $ANSWER = $first->{json}{response};
# The other rows' requests, once each, as wrk will send them: a stream
# that ends with its answer, and a list_tasks with the user's tasks (a
# bare tools/call, no initialize first: the server is stateless).
if ($ROWS eq 'all') {
	my $streamed = $s->request(POST => '/chat', token => $token{$lo},
	    headers => { accept => 'text/event-stream' },
	    body => { message => $MESSAGE, conversation_id => $lo });
	$streamed->{status} == 200 && $streamed->{body} =~ /"text-delta"/
	    && $streamed->{body} =~ /^data: \[DONE\]$/m
	    or die "a streamed turn failed: $streamed->{status} "
	    . "$streamed->{body}\n";
	my $call = $s->request(POST => '/mcp', token => $token{$lo},
	    headers => { accept => 'application/json, text/event-stream',
	    'mcp-protocol-version' => '2025-11-25' },
	    body => { jsonrpc => '2.0', id => 1, method => 'tools/call',
	    params => { name => 'list_tasks', arguments => {} } });
	$call->{status} == 200 && @{ $call->{json}{result}{structuredContent}
	    {tasks} // [] } == $NTASKS
	    or die "tools/call list_tasks: $call->{status} $call->{body}\n";
}

# --------------------------------------------------------------- warm

# Every worker opens its connection on its first request: traffic at
# twice the pool's size reaches them all, which pg_stat_activity shows.
progress('warming every worker');
my @pids = $s->worker_pids;
@pids == $PROCS or die "expected $PROCS worker processes, found " . @pids
    . "\n";
for my $try (1 .. 5) {
	wrk('turn', 2 * $WORKERS, $WARMUP);
	last if connected() >= $WORKERS;
	die "only " . connected() . " of $WORKERS workers connected\n"
	    if $try == 5;
}
# The streamed turn's and the MCP call's statements planned on every
# connection too, before the first round measures them against a
# minimal turn that has nothing left to warm.
wrk($_, 2 * $WORKERS, 1) for grep { $_ ne 'turn' } @SERVICE;

# ------------------------------------------------------------- scripts

# The minimal turn (bench/minimal-turn.sql): its two statements, the
# comments left out, and the script pgbench runs.
my @minimal = do {
	my $text = join '', grep { !/^--/ } split /^/, slurp(
	    "$FindBin::Bin/minimal-turn.sql");
	$text =~ s/;\s*\z//;
	split /\n\\aset r_\n/, $text;
};
@minimal == 2 or die "bench/minimal-turn.sql: not two statements\n";
write_file("$tmp/minimal.sql", "\\set conv random(:conv_lo, :conv_hi)\n"
    . "$minimal[0]\n\\aset r_\n$minimal[1];\n");

# Our turn exactly as the workers send it, from PostgreSQL's statement
# log: its round trips (a worker's statements in one transaction, a
# pipeline ending in one Sync), their statements and parameters.
progress('capturing the SQL of one turn');
my @trips = capture_turn();
$_->{label} = label($_->{sql}) for map { @$_ } @trips;
# pgbench replays our SQL as the workers send it: prepared once a
# connection (lib/dbconn.c) or unnamed.
my %MODE = (minimal => $MINIMAL_MODE,
    ours => (grep { $_->{prepared} } map { @$_ } @trips) ? 'prepared'
    : 'extended');
# What counts a turn (its last statement) and its round trips (the
# statements that open one, each counted once).
my $TURN_LABEL = $trips[-1][-1]{label};
my %OPENERS = map { $_->[0]{label} => 1 } @trips;
my %MINIMAL = (shape($minimal[0]) => 'minimal_first',
    shape($minimal[1]) => 'minimal_second');
# Replayed by pgbench with its values as variables: the user, message,
# conversation (random), history limit and answer; the user message id
# the answer replies to is the one the turn's first statement stored,
# the session's last value of messages_id_seq (as_variable()): the last
# statement takes the turn off the user's running turns by it, which a
# made-up id would leave there until the user is refused.
write_file("$tmp/ours.sql", join '', "\\set conv random(:conv_lo, :conv_hi)\n",
    map { ("\\startpipeline\n",
    (map { with_args($_->{sql}, $_->{params}) . ";\n" } @$_),
    "\\endpipeline\n") } @trips);

# ---------------------------------------------------------------- runs

# Rounds of paired runs at each concurrency (the header says why): every
# run kept by kind for the figures over all of them, and each pair's
# ratio with the order it ran in.
my (@rows, %stmt_times);
for my $c (@CONC) {
	my %r = (conc => $c);
	progress("c=$c: warm-up ${WARMUP}s");
	wrk('turn', $c, $WARMUP);
	my %part = map { $_ => [] } @ROUND;
	for my $round (1 .. $PAIRS) {
		my @at = $round % 2 ? (0 .. $#ROUND) : reverse 0 .. $#ROUND;
		my (%res, %when);
		my $seq = 0;
		for my $i (@at) {
			my $kind = $ROUND[$i];
			$res{$i} = one_run($kind, $c, $SECONDS);
			$when{$i} = $seq++;
			push @{ $part{$kind} }, $res{$i};
			progress(sprintf "c=%d round %d: %-7s %7.0f/s%s", $c,
			    $round, $kind, $res{$i}{rate}, refused($res{$i}));
		}
		for my $p (@PAIRED) {
			my ($i, $j) = @{ $p->{at} };
			my $pair = { ratio => $res{$i}{rate} / $res{$j}{rate},
			    first => $when{$i} < $when{$j} ? 's' : 'm',
			    noisy => $res{$i}{noisy} || $res{$j}{noisy} };
			push @{ $r{pair_runs}{"$p->{row}/$p->{over}"} }, $pair;
			progress(sprintf "c=%d round %d: %s/%s %.3f%s", $c,
			    $round, $p->{row}, $p->{over}, $pair->{ratio},
			    $pair->{noisy} ? ' (disturbed)' : '');
		}
	}
	my %run = map { $_ => combine(@{ $part{$_} }) } keys %part;
	my $w = $run{turn};
	@r{qw(turns_s p50_ms p99_ms requests)} = @$w{qw(rate p50_ms p99_ms n)};
	my $st = $w->{st};
	my $turns = $st->{$TURN_LABEL}{calls} || 1;
	$r{stmts_turn} = sum(map { $_->{calls} } values %$st) / $turns;
	$r{trips_turn} = sum(map { $st->{$_}{calls} // 0 } keys %OPENERS)
	    / $turns;
	# Per worker: a process's memory shared by its threads.
	my @mem = map { rss($_) } $s->worker_pids;
	$r{proc_rss_kib} = sum(map { $_->{VmRSS} } @mem) / @mem;
	$r{rss_kib} = $r{proc_rss_kib} / $THREADS;
	$r{anon_kib} = sum(map { $_->{RssAnon} } @mem) / @mem / $THREADS;
	$r{pss_kib} = sum(map { $_->{Pss} } @mem) / @mem / $THREADS;
	@r{qw(min_tps min_p50_ms min_p99_ms min_n)} =
	    @{ $run{minimal} }{qw(rate p50_ms p99_ms n)};
	@r{qw(ours_tps ours_p50_ms ours_p99_ms ours_n)} =
	    @{ $run{ours} }{qw(rate p50_ms p99_ms n)};
	for my $kind (grep { $_ ne 'turn' } @SERVICE) {
		@r{map { "${kind}_$_" } qw(s p50_ms p99_ms)} =
		    @{ $run{$kind} }{qw(rate p50_ms p99_ms)};
	}
	for my $kind (keys %run) {
		$r{run}{$kind} = $run{$kind};
		$stmt_times{$c}{$kind} = $run{$kind}{st};
	}
	for my $p (@PAIRED) {
		my $pairs = $r{pair_runs}{"$p->{row}/$p->{over}"};
		my @v = map { $_->{ratio} } @$pairs;
		my $f = $p->{field};
		@r{$f, "${f}_lo", "${f}_hi"} = (median(@v), min(@v), max(@v));
		$r{"${f}_disturbed"} = grep { $_->{noisy} } @$pairs;
	}
	$r{pairs} = $PAIRS;
	$r{"${_}_non2xx"} = $run{$_}{bad} for @SERVICE;
	$r{p50_ratio} = $r{p50_ms} / $r{min_p50_ms};
	push @rows, \%r;
}
my @after = $s->worker_pids;
die "workers were restarted during the run (@pids -> @after)\n"
    if "@after" ne "@pids";

# ------------------------------------------------------------- report

my $when = strftime('%Y-%m-%dT%H:%M:%SZ', gmtime);
my $report = '';
my $out = sub { $report .= sprintf shift, @_ };
$out->("todo-chat perf, %s\n", $when);
$out->("machine: %s, %d CPUs (%s), %.0f GiB\n", hostname(), ncpu(),
    cpu_model(), mem_gib());
$out->("build: commit %s, chat.fcgi sha1 %s\n", commit(), binary_sha());
$out->("stack: nginx, %d workers (%d processes of %d threads), %s\n",
    $WORKERS, $PROCS, $THREADS, $pg_settings);
$out->("token: %s\n", $TOKEN_KIND eq 'eddsa' ? 'eddsa (EdDSA, Ed25519; '
    . 'CHAT_JWT_JWKS a file of its one public key)'
    : 'hs256 (HS256, CHAT_JWT_SECRET)');
$out->("a turn as the workers send it (statement log): %s\n",
    join(' | ', map { join(' + ', map { $_->{label} } @$_) } @trips));
$out->("protocol: the workers' statements %s; pgbench: minimal -M %s, "
    . "ours -M %s\n", $MODE{ours} eq 'prepared' ? 'prepared once a '
    . 'connection' : 'unnamed (parsed and planned every time)',
    $MODE{minimal}, $MODE{ours});
$out->("load: %d rounds of %d s runs at each concurrency, in the order %s "
    . "and back\n  after %d s of warm-up; %d conversations of %d messages "
    . "and %d tasks, each of a user of its own; \"%s\"\n"
    . "  per-user limits at their defaults\n\n", $PAIRS, $SECONDS,
    join(', ', @ROUND), $WARMUP, $NCONV, 4 * $NTURNS + 1, $NTASKS,
    $MESSAGE);

my @cols = (
    [ 'conc', '%4s', '%4d', 'conc' ],
    [ 'turns/s', '%8s', '%8.0f', 'turns_s' ],
    [ 'p50 ms', '%7s', '%7.2f', 'p50_ms' ],
    [ 'p99 ms', '%7s', '%7.2f', 'p99_ms' ],
    [ 'stmts/turn', '%10s', '%10.2f', 'stmts_turn' ],
    [ 'trips/turn', '%10s', '%10.2f', 'trips_turn' ],
    [ 'RSS KiB', '%7s', '%7.0f', 'rss_kib' ],
    [ 'PSS', '%5s', '%5.0f', 'pss_kib' ],
    [ 'anon', '%5s', '%5.0f', 'anon_kib' ],
    [ 'min tps', '%8s', '%8.0f', 'min_tps' ],
    [ 'min p50', '%7s', '%7.2f', 'min_p50_ms' ],
    [ 'ours tps', '%8s', '%8.0f', 'ours_tps' ],
    [ 'ours p50', '%8s', '%8.2f', 'ours_p50_ms' ],
    [ 'ratio', '%6s', '%6.3f', 'ratio' ],
);
$out->("%s\n", join ' ', map { sprintf $_->[1], $_->[0] } @cols);
for my $r (@rows) {
	$out->("%s\n", join ' ', map { sprintf $_->[2], $r->{ $_->[3] } }
	    @cols);
}
$out->("%s", <<'END');

  turns/s, p50, p99: the service through nginx (wrk), over all its runs;
  stmts/turn: every statement the workers sent (pg_stat_statements) per
  turn; trips/turn: calls of the statements that open a round trip, per
  turn; RSS KiB, PSS, anon: a worker's share of its process's VmRSS, Pss
  and RssAnon (private), the mean over processes divided by threads;
  min: pgbench with the minimal turn; ours: pgbench replaying our turn's
  SQL; ratio: the median of the turn's pairs with the minimal turn (not
  turns/s / min tps, which the drift between runs is in).

END

# Each row's pairs, median and range, and its runs' figures; a row with
# a refusal or a socket error says so where its figures are.
$out->("Paired runs: each pair's ratio is the row's run's rate over the "
    . "run beside it\n(s: the row's run went first, m: the other; *: in "
    . "one of the two, other processes\nor the hypervisor took over 5%% "
    . "of a CPU):\n");
$out->("  %4s %-14s %7s %7s %7s %7s  %-8s %-*s %6s %s\n", 'conc', 'row',
    'req/s', 'p50 ms', 'p99 ms', 'non-2xx', 'over', 8 * $PAIRS, 'pairs',
    'median', 'range');
for my $r (@rows) {
	for my $p (@PAIRED) {
		my $run = $r->{run}{ $p->{row} };
		my $f = $p->{field};
		$out->("  %4d %-14s %7.0f %7.2f %7.2f %7d  %-8s %-*s %6.3f "
		    . "%.3f-%.3f%s\n", $r->{conc}, $NAME{ $p->{row} },
		    @$run{qw(rate p50_ms p99_ms bad)}, $NAME{ $p->{over} },
		    8 * $PAIRS, join(' ', map { sprintf '%.3f%s%s', $_->{ratio},
		    $_->{first}, $_->{noisy} ? '*' : ' ' }
		    @{ $r->{pair_runs}{"$p->{row}/$p->{over}"} }),
		    @$r{$f, "${f}_lo", "${f}_hi"},
		    refused($run) ? '  <- NOT A MEASUREMENT' : '');
	}
	for my $kind (qw(minimal ours)) {
		$out->("  %4d %-14s %7.0f %7.2f %7.2f %7s  (pgbench)\n",
		    $r->{conc}, $NAME{$kind},
		    @{ $r->{run}{$kind} }{qw(rate p50_ms p99_ms)}, '-');
	}
}
$out->("\n");

$out->("CPU a request, ms, by part of the machine (busy: share of its %d "
    . "CPUs):\n", ncpu());
$out->("  %4s %-8s %7s %7s %7s %8s %7s %7s %6s %6s %8s\n", 'conc',
    'run', 'load', 'nginx', 'workers', 'postgres', 'other', 'total', 'busy',
    'steal', 'sync ms');
for my $r (@rows) {
	for my $kind (@SERVICE, qw(minimal ours)) {
		my $run = $r->{run}{$kind};
		my $cpu = $run->{cpu};
		my $total = sum(values %$cpu);
		$out->("  %4d %-8s %7.3f %7.3f %7.3f %8.3f %7.3f %7.3f %5.0f%% "
		    . "%5.1f%% %8.3f\n", $r->{conc}, $kind,
		    map({ 1000 * ($cpu->{$_} // 0) / $run->{n} }
		    qw(load nginx workers postgres other)),
		    1000 * $total / $run->{n},
		    100 * $total / ncpu() / $run->{seconds},
		    100 * $run->{steal} / ncpu() / $run->{seconds},
		    $run->{sync_ms});
	}
}
$out->("  load: wrk or pgbench; other: whatever else ran on the machine "
    . "(should be ~0);\n  steal: the share of the CPUs the hypervisor "
    . "gave to other guests (should be ~0);\n  sync ms: the mean WAL "
    . "flush (pg_stat_wal), which bounds a commit's latency\n\n");

for my $c (@CONC) {
	$out->("SQL at concurrency %d (pg_stat_statements; mean a call; "
	    . "calls a turn, a minimal turn or an MCP call):\n", $c);
	$out->("  %-8s %-26s %10s %8s %8s %10s %8s\n", 'run', 'statement',
	    'calls/req', 'plan ms', 'exec ms', 'WAL bytes', 'WAL FPI');
	my ($r) = grep { $_->{conc} == $c } @rows;
	for my $kind (@SERVICE, qw(minimal ours)) {
		my $st = $stmt_times{$c}{$kind};
		# Requests by the statement that ends one where there is one;
		# an MCP call's by wrk's count.
		my $n = $kind eq 'mcp' ? $r->{run}{mcp}{n}
		    : $st->{ $kind eq 'minimal' ? 'minimal_second'
		    : $TURN_LABEL }{calls} || 1;
		for my $k (sort { ($st->{$b}{calls} <=> $st->{$a}{calls})
		    || ($a cmp $b) } keys %$st) {
			$out->("  %-8s %-26s %10.2f %8s %8.3f %10.0f %8.2f\n",
			    $kind, $k, $st->{$k}{calls} / $n,
			    $TRACK_PLANNING ? sprintf('%.3f', $st->{$k}{plan})
			    : '-', @{ $st->{$k} }{qw(exec wal fpi)});
		}
	}
	$out->("\n");
}

my %by = map { $_->{conc} => $_ } @rows;
my @verdicts;
for my $c (grep { $by{$_} } 1, 8) {
	my $r = $by{$c};
	push @verdicts, sprintf "ratio at c=%d: %.3f, the median of %d "
	    . "pair(s) (%.3f-%.3f) (target >= %.2f) %s%s", $c, @$r{qw(ratio
	    pairs ratio_lo ratio_hi)}, $TARGET{ratio},
	    refused($r->{run}{turn}) ? 'REFUSED: no verdict'
	    : $r->{ratio} >= $TARGET{ratio} ? 'ok' : 'MISSED',
	    disturbed($r, 'ratio');
}
if (my $r = $by{1}) {
	push @verdicts, sprintf "p50 at c=1: %.2f ms / %.2f ms = %.2fx "
	    . "(target <= %.2fx) %s", $r->{p50_ms}, $r->{min_p50_ms},
	    $r->{p50_ratio}, $TARGET{p50},
	    refused($r->{run}{turn}) ? 'REFUSED: no verdict'
	    : $r->{p50_ratio} <= $TARGET{p50} ? 'ok' : 'MISSED';
	push @verdicts, sprintf "p50 at c=1 beyond our own SQL: %.2f ms "
	    . "(service %.2f, our SQL in pgbench %.2f)",
	    $r->{p50_ms} - $r->{ours_p50_ms}, $r->{p50_ms},
	    $r->{ours_p50_ms};
}
if (my $r = $by{8}) {
	my %cpu = map { my $run = $r->{run}{$_};
	    ($_ => 1000 * sum(values %{ $run->{cpu} }) / $run->{n}) }
	    qw(turn minimal ours);
	push @verdicts, sprintf "CPU a turn at c=8: service %.2f ms, our SQL "
	    . "%.2f, minimal %.2f (minimal/service %.2f: the ceiling of the "
	    . "ratio once CPU-bound)", @cpu{qw(turn ours minimal)},
	    $cpu{minimal} / $cpu{turn};
}
my $rss = max(map { $_->{rss_kib} } @rows);
push @verdicts, sprintf "RSS per worker: %.0f KiB mean at most (a process "
    . "of %d threads: %.0f KiB); PSS %.0f, private %.0f (target <= %d KiB) %s",
    $rss, $THREADS, max(map { $_->{proc_rss_kib} } @rows),
    max(map { $_->{pss_kib} } @rows), max(map { $_->{anon_kib} } @rows),
    $TARGET{rss_kib},
    $rss <= $TARGET{rss_kib} ? 'ok' : 'MISSED';
for my $r (@rows) {
	for my $kind (@SERVICE, qw(minimal ours)) {
		my $run = $r->{run}{$kind};
		my $other = ($run->{cpu}{other} // 0) / $run->{seconds};
		my $steal = $run->{steal} / $run->{seconds};
		push @verdicts, sprintf "WARNING: other processes took %.0f%% "
		    . "of a CPU and the hypervisor %.0f%% during c=%d %s: the "
		    . "figures are skewed", 100 * $other, 100 * $steal,
		    $r->{conc}, $kind if $other + $steal > 0.05;
	}
}
# Refusals last, where they are seen: a row with any is no measurement
# (a per-user limit reached means fewer users than the rate needs:
# BENCH_USERS), whatever its ratio says.
for my $r (@rows) {
	for my $kind (@SERVICE) {
		my $run = $r->{run}{$kind};
		push @verdicts, sprintf "*** REFUSED: c=%d %s: %d answers of "
		    . "400 or more%s and %d socket errors in %d requests: this "
		    . "row is NOT A MEASUREMENT ***", $r->{conc}, $NAME{$kind},
		    $run->{bad}, $run->{codes} ? " ($run->{codes})" : '',
		    @$run{qw(errors n)} if refused($run);
	}
}
$out->("%s\n", $_) for @verdicts;
$out->("\nFor the README (medians of %d pair(s) of %d s runs, the range in "
    . "brackets; %s):\n\n%s", $PAIRS, $SECONDS, substr($when, 0, 10),
    markdown(\@rows));
$out->("\nwall time %.0f s\n", time - $t_start);
print $report;

mkdir "$FindBin::Bin/results";
(my $stamp = $when) =~ tr/:-//d;
my $file = "$FindBin::Bin/results/perf-$stamp.txt";
write_file($file, $report);
# The columns of the rows before paired runs first, as they were (ratio
# now the median of the pairs; seconds a run's), the rest added after
# them, so that old rows stay, their new columns empty.
my @tsv = (qw(conc turns_s p50_ms p99_ms stmts_turn trips_turn rss_kib
    pss_kib anon_kib min_tps min_p50_ms ours_tps ours_p50_ms ratio
    p50_ratio pairs ratio_lo ratio_hi turn_ours_ratio turn_ours_ratio_lo
    turn_ours_ratio_hi), (map { my $k = $_; (map { "${k}_$_" }
    qw(s p50_ms p99_ms ratio ratio_lo ratio_hi)) } qw(stream mcp)),
    (map { "${_}_non2xx" } @ALL_SERVICE),
    map { "$_->{field}_disturbed" } @ALL_PAIRED);
my %whole = map { $_ => 1 } qw(conc pairs), grep { /_non2xx|_disturbed/ }
    @tsv;
my $tsv = "$FindBin::Bin/results/perf.tsv";
my $header = join("\t", qw(date commit binary seconds workers threads
    token), @tsv) . "\n";
tsv_header($tsv, $header, $stamp);
my $new = !-e $tsv;
open my $fh, '>>', $tsv or die "$tsv: $!\n";
print $fh $header if $new;
for my $r (@rows) {
	print $fh join("\t", $when, commit(), binary_sha(), $SECONDS,
	    $WORKERS, $THREADS, $TOKEN_KIND, map { !defined $r->{$_} ? ''
	    : $whole{$_} ? $r->{$_} : sprintf '%.3f', $r->{$_} } @tsv), "\n";
}
close $fh or die "$tsv: $!\n";
print "wrote $file, appended to $tsv\n";
exit 0;

# ------------------------------------------------------------- helpers

sub progress { printf STDERR "perf: %s\n", $_[0] }

# An Ed25519 key made by openssl and the JWKS file of its public key:
# (key file, JWKS file). The raw public key is the last 32 bytes of the
# key's DER SubjectPublicKeyInfo.
sub eddsa_setup {
	my $key = "$tmp/ed25519.pem";
	run({}, 'openssl', 'genpkey', '-algorithm', 'ed25519', '-out', $key);
	my $der = run({}, 'openssl', 'pkey', '-in', $key, '-pubout',
	    '-outform', 'DER');
	length $der >= 32 or die "openssl pkey: no public key\n";
	my $kid = 'bench-ed25519';
	my $file = "$tmp/jwks.json";
	write_file($file, JSON::PP->new->canonical->encode({ keys => [ {
	    kty => 'OKP', crv => 'Ed25519', alg => 'EdDSA', use => 'sig',
	    kid => $kid, x => encode_base64url(substr $der, -32) } ] }));
	return ($key, $file);
}

# An EdDSA token for user $sub signed with the key eddsa_setup() made.
sub eddsa_token {
	my ($key, $sub) = @_;
	my $now = time;
	my $input = join '.', map { encode_base64url(JSON::PP->new->canonical
	    ->encode($_)) } { alg => 'EdDSA', typ => 'JWT',
	    kid => 'bench-ed25519' },
	    { sub => "$sub", iat => int $now, exp => int($now) + 86400 };
	write_file("$tmp/signing-input", $input);
	my $sig = run({}, 'openssl', 'pkeyutl', '-sign', '-inkey', $key,
	    '-rawin', '-in', "$tmp/signing-input");
	length $sig == 64 or die "openssl pkeyutl: no Ed25519 signature\n";
	return "$input." . encode_base64url($sig);
}

sub write_file {
	my ($file, $text) = @_;
	open my $fh, '>', $file or die "$file: $!\n";
	print $fh $text;
	close $fh or die "$file: $!\n";
}

sub pg_env {
	return (PGHOST => $s->dir . '/run', PGPORT => $s->pg_port,
	    PGUSER => 'postgres');
}

# Runs argv with extra environment; returns its output (stderr too), or
# dies with it when the command fails.
sub run {
	my ($env, @argv) = @_;
	local @ENV{ keys %$env } = values %$env;
	my $pid = open my $fh, '-|';
	defined $pid or die "fork: $!\n";
	if (!$pid) {
		open STDERR, '>&', \*STDOUT;
		no warnings 'exec';
		exec { $argv[0] } @argv;
		print "exec $argv[0]: $!\n";
		POSIX::_exit(127);
	}
	local $/;
	my $text = <$fh> // '';
	close $fh or die "$argv[0] failed ($?):\n$text";
	return $text;
}

# Rows of a query, tab-separated columns.
sub psql {
	my ($db, $query) = @_;
	my $text = run({ pg_env() }, "$PG_BIN/psql", '-X', '-q', '-t', '-A',
	    '-F', "\t", '-v', 'ON_ERROR_STOP=1', '-d', $db, '-c', $query);
	return [ map { [ split /\t/, $_, -1 ] } split /\n/, $text ];
}

sub connected {
	return psql('postgres', qq{SELECT count(*) FROM pg_stat_activity
	    WHERE datname = '$dbname' AND application_name = 'todo-chat'})
	    ->[0][0];
}

# wrk through nginx, kind a REQUEST of bench/turn.lua (turn, stream or
# mcp), every request of another user: requests, seconds, p50/p99, and
# the answers of 400 or more (bad) and socket errors apart, for the
# caller to judge.
sub wrk {
	my ($kind, $c, $seconds) = @_;
	my $threads = min($c, 2);
	my $log = $s->dir . '/nginx/access.log';
	my $log_from = -s $log // 0;
	my $text = run({ TOKENS_FILE => "$tmp/tokens", REQUEST => $kind },
	    '/usr/bin/wrk', '-t', $threads, '-c', $c, '-d', "${seconds}s",
	    '--timeout', '10s', '-s', "$FindBin::Bin/turn.lua",
	    'http://127.0.0.1:' . $s->port . ($kind eq 'mcp' ? '/mcp'
	    : '/chat'));
	my %w;
	@w{qw(n seconds)} = $text =~ /(\d+) requests in ([\d.]+)s/
	    or die "wrk said:\n$text";
	($w{bad}) = $text =~ /non-200: (\d+)/
	    or die "wrk said (no count of non-200):\n$text";
	# Which answers, from nginx's access log (Stack keeps one): read
	# only when there were any, so that a clean run costs nothing more.
	$w{codes} = statuses($log, $log_from) if $w{bad};
	my ($p50, $p99) = $text =~ /p50_us (\d+) p99_us (\d+)/
	    or die "wrk said (no percentiles):\n$text";
	@w{qw(p50_ms p99_ms)} = ($p50 / 1000, $p99 / 1000);
	$w{errors} = 0;
	$w{errors} += $_ for $text =~ /Socket\ errors:\ connect\ (\d+),
	    \ read\ (\d+),\ write\ (\d+),\ timeout\ (\d+)/x;
	return \%w;
}

# The workers' statements since the reset, by kind: calls and mean plan
# and execution times.
sub statements {
	my $rows = psql('postgres', qq{SELECT regexp_replace(query, '\\s+', ' ',
	    'g'), calls, total_plan_time, total_exec_time, wal_bytes, wal_fpi
	    FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
	    WHERE d.datname = '$dbname' AND query NOT LIKE '%pg_stat%'});
	my %st;
	for (@$rows) {
		my ($query, $calls, $plan, $exec, $wal, $fpi) = @$_;
		my $label = $MINIMAL{ shape($query) } // label($query);
		my $to = $st{$label} //= {};
		$to->{calls} += $calls;
		$to->{plan} += $plan;
		$to->{exec} += $exec;
		$to->{wal} += $wal;
		$to->{fpi} += $fpi;
	}
	for my $to (values %st) {
		$to->{$_} /= $to->{calls} || 1 for qw(plan exec wal fpi);
	}
	return \%st;
}

# A statement's name, from its text as PostgreSQL shows it (the log,
# pg_stat_statements) or pgbench is given it: the function it calls,
# for each statement of a turn is one call of a PL/pgSQL function
# ("SELECT * FROM chat_turn_begin($1, ...)", "SELECT
# chat_turn_finish($1, ...)", "SELECT stop, followed FROM
# chat_stream_put(...)"); else its first three
# words, so that an unexpected statement still shows up under a name of
# its own.
sub label {
	my ($q) = @_;
	my $flat = shape($q);
	return $1 if $flat =~ /\ASELECT (?:[^(]*? FROM )?([A-Za-z_][\w.]*) ?\(/i;
	my @words = $flat =~ /([A-Za-z_]\w*|\*|\?)/g;
	splice @words, 3;
	return substr lc(join ' ', @words), 0, 26;
}

# A statement with its values and parameters (pg_stat_statements' $n,
# pgbench's :name) and spacing taken out, so that the same statement
# looks the same from the log, pg_stat_statements and a script.
sub shape {
	my ($q) = @_;
	$q =~ s/'(?:[^']|'')*'/?/g;
	$q =~ s/\$\d+|(?<!:):[A-Za-z_]\w*|\b\d+\b|\b(?:NULL|true|false)\b/?/gi;
	$q =~ s/\s+/ /g;
	$q =~ s/\A | \z//g;
	return $q;
}

# Logs every statement for one turn and reads it back: a list of round
# trips, each a list of { sql, params => { n => value or undef } }.
sub capture_turn {
	my $log = $s->dir . '/postgres.log';
	psql('postgres', q{ALTER SYSTEM SET log_statement = 'all'});
	psql('postgres', 'SELECT pg_reload_conf()');
	# A backend rereads its settings between statements: every worker
	# serves a turn first (they take requests in turn), each of another
	# user, so that none nears the limit of turns a minute.
	turn($hi - $_) for 1 .. 2 * $WORKERS;
	my $offset = -s $log;
	my $answer = turn($hi);
	sleep 0.3;	# the log is written a moment later
	psql('postgres', 'ALTER SYSTEM RESET log_statement');
	psql('postgres', 'SELECT pg_reload_conf()');
	my $reply_to = $s->sql_value(q{SELECT max(id) FROM messages
	    WHERE conversation_id = $1 AND role = 'user'}, $hi);
	open my $fh, '<', $log or die "$log: $!\n";
	seek $fh, $offset, 0;
	my (@trips, $vxid);
	while (<$fh>) {
		my ($pid, $tx, $what, $text) =
		    /\Aperf\|(\d+)\|todo-chat\|([^|]*)\| (LOG|DETAIL):  (.*)/
		    or next;
		if ($what eq 'LOG') {
			my ($name, $sql) = $text =~
			    /\A(?:execute ([^:]*)|statement): (.*)/ or next;
			push @trips, [] if !defined $vxid || $tx ne $vxid;
			$vxid = $tx;
			# A named statement: prepared by the worker.
			push @{ $trips[-1] }, { sql => $sql, params => {},
			    prepared => defined $name && $name ne '<unnamed>' };
		} elsif (@trips && $text =~ s/\Aparameters: //) {
			my $value = qr/NULL|'((?:[^']|'')*)'/;
			while ($text =~ /\$(\d+) = (?:$value)/g) {
				my ($n, $v) = ($1, $2);
				$v =~ s/''/'/g if defined $v;
				$trips[-1][-1]{params}{$n} = as_variable($v,
				    $reply_to, $answer);
			}
		}
	}
	@trips or die "no statement of a turn in $log\n";
	return @trips;
}

# A parameter's value as a pgbench variable when it is one of ours, else
# as a literal.
sub as_variable {
	my ($v, $reply_to, $answer) = @_;
	return 'NULL' unless defined $v;
	# The conversation's id is its user's too.
	my %var = ($MESSAGE => ':msg', $hi => ':conv',
	    $HISTORY => ':lim', $answer => ':answer',
	    $reply_to => q{currval('messages_id_seq')});
	return $var{$v} if $var{$v};
	die "a value pgbench would read as a variable: $v\n"
	    if $v =~ /(?<!:):[A-Za-z_]/;
	(my $q = $v) =~ s/'/''/g;
	return "'$q'";
}

sub turn {
	my ($conv) = @_;
	my $r = $s->request(POST => '/chat', token => $token{$conv},
	    body => { message => $MESSAGE, conversation_id => $conv });
	die "a turn failed: $r->{status} $r->{body}\n" if $r->{status} != 200;
	return $r->{json}{response};
}

sub rss {
	my ($pid) = @_;
	my %m;
	open my $fh, '<', "/proc/$pid/status" or die "worker $pid: $!\n";
	while (<$fh>) {
		$m{$1} = $2 if /^(VmRSS|RssAnon|RssFile|RssShmem):\s+(\d+) kB/;
	}
	# Proportional: each shared page divided among those mapping it.
	open $fh, '<', "/proc/$pid/smaps_rollup" or die "worker $pid: $!\n";
	while (<$fh>) { $m{Pss} = $1 if /^Pss:\s+(\d+) kB/ }
	return \%m;
}

# One measured run of kind (turn, stream, mcp: wrk through nginx; minimal
# or ours: pgbench) at concurrency c: its transactions, time, rate,
# latencies, refusals, statements, CPU and WAL syncs. A run with refused
# requests goes on (the report flags its row): dying here would throw
# away the other rows of a run of minutes.
sub one_run {
	my ($kind, $c, $seconds) = @_;
	psql('postgres', q{SELECT pg_stat_statements_reset(),
	    pg_stat_reset_shared('wal')});
	my ($res, $cpu, $steal) = measured(sub {
	    $kind =~ /\A(?:minimal|ours)\z/
	    ? pgbench($kind, $c, $seconds) : wrk($kind, $c, $seconds) });
	$res->{$_} //= 0 for qw(bad errors);
	$res->{rate} = $res->{n} / $res->{seconds};
	$res->{cpu} = $cpu;
	$res->{steal} = $steal;
	# A run disturbed from outside: other processes or the hypervisor
	# took over 5% of a CPU, the level at which the report has always
	# warned of skew.
	$res->{noisy} = (($cpu->{other} // 0) + $steal) / $res->{seconds}
	    > 0.05;
	$res->{st} = statements();
	# Backends report WAL statistics a second or so late: a mean of
	# what arrived is still the mean.
	@$res{qw(syncs sync_ms_total)} = @{ psql('postgres',
	    'SELECT wal_sync, wal_sync_time FROM pg_stat_wal')->[0] };
	return $res;
}

# The runs of a kind taken together: rates over the total time;
# pgbench's percentiles over every transaction, wrk's (it gives only
# percentiles) the mean of the runs'.
sub combine {
	my @h = @_;
	my %r;
	for my $k (qw(n seconds bad errors steal)) {
		$r{$k} = sum(map { $_->{$k} } @h);
	}
	$r{codes} = join '; ', grep { $_ } map { $_->{codes} } @h;
	$r{rate} = $r{n} / $r{seconds};
	if (defined $h[0]{us}) {
		my @us = sort { $a <=> $b } map { @{ $_->{us} } } @h;
		$r{p50_ms} = pct(0.5, @us) / 1000;
		$r{p99_ms} = pct(0.99, @us) / 1000;
	} else {
		for my $p (qw(p50_ms p99_ms)) {
			$r{$p} = sum(map { $_->{$p} } @h) / @h;
		}
	}
	for my $x (@h) {
		$r{cpu}{$_} += $x->{cpu}{$_} for keys %{ $x->{cpu} };
		for my $k (keys %{ $x->{st} }) {
			my ($from, $to) = ($x->{st}{$k}, $r{st}{$k} //= {});
			$to->{$_} += $from->{$_} * $from->{calls}
			    for qw(plan exec wal fpi);
			$to->{calls} += $from->{calls};
		}
	}
	for my $to (values %{ $r{st} }) {
		$to->{$_} /= $to->{calls} || 1 for qw(plan exec wal fpi);
	}
	my $syncs = sum(map { $_->{syncs} } @h);
	$r{sync_ms} = $syncs ? sum(map { $_->{sync_ms_total} } @h) / $syncs
	    : 0;
	return \%r;
}

# CPU time, in seconds, spent by each part of the machine while code
# runs: the load generator (our children: wrk or pgbench), each of the
# stack's process groups (Stack starts each in a session of its own and
# $s->pids lists their leaders; a process's time moves to its parent
# when it is reaped, so each group's sum holds), and the rest of the
# machine, kernel threads aside ("other": anything else running would
# skew the figures); and the CPU time stolen from the machine meanwhile.
sub measured {
	my ($code) = @_;
	my $before = cpu_snapshot();
	my $steal_before = steal_ticks();
	my %old = map { $_ => 1 } postgres_children();
	my @t0 = POSIX::times();
	my $result = $code->();
	my @t1 = POSIX::times();
	# pgbench's backends exit a moment after pgbench: their time is
	# their parent's once they are reaped.
	my $until = time + 5;
	sleep 0.05 while grep({ !$old{$_} } postgres_children())
	    && time < $until;
	my $after = cpu_snapshot();
	my $steal = steal_ticks() - $steal_before;
	my $hz = POSIX::sysconf(POSIX::_SC_CLK_TCK());
	my %cpu = (load => ($t1[3] + $t1[4] - $t0[3] - $t0[4]) / $hz);
	for my $pid (keys %$after) {
		my ($group, $ticks) = @{ $after->{$pid} };
		my $was = $before->{$pid} && $before->{$pid}[0] eq $group ?
		    $before->{$pid}[1] : 0;
		$cpu{$group} += ($ticks - $was) / $hz if $ticks > $was;
	}
	delete $cpu{self};
	return ($result, \%cpu, $steal / $hz);
}

# CPU time the hypervisor gave to other guests while ours wanted it
# (steal, /proc/stat), in clock ticks over all CPUs: drift that no
# process on this machine shows.
sub steal_ticks {
	my ($cpu) = slurp('/proc/stat') =~ /\Acpu +([^\n]*)/ or return 0;
	return (split ' ', $cpu)[7] // 0;
}

sub postgres_children {
	my $pm = $s->postmaster_pid or die "no postmaster\n";
	my @kids;
	for my $stat (glob '/proc/[0-9]*/stat') {
		my ($pid, $ppid) = slurp($stat) =~ /\A(\d+) \(.*\) \S+ (\d+)/s
		    or next;
		push @kids, $pid if $ppid == $pm;
	}
	return @kids;
}

sub slurp {
	my ($file) = @_;
	open my $fh, '<', $file or return '';
	local $/;
	return <$fh> // '';
}

sub cpu_snapshot {
	my %leader = reverse %{ $s->pids };
	$leader{$$} = 'self';
	my %proc;
	for my $stat (glob '/proc/[0-9]*/stat') {
		open my $sf, '<', $stat or next;
		my $line = <$sf> // next;
		my ($pid, $rest) = $line =~ /\A(\d+) \(.*\) (.*)\z/s or next;
		my @f = split ' ', $rest;
		# state ppid pgrp session ... utime(11) stime cutime cstime
		$proc{$pid} = [ $f[1], $f[11] + $f[12], $f[13] + $f[14] ];
	}
	my %snap;
	for my $pid (keys %proc) {
		my ($ppid, $own, $reaped) = @{ $proc{$pid} };
		next if $pid == 2 || $ppid == 2;	# kernel threads
		# The group of the nearest listed ancestor (PostgreSQL's
		# children leave its session, so sessions will not do).
		my ($p, $group) = ($pid, 'other');
		for (1 .. 64) {
			if ($leader{$p}) { $group = $leader{$p}; last }
			$p = $proc{$p} ? $proc{$p}[0] : 0;
			last if $p <= 1;
		}
		# Reaped children's time counts in the groups we start, so a
		# pgbench backend that exits stays counted; not elsewhere,
		# where a child that ran before we looked would count too.
		$snap{$pid} = [ $group, $own + ($group eq 'other' ? 0
		    : $reaped) ];
	}
	return \%snap;
}

sub pgbench {
	my ($script, $c, $seconds) = @_;
	my $prefix = "$tmp/log-$script-$c";
	my $text = run({ pg_env() }, "$PG_BIN/pgbench", '-n',
	    '-M', $MODE{$script},
	    '-c', $c, '-j', min($c, 2), '-T', $seconds,
	    '-f', "$tmp/$script.sql",
	    '-D', "conv_lo=$lo", '-D', "conv_hi=$hi",
	    '-D', "msg=$MESSAGE", '-D', "answer=$ANSWER", '-D', "lim=$HISTORY",
	    '-l', "--log-prefix=$prefix", $dbname);
	my ($tps) = $text =~ /tps = ([\d.]+)/ or die "pgbench said:\n$text";
	my ($n) = $text =~ /transactions actually processed: (\d+)/;
	my ($failed) = $text =~ /number of failed transactions: (\d+)/;
	die "pgbench $script: $failed failed transactions:\n$text"
	    if $failed;
	# Per-transaction log: client, transaction, latency in us, ...
	my @us;
	for my $log (glob "$prefix.*") {
		open my $fh, '<', $log or die "$log: $!\n";
		push @us, (split)[2] while <$fh>;
		unlink $log;
	}
	@us or die "pgbench $script: no transaction log\n";
	# tps leaves out the time spent connecting.
	return { n => $n, seconds => $n / $tps, us => \@us };
}

# The rows for the README's table: what each request costs against the
# minimal turn, the medians with their ranges, a column a concurrency.
sub markdown {
	my ($rows) = @_;
	my $md = join(' | ', '| against the minimal turn',
	    map { "concurrency $_->{conc}" } @$rows) . " |\n";
	$md .= '|' . ' --- |' x (1 + @$rows) . "\n";
	for my $p (grep { $_->{over} eq 'minimal' } @PAIRED) {
		my $f = $p->{field};
		$md .= join(' | ', "| $NAME{ $p->{row} }", map {
		    sprintf '%.2f (%.2f-%.2f)%s%s', @$_{$f, "${f}_lo",
		    "${f}_hi"}, refused($_->{run}{ $p->{row} })
		    ? ' REFUSED: not a measurement' : '', disturbed($_, $f) }
		    @$rows) . " |\n";
	}
	return $md;
}

# perf.tsv made ready for rows under header: a file whose columns are
# the first of ours (an older perf.pl's) gets our header and keeps its
# rows, their later columns empty; one of another layout is kept aside
# as perf.tsv.<stamp>, not mixed in.
sub tsv_header {
	my ($tsv, $header, $stamp) = @_;
	return unless -e $tsv;
	my $text = slurp($tsv);
	my ($old) = $text =~ /\A([^\n]*\n)/;
	if (!defined $old) {
		unlink $tsv;	# empty: written anew with its header
		return;
	}
	return if $old eq $header;
	chomp(my $cols = $old);
	if (index($header, "$cols\t") == 0) {
		write_file("$tsv.tmp", $header . substr($text, length $old));
		rename "$tsv.tmp", $tsv or die "$tsv: $!\n";
	} else {
		rename $tsv, "$tsv.$stamp" or die "$tsv: $!\n";
	}
}

# '' when no pair of a row's field was disturbed from outside; else how
# many were, for whoever would quote its median.
sub disturbed {
	my ($r, $field) = @_;
	my $n = $r->{"${field}_disturbed"} or return '';
	return sprintf ' (%d of %d pairs disturbed)', $n, $r->{pairs};
}

# The middle value, or the mean of the two middle ones.
sub median {
	my @v = sort { $a <=> $b } @_;
	return @v % 2 ? $v[$#v / 2] : ($v[@v / 2 - 1] + $v[@v / 2]) / 2;
}

# '' for a run of wrk with no refusal and no socket error; else what
# went wrong, for the progress line.
sub refused {
	my ($res) = @_;
	return '' unless $res->{bad} || $res->{errors};
	return sprintf ' (%d non-2xx%s, %d socket errors: NOT A MEASUREMENT)',
	    $res->{bad}, $res->{codes} ? " ($res->{codes})" : '',
	    $res->{errors};
}

# The statuses of 400 and above in nginx's access log after offset from,
# counted: "429 x2424, 503 x3".
sub statuses {
	my ($log, $from) = @_;
	open my $fh, '<', $log or return '';
	seek $fh, $from, 0;
	my %n;
	while (<$fh>) {
		$n{$1}++ if /" ([45]\d\d) /;
	}
	return join ', ', map { "$_ x$n{$_}" } sort keys %n;
}

sub pct {
	my ($p, @v) = @_;
	return $v[int($p * $#v + 0.5)];
}

# $n placeholders replaced by pgbench variables or literals.
sub with_args {
	my ($sql, $args) = @_;
	# pgbench would take a ":name" of our own (not a "::type" cast) for
	# one of its variables.
	die "a ':name' in: $sql\n" if $sql =~ /(?<!:):[A-Za-z_]/;
	$sql =~ s{\$(\d+)(?!\d)}{
		$args->{$1} // die "no value for \$$1 in: $sql\n"
	}ge;
	return $sql;
}

sub hostname { my $h = `uname -n`; chomp $h; $h }
sub ncpu { my $n = `nproc`; chomp $n; $n }

sub cpu_model {
	open my $fh, '<', '/proc/cpuinfo' or return '?';
	while (<$fh>) { return $1 if /^model name\s*:\s*(.*?)\s*$/ }
	return '?';
}

sub mem_gib {
	open my $fh, '<', '/proc/meminfo' or return 0;
	while (<$fh>) { return $1 / 1048576 if /^MemTotal:\s+(\d+)/ }
	return 0;
}

sub commit {
	my $c = `git -C '$ROOT' rev-parse --short HEAD 2>/dev/null` // '';
	chomp $c;
	return length $c ? $c : '?';
}

sub binary_sha {
	my $bin = "$ROOT/chat.fcgi";
	open my $fh, '<:raw', $bin or return '?';
	local $/;
	return substr(sha1_hex(<$fh>), 0, 10);
}
