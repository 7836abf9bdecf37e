#!/usr/bin/perl
# t/36-stream.t: streamed turns (POST /chat with Accept:
# text/event-stream) with the built-in offline model, through nginx,
# each read twice: by the AI SDK's own transport, parser and state
# machine (t/js/read-ui-stream.mjs, what useChat runs), and byte by byte
# against our contract (Stack::ui_turn). Headers; the same request
# without the header unchanged; a plain answer, a turn of one tool round
# and one of two, each step's parts in order, tool inputs and outputs
# equal to the JSON reply of the same request and to the stored rows;
# ids that grow, [DONE] last, one JSON object a data line; the joined
# deltas equal to the stored answer and to the JSON response;
# /api/{user_id}/chat and a continued conversation streamed too; and
# every failure before the start (401, 400, 404, 409, 413, 503) a JSON
# error, not a stream.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use Stack;

Stack::node_modules();	# skips the test when there is no node

my $JSON = JSON::PP->new->utf8->canonical;
# For JSON in text that sql() has decoded already.
my $TEXT_JSON = JSON::PP->new->canonical;
my $s = Stack->new(workers => 2);
my $alice = $s->token('alice');
my $bob = $s->token('bob');

# ------------------------------------------------------------ helpers

# A streamed turn read by the ai package: its reading, with the contract
# reading of its bytes as {turn}. The common checks run on each.
sub streamed {
	my ($name, $message, %o) = @_;
	my %body = (message => $message);
	$body{conversation_id} = $o{conversation_id} if $o{conversation_id};
	my $r = $s->ui_stream($o{path} // '/chat', token => $o{token} // $alice,
	    body => \%body, headers => $o{headers});
	is $r->{status}, 200, "$name: 200" or diag $r->{raw};
	my $h = $r->{headers};
	is $h->{'content-type'}, 'text/event-stream',
	    "$name: Content-Type: text/event-stream";
	is $h->{'cache-control'}, 'no-cache', "$name: Cache-Control: no-cache";
	is $h->{'x-accel-buffering'}, 'no', "$name: X-Accel-Buffering: no";
	is $h->{'x-vercel-ai-ui-message-stream'}, 'v1',
	    "$name: x-vercel-ai-ui-message-stream: v1";
	is_deeply $r->{errors}, [], "$name: the ai package's parser and state"
	    . ' machine take every chunk' or diag explain $r->{errors};
	is_deeply $r->{error_texts}, [], "$name: no error part";
	my $t = $r->{turn} = Stack::ui_turn($r->{raw});
	is_deeply $t->{problems}, [], "$name: the stream keeps the contract"
	    or diag explain $t->{problems}, $r->{raw};
	ok $t->{done}, "$name: ends with [DONE]";
	ok @{ $t->{ids} } > 3 && !grep({ !/\A[0-9]+\z/ } @{ $t->{ids} }),
	    "$name: every event has a decimal id, growing";
	is_deeply $r->{values}, $t->{parts},
	    "$name: the ai package parsed every part we sent, as sent";
	my $m = $t->{metadata} // {};
	like $m->{conversation_id} // '', qr/\A[1-9][0-9]*\z/,
	    "$name: start names the conversation";
	like $m->{user_message_id} // '', qr/\A[1-9][0-9]*\z/,
	    "$name: ... and the user message";
	is_deeply $r->{message}{metadata}, $m,
	    "$name: useChat's message carries them as metadata";
	is $s->sql_value(q{SELECT content FROM messages WHERE id = $1
	    AND conversation_id = $2 AND role = 'user'}, $m->{user_message_id},
	    $m->{conversation_id}), $message,
	    "$name: user_message_id is the stored user message";
	is $t->{answer}, stored_answer($m->{conversation_id}),
	    "$name: the last step's deltas joined are the stored answer";
	my @texts = grep { $_->{type} eq 'text' } @{ $r->{message}{parts} };
	is @texts ? $texts[-1]{text} : undef, $t->{answer},
	    "$name: useChat's last text part is that answer";
	is_deeply [ map { $_->{state} } @texts ], [ ('done') x @texts ],
	    "$name: ... every text part done";
	# useChat's tool parts: each call with its input and output.
	my @tools = map { @{ $_->{tools} } } @{ $t->{steps} };
	is_deeply [ map { { id => $_->{toolCallId}, state => $_->{state},
	    name => $_->{type}, input => $_->{input},
	    output => $_->{output} } }
	    grep { $_->{type} =~ /\Atool-/ } @{ $r->{message}{parts} } ],
	    [ map { { id => $_->{id}, state => 'output-available',
	    name => "tool-$_->{name}", input => $_->{input},
	    output => $_->{output} } } @tools ],
	    "$name: useChat's tool parts, each with its input and output";
	is_deeply [ map { $_->{type} eq 'step-start' ? 'step'
	    : $_->{type} =~ /\Atool-/ ? 'tool' : $_->{type} }
	    @{ $r->{message}{parts} } ],
	    [ map { ('step', ('tool') x @{ $_->{tools} },
	    ('text') x grep { length } @{ $_->{texts} }) } @{ $t->{steps} } ],
	    "$name: useChat's parts follow the steps";
	return $r;
}

# The same turn without streaming.
sub json_turn {
	my ($message, %o) = @_;
	my %body = (message => $message);
	$body{conversation_id} = $o{conversation_id} if $o{conversation_id};
	my $r = $s->request(POST => $o{path} // '/chat',
	    token => $o{token} // $alice, body => \%body,
	    headers => $o{headers});
	is $r->{status}, 200, "JSON '$message': 200" or diag $r->{body};
	like $r->{headers}{'content-type'}, qr{\Aapplication/json},
	    "JSON '$message': application/json";
	return $r->{json};
}

# The last assistant message of a conversation: its answer.
sub stored_answer {
	my ($conversation_id) = @_;
	return ($s->sql_value(q{SELECT content FROM messages
	    WHERE conversation_id = $1 AND role = 'assistant'
	    AND tool_calls IS NULL ORDER BY id DESC LIMIT 1}, $conversation_id));
}

# The stored tool rounds of a conversation's last turn: [ { id, name,
# input, output } ] in order.
sub stored_calls {
	my ($conversation_id, $user_message_id) = @_;
	my @calls;
	my $rows = $s->sql(q{SELECT role, tool_calls::text, tool_call_id,
	    content FROM messages WHERE conversation_id = $1 AND id > $2
	    ORDER BY id}, $conversation_id, $user_message_id);
	my %by_id;
	for my $row (@$rows) {
		my ($role, $calls, $call_id, $content) = @$row;
		if ($role eq 'assistant' && defined $calls) {
			for my $c (@{ $TEXT_JSON->decode($calls) }) {
				push @calls, $by_id{ $c->{id} } = { id => $c->{id},
				    name => $c->{function}{name},
				    input => $TEXT_JSON->decode(
				    $c->{function}{arguments}) };
			}
		} elsif ($role eq 'tool') {
			$by_id{$call_id}{output} = $TEXT_JSON->decode($content);
		}
	}
	return \@calls;
}

# What two users' identical turns share: ids, task numbers and times
# differ, nothing else may.
sub masked {
	my ($v) = @_;
	return { map { $_ => /\A(?:id|task_id|created_at|updated_at)\z/
	    ? 'X' : masked($v->{$_}) } keys %$v } if ref $v eq 'HASH';
	return [ map { masked($_) } @$v ] if ref $v eq 'ARRAY';
	(my $t = $v // '') =~ s/[0-9]+/N/g;
	return defined $v ? $t : undef;
}

# The parts as types, steps in brackets: "start [tool tool] [text] finish".
sub shape {
	my ($t) = @_;
	return join ' ', 'start', (map { '[' . join(' ',
	    (map { "$_->{name}" } @{ $_->{tools} }),
	    (map { 'text' } grep { length } @{ $_->{texts} })) . ']' }
	    @{ $t->{steps} }), 'finish';
}

# ------------------------------------ 1. without the header: unchanged

my $j = json_turn('thanks!');
is_deeply [ sort keys %$j ], [ qw(conversation_id response tool_calls
    usage) ], 'no Accept: the JSON answer, its four keys';
is_deeply $j->{tool_calls}, [], '... no tool calls';
my $thanks = $j->{response};
like $thanks, qr/\S \S/, '... an answer of several words';
my $r = $s->request(POST => '/chat', token => $alice,
    body => { message => 'thanks!' },
    headers => { Accept => 'application/json' });
is $r->{status}, 200, 'Accept: application/json: 200';
like $r->{headers}{'content-type'}, qr{\Aapplication/json}, '... JSON';
is $r->{json}{response}, $thanks, '... the same answer';

# ------------------------------------------------ 2. a plain answer

$r = streamed('thanks', 'thanks!');
my $t = $r->{turn};
is shape($t), 'start [text] finish', 'thanks: one step of words, no tools';
is $t->{answer}, $thanks, 'thanks: the answer is the JSON response';
my @deltas = map { $_->{delta} } grep { $_->{type} eq 'text-delta' }
    @{ $t->{parts} };
ok @deltas > 1, 'thanks: word by word (' . @deltas . ' deltas)';
is_deeply [ map { $_->{type} } @{ $t->{parts} } ],
    [ 'start', 'start-step', 'text-start', ('text-delta') x @deltas,
      'text-end', 'finish-step', 'finish' ], 'thanks: the parts in order';
my $thanks_conv = $t->{metadata}{conversation_id};
isnt $thanks_conv, $j->{conversation_id}, 'thanks: a new conversation';
is_deeply $s->sql(q{SELECT role, tool_calls IS NULL FROM messages
    WHERE conversation_id = $1 ORDER BY id}, $thanks_conv),
    [ [ 'user', 't' ], [ 'assistant', 't' ] ],
    'thanks: stored: the user message and the answer';

# ------------------------------------------------- 3. one tool round

$j = json_turn('Add a task to buy milk', token => $bob);
$r = streamed('one round', 'Add a task to buy milk');
$t = $r->{turn};
is shape($t), 'start [add_task] [text] finish',
    'one round: a step with add_task, then a step of words';
my $call = $t->{steps}[0]{tools}[0];
is_deeply $call->{input}, { title => 'Buy milk' }, 'one round: its input';
is $call->{output}{title}, 'Buy milk', 'one round: its output';
is_deeply $s->sql(q{SELECT user_id, title FROM tasks WHERE id = $1},
    $call->{output}{task_id} // 0), [ [ 'alice', 'Buy milk' ] ],
    'one round: the output names alice\'s new task';
is_deeply masked([ map { { name => $_->{name}, arguments => $_->{input},
    result => $_->{output} } } @{ $t->{steps}[0]{tools} } ]),
    masked($j->{tool_calls}),
    'one round: name, input and output as the JSON reply\'s tool_calls'
    or diag explain $t->{steps}, $j->{tool_calls};
is masked($t->{answer}), masked($j->{response}),
    'one round: the answer as the JSON response (task numbers aside)';
like $t->{answer}, qr/\b\Q$call->{output}{task_id}\E\b/,
    'one round: ... naming alice\'s task';
my $conv = $t->{metadata}{conversation_id};
is_deeply stored_calls($conv, $t->{metadata}{user_message_id}),
    $t->{steps}[0]{tools},
    'one round: the stored call (id, name, arguments) and result';
is_deeply $s->sql(q{SELECT role, tool_calls IS NOT NULL FROM messages
    WHERE conversation_id = $1 ORDER BY id}, $conv),
    [ [ 'user', 'f' ], [ 'assistant', 't' ], [ 'tool', 'f' ],
      [ 'assistant', 'f' ] ],
    'one round: stored: message, call, result, answer';
my @order = map { $_->{type} } @{ $t->{parts} };
is_deeply [ @order[0 .. 5] ], [ qw(start start-step tool-input-available
    tool-output-available finish-step start-step) ],
    'one round: the call, its output, the step closed, the next begun';

# ------------------------------------------------ 4. two tool rounds

for my $who ([ alice => $alice ], [ bob => $bob ]) {
	$s->sql(q{INSERT INTO tasks (user_id, title) VALUES ($1, 'Team meeting')},
	    $who->[0]);
}
$j = json_turn('Delete the meeting task', token => $bob);
is_deeply [ map { $_->{name} } @{ $j->{tool_calls} } ],
    [ 'list_tasks', 'delete_task' ], 'JSON: two rounds';
$r = streamed('two rounds', 'Delete the meeting task');
$t = $r->{turn};
is shape($t), 'start [list_tasks] [delete_task] [text] finish',
    'two rounds: list_tasks, then delete_task, then words';
is_deeply masked([ map { { name => $_->{name}, arguments => $_->{input},
    result => $_->{output} } } map { @{ $_->{tools} } } @{ $t->{steps} } ]),
    masked($j->{tool_calls}),
    'two rounds: inputs and outputs as the JSON reply\'s tool_calls'
    or diag explain $t->{steps}, $j->{tool_calls};
is masked($t->{answer}), masked($j->{response}),
    'two rounds: the answer as the JSON response';
is_deeply stored_calls($t->{metadata}{conversation_id},
    $t->{metadata}{user_message_id}),
    [ map { @{ $_->{tools} } } @{ $t->{steps} } ],
    'two rounds: the stored calls and results';
is $s->sql_value(q{SELECT count(*) FROM tasks WHERE user_id = 'alice'
    AND title = 'Team meeting'}), 0, 'two rounds: alice\'s task is gone';
my %ids;
$ids{ $_->{id} }++ for map { @{ $_->{tools} } } @{ $t->{steps} };
ok !grep({ $_ > 1 } values %ids), 'two rounds: each call id once';

# ----------------------- 5. a keyed streamed turn, replayed as JSON

$r = streamed('keyed', 'Add a task to water the plants',
    headers => { 'Idempotency-Key' => 'stream-1' });
$t = $r->{turn};
my $replay = $s->request(POST => '/chat', token => $alice,
    body => { message => 'Add a task to water the plants' },
    headers => { 'Idempotency-Key' => 'stream-1' });
is $replay->{status}, 200, 'the same key without Accept: 200'
    or diag $replay->{body};
is $replay->{json}{conversation_id}, $t->{metadata}{conversation_id},
    '... the streamed turn\'s conversation';
is $replay->{json}{response}, $t->{answer},
    '... its response is exactly the streamed answer';
is_deeply [ map { { name => $_->{name}, arguments => $_->{input},
    result => $_->{output} } } map { @{ $_->{tools} } } @{ $t->{steps} } ],
    $replay->{json}{tool_calls},
    '... its tool_calls exactly the streamed calls and outputs';
is $s->sql_value(q{SELECT count(*) FROM tasks WHERE title = 'Water the plants'}),
    1, '... and nothing ran twice';

# ------------------------ 6. continued, and under /api/{user_id}/chat

$r = streamed('continued', 'Show me all my tasks',
    conversation_id => $conv);
$t = $r->{turn};
is $t->{metadata}{conversation_id}, $conv, 'continued: the same conversation';
is shape($t), 'start [list_tasks] [text] finish', 'continued: list_tasks';
is_deeply [ map { $_->{title} } @{ $t->{steps}[0]{tools}[0]{output} } ],
    [ 'Buy milk', 'Water the plants' ], 'continued: alice\'s tasks listed';

$r = streamed('/api/alice/chat', 'thanks!', path => '/api/alice/chat');
is $r->{turn}{answer}, $thanks, '/api/alice/chat: the same answer';

# ---------------------- 7. failures before the start: JSON, not a stream

# Each with Accept: text/event-stream, straight and through the ai
# package's transport (which refuses the status and reads the body).
sub refused {
	my ($name, $status, $code, %o) = @_;
	my %h = (Accept => 'text/event-stream', %{ $o{headers} // {} });
	my $r = $s->request(POST => $o{path} // '/chat', token => $o{token},
	    body => $o{body}, headers => \%h);
	is $r->{status}, $status, "$name: $status" or diag $r->{body};
	like $r->{headers}{'content-type'} // '', qr{\Aapplication/json},
	    "$name: a JSON answer, not a stream";
	is $r->{json}{error}{code}, $code, "$name: $code";
	ok !exists $r->{headers}{'x-vercel-ai-ui-message-stream'},
	    "$name: no stream header";
	return if $o{raw_body};	# the reader sends JSON only
	my $u = $s->ui_stream($o{path} // '/chat', token => $o{token},
	    body => $o{body}, headers => $o{headers});
	is $u->{status}, $status, "$name: useChat's transport gets $status";
	is_deeply $u->{chunks}, [], "$name: ... and no chunk";
	like $u->{errors}[0]{message} // '', qr/\Q$code\E/,
	    "$name: ... its error carries our JSON error";
}

my $before = $s->sql_value('SELECT count(*) FROM messages');
refused('no token', 401, 'missing_token', body => { message => 'hi' });
refused('a bad token', 401, 'invalid_token',
    token => $s->token('alice', exp => time - 60), body => { message => 'hi' });
refused('no message', 400, 'missing_message', token => $alice,
    body => { conversation_id => $conv });
refused('not JSON', 400, 'invalid_json', token => $alice,
    body => '{"message":', raw_body => 1);
refused('bob\'s conversation id', 404, 'conversation_not_found', token => $bob,
    body => { message => 'hi', conversation_id => $conv });
refused('another user in the path', 403, 'forbidden', token => $bob,
    path => '/api/alice/chat', body => { message => 'hi' });
refused('a body too large', 413, 'body_too_large', token => $alice,
    body => { message => 'x' x 70000 });
json_turn('thanks!', headers => { 'Idempotency-Key' => 'stream-2' });
refused('a key reused', 409, 'idempotency_key_reused', token => $alice,
    body => { message => 'something else' },
    headers => { 'Idempotency-Key' => 'stream-2' });
is $s->sql_value('SELECT count(*) FROM messages'), $before + 2,
    'the refused requests stored nothing (the keyed JSON turn stored two)';

$s->stop_postgres;
refused('the database down', 503, 'database_unavailable', token => $alice,
    body => { message => 'thanks!' });
$s->start_postgres;

done_testing;
