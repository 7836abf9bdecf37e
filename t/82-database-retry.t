#!/usr/bin/perl
# t/82-database-retry.t: what a worker does when the database changes
# under a statement (lib/db.c, lib/failover.h), on one PostgreSQL made to
# act out each case: a node turned read-only (25006), a backend
# terminated (57P01: rolled back), a backend killed (the connection lost:
# outcome unknown), a commit cut off while it waited for a synchronous
# standby (committed locally: outcome unknown). A statement runs again on
# a new connection only where that cannot store it twice; a request
# waits a few seconds at most for a primary, then gets its 503; health
# says 503 while the node takes no writes.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);
use Stack;

# One worker thread: the connection the test acts on is the one that
# serves the next request. Commits that can wait for a synchronous
# standby (Stack's fast settings turn that off).
my $s = Stack->new(workers => 1, env => { CHAT_WORKER_THREADS => 1 },
    pg_conf => { synchronous_commit => 'on', wal_level => 'replica',
    max_wal_senders => 2 });
my $token = $s->token('alice');

sub chat {
	my ($message, %o) = @_;
	my $t0 = time;
	my $r = $s->request(POST => '/chat', token => $token,
	    body => { message => $message,
	    $o{conv} ? (conversation_id => $o{conv}) : () },
	    headers => { $o{key} ? ('Idempotency-Key' => $o{key}) : () },
	    timeout => 30);
	$r->{took} = time - $t0;
	return $r;
}

sub stored {
	my ($message) = @_;
	return $s->sql_value(q{SELECT count(*) FROM messages
	    WHERE role = 'user' AND content = $1}, $message);
}

sub answers {
	my ($message) = @_;
	return $s->sql_value(q{SELECT count(a.id) FROM messages u
	    JOIN messages a ON a.reply_to = u.id AND a.role = 'assistant'
	    AND a.tool_calls IS NULL
	    WHERE u.role = 'user' AND u.content = $1}, $message);
}

sub set_conf {
	my ($name, $value) = @_;
	$s->sql("ALTER SYSTEM SET $name = '$value'; SELECT pg_reload_conf()");
}

# A request that runs in a child while the test acts on the database;
# returns a sub that waits for it and gives its answer.
sub in_background {
	my ($code) = @_;
	my $file = $s->dir . "/bg-$$-" . int(rand 1e9);
	my $pid = fork // die;
	if (!$pid) {
		my $r = $code->();
		open my $fh, '>', $file or POSIX::_exit(1);
		print $fh join "\n", $r->{status}, $r->{took}, $r->{body} // '';
		close $fh;
		POSIX::_exit(0);
	}
	return sub {
		waitpid $pid, 0;
		open my $fh, '<', $file or return { status => 0 };
		my ($status, $took, $body) = split /\n/, do { local $/; <$fh> }, 3;
		return { status => $status, took => $took, body => $body };
	};
}

# The worker's backend, once it waits as $what says.
sub worker_backend {
	my ($where) = @_;
	my $pid;
	$s->wait_until(sub {
		$pid = $s->sql_value(qq{SELECT pid FROM pg_stat_activity
		    WHERE application_name = 'todo-chat' AND $where});
	}, 10, "the worker's backend ($where)");
	return $pid;
}

my $r = chat('Add a task to start the day');
is $r->{status}, 200, 'a turn: 200';
my $conv = $r->{json}{conversation_id};

# ---------------------------------------------------------- read-only

subtest 'a node turned read-only (25006)' => sub {
	set_conf(default_transaction_read_only => 'on');
	$r = $s->request(GET => '/chat/health');
	is $r->{status}, 503, 'health: 503 on a node that takes no writes';
	is $r->{json}{error}{code}, 'database_unavailable', '...its code';
	$r = chat('Add a task while read-only', conv => $conv);
	is $r->{status}, 503, 'a turn: 503';
	is stored('Add a task while read-only'), 0, 'nothing stored';
	set_conf(default_transaction_read_only => 'off');
	is $s->request(GET => '/chat/health')->{status}, 200,
	    'health: 200 once it takes writes again';
	like $s->log, qr/read-only transaction.*?running the statement again/s,
	    'the worker ran the statement again on a new connection';
};

# With target_session_attrs=read-write, libpq itself refuses the node
# while it is read-only: the worker waits for a primary, a few seconds.
$s->stop_workers;
$s->{env}{DATABASE_URL} = $s->database_url . ' target_session_attrs=read-write';
$s->start_workers;
$s->wait_until(sub { $s->request(GET => '/chat/health')->{status} == 200 },
    10, 'the workers with target_session_attrs');

subtest 'waiting for a primary, within a bound' => sub {
	is chat('Hello before', conv => $conv)->{status}, 200,
	    'a turn on the connection to come';
	set_conf(default_transaction_read_only => 'on');
	$r = chat('Add a task with no primary', conv => $conv);
	is $r->{status}, 503, 'no primary: 503';
	ok $r->{took} >= 3 && $r->{took} < 7, sprintf
	    '...after the wait for one, a few seconds (%.1f s)', $r->{took};
	is stored('Add a task with no primary'), 0, 'nothing stored';
	$r = $s->request(GET => '/chat/health');
	is $r->{status}, 503, 'health: 503 while no primary answers';

	# The primary is back during the wait: the statement, which did not
	# commit, runs on the new connection, key or no key. (A request
	# that finds its connection gone before it sends anything fails at
	# once, as t/86 wants: the wait is for a statement that met the
	# change.)
	set_conf(default_transaction_read_only => 'off');
	is chat('Hello again', conv => $conv)->{status}, 200,
	    'a primary again, and a connection to it';
	set_conf(default_transaction_read_only => 'on');
	my $wait = in_background(sub {
		chat('Add a task when the primary returns', conv => $conv) });
	sleep 1;
	set_conf(default_transaction_read_only => 'off');
	my $bg = $wait->();
	is $bg->{status}, 200, 'a primary back within the wait: 200'
	    or diag $bg->{body};
	ok $bg->{took} >= 0.5 && $bg->{took} < 4.5,
	    sprintf '...once it was back (%.1f s)', $bg->{took};
	is stored('Add a task when the primary returns'), 1, 'stored once';
	is $s->sql_value(q{SELECT count(*) FROM tasks
	    WHERE title ILIKE '%primary returns%'}), 1, 'its task once';
	like $s->log, qr/reconnected after \d+ ms/, 'the worker says so';
};

# ------------------------------------------------ a statement cut off

# The worker's next statement waits on the conversation's row lock, held
# by psql in the background for $seconds; returns a sub that waits for
# psql.
sub hold_lock {
	my ($seconds) = @_;
	my $pid = fork // die;
	if (!$pid) {
		eval { $s->sql("BEGIN; SELECT id FROM conversations WHERE id ="
		    . " $conv FOR UPDATE; SELECT pg_sleep($seconds); COMMIT") };
		POSIX::_exit(0);
	}
	$s->wait_until(sub { $s->sql_value(q{SELECT count(*)
	    FROM pg_stat_activity WHERE query LIKE '%pg_sleep%'
	    AND state = 'active' AND pid <> pg_backend_pid()}) }, 10,
	    'the lock to be taken');
	return sub { kill 'TERM', $pid; waitpid $pid, 0 };
}

# The FATAL of a terminated backend does not always reach libpq before
# the connection's end does (it then reports the connection lost, an
# unknown outcome): keyed, the turn runs again either way.
subtest 'a backend terminated mid-statement' => sub {
	my $done = hold_lock(2);
	my $wait = in_background(sub {
		chat('Add a task through a termination', conv => $conv,
		    key => 'terminated-1') });
	my $pid = worker_backend(q{wait_event_type = 'Lock'});
	$s->sql("SELECT pg_terminate_backend($pid)");
	my $bg = $wait->();
	$done->();
	is $bg->{status}, 200, 'run again on a new connection: 200'
	    or diag $bg->{body};
	is stored('Add a task through a termination'), 1, 'stored once';
	is answers('Add a task through a termination'), 1, 'answered once';
};

# After a backend's crash PostgreSQL restarts every backend and recovers.
sub pg_back {
	$s->wait_until(sub { eval { $s->sql('SELECT 1'); 1 } }, 15,
	    'PostgreSQL back from its crash');
}

subtest 'a backend killed mid-statement (outcome unknown)' => sub {
	my $done = hold_lock(5);
	my $wait = in_background(sub { chat('Add a task through a crash',
	    conv => $conv, key => 'crash-1') });
	my $pid = worker_backend(q{wait_event_type = 'Lock'});
	kill 'KILL', $pid;	# PostgreSQL restarts every backend
	my $bg = $wait->();
	$done->();
	pg_back();
	# The second run may land on a backend that the crash's restart
	# of every backend ends in turn: then the client's keyed retry is
	# the one that succeeds, still storing the turn once.
	if ($bg->{status} == 503) {
		note 'the second run met the restart too; the client retries';
		$bg = chat('Add a task through a crash', conv => $conv,
		    key => 'crash-1');
	}
	is $bg->{status}, 200, 'keyed: run again, 200' or diag $bg->{body};
	is stored('Add a task through a crash'), 1, 'stored once';
	is answers('Add a task through a crash'), 1, 'answered once';
	like $s->log, qr/outcome unknown: /, 'the worker knew it was unsure';

	$done = hold_lock(5);
	$wait = in_background(sub { chat('Add a task through a crash, no key',
	    conv => $conv) });
	$pid = worker_backend(q{wait_event_type = 'Lock'});
	kill 'KILL', $pid;
	$bg = $wait->();
	$done->();
	pg_back();
	is $bg->{status}, 503, 'no key: not run again, 503';
	ok $bg->{took} < 3, sprintf '...at once (%.1f s)', $bg->{took};
	is stored('Add a task through a crash, no key'), 0,
	    'nothing stored (the crash rolled it back)';
	is $s->request(GET => '/chat/health')->{status}, 200, 'healthy again';
};

# A commit that waits for a synchronous standby which never answers is
# local already when its backend is terminated: the server says so in a
# warning before the FATAL.
subtest 'a commit cut off in its wait for the standby' => sub {
	set_conf(synchronous_standby_names => 'nobody');
	my $wait = in_background(sub { chat('Add a task committed locally',
	    conv => $conv, key => 'local-1') });
	my $pid = worker_backend(q{wait_event = 'SyncRep'});
	$s->sql("SELECT pg_terminate_backend($pid)");
	# The second run finds the first one's turn, and takes it up.
	set_conf(synchronous_standby_names => '');
	my $bg = $wait->();
	is $bg->{status}, 200, 'keyed: the turn found and finished, 200'
	    or diag $bg->{body};
	is stored('Add a task committed locally'), 1, 'stored once';
	is answers('Add a task committed locally'), 1, 'answered once';
	is $s->sql_value(q{SELECT count(*) FROM tasks
	    WHERE title ILIKE '%committed locally%'}), 1, 'its task once';
	like $s->log, qr/database notice: WARNING:  canceling the wait for synchronous replication/,
	    'the warning reached the worker';

	set_conf(synchronous_standby_names => 'nobody');
	$wait = in_background(sub {
		chat('Hello, committed locally without a key', conv => $conv) });
	$pid = worker_backend(q{wait_event = 'SyncRep'});
	$s->sql("SELECT pg_terminate_backend($pid)");
	set_conf(synchronous_standby_names => '');
	$bg = $wait->();
	is $bg->{status}, 503, 'no key: not run again, 503';
	is stored('Hello, committed locally without a key'), 1,
	    'stored once (it had committed), never twice';
};

my @workers = $s->worker_pids;
is scalar @workers, 1, 'the worker lived through it all';
unlike $s->log, qr/died to+ often/, 'multiwatch restarted nothing';
done_testing;
