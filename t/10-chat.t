#!/usr/bin/perl
# t/10-chat.t: chat turns with the built-in offline model through nginx:
# the specification's example commands, what each stores, conversations
# continued across turns, multi-round tool use, /api/{user_id}/chat and
# the same turn over plain FastCGI (cgi-fcgi).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Stack;

my $s = Stack->new(workers => 2);
my $alice = $s->token('alice');

sub chat {
	my ($message, $conversation_id, %o) = @_;
	my %body = (message => $message);
	$body{conversation_id} = $conversation_id if defined $conversation_id;
	my $r = $s->request(POST => $o{path} // '/chat',
	    token => $o{token} // $alice, body => \%body);
	is $r->{status}, 200, "'$message': 200" or diag $r->{body};
	like $r->{headers}{'content-type'}, qr{\Aapplication/json},
	    "'$message': JSON";
	return $r->{json};
}

sub names { [ map { $_->{name} } @{ $_[0]{tool_calls} } ] }

# 1. "Add a task to buy groceries": a new conversation, one tool call.
my $r = chat('Add a task to buy groceries');
my $conv = $r->{conversation_id};
ok $conv > 0, 'a new conversation id';
is_deeply names($r), ['add_task'], 'add_task called';
is $r->{tool_calls}[0]{arguments}{title}, 'Buy groceries', 'title argument';
my $add = $r->{tool_calls}[0]{result};
is $add->{status}, 'created', 'result status created';
is $add->{title}, 'Buy groceries', 'result title';
like $add->{task_id}, qr/\A\d+\z/, 'result task_id';
like $r->{response}, qr/Buy groceries/, 'the answer confirms the task';

is_deeply $s->sql('SELECT user_id, title, completed FROM tasks'),
    [ [ 'alice', 'Buy groceries', 'f' ] ], 'one task row for alice';
is_deeply $s->sql('SELECT user_id, title FROM conversations'),
    [ [ 'alice', 'Add a task to buy groceries' ] ],
    'conversation titled from the first message';
my $rows = $s->sql(q{SELECT role, content IS NOT NULL, tool_calls IS NOT NULL,
    tool_call_id IS NOT NULL, user_id FROM messages
    WHERE conversation_id = $1 ORDER BY id}, $conv);
is_deeply $rows, [
    [ 'user',      't', 'f', 'f', 'alice' ],
    [ 'assistant', 'f', 't', 'f', 'alice' ],
    [ 'tool',      't', 'f', 't', 'alice' ],
    [ 'assistant', 't', 'f', 'f', 'alice' ],
], 'stored: user message, tool call, tool result, answer';
my ($calls, $call_id, $result) = @{ $s->sql(q{SELECT a.tool_calls::text,
    t.tool_call_id, t.content FROM messages a JOIN messages t
    ON t.conversation_id = a.conversation_id AND t.role = 'tool'
    WHERE a.conversation_id = $1 AND a.tool_calls IS NOT NULL}, $conv)->[0] };
my $stored = JSON::PP->new->decode($calls);
is $stored->[0]{type}, 'function', 'tool_calls stored in OpenAI format';
is $stored->[0]{function}{name}, 'add_task', 'with the function name';
is ref(JSON::PP->new->decode($stored->[0]{function}{arguments})), "HASH",
    'and its arguments as a JSON string';
is $call_id, $stored->[0]{id}, 'the tool message names the call';
is +JSON::PP->new->decode($result)->{task_id}, $add->{task_id},
    'the tool message holds the result';

# 2. The other example commands, continuing the same conversation.
chat('I need to remember to pay bills', $conv);
chat('Add a task to prepare the meeting notes', $conv);
$r = chat('Show me all my tasks', $conv);
is $r->{conversation_id}, $conv, 'same conversation continued';
is_deeply names($r), ['list_tasks'], 'list_tasks called';
is_deeply [ map { $_->{title} } @{ $r->{tool_calls}[0]{result} } ],
    [ 'Buy groceries', 'Pay bills', 'Prepare the meeting notes' ],
    'all three tasks listed';

my $groceries = $add->{task_id};
$r = chat("Mark task $groceries as complete", $conv);
is_deeply names($r), ['complete_task'], 'complete_task called';
is $r->{tool_calls}[0]{result}{status}, 'completed', 'completed';
is $s->sql_value('SELECT completed FROM tasks WHERE id = $1', $groceries),
    't', 'the row is completed';

$r = chat("What's pending?", $conv);
is $r->{tool_calls}[0]{arguments}{status}, 'pending', 'pending filter';
is_deeply [ map { $_->{title} } @{ $r->{tool_calls}[0]{result} } ],
    [ 'Pay bills', 'Prepare the meeting notes' ], 'only pending ones';

$r = chat('What have I completed?', $conv);
is $r->{tool_calls}[0]{arguments}{status}, 'completed', 'completed filter';
is_deeply [ map { $_->{title} } @{ $r->{tool_calls}[0]{result} } ],
    [ 'Buy groceries' ], 'only the completed one';

my $bills = $s->sql_value(q{SELECT id FROM tasks WHERE title = 'Pay bills'});
$r = chat("Change task $bills to 'Call mom tonight'", $conv);
is_deeply names($r), ['update_task'], 'update_task called';
is $r->{tool_calls}[0]{result}{title}, 'Call mom tonight', 'new title';
is $s->sql_value('SELECT title FROM tasks WHERE id = $1', $bills),
    'Call mom tonight', 'the row is updated';

# 3. Two rounds in one turn: find the task by name, then delete it.
$r = chat('Delete the meeting task', $conv);
is_deeply names($r), [ 'list_tasks', 'delete_task' ],
    'list first, delete second';
is $r->{tool_calls}[1]{result}{status}, 'deleted', 'deleted';
is $r->{tool_calls}[1]{result}{title}, 'Prepare the meeting notes',
    'the meeting task';
is $s->sql_value(q{SELECT count(*) FROM tasks
    WHERE title LIKE '%meeting%'}), 0, 'its row is gone';
is $s->sql_value(q{SELECT count(*) FROM messages
    WHERE conversation_id = $1 AND role = 'assistant'
    AND tool_calls IS NOT NULL AND reply_to =
    (SELECT max(id) FROM messages WHERE conversation_id = $1
     AND role = 'user')}, $conv), 2, 'two tool rounds stored';

# 4. A missing task is the model's business, not an HTTP error.
$r = chat('Delete task 999999', $conv);
is $r->{tool_calls}[0]{result}{error}, 'task 999999 not found',
    'not found goes back to the model as a tool error';
like $r->{response}, qr/couldn't find|not found/i, 'and it says so';

# 5. Every tool message follows its assistant call (OpenAI's order).
my $order = $s->sql(q{SELECT role, tool_calls::text, tool_call_id
    FROM messages WHERE conversation_id = $1 ORDER BY id}, $conv);
my %open;
my $ok = 1;
for my $m (@$order) {
	if ($m->[0] eq 'tool') {
		$ok &&= delete $open{ $m->[2] };
	} else {
		$ok &&= !%open;
		%open = map { $_->{id} => 1 }
		    @{ JSON::PP->new->decode($m->[1]) } if defined $m->[1];
	}
}
ok $ok && !%open, 'every tool result directly answers its call';

# 6. /api/{user_id}/chat is the same endpoint, and a new conversation.
$r = chat('Show me all my tasks', undef, path => '/api/alice/chat');
isnt $r->{conversation_id}, $conv, 'no conversation_id: a new one';
is scalar @{ $r->{tool_calls}[0]{result} }, 2, 'same user, same tasks';
# The segment is percent-decoded, as clients that encode '@' and '+'
# (encodeURIComponent, most URL builders) send it.
my $carol = $s->token('carol+todo@example.com');
$r = chat('Add a task to check the encoding', undef, token => $carol,
    path => '/api/carol%2Btodo%40example.com/chat');
is $r->{tool_calls}[0]{result}{status}, 'created',
    'a user id with %2B and %40 in the path';
$r = chat('Show me all my tasks', undef, path => '/api/al%69ce/chat');
is scalar @{ $r->{tool_calls}[0]{result} }, 2, 'any byte may be encoded';
# An encoded '/', a bad escape, a NUL: no route. (nginx itself answers
# 400 to the last two, so the worker is asked directly.)
for my $bad ('/api/alice%2Fx/chat', '/api/%zz/chat', '/api/alice%00/chat') {
	my $e = $s->fcgi(POST => $bad, token => $alice,
	    body => { message => 'hi' });
	is $e->{status}, 404, "$bad: 404";
}
is $s->request(POST => '/api/carol%2Btodo%40example.com/chat',
    token => $alice, body => { message => 'hi' })->{status}, 403,
    "another user's id, encoded: still 403";

# 7. Plain FastCGI, as cgi-fcgi sends it, with no nginx in between.
$r = $s->fcgi(POST => '/chat', token => $alice,
    body => { message => 'add water the plants', conversation_id => $conv });
is $r->{status}, 200, 'cgi-fcgi: 200' or diag $r->{body};
is $r->{json}{tool_calls}[0]{result}{title}, 'Water the plants',
    'cgi-fcgi: the task is added';

# 8. Unknown text: an answer, no tool, still stored.
$r = chat('hello there', $conv);
is_deeply $r->{tool_calls}, [], 'no tool for small talk';
ok length $r->{response}, 'but an answer';

# 9. bob sees none of it.
$r = chat('Show me all my tasks', undef, token => $s->token('bob'));
is_deeply $r->{tool_calls}[0]{result}, [], "bob's list is empty";

done_testing;
