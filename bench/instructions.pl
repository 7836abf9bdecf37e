#!/usr/bin/perl
# bench/instructions.pl: what a turn costs in instructions, counted by
# callgrind, beside what the minimal turn costs PostgreSQL. Timings on a
# shared machine drift with the disk and the neighbours (README,
# "Benchmarks"); an instruction count is the same run after run whatever
# else runs, so this is how a change to the worker's code or to
# schema.sql's functions is judged before perf.pl says what it gives in
# turns/s. It counts what runs in user space: not the kernel (sockets,
# wake-ups, the disk), nor nginx, nor the load generator.
#
# The stack runs the worker (one, one thread) and PostgreSQL (stock
# durability, every backend) under callgrind, the per-user limits at
# their defaults. USERS users each make a conversation with a turn of
# the built-in model's (the first statements of a connection plan and
# cache what later ones reuse). Then two measured sessions of the
# worker, of A and B turns that call no tool, spread over the users, a
# few turns each: each session a worker and a database connection of
# their own, whose counts callgrind writes as they exit. A turn's cost
# is the difference of the two sessions over B - A turns, which leaves
# out whatever a session costs once (starting, connecting, the first
# plans). Many users, few turns each: as in a deployment, a row of a
# user's or a conversation's is updated now and then, not hundreds of
# times a minute (which grows chains of row versions that every later
# update walks: 50 users of 16 turns each in two minutes, autovacuum
# off, cost our backend 2.3 times as much a turn, the minimal turn's 1.05
# times: a turn updates the user's row twice). The minimal turn (bench/minimal-turn.sql) likewise: pgbench
# sessions of A and B transactions, its backend's count.
#
#   perl bench/instructions.pl
#
# Environment: BENCH_TURNS_A (50), BENCH_TURNS_B (250), BENCH_USERS (250).
# Takes two to three minutes. Appends a row to
# bench/results/instructions.tsv.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../t/lib";
use Cwd qw(abs_path);
use File::Temp qw(tempdir);
use POSIX qw(strftime);
use Time::HiRes qw(sleep);
use Stack;

my $ROOT = abs_path("$FindBin::Bin/..");
my $A = $ENV{BENCH_TURNS_A} // 50;
my $B = $ENV{BENCH_TURNS_B} // 250;
my $USERS = $ENV{BENCH_USERS} // 250;
for ($A, $B, $USERS) {
	/\A[1-9]\d*\z/ or die "BENCH_TURNS_A, BENCH_TURNS_B and BENCH_USERS: "
	    . "positive numbers\n";
}
$B > $A or die "BENCH_TURNS_B must be more than BENCH_TURNS_A\n";
# Under CHAT_USER_TURNS_PER_MINUTE's 30 a user, in the ~2 minutes.
$USERS * 25 >= $USERS + $A + $B
    or die "too few users for the turns: raise BENCH_USERS\n";
-x '/usr/bin/valgrind' or die "valgrind is not installed (scripts/deps)\n";
-x "$ROOT/chat.fcgi" or die "no ./chat.fcgi: make all\n";
my $PG_BIN = Stack::pg_bin();

my $out = tempdir('todo-chat-instr-XXXXXX', TMPDIR => 1,
    CLEANUP => !$ENV{KEEP_TMP});
chmod 0777, $out;	# PostgreSQL's processes write there too
my $cg = '/usr/bin/valgrind --tool=callgrind --trace-children=yes';
local $ENV{PG_WRAPPER} = "$cg --callgrind-out-file=$out/pg.%p";
local $ENV{CHAT_FCGI} = "$cg --callgrind-out-file=$out/worker.%p "
    . "$ROOT/chat.fcgi";
progress('starting the stack under callgrind');
my $s = Stack->new(workers => 1, durable => 1, ready_seconds => 120,
    pg_conf => { autovacuum => 'off' },
    env => { CHAT_WORKER_THREADS => 1,
    CHAT_USER_CONCURRENT_TURNS => undef, CHAT_USER_TURNS_PER_MINUTE => undef },
    max_seconds => 1800);

progress("making $USERS conversations");
my (%token, %conv);
for my $u (1 .. $USERS) {
	$token{$u} = $s->token("instr$u", exp => time + 3600);
	$conv{$u} = turn($u, undef);
}
$s->sql('ANALYZE');

my %worker = (A => session($A), B => session($B));
my %minimal = (A => minimal($A), B => minimal($B));

my $worker = ($worker{B}{worker} - $worker{A}{worker}) / ($B - $A);
my $db = ($worker{B}{backend} - $worker{A}{backend}) / ($B - $A);
my $min = ($minimal{B} - $minimal{A}) / ($B - $A);
my $commit = `git -C '$ROOT' rev-parse --short HEAD 2>/dev/null` // '';
chomp $commit;
printf "instructions a turn (callgrind; %d and %d turns, the difference):\n"
    . "  worker                  %9.0f\n"
    . "  its PostgreSQL backend  %9.0f\n"
    . "  minimal turn's backend  %9.0f  (our backend / minimal: %.3f)\n",
    $A, $B, $worker, $db, $min, $db / $min;
my $tsv = "$FindBin::Bin/results/instructions.tsv";
my $new = !-e $tsv;
open my $fh, '>>', $tsv or die "$tsv: $!\n";
print $fh join("\t", qw(date commit users turns_a turns_b worker backend
    minimal ratio)), "\n" if $new;
print $fh join("\t", strftime('%Y-%m-%dT%H:%M:%SZ', gmtime), $commit,
    $USERS, $A, $B, sprintf('%.0f', $worker), sprintf('%.0f', $db),
    sprintf('%.0f', $min), sprintf('%.3f', $db / $min)), "\n";
close $fh;
$s->stop;

# ------------------------------------------------------------------ subs

sub progress { printf STDERR "instructions: %s\n", $_[0] }

# One turn of user u in conversation conv (undef: a new one); its id.
sub turn {
	my ($u, $conv) = @_;
	my $r = $s->request(POST => '/chat', token => $token{$u}, timeout => 60,
	    body => { message => 'how are you today',
	    defined $conv ? (conversation_id => $conv) : () });
	die "a turn failed: $r->{status} $r->{body}\n" if $r->{status} != 200;
	return $r->{json}{conversation_id};
}

# The count callgrind wrote to file f as its process exited.
sub count_of {
	my ($f) = @_;
	my $n;
	$s->wait_until(sub {
		open my $fh, '<', $f or return 0;
		($n) = grep { defined } map { /^(?:summary|totals): (\d+)/ ? $1
		    : undef } <$fh>;
		return defined $n;
	}, 120, "callgrind to write $f");
	return $n;
}

# The one worker (multiwatch's child), asked to exit as a deployment
# asks it (SIGTERM: finish the request, then exit), which lets callgrind
# write its counts; multiwatch then starts another. Its count.
sub end_worker {
	my ($pid) = $s->worker_pids;
	kill 'TERM', $pid;
	my $n = count_of("$out/worker.$pid");
	$s->wait_until(sub { my @p = $s->worker_pids; @p && $p[0] != $pid },
	    60, 'multiwatch to start another worker');
	# Ready (under callgrind a worker takes seconds to start, and a
	# signal before it is would end it with no counts written): its
	# health check, the same in every session.
	my $r = $s->request(GET => '/chat/health', timeout => 60);
	$r->{status} == 200 or die "the new worker is not healthy: "
	    . "$r->{status} $r->{body}\n";
	return $n;
}

# A worker session of n turns, in a worker and a database connection of
# their own: the worker's count and its backend's.
sub session {
	my ($n) = @_;
	progress("a worker session of $n turns");
	end_worker();				# the one before
	turn(1 + $_ % $USERS, $conv{ 1 + $_ % $USERS }) for 1 .. $n;
	my $backend = $s->sql_value(q{SELECT pid FROM pg_stat_activity
	    WHERE application_name = 'todo-chat'});
	defined $backend or die "no backend of the worker's\n";
	my $worker = end_worker();
	return { worker => $worker, backend => count_of("$out/pg.$backend") };
}

# A pgbench session of n minimal turns: its backends' counts (pgbench
# makes a connection of its own before its client's; the difference of
# two sessions leaves it out). Nothing else connects meanwhile, and
# autovacuum is off: the backends that end are pgbench's.
sub minimal {
	my ($n) = @_;
	progress("a pgbench session of $n minimal turns");
	my @convs = sort { $a <=> $b } values %conv;
	my $script = "$out/minimal.sql";
	open my $fh, '<', "$FindBin::Bin/minimal-turn.sql" or die "$!\n";
	my $text = do { local $/; <$fh> };
	open my $w, '>', $script or die "$script: $!\n";
	print $w "\\set conv random($convs[0], $convs[-1])\n", $text;
	close $w;
	# pgbench draws conv from the range: every id in it a conversation.
	$convs[-1] - $convs[0] + 1 == @convs
	    or die "the conversations' ids are not contiguous\n";
	my %before = map { $_ => 1 } glob "$out/pg.*";
	local $ENV{PGHOST} = $s->dir . '/run';
	local $ENV{PGPORT} = $s->pg_port;
	local $ENV{PGUSER} = 'postgres';
	my $text_out = `'$PG_BIN/pgbench' -n -M extended -c 1 -t $n \\
	    -D 'msg=how are you today' -D 'answer=Hello.' -f '$script' \\
	    todo_chat 2>&1`;
	$? == 0 && $text_out =~ m{processed: $n/$n}
	    or die "pgbench failed:\n$text_out";
	my @new;
	$s->wait_until(sub {
		@new = grep { !$before{$_} } glob "$out/pg.*";
		return @new >= 2;
	}, 120, "pgbench's backends to end");
	sleep 1;	# nothing else should end
	@new = grep { !$before{$_} } glob "$out/pg.*";
	@new == 2 or die "expected pgbench's two backends to end: @new\n";
	my $sum = 0;
	$sum += count_of($_) for @new;
	return $sum;
}
