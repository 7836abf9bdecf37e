#!/usr/bin/perl
# t/85-database-outage.t: PostgreSQL goes away and comes back. Requests
# meanwhile get a quick 503 with the JSON error, workers neither crash nor
# hang, and the first request after the restart succeeds with nothing
# restarted. A turn stuck behind a row lock is cut by lock_timeout.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use Stack;

my $s = Stack->new(workers => 2);
my $alice = $s->token('alice');

sub chat {
	my ($message, $conv) = @_;
	my %body = (message => $message);
	$body{conversation_id} = $conv if $conv;
	return $s->request(POST => '/chat', token => $alice, body => \%body,
	    timeout => 30);
}

my $r = chat('Add a task to survive an outage');
is $r->{status}, 200, 'before: 200';
my $conv = $r->{json}{conversation_id};
my @workers = $s->worker_pids;

$s->stop_postgres;
for my $path ('/chat', '/chat/health') {
	my $t0 = time;
	$r = $path eq '/chat' ? chat('during the outage', $conv)
	    : $s->request(GET => $path);
	my $took = time - $t0;
	is $r->{status}, 503, "$path while PostgreSQL is down: 503";
	is $r->{json}{error}{code}, 'database_unavailable', '...its code';
	ok $took < 6, sprintf '...within a few seconds (%.2f s)', $took;
}
$r = $s->request(GET => '/chat/conversations', token => $alice);
is $r->{status}, 503, 'browsing while down: 503';
is_deeply [ $s->worker_pids ], \@workers, 'no worker died';

$s->start_postgres;
$r = chat('Show me all my tasks', $conv);
is $r->{status}, 200, 'after the restart: 200 at once';
is scalar @{ $r->{json}{tool_calls}[0]{result} }, 1, 'the data is all there';
$r = chat('after the restart', $conv);
is $r->{status}, 200, 'and the other worker too' ;
is $s->request(GET => '/chat/health')->{status}, 200, 'healthy again';
is_deeply [ $s->worker_pids ], \@workers, 'the same workers throughout';
is $s->sql_value(q{SELECT count(*) FROM messages
    WHERE content = 'during the outage'}), 0,
    'the refused message was not stored';

# A turn waiting on a lock someone holds too long: lock_timeout, set by
# schema.sql's functions, ends it with a 503 instead of holding the worker.
my $pid = fork // die;
if ($pid == 0) {
	$conv =~ /\A\d+\z/ or die;
	$s->sql("BEGIN; SELECT id FROM conversations WHERE id = $conv
	    FOR UPDATE; SELECT pg_sleep(7); COMMIT");
	POSIX::_exit(0);
}
$s->wait_until(sub { $s->sql_value(q{SELECT count(*) FROM pg_stat_activity
    WHERE query LIKE '%pg_sleep(7)%' AND state = 'active'
    AND pid <> pg_backend_pid()}) > 0 },
    5, 'the lock is taken');
my $t0 = time;
$r = chat('stuck behind a lock', $conv);
my $took = time - $t0;
is $r->{status}, 503, 'a statement stuck on a lock: 503';
ok $took >= 4 && $took < 9, sprintf 'cut by lock_timeout (%.1f s)',
    $took;
kill 'TERM', $pid;
waitpid $pid, 0;

done_testing;
