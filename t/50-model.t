#!/usr/bin/perl
# t/50-model.t: the real-model path against t/mock_model.py, through nginx:
# the request the service sends (model name, system prompt, history in
# OpenAI's format, the five tool schemas, the key), tool rounds and the
# rows they store, the history window, retries and each way a model can
# fail (5xx, 429, a dropped connection, a timeout, garbage, 400, no
# server at all), bad tool calls, the round limit, and that a model
# cannot reach another user's tasks.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use Time::HiRes qw(time);
use Stack;

my $JSON = JSON::PP->new->utf8->canonical;

# The main stack: retries get time enough to run out of tries before
# they run out of time; three tool rounds at most; every call of a round
# run, for the round of ten wrong calls below (t/78-bounds.t tests the
# bound).
my $s = Stack->new(workers => 2, model => 'mock', mock_key => 'k',
    env => { CHAT_MODEL_TIMEOUT_MS => 5000, CHAT_MAX_TOOL_ROUNDS => 3,
    CHAT_MAX_TOOL_CALLS => 32 });
my $alice = $s->token('alice');
my $bob = $s->token('bob');

# ------------------------------------------------------------ helpers

# POST /chat; returns the response with {seconds} it took.
sub chat {
	my ($st, $token, $message, $conversation_id) = @_;
	my %body = (message => $message);
	$body{conversation_id} = $conversation_id if defined $conversation_id;
	my $t0 = time;
	my $r = $st->request(POST => '/chat', token => $token,
	    body => \%body);
	$r->{seconds} = time - $t0;
	return $r;
}

# Empties the mock's queue and log, then queues the steps.
sub script {
	my ($st, @steps) = @_;
	$st->mock_reset;
	$st->mock_script(\@steps) if @steps;
}

# A scripted reply asking for tools: [id, name, arguments] each.
sub calls {
	return { reply => { content => undef, tool_calls => [ map { {
	    id => $_->[0], name => $_->[1], arguments => $_->[2] } } @_ ] } };
}

sub answer { return { reply => { content => $_[0] } } }

# The requests the mock got since the last script(): each must carry
# the key, go to /v1/chat/completions and have the status expected (200
# unless scripted otherwise: the mock rejected nothing the service sent).
sub sent {
	my ($st, $key, $statuses, $name) = @_;
	my $req = $st->mock_requests;
	is_deeply [ map { $_->{status} } @$req ], $statuses,
	    "$name: the mock answered " . join(' ', @$statuses)
	    or diag explain [ map { $_->{status} } @$req ];
	is_deeply [ grep { ($_->{authorization} // '') ne "Bearer $key"
	    || $_->{path} ne '/v1/chat/completions' } @$req ], [],
	    "$name: each request to /v1/chat/completions with Bearer $key";
	return $req;
}

# Roles of an OpenAI message list as letters: s system, u user, a
# assistant with tool calls, t tool result, A assistant answer.
sub shape {
	return join ' ', map {
		$_->{role} eq 'assistant' ? ($_->{tool_calls} ? 'a' : 'A')
		    : substr($_->{role}, 0, 1)
	} @{ $_[0] };
}

# The stored messages of a conversation as hashes, oldest first, with
# tool_calls decoded.
sub stored {
	my ($st, $conversation_id) = @_;
	return [ map { {
		role => $_->[0], content => $_->[1],
		tool_calls => defined $_->[2] ? $JSON->decode($_->[2]) : undef,
		tool_call_id => $_->[3], user_id => $_->[4],
	} } @{ $st->sql(q{SELECT role, content, tool_calls::text,
	    tool_call_id, user_id FROM messages WHERE conversation_id = $1
	    ORDER BY id}, $conversation_id) } ];
}

# Every tool message answers a call of the assistant message before it,
# and every call is answered (what OpenAI checks).
sub paired {
	my ($messages) = @_;
	my %open;
	for my $m (@$messages) {
		if ($m->{role} eq 'tool') {
			my $id = $m->{tool_call_id} // '';
			return 0 unless delete $open{$id};
			next;
		}
		return 0 if %open;
		%open = map { $_->{id} => 1 } @{ $m->{tool_calls} || [] };
	}
	return !%open;
}

sub tasks_of {
	my ($st, $user) = @_;
	return $st->sql(q{SELECT id, title, description, completed,
	    updated_at FROM tasks WHERE user_id = $1 ORDER BY id}, $user);
}

# A failed turn: status and code, the conversation_id beside the error,
# the user message kept and no answer stored.
sub failed_turn {
	my ($st, $r, $status, $code, $message, $name) = @_;
	is $r->{status}, $status, "$name: $status" or diag $r->{body};
	is $r->{json}{error}{code}, $code, "$name: $code";
	my $conversation_id = $r->{json}{conversation_id};
	like $conversation_id // '', qr/\A\d+\z/,
	    "$name: the body names the conversation";
	is shape(stored($st, $conversation_id // 0)), 'u',
	    "$name: the user message is kept, no assistant row";
	is $st->sql_value(q{SELECT content FROM messages
	    WHERE conversation_id = $1}, $conversation_id // 0), $message,
	    "$name: ... it is the message sent";
}

# -------------------------------------------- 1. a plain answer, no tools

script($s, answer('Hello from the model'));
my $r = chat($s, $alice, 'hello model');
is $r->{status}, 200, 'plain answer: 200' or diag $r->{body};
is $r->{json}{response}, 'Hello from the model', 'the model\'s words';
is_deeply $r->{json}{tool_calls}, [], 'no tool calls';
my $plain = $r->{json}{conversation_id};
my $rows = stored($s, $plain);
is shape($rows), 'u A', 'stored: the user message and the answer';
is $rows->[0]{content}, 'hello model', '... the user message';
is $rows->[1]{content}, 'Hello from the model', '... the answer';
is_deeply [ map { $_->{user_id} } @$rows ], [ 'alice', 'alice' ],
    '... both alice\'s';

my $req = sent($s, 'k', [200], 'plain answer');
my $body = $req->[0]{body};
is $body->{model}, 'gpt-4o-mini', 'model: gpt-4o-mini by default';
is shape($body->{messages}), 's u', 'messages: system prompt, then user';
like $body->{messages}[0]{content}, qr/add_task/,
    'the system prompt tells about the tools';
is_deeply $body->{messages}[-1], { role => 'user', content => 'hello model' },
    'the last message is the user\'s';

my %tools = map { $_->{function}{name} => $_ } @{ $body->{tools} || [] };
is_deeply [ sort keys %tools ],
    [ qw(add_task complete_task delete_task list_tasks update_task) ],
    'the five tools are offered';
is scalar @{ $body->{tools} || [] }, 5, '... each once';
for my $name (sort keys %tools) {
	my $t = $tools{$name};
	my $p = $t->{function}{parameters};
	ok $t->{type} eq 'function' && length($t->{function}{description}
	    // '') && ref $p eq 'HASH' && $p->{type} eq 'object'
	    && ref $p->{properties} eq 'HASH',
	    "$name: a function with a description and an object schema";
}
my %props = (
	add_task	=> [ [qw(description title)], ['title'] ],
	list_tasks	=> [ ['status'], [] ],
	complete_task	=> [ ['task_id'], ['task_id'] ],
	delete_task	=> [ ['task_id'], ['task_id'] ],
	update_task	=> [ [qw(description task_id title)], ['task_id'] ],
);
for my $name (sort keys %props) {
	my $p = $tools{$name}{function}{parameters} // {};
	is_deeply [ sort keys %{ $p->{properties} // {} } ], $props{$name}[0],
	    "$name: properties as the specification lists them";
	is_deeply [ sort @{ $p->{required} // [] } ], $props{$name}[1],
	    "$name: required " . (join(', ', @{ $props{$name}[1] }) || 'none');
}
is $tools{complete_task}{function}{parameters}{properties}{task_id}{type},
    'integer', 'task_id is an integer';
is $tools{add_task}{function}{parameters}{properties}{title}{type},
    'string', 'title is a string';
is_deeply [ sort @{ $tools{list_tasks}{function}{parameters}{properties}
    {status}{enum} // [] } ], [qw(all completed pending)],
    'status is all, pending or completed';

# ------------------------------------------------------ 2. one tool turn

script($s, calls([ 'call_milk', 'add_task',
    { title => 'Buy milk', description => 'two litres' } ]),
    answer('Added "Buy milk".'));
$r = chat($s, $alice, 'add buy milk');
is $r->{status}, 200, 'tool turn: 200' or diag $r->{body};
my $conv = $r->{json}{conversation_id};
is $r->{json}{response}, 'Added "Buy milk".', 'the answer after the tool';
my $milk = 0 + $s->sql_value(q{SELECT id FROM tasks
    WHERE title = 'Buy milk'});
is_deeply $r->{json}{tool_calls}, [ { name => 'add_task',
    arguments => { title => 'Buy milk', description => 'two litres' },
    result => { task_id => $milk, status => 'created',
    title => 'Buy milk' } } ], 'tool_calls: name, arguments, result';
is_deeply $s->sql('SELECT user_id, title, description, completed FROM tasks
    WHERE id = $1', $milk), [ [ 'alice', 'Buy milk', 'two litres', 'f' ] ],
    'the task row is alice\'s';

$rows = stored($s, $conv);
is shape($rows), 'u a t A', 'stored: user, tool call, tool result, answer';
my $call = $rows->[1]{tool_calls}[0] // {};
is_deeply [ $call->{id}, $call->{type}, $call->{function}{name} ],
    [ 'call_milk', 'function', 'add_task' ],
    'the assistant row holds the call in OpenAI format (jsonb)';
is_deeply eval { $JSON->decode($call->{function}{arguments}) },
    { title => 'Buy milk', description => 'two litres' },
    '... its arguments as JSON text';
is $rows->[2]{tool_call_id}, 'call_milk', 'the tool row names the call';
is_deeply eval { $JSON->decode($rows->[2]{content}) },
    $r->{json}{tool_calls}[0]{result}, '... and holds the result';
is $rows->[3]{content}, 'Added "Buy milk".', 'the answer row';
ok !defined $rows->[3]{tool_calls}, '... without tool_calls';

$req = sent($s, 'k', [ 200, 200 ], 'tool turn');
my $m2 = $req->[1]{body}{messages} // [];
is shape($m2), 's u a t', 'second request: ... user, tool call, result';
is_deeply $m2->[2]{tool_calls}, $rows->[1]{tool_calls},
    '... the assistant message carries the stored tool_calls';
is $m2->[3]{tool_call_id}, 'call_milk', '... the tool message names it';
is_deeply eval { $JSON->decode($m2->[3]{content}) },
    $r->{json}{tool_calls}[0]{result}, '... and carries the result as text';
is_deeply [ @$m2[0, 1] ], $req->[0]{body}{messages},
    'the first request\'s messages open the second';

# -------------------------------------------- 3. the next turn's history

script($s, answer('You have one task.'));
$r = chat($s, $alice, 'what do I have?', $conv);
is $r->{status}, 200, 'continuation: 200' or diag $r->{body};
is $r->{json}{conversation_id}, $conv, 'same conversation';
$req = sent($s, 'k', [200], 'continuation');
my $m = $req->[0]{body}{messages} // [];
is shape($m), 's u a t A u', 'history replayed: user, call, result, answer';
is_deeply $m->[1], { role => 'user', content => 'add buy milk' },
    '... the first user message';
is_deeply $m->[2]{tool_calls}, $rows->[1]{tool_calls},
    '... the call as stored';
ok !defined $m->[2]{content}, '... with null content';
is_deeply [ $m->[3]{tool_call_id}, $m->[3]{content} ],
    [ 'call_milk', $rows->[2]{content} ], '... the result as stored';
is_deeply $m->[4], { role => 'assistant', content => 'Added "Buy milk".' },
    '... the answer';
is_deeply $m->[5], { role => 'user', content => 'what do I have?' },
    '... the new message last';
is shape(stored($s, $conv)), 'u a t A u A', 'stored: the turn appended';

# -------------------------------- 4. two calls in a round; two rounds

script($s, calls([ 'call_mom', 'add_task', { title => 'Call mom' } ],
    [ 'call_rent', 'add_task', { title => 'Pay rent' } ]),
    answer('Added both.'));
$r = chat($s, $alice, 'add call mom and pay rent');
is $r->{status}, 200, 'two calls in one round: 200' or diag $r->{body};
is_deeply [ map { [ $_->{name}, $_->{result}{title},
    $_->{result}{status} ] } @{ $r->{json}{tool_calls} } ],
    [ [ 'add_task', 'Call mom', 'created' ],
      [ 'add_task', 'Pay rent', 'created' ] ], 'both ran, in order';
$rows = stored($s, $r->{json}{conversation_id});
is shape($rows), 'u a t t A', 'stored: one call message, two results';
is scalar @{ $rows->[1]{tool_calls} }, 2, '... the call message has both';
is_deeply [ map { $_->{tool_call_id} } @$rows[2, 3] ],
    [ 'call_mom', 'call_rent' ], '... results in the order of the calls';
$req = sent($s, 'k', [ 200, 200 ], 'two calls');
is shape($req->[1]{body}{messages}), 's u a t t',
    'the model got both results after the call';
my $rent = $r->{json}{tool_calls}[1]{result}{task_id};

script($s, calls([ 'call_list', 'list_tasks', { status => 'pending' } ]),
    calls([ 'call_del', 'delete_task', { task_id => $rent } ]),
    answer('Deleted "Pay rent".'));
$r = chat($s, $alice, 'delete the rent task');
is $r->{status}, 200, 'two rounds: 200' or diag $r->{body};
is_deeply [ map { $_->{name} } @{ $r->{json}{tool_calls} } ],
    [qw(list_tasks delete_task)], 'list, then delete';
is_deeply [ map { $_->{title} } @{ $r->{json}{tool_calls}[0]{result} } ],
    [ 'Buy milk', 'Call mom', 'Pay rent' ], 'the list: alice\'s pending tasks';
is_deeply $r->{json}{tool_calls}[1]{result},
    { task_id => $rent, status => 'deleted', title => 'Pay rent' },
    'the delete result';
is $s->sql_value('SELECT count(*) FROM tasks WHERE id = $1', $rent), 0,
    'the row is gone';
$rows = stored($s, $r->{json}{conversation_id});
is shape($rows), 'u a t a t A', 'stored: two rounds and the answer';
is_deeply $s->sql(q{SELECT round FROM messages WHERE conversation_id = $1
    AND tool_calls IS NOT NULL ORDER BY id}, $r->{json}{conversation_id}),
    [ [1], [2] ], '... numbered 1 and 2';
$req = sent($s, 'k', [ 200, 200, 200 ], 'two rounds');
is shape($req->[2]{body}{messages}), 's u a t a t',
    'the third request carries both rounds';

# ------------------------ words beside calls, non-ASCII, an empty answer

script($s, { reply => { content => 'Let me add that.', tool_calls => [ {
    id => 'call_cafe', name => 'add_task',
    arguments => { title => "Caf\x{e9} \x{2615} \x{1f600}" } } ] } },
    answer("Added \x{201c}Caf\x{e9} \x{2615} \x{1f600}\x{201d}."));
$r = chat($s, $alice, "add caf\x{e9} \x{2615}");
is $r->{status}, 200, 'words beside a call, non-ASCII: 200'
    or diag $r->{body};
is $r->{json}{response}, "Added \x{201c}Caf\x{e9} \x{2615} \x{1f600}\x{201d}.",
    'non-ASCII answer intact (the mock escapes it as \\u, pairs included)';
is $r->{json}{tool_calls}[0]{result}{title}, "Caf\x{e9} \x{2615} \x{1f600}",
    'non-ASCII title through the tool';
is $s->sql_value('SELECT title FROM tasks WHERE id = $1',
    $r->{json}{tool_calls}[0]{result}{task_id}), "Caf\x{e9} \x{2615} \x{1f600}",
    '... and in the row';
my $cafe = $r->{json}{conversation_id};
$rows = stored($s, $cafe);
is shape($rows), 'u a t A', 'stored: call, result, answer';
is $rows->[1]{content}, 'Let me add that.',
    'the words beside the call are stored with it';
sent($s, 'k', [ 200, 200 ], 'words beside a call');

script($s, answer(''));
$r = chat($s, $alice, 'say nothing', $cafe);
is $r->{status}, 200, 'an empty answer: 200' or diag $r->{body};
is $r->{json}{response}, '', '... the empty response';
script($s, answer('ok'));
$r = chat($s, $alice, 'and now?', $cafe);
is $r->{status}, 200, 'the turn after: 200' or diag $r->{body};
$req = sent($s, 'k', [200], 'after an empty answer');
$m = $req->[0]{body}{messages} // [];
is shape($m), 's u a t A u A u', 'history: both earlier turns';
is_deeply [ $m->[2]{content}, $m->[6]{content} ], [ 'Let me add that.', '' ],
    '... with the words beside the call and the empty answer';
is $m->[1]{content}, "add caf\x{e9} \x{2615}", '... non-ASCII message intact';

# --------------------------------------------- 5. the model fails

script($s, map { { status => 500 } } 1 .. 8);
$r = chat($s, $alice, 'always 500');
failed_turn($s, $r, 502, 'model_error', 'always 500', '500 every time');
$req = $s->mock_requests;
ok @$req >= 2 && @$req <= 4,
    '500 every time: retried, a bounded number of times (' . @$req . ')';
ok $r->{seconds} < 4, sprintf '500 every time: answered in %.2f s',
    $r->{seconds};

script($s, { status => 500 }, { status => 503 }, answer('third time'));
$r = chat($s, $alice, 'flaky');
is $r->{status}, 200, '500, 503, then an answer: 200' or diag $r->{body};
is $r->{json}{response}, 'third time', '... the answer';
sent($s, 'k', [ 500, 503, 200 ], '500, 503, answer');

script($s, { status => 429, headers => { 'Retry-After' => 1 } },
    answer('after the wait'));
$r = chat($s, $alice, 'rate limited');
is $r->{status}, 200, '429 then an answer: 200' or diag $r->{body};
is $r->{json}{response}, 'after the wait', '... the answer';
ok $r->{seconds} >= 0.95 && $r->{seconds} < 3,
    sprintf 'Retry-After: 1 honoured (%.2f s)', $r->{seconds};
sent($s, 'k', [ 429, 200 ], '429');

script($s, { status => 429, headers => { 'retry-after-ms' => 400 } },
    answer('after 400 ms'));
$r = chat($s, $alice, 'rate limited, in ms');
is $r->{status}, 200, '429 with retry-after-ms: 200' or diag $r->{body};
ok $r->{seconds} >= 0.38 && $r->{seconds} < 0.9,
    sprintf 'retry-after-ms: 400 honoured (%.2f s)', $r->{seconds};
sent($s, 'k', [ 429, 200 ], '429 retry-after-ms');

# The model refuses at once and asks for a wait longer than the whole
# budget (CHAT_MODEL_TIMEOUT_MS 5000): no use waiting, the turn fails at
# once; the model failed, it did not time out.
script($s, map { { status => 503, headers => { 'Retry-After' => 10 } } }
    1 .. 4);
$r = chat($s, $alice, 'come back later');
ok $r->{seconds} < 1, sprintf 'Retry-After past the budget: no wait '
    . '(%.2f s)', $r->{seconds};
sent($s, 'k', [503], 'Retry-After past the budget');
failed_turn($s, $r, 502, 'model_error', 'come back later',
    'Retry-After past the budget');

script($s, { close => 1 }, answer('after the drop'));
$r = chat($s, $alice, 'dropped');
is $r->{status}, 200, 'connection dropped, then an answer: 200'
    or diag $r->{body};
is $r->{json}{response}, 'after the drop', '... the answer';
sent($s, 'k', [ 0, 200 ], 'dropped connection');

script($s, { status => 400 }, answer('never sent'));
$r = chat($s, $alice, 'bad request');
failed_turn($s, $r, 502, 'model_error', 'bad request', '400 from the model');
sent($s, 'k', [400], '400: not retried');

# A failure after a committed round leaves user, call and result (the
# round's effect is real), no answer; the conversation goes on.
script($s, calls([ 'call_half_turn', 'add_task', { title => 'Kept round' } ]),
    map { { status => 500 } } 1 .. 8);
$r = chat($s, $alice, 'fails after a round');
is $r->{status}, 502, 'model fails after a round: 502' or diag $r->{body};
my $broken = $r->{json}{conversation_id};
is shape(stored($s, $broken)), 'u a t', '... the round stays, no answer';
is $s->sql_value(q{SELECT count(*) FROM tasks WHERE title = 'Kept round'}),
    1, '... its task too';
script($s, answer('going on'));
$r = chat($s, $alice, 'next turn', $broken);
is $r->{status}, 200, 'the next turn in that conversation: 200'
    or diag $r->{body};
$req = sent($s, 'k', [200], 'after a failed turn');
is shape($req->[0]{body}{messages}), 's u a t u',
    '... the model sees the unanswered turn and the new message';

# Replies that are not chat completions: 502, nothing stored but the
# user message.
my @garbage = (
	[ 'not JSON', '{"choices": [' ],
	[ 'an HTML page', '<html>Bad gateway</html>' ],
	[ 'no choices', '{"id":"chatcmpl-x","object":"chat.completion",'
	    . '"created":1,"model":"gpt-4o-mini"}' ],
	[ 'empty choices', '{"choices":[]}' ],
	[ 'no message', '{"choices":[{"index":0,"finish_reason":"stop"}]}' ],
	[ 'neither words nor calls',
	  '{"choices":[{"message":{"role":"assistant","content":null}}]}' ],
	[ 'a call without function',
	  '{"choices":[{"message":{"role":"assistant","content":null,'
	    . '"tool_calls":[{"id":"c1","type":"function"}]}}]}' ],
	[ 'a call without id',
	  '{"choices":[{"message":{"role":"assistant","content":null,'
	    . '"tool_calls":[{"type":"function","function":{"name":'
	    . '"add_task","arguments":"{}"}}]}}]}' ],
);
for my $g (@garbage) {
	my ($name, $raw) = @$g;
	script($s, { raw => $raw }, answer('never sent'));
	$r = chat($s, $alice, "garbage: $name");
	failed_turn($s, $r, 502, 'model_error', "garbage: $name",
	    "reply $name");
	ok !grep({ $_->{status} != 200 } @{ $s->mock_requests }),
	    "reply $name: the service's requests were all valid";
}
is $s->sql_value(q{SELECT count(*) FROM tasks WHERE title = 'c1'}), 0,
    'no garbage reached the tasks';

# ------------------------------------------------- 6. bad tool calls

my $before = tasks_of($s, 'alice');
# Arguments cut short, and arguments with bytes after the object (which a
# lenient parser would take for an object and replay as sent): neither
# is an object, both fail the call and go back to the model as {}.
my ($tc, $fed, $again, $old);
for my $c ([ 'not JSON', '{"title": "Half' ],
    [ 'with bytes after the object', '{"title": "Half"}}' ]) {
	my ($what, $broken) = @$c;
	script($s, calls([ 'call_half', 'add_task', $broken ]),
	    answer('That did not work.'));
	$r = chat($s, $alice, "arguments $what");
	is $r->{status}, 200, "arguments $what: 200" or diag $r->{body};
	is $r->{json}{response}, 'That did not work.', '... the model answers';
	$tc = $r->{json}{tool_calls}[0] // {};
	is $tc->{name}, 'add_task', '... the call is reported';
	is_deeply $tc->{arguments}, {}, '... its arguments shown as {}';
	is_deeply [ keys %{ $tc->{result} // {} } ], ['error'],
	    '... the result is {"error": ...}';
	like $tc->{result}{error} // '', qr/JSON|argument/i, '... saying why';
	$req = sent($s, 'k', [ 200, 200 ], "arguments $what");
	$fed = $req->[1]{body}{messages}[-1] // {};
	is_deeply [ $fed->{role}, $fed->{tool_call_id} ], [ 'tool', 'call_half' ],
	    '... the error goes back to the model as the tool result';
	is_deeply eval { $JSON->decode($fed->{content}) }, $tc->{result},
	    '... the same error';
	# Several OpenAI-compatible servers refuse a request whose earlier calls
	# have arguments that do not parse: they go back to the model as {}.
	is $req->[1]{body}{messages}[-2]{tool_calls}[0]{function}{arguments},
	    '{}', '... after the call, its arguments sent back as {}';
	is shape(stored($s, $r->{json}{conversation_id})), 'u a t A',
	    '... and the round is stored';
	is $s->sql_value(q{SELECT tool_calls->0->'function'->>'arguments'
	    FROM messages WHERE conversation_id = $1 AND tool_calls IS NOT NULL},
	    $r->{json}{conversation_id}), $broken,
	    '... with the arguments as the model sent them';
	script($s, answer('Fine.'));
	$again = chat($s, $alice, 'and now?', $r->{json}{conversation_id});
	is $again->{status}, 200, 'the next turn of that conversation: 200';
	$req = sent($s, 'k', [ 200 ], 'the next turn');
	($old) = grep { $_->{tool_calls} } @{ $req->[0]{body}{messages} };
	is $old->{tool_calls}[0]{function}{arguments}, '{}',
	    '... its history carries the broken call as {}';
}

script($s, calls([ 'call_mail', 'send_email', { to => 'boss' } ]),
    answer('I cannot send mail.'));
$r = chat($s, $alice, 'email my boss');
is $r->{status}, 200, 'unknown tool: 200' or diag $r->{body};
$tc = $r->{json}{tool_calls}[0] // {};
is $tc->{name}, 'send_email', '... the call is reported';
like $tc->{result}{error} // '', qr/unknown tool/i,
    '... its result is an unknown-tool error';
sent($s, 'k', [ 200, 200 ], 'unknown tool');

# id, tool, arguments, what the error must name.
my @wrong = (
	[ 'call_w1', 'complete_task', { task_id => 'abc' }, qr/task_id/ ],
	[ 'call_w2', 'add_task', { title => 5 }, qr/title/ ],
	[ 'call_w3', 'delete_task', { task_id => -3 }, qr/task_id/ ],
	[ 'call_w4', 'update_task', { task_id => 1.5, title => 'x' },
	  qr/task_id/ ],
	[ 'call_w5', 'add_task', {}, qr/title/ ],
	[ 'call_w6', 'list_tasks', { status => 'bogus' }, qr/status/ ],
	[ 'call_w7', 'add_task', [ 'Buy bread' ], qr/object|argument/i ],
	[ 'call_w8', 'update_task', { task_id => $milk },
	  qr/title|description/ ],
	[ 'call_w9', 'complete_task', { task_id => undef }, qr/task_id/ ],
	[ 'call_w10', 'update_task', { task_id => $milk, title => ' ' },
	  qr/title/ ],
);
script($s, calls(map { [ @$_[0 .. 2] ] } @wrong), answer('Those were wrong.'));
$r = chat($s, $alice, 'wrong types');
is $r->{status}, 200, 'wrong-typed arguments: 200' or diag $r->{body};
my $results = $r->{json}{tool_calls} // [];
is scalar @$results, scalar @wrong, 'every call reported';
for my $i (0 .. $#wrong) {
	my ($id, $tool, $args, $why) = @{ $wrong[$i] };
	my $res = $results->[$i]{result} // {};
	ok join(',', keys %$res) eq 'error' && $res->{error} =~ $why,
	    "$tool " . $JSON->encode($args) . ": {\"error\": \""
	    . ($res->{error} // '') . '"}';
}
is_deeply tasks_of($s, 'alice'), $before, 'no bad call wrote to tasks';
sent($s, 'k', [ 200, 200 ], 'wrong types');

# -------------------------------------------- 7. the model never stops

script($s, map { calls([ "call_loop$_", 'add_task', { title => "Loop $_" } ]) }
    1 .. 8);
$r = chat($s, $alice, 'loop forever');
is $r->{status}, 200, 'endless tool calls: 200' or diag $r->{body};
like $r->{json}{response}, qr/too many steps/i,
    '... the answer says it took too many steps';
is_deeply [ map { $_->{result}{title} } @{ $r->{json}{tool_calls} } ],
    [ 'Loop 1', 'Loop 2', 'Loop 3' ], '... three rounds ran';
is_deeply $s->sql(q{SELECT title FROM tasks WHERE title LIKE 'Loop %'
    ORDER BY id}), [ ['Loop 1'], ['Loop 2'], ['Loop 3'] ],
    '... the tool ran three times, no more';
$rows = stored($s, $r->{json}{conversation_id});
is shape($rows), 'u a t a t a t A', '... three rounds and the answer stored';
like $rows->[-1]{content}, qr/too many steps/i, '... the stored answer';
$req = $s->mock_requests;
ok @$req >= 3 && @$req <= 4 && !grep({ $_->{status} != 200 } @$req),
    '... the model asked ' . @$req . ' times, every request valid';

# ---------------------------------- 8. another user's task, by the model

script($s, calls([ 'call_bob', 'add_task', { title => 'Bob secret',
    description => 'keep out' } ]), answer('Added.'));
$r = chat($s, $bob, 'add bob secret');
is $r->{status}, 200, 'bob adds a task' or diag $r->{body};
my $secret = $r->{json}{tool_calls}[0]{result}{task_id};
my $bob_before = tasks_of($s, 'bob');
my $alice_before = tasks_of($s, 'alice');
script($s, calls([ 'call_x1', 'complete_task', { task_id => $secret } ],
    [ 'call_x2', 'update_task', { task_id => $secret, title => 'pwned',
    description => 'pwned' } ],
    [ 'call_x3', 'delete_task', { task_id => $secret } ],
    [ 'call_x4', 'complete_task', { task_id => "$secret" } ],
    [ 'call_x5', 'list_tasks', { status => 'all' } ]),
    answer('Not found.'));
$r = chat($s, $alice, "touch task $secret");
is $r->{status}, 200, 'alice\'s model names bob\'s task: 200'
    or diag $r->{body};
$results = $r->{json}{tool_calls} // [];
is_deeply $results->[$_]{result}, { error => "task $secret not found" },
    "$results->[$_]{name} on bob's task: task $secret not found"
    for 0 .. 3;
ok !grep({ $_->{id} == $secret } @{ $results->[4]{result} // [] }),
    'alice\'s list does not show it';
is_deeply tasks_of($s, 'bob'), $bob_before, 'bob\'s row is unchanged';
is_deeply tasks_of($s, 'alice'), $alice_before, 'alice\'s rows too';
is_deeply $s->sql(q{SELECT DISTINCT user_id FROM messages
    WHERE conversation_id = $1}, $r->{json}{conversation_id}), [ ['alice'] ],
    'the turn\'s rows are all alice\'s';
sent($s, 'k', [ 200, 200 ], 'another user\'s task');

# Nothing the service sent in this whole file was refused: each request
# the mock rejected on its own (400 for a malformed request, 401 for the
# key) would have shown above as an unscripted status.

# ------------------- 9. another model name, a short window, a short timeout

my $w = Stack->new(workers => 1, model => 'mock', mock_key => 'k2',
    env => { CHAT_MODEL => 'test-model-x', CHAT_HISTORY_MESSAGES => 4,
    CHAT_MODEL_TIMEOUT_MS => 1000 });
my $carol = $w->token('carol');

script($w, calls([ 'call_c1', 'add_task', { title => 'C one' } ],
    [ 'call_c2', 'add_task', { title => 'C two' } ]), answer('A1'));
$r = chat($w, $carol, 'u1');
is $r->{status}, 200, 'window: first turn (u a t t A)' or diag $r->{body};
my $wconv = $r->{json}{conversation_id};
$req = sent($w, 'k2', [ 200, 200 ], 'CHAT_MODEL');
is $req->[0]{body}{model}, 'test-model-x', 'CHAT_MODEL names the model';

# Newest four before each new message; a leading tool result is dropped.
my @turns = (
	[ 'u2', 's a t t A u' ],	# the window opens on the call
	[ 'u3', 's A u A u' ],		# t A1 u2 A2: the orphan t goes
	[ 'u4', 's u A u A u' ],
);
for my $t (@turns) {
	my ($message, $expect) = @$t;
	script($w, answer("answer to $message"));
	$r = chat($w, $carol, $message, $wconv);
	is $r->{status}, 200, "window, turn $message: 200" or diag $r->{body};
	$req = sent($w, 'k2', [200], "window, turn $message");
	my $msgs = $req->[0]{body}{messages} // [];
	my @history = @$msgs[1 .. $#$msgs - 1];
	ok @history <= 4, "turn $message: at most 4 history messages ("
	    . @history . ')';
	isnt $history[0]{role} // '', 'tool', "turn $message: no leading tool";
	ok paired(\@history), "turn $message: every result follows its call";
	is shape($msgs), $expect, "turn $message: the model got '$expect'";
	is_deeply $msgs->[-1], { role => 'user', content => $message },
	    "turn $message: the new message goes last";
}

script($w, { delay_ms => 2500, reply => { content => 'too late' } });
$r = chat($w, $carol, 'slow model');
failed_turn($w, $r, 504, 'model_timeout', 'slow model', 'model too slow');
ok $r->{seconds} < 2, sprintf 'model too slow: 504 after %.2f s',
    $r->{seconds};

# Quick 500s whose backoff (250, 500, 1000 ms with jitter) outlasts the
# 1000 ms budget: a 502 whatever the jitter, never a 504.
script($w, map { { status => 500 } } 1 .. 8);
$r = chat($w, $carol, 'quick 500s');
failed_turn($w, $r, 502, 'model_error', 'quick 500s',
    'quick 500s past the budget');
ok $r->{seconds} < 1.5, sprintf 'quick 500s past the budget: %.2f s',
    $r->{seconds};
ok !grep({ $_->{status} != 500 } @{ $w->mock_requests }),
    'quick 500s past the budget: only the scripted 500s';

# ---------------------------------------------- 10. no model server at all

my $down = Stack->new(workers => 1, model => 'offline',
    env => { CHAT_MODEL_URL => 'http://127.0.0.1:1/v1',
    CHAT_MODEL_KEY => 'k3' });
$r = chat($down, $down->token('dave'), 'anyone there?');
failed_turn($down, $r, 502, 'model_error', 'anyone there?', 'model down');
ok $r->{seconds} < 4, sprintf 'model down: 502 after %.2f s', $r->{seconds};

done_testing;
