#!/usr/bin/perl
# t/84-failover.t: the books of a PostgreSQL failover. Workers reach a
# pg_auto_failover cluster (t/lib/Failover.pm: a monitor, a primary and a
# synchronous secondary) through the multi-host URI it prints. Under
# steady load (CLIENTS clients, each sending keyed turns one after the
# other, half of them adding a task) the primary is killed (kill -9 of
# its postmaster and its keeper: the machine gone) and the monitor
# promotes the secondary. Then every turn that was answered 200 is in the
# database exactly once, with its task exactly once; every turn that got
# a 5xx or no answer, retried with its key until it got a 200, likewise;
# the service answers 200 again soon after the kill (the time is
# printed); no worker died. The old primary then rejoins as a secondary
# and a second round of load keeps the same books.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use JSON::PP;
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);
use Failover;
use Stack;

my $CLIENTS = 20;
my $RECOVERY_BOUND = 15;	# seconds from the kill to a 200 again
my $JSON = JSON::PP->new->utf8->canonical;

my $f = Failover->new;
note sprintf 'cluster up in %.1f s: %s', $f->start_seconds, $f->uri;
like $f->uri, qr{\Apostgres(?:ql)?://[^/]+,[^/]+/todo_chat\?.*target_session_attrs=read-write},
    'the workers get the multi-host URI, read-write only';
is $f->sql('SHOW synchronous_standby_names')->[0][0],
    'ANY 1 (pgautofailover_standby_2)', 'replication is synchronous';

# Four workers of two threads: the clients' turns run at once, the two
# cores are not drowned.
my $s = Stack->new(workers => 4, database_url => $f->database_url,
    env => { CHAT_WORKER_THREADS => 2 });
my @workers = $s->worker_pids;
my $dir = $s->dir;

# One client: keyed turns one after the other in a conversation of its
# own until $stop exists, each retried with its key until it gets a 200
# (after a 5xx, a 409 turn_in_progress or no answer at all); every
# attempt a JSON line in its log. Exit 0, or 1 on an answer no retry
# explains, 2 when a turn found no 200 within the deadline.
sub client {
	my ($round, $i, $stop, $deadline) = @_;
	my $user = "fo$round-$i";
	my $token = $s->token($user);
	my $tool = $i % 2 == 0;
	open my $log, '>', "$dir/client-$round-$i.log" or die;
	$log->autoflush(1);
	my ($conv, $n) = (undef, 0);
	until (-e $stop) {
		my $key = "r${round}c${i}n" . ++$n;
		my $message = $tool ? "Add a task to file report $key"
		    : "Hello there, this is $key";
		for (my $attempt = 1; ; $attempt++) {
			my $sent = time;
			my $r = $s->request(POST => '/chat', token => $token,
			    body => { message => $message,
			    defined $conv ? (conversation_id => $conv) : () },
			    headers => { 'Idempotency-Key' => $key },
			    timeout => 20);
			print $log $JSON->encode({ key => $key, user => $user,
			    tool => $tool ? 1 : 0, message => $message,
			    attempt => $attempt, status => 0 + $r->{status},
			    code => $r->{json}{error}{code}, sent => $sent,
			    done => time }), "\n";
			if ($r->{status} == 200) {
				$conv //= $r->{json}{conversation_id};
				last;
			}
			POSIX::_exit(1) unless $r->{status} =~ /\A(?:409|50[234]|599)\z/;
			POSIX::_exit(2) if time > $deadline;
			sleep 0.1;
		}
	}
	POSIX::_exit(0);
}

# Runs a round of load: the clients start, $during->() runs (the
# failover, or a pause), then they stop after their current turn.
# Returns the attempts of every client, in order.
sub round {
	my ($round, $during) = @_;
	my $stop = "$dir/stop-$round";
	my $deadline = time + 60;
	my @pids;
	for my $i (1 .. $CLIENTS) {
		my $pid = fork // die "fork: $!";
		if (!$pid) {
			eval { client($round, $i, $stop, $deadline) };
			POSIX::_exit(3);
		}
		push @pids, $pid;
	}
	my $ok = eval { $during->(); 1 };
	my $err = $@;
	open my $fh, '>', $stop or die;
	close $fh;
	my %exit;
	for my $pid (@pids) {
		waitpid $pid, 0;
		$exit{$? >> 8}++;
	}
	die $err unless $ok;
	is_deeply \%exit, { 0 => $CLIENTS }, "round $round: every client "
	    . 'got a 200 for each of its turns (exit 0)' or diag explain \%exit;
	my @log;
	for my $i (1 .. $CLIENTS) {
		open my $in, '<', "$dir/client-$round-$i.log" or next;
		push @log, map { $JSON->decode($_) } <$in>;
	}
	return \@log;
}

# Waits until $n turns have been answered 200 in the round so far.
sub answered {
	my ($round) = @_;
	my $n = 0;
	for my $i (1 .. $CLIENTS) {
		open my $in, '<', "$dir/client-$round-$i.log" or next;
		$n += grep { /"status":"?200\b/ } <$in>;
	}
	return $n;
}

# The books of a round, from its clients' logs and the database.
sub books {
	my ($round, $log) = @_;
	my (%turn, %tool);
	for my $a (@$log) {
		my $t = $turn{$a->{key}} //= { %$a, statuses => [] };
		push @{ $t->{statuses} }, $a->{status};
	}
	my @keys = sort keys %turn;
	my $acked = grep { $turn{$_}{statuses}[0] == 200 } @keys;
	my $retried = grep { @{ $turn{$_}{statuses} } > 1 } @keys;
	# Per turn: its user messages, their answers, its tasks.
	my %stored = map { $_->[0] => [ @$_[1, 2] ] } @{ $f->sql(qq{
	    SELECT u.content, count(DISTINCT u.id), count(a.id)
	    FROM messages u LEFT JOIN messages a ON a.reply_to = u.id
	    AND a.role = 'assistant' AND a.tool_calls IS NULL
	    WHERE u.user_id LIKE 'fo$round-%' AND u.role = 'user'
	    GROUP BY u.content}) };
	my %tasks = map { $_->[0] => $_->[1] } @{ $f->sql(qq{
	    SELECT substring(title from 'r[0-9]+c[0-9]+n[0-9]+'), count(*)
	    FROM tasks WHERE user_id LIKE 'fo$round-%' GROUP BY 1}) };
	my ($found, $dup, @problems) = (0, 0);
	for my $k (@keys) {
		my $t = $turn{$k};
		my ($messages, $answers) = @{ $stored{$t->{message}} // [0, 0] };
		my $task = $tasks{$k} // 0;
		$found++ if $messages == 1 && $answers == 1
		    && $task == ($t->{tool} ? 1 : 0);
		$dup++ if $messages > 1 || $answers > 1 || $task > 1;
		push @problems, "$k: $messages message(s), $answers "
		    . "answer(s), $task task(s) (@{ $t->{statuses} })"
		    unless $messages == 1 && $answers == 1
		    && $task == ($t->{tool} ? 1 : 0);
	}
	my $extra = grep { !$turn{$_} } keys %tasks;
	diag sprintf 'round %d books: turns sent %d, acknowledged at once '
	    . '%d, retried %d, found %d, duplicated %d, tool turns %d',
	    $round, scalar @keys, $acked, $retried, $found, $dup,
	    scalar grep { $turn{$_}{tool} } @keys;
	ok @keys >= $CLIENTS, "round $round: turns were sent (" . @keys . ')';
	is $found, scalar @keys, "round $round: every turn is stored once, "
	    . 'answered once, its task (if any) once'
	    or diag join "\n", @problems[0 .. ($#problems < 9 ? $#problems : 9)];
	is $dup, 0, "round $round: nothing duplicated";
	is $extra, 0, "round $round: no task of a turn no client sent";
	return \%turn;
}

# ------------------------------------------------------------ round 1

my $old = $f->primary;
my $new = $f->other($old);
ok $old, "the primary is $old";
my ($killed_at, $promoted_after, $health_during);
my $log1 = round(1, sub {
	$s->wait_until(sub { answered(1) >= 3 * $CLIENTS }, 30,
	    'turns answered before the kill');
	$killed_at = $f->kill_node($old);
	# Seconds before the monitor even calls the primary unhealthy.
	$health_during = $s->request(GET => '/chat/health', timeout => 10);
	$f->wait_states({ $new => 'wait_primary' }, 30,
	    "the monitor to promote $new");
	$promoted_after = time - $killed_at;
	# Load after the failover too.
	my $after = answered(1);
	$s->wait_until(sub { answered(1) >= $after + 3 * $CLIENTS }, 30,
	    'turns answered after the promotion');
});
my @after_kill = sort { $a->{done} <=> $b->{done} } grep {
    $_->{status} == 200 && $_->{sent} > $killed_at } @$log1;
my @failed = grep { $_->{status} != 200 } @$log1;
my $recovery = @after_kill ? $after_kill[0]{done} - $killed_at : undef;
my $before = grep { $_->{status} == 200 && $_->{done} < $killed_at } @$log1;
diag sprintf 'failover: kill -9 of %s; %s wait_primary after %.1f s; '
    . 'first 200 to a turn sent after the kill: %s s after it; %d turns '
    . 'answered before the kill, %d failed attempts (%s)', $old, $new,
    $promoted_after, defined $recovery ? sprintf('%.1f', $recovery) : 'none',
    $before, scalar @failed, join ', ', map {
    my $st = $_; my $n = grep { $_->{status} == $st } @failed; "$n x $st" }
    sort { $a <=> $b } keys %{ { map { $_->{status} => 1 } @failed } };
{
	my $wlog = $s->log;
	my $again = () = $wlog =~ /running the statement again/g;
	my $unknown = () = $wlog =~ /outcome unknown: /g;
	my $reconnected = () = $wlog =~ /reconnected after/g;
	my $released = () = $wlog =~ /gave up the lease/g;
	diag sprintf 'workers: %d statements run again on a new connection '
	    . '(%d of unknown outcome), %d reconnects to the new primary, '
	    . '%d leases given up late', $again, $unknown, $reconnected,
	    $released;
}
ok $before >= $CLIENTS, "turns were answered before the kill ($before)";
is $health_during->{status}, 503, 'health: 503 while no primary answers';
ok defined $recovery && $recovery < $RECOVERY_BOUND,
    sprintf 'a turn sent after the kill got a 200 within %d s (%s s)',
    $RECOVERY_BOUND, defined $recovery ? sprintf('%.1f', $recovery) : 'never';
is $f->primary, $new, "$new is the primary";
books(1, $log1);
is_deeply [ $s->worker_pids ], \@workers, 'no worker died';

# ------------------------------------------------------------ round 2

my $t0 = time;
$f->start_node($old);
$f->wait_states({ $old => 'secondary', $new => 'primary' }, 60,
    "$old to rejoin as a secondary");
diag sprintf '%s rejoined as secondary in %.1f s', $old, time - $t0;
pass "$old is a secondary again, $new the primary";
is $f->sql('SHOW synchronous_standby_names')->[0][0],
    "ANY 1 (pgautofailover_standby_" . substr($old, -1) . ')',
    'replication to it is synchronous';
my $log2 = round(2, sub {
	$s->wait_until(sub { answered(2) >= 5 * $CLIENTS }, 30,
	    'turns answered in round 2');
});
books(2, $log2);
books(1, $log1);
is_deeply [ $s->worker_pids ], \@workers, 'the same workers throughout';
is $s->request(GET => '/chat/health')->{status}, 200, 'healthy';

$s->stop;
$f->stop;
done_testing;
