#!/usr/bin/perl
# t/70-idempotency.t: exactly-once turns with Idempotency-Key: a replay
# writes nothing and asks no model, another request under the same key is
# 409, a turn that failed or whose worker was killed is completed by the
# retry without storing the message twice or running a tool twice.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);
use Stack;

my $s = Stack->new(workers => 3, model => 'mock',
    env => { CHAT_MODEL_TIMEOUT_MS => 1500 });
my $alice = $s->token('alice');

sub turn {
	my ($key, $message, %o) = @_;
	my %body = (message => $message);
	$body{conversation_id} = $o{conversation_id} if $o{conversation_id};
	return $s->request(POST => '/chat', token => $o{token} // $alice,
	    body => \%body, headers => { 'Idempotency-Key' => $key });
}

sub count {
	my ($where, @p) = @_;
	return $s->sql_value("SELECT count(*) FROM messages WHERE $where", @p);
}

sub model_calls { scalar @{ $s->mock_requests } }

# 1. The same key and body: the first answer again, nothing new.
my $r1 = turn('key-1', 'first message');
is $r1->{status}, 200, 'first attempt: 200';
my $calls = model_calls();
my $rows = $s->sql_value('SELECT count(*) FROM messages');
my $r2 = turn('key-1', 'first message');
is $r2->{status}, 200, 'replay: 200';
is_deeply $r2->{json}, $r1->{json}, 'replay: the same answer';
is model_calls(), $calls, 'replay: the model is not asked again';
is $s->sql_value('SELECT count(*) FROM messages'), $rows,
    'replay: no row written';

# 2. The same key with another request: 409 whatever the first's state.
my $r = turn('key-1', 'another message');
is $r->{status}, 409, 'same key, other message: 409';
is $r->{json}{error}{code}, 'idempotency_key_reused', '...its code';
$r = turn('key-1', 'first message',
    conversation_id => $r1->{json}{conversation_id});
is $r->{status}, 409, 'same key and message, other conversation_id: 409';

# 3. Keys belong to a user: bob's key-1 is his own turn.
$r = turn('key-1', 'first message', token => $s->token('bob'));
is $r->{status}, 200, "bob's key-1 is another turn";
isnt $r->{json}{conversation_id}, $r1->{json}{conversation_id},
    'with its own conversation';

# 4. The model fails: 502 with the conversation; the retry completes the
# turn with the one stored user message.
$s->mock_script([ map { { status => 500 } } 1 .. 20 ]);
$r = turn('key-2', 'please answer');
is $r->{status}, 502, 'model down: 502';
is $r->{json}{error}{code}, 'model_error', '...model_error';
my $conv = $r->{json}{conversation_id};
ok $conv, '...with the conversation_id';
is count(q{content = 'please answer'}), 1, 'the user message is kept';
is count(q{role = 'assistant' AND conversation_id = $1}, $conv), 0,
    'no half-written answer';
$s->mock_reset;
$r = turn('key-2', 'please answer');
is $r->{status}, 200, 'the retry: 200';
is $r->{json}{conversation_id}, $conv, 'in the same conversation';
is $r->{json}{response}, 'mock: please answer', 'answered';
is count(q{content = 'please answer'}), 1, 'the message stored once';
is count(q{role = 'assistant' AND conversation_id = $1}, $conv), 1,
    'one answer';

# 5. A tool round commits, then the model fails: the retry resumes after
# that round and the tool does not run again.
$s->mock_script([ { reply => { content => undef, tool_calls => [ {
    id => 'call_once', name => 'add_task',
    arguments => { title => 'Only once' } } ] } },
    map { { status => 503 } } 1 .. 20 ]);
$r = turn('key-3', 'add only once');
is $r->{status}, 502, 'second model call fails: 502';
is $s->sql_value(q{SELECT count(*) FROM tasks WHERE title = 'Only once'}),
    1, 'the first round stored its task';
$s->mock_reset;
$r = turn('key-3', 'add only once');
is $r->{status}, 200, 'the retry: 200';
is $s->sql_value(q{SELECT count(*) FROM tasks WHERE title = 'Only once'}),
    1, 'the task was not added twice';
is_deeply [ map { $_->{name} } @{ $r->{json}{tool_calls} } ], ['add_task'],
    "the reply still shows the first round's call";
is $r->{json}{tool_calls}[0]{result}{title}, 'Only once', '...and result';
my $sent = $s->mock_requests->[-1]{body}{messages};
is_deeply [ map { $_->{role} } @$sent[-3 .. -1] ],
    [ qw(user assistant tool) ],
    'the model resumed after the stored round';

# 6. While the first attempt runs, a retry is 409 turn_in_progress; after
# it finished, the retry is a replay.
$s->mock_script([ { delay_ms => 1000, reply => { content => 'slow one' } } ]);
my $pid = fork // die;
if ($pid == 0) {
	my $c = turn('key-4', 'slow please');
	POSIX::_exit($c->{status} == 200 ? 0 : 1);
}
$s->wait_until(sub { count(q{content = 'slow please'}) == 1 }, 5,
    'first attempt stored its message');
$r = turn('key-4', 'slow please');
is $r->{status}, 409, 'retry during the first attempt: 409';
is $r->{json}{error}{code}, 'turn_in_progress', '...turn_in_progress';
waitpid $pid, 0;
is $?, 0, 'the first attempt answered 200';
$r = turn('key-4', 'slow please');
is $r->{status}, 200, 'retry afterwards: 200';
is $r->{json}{response}, 'slow one', "the first attempt's answer";

# 7. A worker killed mid-turn: nginx answers 502 for that request only;
# the turn counts as running for at most 30 s, then the retry completes it.
$s->mock_script([ { delay_ms => 4000, reply => { content => 'never' } } ]);
$pid = fork // die;
if ($pid == 0) {
	my $c = turn('key-5', 'killed mid-turn');
	POSIX::_exit(2) unless ($c->{json}{error}{code} // "") eq "worker_failed";
	POSIX::_exit($c->{status} == 502 ? 0 : 1);
}
$s->wait_until(sub { count(q{content = 'killed mid-turn'}) == 1 }, 5,
    'the doomed attempt stored its message');
my $lease = $s->sql_value(q{SELECT extract(epoch FROM lease_until - now())
    FROM turns WHERE idempotency_key = 'key-5'});
ok $lease > 20 && $lease <= 30, "the attempt holds the turn for 30 s ($lease)";
my %killed = map { $_ => 1 } $s->worker_pids;
kill 'KILL', keys %killed;
waitpid $pid, 0;
is $?, 0, 'the killed request got 502 from nginx';
# Three workers again, none of them one that was killed (a killed one
# lingers until it is gone and reaped).
$s->wait_until(sub { my @p = grep { !$killed{$_} } $s->worker_pids;
    @p == 3 }, 20, 'multiwatch restarted them');
$s->mock_reset;
$r = turn('key-5', 'killed mid-turn');
is $r->{status}, 409, 'retry within the lease: 409 turn_in_progress';
# Thirty seconds pass (the test does not wait them out).
$s->sql(q{UPDATE turns SET lease_until = now() WHERE idempotency_key = 'key-5'});
$r = turn('key-5', 'killed mid-turn');
is $r->{status}, 200, 'retry after the lease: 200';
is $r->{json}{response}, 'mock: killed mid-turn', 'the turn is completed';
is count(q{content = 'killed mid-turn'}), 1, 'its message stored once';
is $s->request(GET => '/chat/health')->{status}, 200, 'service healthy';

# 8. Keys are kept a day: a new keyed turn clears the user's older ones,
# a replay (which writes nothing) does not, and an old key still replays.
my $carol = $s->token('carol');
turn("old-$_", "old turn $_", token => $carol) for 1 .. 2;
$s->sql(q{UPDATE turns SET created_at = now() - interval '25 hours'
    WHERE user_id = 'carol'});
my $keys = q{SELECT string_agg(idempotency_key, ',' ORDER BY
    idempotency_key) FROM turns WHERE user_id = 'carol'};
$r = turn('old-1', 'old turn 1', token => $carol);
is $r->{status}, 200, 'a day-old key still replays its turn';
is $s->sql_value($keys), 'old-1,old-2', 'and the replay removed nothing';
is turn('new-1', 'a new turn', token => $carol)->{status}, 200,
    'a new keyed turn';
is $s->sql_value($keys), 'new-1', "it cleared carol's day-old keys";
is $s->sql_value(q{SELECT count(*) FROM turns WHERE user_id = 'alice'}), 5,
    "and nobody else's";

done_testing;
