#!/usr/bin/perl
# t/76-limits.t: the per-user limits, each at its edge (exactly the limit
# passes, one more is a 429 with its code, a Retry-After in whole seconds
# and nothing written), across workers:
#
#   1. turns at once: six turns of one user sent together to eight
#      workers, the model slow: exactly CHAT_USER_CONCURRENT_TURNS (3)
#      answer, the others are too_many_turns; once they are done, the
#      user may start turns again
#   2. a keyed retry of a turn that runs is a 409, not a 429, though the
#      user is at the limit of turns at once
#   3. turns per minute (8): the eighth passes, the ninth is rate_limited;
#      a keyed retry of an answered turn is still answered; once the
#      minute has moved on by Retry-After, a turn passes again
#   4. tokens per day (1000, the mock reporting 999, then 15): a turn that
#      starts under the quota may finish over it, the next one is
#      quota_exceeded until the next UTC midnight
#   5. storage: the third conversation passes, a fourth is quota_exceeded
#      (a turn in an old one is not), deleting one makes room; messages
#      the same at their cap; the counts stay those of the tables
#   6. tasks (2): a third add_task gives the model an error, adds nothing
#   7. a worker that dies mid-turn: its turn stops counting when its
#      lease runs out, and a long streamed one does not while its
#      stream record's lease runs
#   8. chat_rate_check(), what an MCP tools/call counts itself with
# Each scenario is a user of its own, so that the limits of one do not
# reach into another's. The workers reach PostgreSQL through pgbouncer in
# transaction mode, as a deployment of many workers does: the limits hold
# with no session state.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX ();
use Time::HiRes qw(time sleep);
use Stack;

my $s = Stack->new(workers => 2, model => 'mock', pgbouncer => 1, env => {
    CHAT_WORKER_THREADS => 4,
    CHAT_USER_CONCURRENT_TURNS => 3,
    CHAT_USER_TURNS_PER_MINUTE => 8,
    CHAT_USER_TOKENS_PER_DAY => 1000,
    CHAT_USER_MAX_CONVERSATIONS => 3,
    CHAT_USER_MAX_MESSAGES => 40,
    CHAT_USER_MAX_TASKS => 2,
    CHAT_MODEL_TIMEOUT_MS => 20000 });

sub turn {
	my ($user, $message, %o) = @_;
	my %body = (message => $message);
	$body{conversation_id} = $o{conversation_id} if $o{conversation_id};
	return $s->request(POST => '/chat', token => $s->token($user),
	    body => \%body, timeout => 30,
	    $o{key} ? (headers => { 'Idempotency-Key' => $o{key} }) : ());
}

# A 429 as the contract has it: the code, a Retry-After of whole seconds
# within [min, max].
sub refused {
	my ($r, $code, $min, $max, $what) = @_;
	is $r->{status}, 429, "$what: 429" or diag $r->{body};
	is $r->{json}{error}{code}, $code, "$what: $code";
	my $after = $r->{headers}{'retry-after'} // '';
	ok $after =~ /\A\d+\z/ && $after >= $min && $after <= $max,
	    "$what: Retry-After $after is whole seconds in [$min, $max]";
	return $after;
}

sub count {
	my ($sql, @params) = @_;
	return 0 + $s->sql_value($sql, @params);
}

sub user_messages {
	count(q{SELECT count(*) FROM messages WHERE user_id = $1
	    AND role = 'user'}, $_[0]);
}

# Runs $n turns of $user at once (children released together through a
# pipe): their answers, [status, code, Retry-After, conversation_id].
sub at_once {
	my ($n, $user, %o) = @_;
	pipe my $go_r, my $go_w or die "pipe: $!";
	my @kids;
	for my $i (1 .. $n) {
		pipe my $rd, my $wr or die "pipe: $!";
		my $pid = fork // die "fork: $!";
		if ($pid == 0) {
			close $go_w;
			close $rd;
			sysread $go_r, my $byte, 1;
			my $r = turn($user, "at once $i", %o);
			print $wr join("\t", $r->{status},
			    $r->{json} && $r->{json}{error} ?
			    $r->{json}{error}{code} : '',
			    $r->{headers}{'retry-after'} // '',
			    $r->{json} ? $r->{json}{conversation_id} // ''
			    : ''), "\n";
			close $wr;
			POSIX::_exit(0);
		}
		close $wr;
		push @kids, [ $pid, $rd ];
	}
	close $go_r;
	close $go_w;
	my @answers;
	for (@kids) {
		my ($pid, $rd) = @$_;
		my $line = <$rd> // '';
		chomp $line;
		waitpid $pid, 0;
		push @answers, [ split /\t/, $line, -1 ];
	}
	return @answers;
}

# ------------------------------------------------- 1. turns at once

# The mock holds each turn it answers for 3 s: every turn has started
# (and the refused ones answered) long before the first is done.
my $first = turn('conc', 'a first turn, for a conversation');
my $conv = $first->{json}{conversation_id};
$s->mock_reset;
$s->mock_script([ map { { delay_ms => 3000 } } 1 .. 3 ]);
my @a = at_once(6, 'conc', conversation_id => $conv);
my @ok = grep { $_->[0] == 200 } @a;
my @no = grep { $_->[0] == 429 } @a;
is scalar @ok, 3, 'at once: exactly CHAT_USER_CONCURRENT_TURNS answered'
    or diag explain \@a;
is scalar @no, 3, 'at once: the others refused';
is_deeply [ map { $_->[1] } @no ], [ ('too_many_turns') x 3 ],
    'at once: too_many_turns';
is scalar(grep { $_->[2] =~ /\A[1-9]\d*\z/ } @no), 3,
    'at once: each with a Retry-After of whole seconds';
is user_messages('conc'), 4, 'at once: the refused turns stored nothing';
is scalar @{ $s->mock_requests }, 3, '... nor asked the model';
my $r = turn('conc', 'now that they are done', conversation_id => $conv);
is $r->{status}, 200, 'at once: once they are done, a turn passes'
    or diag $r->{body};

# ------------------------------------- 2. a keyed retry while it runs

# Three turns of one user run (the first keyed); its retry is the same
# turn, not a fourth.
$s->mock_reset;
$s->mock_script([ map { { delay_ms => 4000 } } 1 .. 3 ]);
my $kpid = fork // die "fork: $!";
if ($kpid == 0) {
	turn('keyed', 'the keyed turn', key => 'key-running-1');
	POSIX::_exit(0);
}
$s->wait_until(sub { user_messages('keyed') == 1 }, 10,
    'the keyed turn stored');
my @others = map {
	my $i = $_;
	my $pid = fork // die "fork: $!";
	if ($pid == 0) {
		turn('keyed', "another turn $i");
		POSIX::_exit(0);
	}
	$pid;
} 1 .. 2;
$s->wait_until(sub { user_messages('keyed') == 3 }, 10,
    'three turns running');
$r = turn('keyed', 'a fourth');
refused($r, 'too_many_turns', 1, 60, 'keyed: a fourth turn');
$r = turn('keyed', 'the keyed turn', key => 'key-running-1');
is $r->{status}, 409, 'keyed: its retry while it runs is a 409, not a 429'
    or diag $r->{body};
is $r->{json}{error}{code}, 'turn_in_progress', '... turn_in_progress';
waitpid $_, 0 for $kpid, @others;
$r = turn('keyed', 'the keyed turn', key => 'key-running-1');
is $r->{status}, 200, 'keyed: its retry once answered: 200';
is user_messages('keyed'), 3, 'keyed: nothing stored twice';

# ----------------------------------------------- 3. turns per minute

$s->mock_reset;
$r = turn('rate', 'turn 1');
my $rconv = $r->{json}{conversation_id};
for my $i (2 .. 7) {
	turn('rate', "turn $i", conversation_id => $rconv);
}
$r = turn('rate', 'turn 8', conversation_id => $rconv, key => 'rate-8');
is $r->{status}, 200, 'rate: the eighth turn of the minute passes';
my $answer8 = $r->{json}{response};
$r = turn('rate', 'turn 9', conversation_id => $rconv);
my $wait = refused($r, 'rate_limited', 1, 60, 'rate: the ninth');
is user_messages('rate'), 8, 'rate: the ninth stored nothing';
$r = turn('rate', 'turn 8', conversation_id => $rconv, key => 'rate-8');
is $r->{status}, 200, 'rate: a keyed retry of an answered turn is answered';
is $r->{json}{response}, $answer8, '... with its answer';
# Let the minute move on by Retry-After, as a client waiting would.
$s->sql(q{UPDATE chat_users SET turn_starts = ARRAY(SELECT s
    - make_interval(secs => $1) FROM unnest(turn_starts) s)
    WHERE user_id = 'rate'}, $wait);
$r = turn('rate', 'turn 9 again', conversation_id => $rconv);
is $r->{status}, 200, 'rate: after Retry-After seconds a turn passes'
    or diag $r->{body};

# ------------------------------------------------- 4. tokens per day

$s->mock_reset;
$s->mock_script([ { reply => { content => 'costly' },
    usage => { prompt_tokens => 900, completion_tokens => 99,
    total_tokens => 999 } } ]);
$r = turn('quota', 'an expensive question');
is $r->{status}, 200, 'quota: 999 of 1000 tokens used';
my $qconv = $r->{json}{conversation_id};
$r = turn('quota', 'one more', conversation_id => $qconv);
is $r->{status}, 200, 'quota: a turn that starts under it passes';
is_deeply $r->{json}{usage}, { prompt_tokens => 10, completion_tokens => 5,
    total_tokens => 15 }, '... and finishes over it';
$r = turn('quota', 'and another', conversation_id => $qconv);
my $midnight = 86400 - time % 86400;
refused($r, 'quota_exceeded', $midnight - 30, $midnight + 30,
    'quota: over the day\'s tokens, until UTC midnight');
is user_messages('quota'), 2, 'quota: the refused turn stored nothing';

# -------------------------------------------------------- 5. storage

$s->mock_reset;
my @convs = map { turn('store', "conversation $_")->{json}{conversation_id} }
    1 .. 3;
is scalar(grep { defined } @convs), 3, 'storage: three conversations';
$r = turn('store', 'a fourth conversation');
refused($r, 'quota_exceeded', 3600, 86400 * 2, 'storage: a fourth');
is count(q{SELECT count(*) FROM conversations WHERE user_id = 'store'}), 3,
    'storage: the fourth was not created';
$r = turn('store', 'in an old one', conversation_id => $convs[0]);
is $r->{status}, 200, 'storage: a turn in an existing conversation passes';
$r = $s->request(DELETE => "/chat/conversations/$convs[1]",
    token => $s->token('store'));
is $r->{status}, 204, 'storage: one deleted';
$r = turn('store', 'a fourth, once there is room');
is $r->{status}, 200, 'storage: then a new one passes' or diag $r->{body};
my $counted = sub {
	my ($user) = @_;
	return $s->sql(q{SELECT u.conversations, u.messages,
	    (SELECT count(*) FROM conversations c WHERE c.user_id = $1),
	    (SELECT count(*) FROM messages m WHERE m.user_id = $1)
	    FROM chat_users u WHERE u.user_id = $1}, $user)->[0];
};
my $c = $counted->('store');
is_deeply [ @$c[0, 1] ], [ @$c[2, 3] ],
    "storage: the user's counts are the tables' ($c->[2] conversations, "
    . "$c->[3] messages)";
# Messages: at 39 of 40 a turn passes (and stores two), then none.
$s->sql(q{UPDATE chat_users SET messages = 39 WHERE user_id = 'store'});
$r = turn('store', 'the last under the cap', conversation_id => $convs[0]);
is $r->{status}, 200, 'storage: under the message cap a turn passes';
$r = turn('store', 'over the cap', conversation_id => $convs[0]);
refused($r, 'quota_exceeded', 3600, 86400 * 2, 'storage: at the cap');

# ---------------------------------------------------------- 6. tasks

$s->mock_reset;
my @add = map { ({ reply => { tool_calls => [ { name => 'add_task',
    arguments => { title => "task $_" } } ] } },
    { reply => { content => "added $_" } }) } 1 .. 3;
$s->mock_script(\@add);
my $tconv;
for my $i (1 .. 3) {
	$r = turn('tasks', "add task $i",
	    $tconv ? (conversation_id => $tconv) : ());
	$tconv //= $r->{json}{conversation_id};
	is $r->{status}, 200, "tasks: turn $i answered";
}
my $result = $r->{json}{tool_calls}[0]{result} // {};
like $result->{error} // '', qr/2 tasks, the most/,
    'tasks: the third add_task is an error for the model';
is count(q{SELECT count(*) FROM tasks WHERE user_id = 'tasks'}), 2,
    'tasks: two stored';
$c = $counted->('tasks');
is_deeply [ @$c[0, 1] ], [ @$c[2, 3] ],
    "tasks: the counts of a user's rounds are the tables' ($c->[3] messages)";
is count(q{SELECT tasks FROM chat_users WHERE user_id = 'tasks'}), 2,
    'tasks: and so is the count of tasks';

# ------------------------------------------------ 7. a worker that dies

# A running entry (the turn's user message id) counts while its turn is
# unanswered and stored its user message or its newest round less than
# a lease ago (CHAT_MODEL_TIMEOUT_MS + 30 s here: 50 s), or holds a live
# stream record (a streamed model call may run longer, and its worker
# renews the record meanwhile); one whose worker died stops counting
# then. Entries at the limit or more send a turn to the exact count,
# which keeps only the live ones.
$r = turn('crash', 'before the crash');
my $cconv = $r->{json}{conversation_id};
my $hour_ago = q{now() - interval '1 hour'};
# The dead and live turns' messages, in a conversation of their own (the
# turns below read a history with nothing odd in it).
my $dconv = count(q{INSERT INTO conversations (user_id, title)
    VALUES ('crash', 'turns of other workers') RETURNING id});
sub stored {
	my ($role, $created, %o) = @_;
	return count(qq{INSERT INTO messages (conversation_id, user_id, role,
	    content, tool_calls, reply_to, round, created_at)
	    VALUES (\$1, 'crash', '$role', 'x', \$2, \$3, \$4, $created)
	    RETURNING id}, $dconv, $o{calls}, $o{reply_to}, $o{round});
}
my $calls = '[{"id": "c1", "type": "function", "function": '
    . '{"name": "list_tasks", "arguments": "{}"}}]';
my $dead = stored('user', $hour_ago);
my $dead_round = stored('user', $hour_ago);
stored('assistant', $hour_ago, calls => $calls, reply_to => $dead_round,
    round => 1);
my $answered = stored('user', 'now()');
stored('assistant', 'now()', reply_to => $answered);
my $alive_round = stored('user', $hour_ago);
stored('assistant', 'now()', calls => $calls, reply_to => $alive_round,
    round => 1);
# Streamed turns begun an hour ago, their model calls still streaming:
# one whose worker renews its record, one whose worker died (its lease
# ran out).
sub streaming {
	my ($lease) = @_;
	my $id = stored('user', $hour_ago);
	$s->sql(qq{INSERT INTO turn_streams (user_message_id,
	    conversation_id, user_id, lease_until)
	    VALUES (\$1, \$2, 'crash', $lease)}, $id, $dconv);
	return $id;
}
my $streaming = streaming(q{now() + interval '30 seconds'});
my $streaming_dead = streaming(q{now() - interval '1 second'});
my $gone = $streaming_dead + 1000;	# deleted with its conversation
$s->sql(qq{UPDATE chat_users SET running_turns = '{$dead,$dead_round,
    $answered,$alive_round,$streaming,$streaming_dead,$gone}'
    WHERE user_id = 'crash'});
$r = turn('crash', 'after a crash', conversation_id => $cconv);
is $r->{status}, 200, 'dead worker: seven entries, two of them live: '
    . 'the turn runs' or diag $r->{body};
is $s->sql_value(q{SELECT running_turns::text FROM chat_users
    WHERE user_id = 'crash'}), "{$alive_round,$streaming}",
    '... and the entries left are the live ones: the turn that stored a '
    . 'round lately, the one whose stream record is renewed';
my $alive = stored('user', 'now()');
$s->sql(qq{UPDATE chat_users SET running_turns =
    '{$alive_round,$streaming,$alive}' WHERE user_id = 'crash'});
$r = turn('crash', 'one over', conversation_id => $cconv);
refused($r, 'too_many_turns', 1, 60,
    'dead worker: three live entries, one just begun, are the limit');

# ---------------------------------- 8. the check MCP's tools/call uses

# chat_rate_check(user, limit): 0 and counted while under the limit, the
# seconds to wait (and nothing counted) at it; it and the turns share the
# minute.
my @waits = map { 0 + $s->sql_value(q{SELECT chat_rate_check('mcp', 8)}) }
    1 .. 9;
is_deeply [ @waits[0 .. 7] ], [ (0) x 8 ], 'rate check: eight counted';
ok $waits[8] >= 1 && $waits[8] <= 60, "rate check: the ninth waits "
    . "$waits[8] s";
is count(q{SELECT cardinality(turn_starts) FROM chat_users
    WHERE user_id = 'mcp'}), 8, 'rate check: the refused one not counted';
$r = turn('mcp', 'a turn after eight tool calls');
refused($r, 'rate_limited', 1, 60, 'rate check: a turn shares the minute');
is 0 + $s->sql_value(q{SELECT chat_rate_check('mcp', 0)}), 0,
    'rate check: limit 0 is none';

# ------------------------------------- 9. a database from before running_turns

# Its running entries were by conversation, each with a lease of its
# own, and chat_turn_release() named a conversation: schema.sql drops
# both arrays (their turns count as ended) and puts running_turns and
# the release by message in their place, while the workers run.
$s->sql(q{ALTER TABLE chat_users DROP COLUMN running_turns,
    ADD COLUMN running_conversations bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN running_until timestamptz[] NOT NULL DEFAULT '{}';
    UPDATE chat_users SET running_conversations = '{1}',
    running_until = ARRAY[now() + interval '1 minute']
    WHERE user_id = 'crash';
    DROP FUNCTION chat_turn_release(text, text, bigint);
    CREATE FUNCTION chat_turn_release(p_user text, p_key text,
    p_conversation bigint) RETURNS void LANGUAGE sql AS 'SELECT'});
open my $fh, '<', "$FindBin::Bin/../schema.sql" or die "schema.sql: $!";
my $schema = do { local $/; <$fh> };
ok eval { $s->sql($schema); 1 }, 'schema.sql on a database from before '
    . 'running_turns' or diag $@;
is $s->sql_value(q{SELECT string_agg(attname, ',' ORDER BY attname)
    FROM pg_attribute WHERE attrelid = 'chat_users'::regclass
    AND attname LIKE 'running%' AND NOT attisdropped}), 'running_turns',
    '... running_turns in place of the two arrays';
is $s->sql_value(q{SELECT proargnames[3] FROM pg_proc
    WHERE proname = 'chat_turn_release'}), 'p_message',
    '... and chat_turn_release() takes the message';
$r = turn('crash', 'after the upgrade', conversation_id => $cconv);
is $r->{status}, 200, '... and the running workers\' next turn is answered'
    or diag $r->{body};
is $s->sql_value(q{SELECT running_turns::text FROM chat_users
    WHERE user_id = 'crash'}), '{}', '... and leaves no running entry';

done_testing;
