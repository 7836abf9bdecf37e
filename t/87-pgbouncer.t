#!/usr/bin/perl
# t/87-pgbouncer.t: the service through pgbouncer in transaction mode with
# stock settings, as Neon's pooled endpoint and most deployments run it:
# six workers share two server connections, so no turn may rely on
# session state. Turns with tool rounds, a resumed idempotent turn,
# browsing and concurrent turns all work exactly as directly.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Stack;

# One worker first, for the statements it prepared (below); then six.
my $s = Stack->new(workers => 1, pgbouncer => 1,
    pgbouncer_conf => { default_pool_size => 2 });
like $s->database_url, qr/port=\d+/, 'workers talk to pgbouncer';
my $alice = $s->token('alice');

sub chat {
	my ($message, $conv, %h) = @_;
	my %body = (message => $message);
	$body{conversation_id} = $conv if $conv;
	my $r = $s->request(POST => '/chat', token => $alice, body => \%body,
	    headers => \%h);
	is $r->{status}, 200, "'$message': 200" or diag $r->{body};
	return $r->{json};
}

my $r = chat('Add a task to buy groceries');
my $conv = $r->{conversation_id};

# A worker prepares its statements once a connection (lib/dbconn.c), and
# here a connection is pgbouncer's: the worker's next transaction may
# go to a server connection that never saw them. Replacing the pool's
# server connections makes sure it does: the turn still answers, each
# statement running unnamed, and the worker says once that it sends them
# so. One worker, so that the turn meets the one that prepared them (of
# several, a light load mostly stays on one, lib/accept.c, but a worker
# without them would prepare them anew under the same names, and the
# one that had them would find them there).
# (pg_terminate_backend() waits up to 5 s for each to exit.)
$s->sql(q{SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity
    WHERE datname = 'todo_chat' AND backend_type = 'client backend'
    AND pid <> pg_backend_pid()});
$r = chat('Add a task to water the plants', $conv);
is_deeply [ map { $_->{name} } @{ $r->{tool_calls} } ], [ 'add_task' ],
    'server connections replaced under the worker: the turn answers';
like $s->log, qr/sending statements unprepared from now on/,
    '...its statements sent unprepared from then on, which it logs';

$s->stop_workers;
$s->start_workers(workers => 6);
chat('Add a task for the meeting notes', $conv);
$r = chat('Delete the meeting task', $conv);
is_deeply [ map { $_->{name} } @{ $r->{tool_calls} } ],
    [ 'list_tasks', 'delete_task' ], 'two rounds through pgbouncer';
$r = chat('Show me all my tasks', $conv, 'Idempotency-Key' => 'pgb-1');
my $again = chat('Show me all my tasks', $conv, 'Idempotency-Key' => 'pgb-1');
is_deeply $again, $r, 'an idempotent replay';

my $page = $s->request(GET => "/chat/conversations/$conv/messages?limit=3",
    token => $alice);
is $page->{status}, 200, 'browsing: 200';
ok defined $page->{json}{next_before}, 'with a cursor';

# Twelve at once through two server connections.
my @pids;
for my $i (1 .. 12) {
	my $pid = fork // die;
	if ($pid == 0) {
		my $c = $s->request(POST => '/chat', token => $alice, body => {
		    message => "Add a task to pool number $i",
		    conversation_id => $conv });
		POSIX::_exit($c->{status} == 200 ? 0 : 1);
	}
	push @pids, $pid;
}
my $ok = grep { waitpid($_, 0); $? == 0 } @pids;
is $ok, 12, 'twelve concurrent turns: all 200';
is $s->sql_value(q{SELECT count(*) FROM tasks WHERE title LIKE 'Pool number%'}),
    12, 'each task once';
is $s->sql_value(q{SELECT count(*) FROM tasks
    WHERE title ILIKE '%water the plants%'}), 1, 'the replaced one once too';
unlike $s->log, qr/prepared statement|database error/,
    'no session-state error in the workers\' log';

done_testing;
