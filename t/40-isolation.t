#!/usr/bin/perl
# t/40-isolation.t: users are walled off from each other, and hostile
# input is data. bob, with a valid token of his own, tries every endpoint
# and every tool on alice's conversations and tasks and gets what a
# nonexistent id gets, with alice's rows untouched; SQL text in every
# field either is refused (400, 401, 404) or comes back verbatim; no
# request is a 5xx and the tables survive; Idempotency-Keys are per user.
use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Stack;

# Test names quote the messages, some of them not ASCII.
binmode Test::More->builder->$_, ':encoding(UTF-8)'
    for qw(output failure_output todo_output);

my $s = Stack->new(workers => 2);
my $alice = $s->token('alice');
my $bob = $s->token('bob');

my @answers;	# [request, status] of every request, for the 5xx check

sub call {
	my ($what, $method, $path, %o) = @_;
	my $r = $s->request($method, $path, %o);
	push @answers, [ "$method $path ($what)", $r->{status} ];
	return $r;
}

# A turn: body { message, conversation_id } unless o{body} gives it raw.
sub chat {
	my ($token, $message, $conversation_id, %o) = @_;
	my %body = (message => $message);
	$body{conversation_id} = $conversation_id if defined $conversation_id;
	return call($o{what} // $message, POST => $o{path} // '/chat',
	    token => $token, body => $o{body} // \%body,
	    headers => $o{headers} // {});
}

# A turn that must succeed; returns its reply.
sub ok_chat {
	my ($token, $message, $conversation_id, %o) = @_;
	my $r = chat($token, $message, $conversation_id, %o);
	is $r->{status}, 200, "'$message': 200" or diag $r->{body};
	return $r->{json} // {};
}

# The first tool's result, {} when there is none; listed(): the list a
# list_tasks result holds, [] when it is not one.
sub first_result { $_[0]{tool_calls}[0]{result} // {} }
sub listed {
	my $result = first_result($_[0]);
	return ref $result eq 'ARRAY' ? $result : [];
}

# ----------------------------------------------------------- alice's
my $r = ok_chat($alice, 'Add a task to buy milk');
my $a1 = $r->{conversation_id};
my $milk = first_result($r)->{task_id};
my $plumber = first_result(ok_chat($alice, 'Add a task to call the plumber',
    $a1))->{task_id};
$r = ok_chat($alice, 'Add a task to pay the rent');
my $a2 = $r->{conversation_id};
my $rent = first_result($r)->{task_id};
ok_chat($alice, "Mark task $rent as complete", $a2);
my @alice_tasks = ($milk, $plumber, $rent);
ok +(grep { /\A\d+\z/ } @alice_tasks) == 3, "alice's three task ids"
    or BAIL_OUT('alice has no tasks');

# ------------------------------------------------------------- bob's
$r = ok_chat($bob, 'Add a task to walk the dog');
my $b1 = $r->{conversation_id};
my $dog = first_result($r)->{task_id};

# Everything of alice's, as rows: tasks, conversations, the messages of
# her conversations (whoever wrote them) and her turns.
sub alice_state {
	return $s->sql(q{
	    SELECT 'task', id, title || '|' || description || '|' ||
		completed || '|' || updated_at FROM tasks
		WHERE user_id = 'alice'
	    UNION ALL
	    SELECT 'conversation', id, title || '|' || updated_at
		FROM conversations WHERE user_id = 'alice'
	    UNION ALL
	    SELECT 'messages', conversation_id, count(*) || '|' || max(id)
		|| '|' || string_agg(DISTINCT user_id, ',')
		FROM messages WHERE conversation_id IN
		(SELECT id FROM conversations WHERE user_id = 'alice')
		GROUP BY conversation_id
	    UNION ALL
	    SELECT 'turn', 0, idempotency_key || '|' || conversation_id
		FROM turns WHERE user_id = 'alice'
	    ORDER BY 1, 2, 3});
}
my $alice_before = alice_state();
my $bob_conversations = sub { $s->sql_value(q{SELECT count(*)
    FROM conversations WHERE user_id = 'bob'}) };
# Numbers, not strings, when they go into a JSON body.
my $nowhere = 0 + $s->sql_value('SELECT max(id) + 1000 FROM conversations');
my $last_message = 0 + $s->sql_value('SELECT max(id) + 1 FROM messages');

# ------------------------------- 1. bob on alice's conversations: 404
# Each is asked for alice's conversation and for one that does not
# exist: status and body must be the same, so nothing tells them apart.
my $n = 0;
my @probes = (
 [ 'GET messages', sub { call('bob', GET =>
   "/chat/conversations/$_[0]/messages", token => $bob) } ],
 [ 'GET messages, a page', sub { call('bob', GET =>
   "/chat/conversations/$_[0]/messages?limit=1&before=$last_message",
   token => $bob) } ],
 [ 'DELETE', sub { call('bob', DELETE => "/chat/conversations/$_[0]",
   token => $bob) } ],
 [ 'POST /chat', sub { chat($bob, 'bob was here ' . ++$n, $_[0]) } ],
 [ 'POST /api/bob/chat', sub { chat($bob, 'bob was here ' . ++$n, $_[0],
   path => '/api/bob/chat') } ],
 [ 'POST /chat with an Idempotency-Key', sub { chat($bob,
   'bob was here ' . ++$n, $_[0],
   headers => { 'Idempotency-Key' => "bob-key-$n" }) } ],
 [ 'POST /chat, the id written as N.0', sub { $n++; chat($bob, 'N.0',
   undef, body => '{"message":"bob was here ' . $n
   . '","conversation_id":' . $_[0] . '.0}') } ],
);
my $bob_before = $bob_conversations->();
for my $p (@probes) {
	my ($what, $send) = @$p;
	for my $conv ($a1, $a2) {
		my $theirs = $send->($conv);
		my $none = $send->($nowhere);
		is $theirs->{status}, 404, "bob, $what on alice's "
		    . "conversation: 404" or diag $theirs->{body};
		is $theirs->{json}{error}{code}, 'conversation_not_found',
		    "bob, $what: conversation_not_found";
		is $theirs->{body}, $none->{body},
		    "bob, $what: the same body as for no conversation";
	}
}
is $s->sql_value(q{SELECT count(*) FROM messages
    WHERE content LIKE 'bob was here%'}), 0,
    "none of bob's messages was stored";
is $bob_conversations->(), $bob_before,
    'and no conversation was made for them';

# --------------------------------- 2. bob's list shows none of hers
# Whatever he adds to the query or the headers to name alice.
my %alice_conv = map { $_->[0] => 1 } @{ $s->sql(q{SELECT id
    FROM conversations WHERE user_id = 'alice'}) };
my $bobs = join ',', map { $_->[0] } @{ $s->sql(q{SELECT id
    FROM conversations WHERE user_id = 'bob' ORDER BY id DESC}) };
for my $ask (
 # what, path, headers, the ids bob must see
 [ 'plain', '/chat/conversations?limit=100', {}, $bobs ],
 [ 'user_id=alice in the query',
   '/chat/conversations?limit=100&user_id=alice', {}, $bobs ],
 [ "user_id=' OR '1'='1 in the query",
   "/chat/conversations?limit=100&user_id='%20OR%20'1'%3D'1", {}, $bobs ],
 [ 'X-User-Id, Remote-User and X-Forwarded-User: alice',
   '/chat/conversations?limit=100', { 'X-User-Id' => 'alice',
   'Remote-User' => 'alice', 'X-Forwarded-User' => 'alice' }, $bobs ],
 # A cursor that is not his reads as the end: it tells him nothing.
 [ "before = a conversation of alice's",
   "/chat/conversations?limit=100&before=$a2", {}, '' ],
 [ 'before = no conversation',
   "/chat/conversations?limit=100&before=$nowhere", {}, '' ],
    ) {
	my ($what, $path, $headers, $expected) = @$ask;
	my $r = call('bob', GET => $path, token => $bob, headers => $headers);
	is $r->{status}, 200, "bob lists, $what: 200" or diag $r->{body};
	my @ids = map { $_->{id} } @{ $r->{json}{conversations} // [] };
	is join(',', @ids), $expected, "bob lists, $what: "
	    . ($expected eq '' ? 'nothing' : 'his own only');
	is scalar(grep { $alice_conv{$_} } @ids), 0,
	    "bob lists, $what: none of alice's";
}

# ------------------------ 3. bob's tools on alice's task ids, offline
my $alice_titles = qr/Buy milk|Call the plumber|Pay the rent/i;
for my $c (
 [ "Mark task $milk as complete", 'complete_task', $milk ],
 [ "Delete task $plumber", 'delete_task', $plumber ],
 [ "Delete task $rent", 'delete_task', $rent ],
 [ "Change task $milk to 'x'", 'update_task', $milk ],
 [ "Change task $plumber description to 'stolen'", 'update_task',
   $plumber ],
 [ "Mark task $milk as complete", 'complete_task', $milk, 'again' ],
    ) {
	my ($message, $tool, $id, $again) = @$c;
	my $r = ok_chat($bob, $message, $again ? $b1 : undef);
	my $call = $r->{tool_calls}[0] // {};
	is $call->{name}, $tool, "bob '$message': $tool called";
	is $call->{arguments}{task_id}, $id, "bob '$message': on task $id";
	like $call->{result}{error} // '', qr/\Atask $id not found\z/,
	    "bob '$message': the tool says not found";
	unlike $r->{response}, $alice_titles,
	    "bob '$message': the answer names none of alice's tasks";
}
for my $message ('Show me all my tasks', "What's pending?",
    'What have I completed?', 'Delete the milk task',
    'Mark the plumber task as done') {
	my $r = ok_chat($bob, $message);
	my @seen = map { ref $_->{result} eq 'ARRAY' ? @{ $_->{result} } : () }
	    @{ $r->{tool_calls} };
	my @ids = map { $_->{id} } @seen;
	is scalar(grep { my $id = $_; grep { $_ == $id } @alice_tasks } @ids),
	    0, "bob '$message': no task of alice's listed";
	is scalar(grep { $_->{name} =~ /\A(?:complete|delete|update)_task\z/
	    } @{ $r->{tool_calls} }), 0,
	    "bob '$message': nothing of alice's to act on";
	unlike $r->{response}, $alice_titles,
	    "bob '$message': the answer names none of alice's tasks";
}
my $list = listed(ok_chat($bob, 'Show me all my tasks'));
is_deeply [ map { $_->{id} } @$list ], [ $dog ],
    "bob's list is his one task";

# ----------------------- 4. hostile text in every field of bob's requests
# SQL as messages: the offline model reads "DROP" and "DELETE" as asking
# to delete a task, so these also aim the tools at task 1, alice's.
my @sql = (
 q{Robert'); DROP TABLE tasks;--},
 q{' OR '1'='1},
 qq{1; DELETE FROM messages WHERE '1'='1},
 q{"; DROP TABLE conversations; --},
 q{'; TRUNCATE turns; --},
 q{O'Brien\'s $1 $$ %s %n \x00 \\\\},
 q{Ünïcödé ✓ 🎉 '; DROP TABLE turns;--},
 qq{alice' OR user_id <> 'alice},
);
for my $text (@sql) {
	my $r = chat($bob, $text);
	is $r->{status}, 200, "bob sends SQL as a message: 200"
	    or diag $r->{body};
	my $conv = $r->{json}{conversation_id} // 0;
	is $s->sql_value(q{SELECT content FROM messages WHERE conversation_id
	    = $1 AND role = 'user'}, $conv), $text, '...stored verbatim';
	is $s->sql_value(q{SELECT title FROM conversations WHERE id = $1},
	    $conv), $text, '...and the conversation titled with it verbatim';
}
# Refused where a number or a key is expected; never a 5xx.
my @refused = (
 # what, method, path, body (raw), status, code
 [ 'conversation_id "1 OR 1=1"', POST => '/chat',
   '{"message":"hi","conversation_id":"1 OR 1=1"}', 400,
   'invalid_conversation_id' ],
 [ "conversation_id \"$a1 OR 1=1\"", POST => '/chat',
   qq({"message":"hi","conversation_id":"$a1 OR 1=1"}), 400,
   'invalid_conversation_id' ],
 [ "conversation_id \"$a1\" as a string", POST => '/chat',
   qq({"message":"hi","conversation_id":"$a1"}), 400,
   'invalid_conversation_id' ],
 [ 'conversation_id "1; DROP TABLE messages"', POST => '/chat',
   '{"message":"hi","conversation_id":"1; DROP TABLE messages"}', 400,
   'invalid_conversation_id' ],
 [ 'conversation_id 1e308', POST => '/chat',
   '{"message":"hi","conversation_id":1e308}', 400,
   'invalid_conversation_id' ],
 [ 'conversation_id 2^53 - 1', POST => '/chat',
   '{"message":"hi","conversation_id":9007199254740991}', 404,
   'conversation_not_found' ],
 [ 'limit "1 OR 1=1"', GET => '/chat/conversations?limit=1%20OR%201%3D1',
   undef, 400, 'invalid_limit' ],
 [ 'before "1;DROP TABLE tasks"',
   GET => '/chat/conversations?before=1%3BDROP%20TABLE%20tasks', undef,
   400, 'invalid_before' ],
 [ "before \"$nowhere' OR '1'='1\"",
   GET => "/chat/conversations?before=$nowhere'%20OR%20'1'%3D'1", undef,
   400, 'invalid_before' ],
 [ 'messages limit "5 OR 1=1"',
   GET => "/chat/conversations/$b1/messages?limit=5%20OR%201%3D1", undef,
   400, 'invalid_limit' ],
 [ "messages before \"1) OR (1=1\"",
   GET => "/chat/conversations/$b1/messages?before=1)%20OR%20(1%3D1",
   undef, 400, 'invalid_before' ],
);
# Path ids, some starting with a real conversation id of alice's or
# bob's own: none is that conversation. (An encoded '/' matches no route
# at all: not_found.)
for my $id ('1%20OR%201=1', "$a1%20OR%201=1", "$b1%20OR%201=1",
    "$a1;DROP%20TABLE%20messages", "$b1'--", "$b1%27--",
    "$b1.0", "0x$b1", "${b1}e0", "-$b1", "+$b1", "0$b1", '0',
    '99999999999999999999', "$b1%2F..%2F$a1") {
	my $code = $id =~ /%2F/ ? 'not_found' : 'conversation_not_found';
	push @refused,
	    [ "GET messages of path id $id", GET =>
	      "/chat/conversations/$id/messages", undef, 404, $code ],
	    [ "DELETE path id $id", DELETE => "/chat/conversations/$id",
	      undef, 404, $code ];
}
for my $c (@refused) {
	my ($what, $method, $path, $body, $status, $code) = @$c;
	my $r = call('bob', $method, $path, token => $bob,
	    defined $body ? (body => $body) : ());
	is $r->{status}, $status, "bob, $what: $status" or diag $r->{body};
	is $r->{json}{error}{code}, $code, "bob, $what: $code";
}
is $s->sql_value('SELECT count(*) FROM conversations WHERE id = $1', $b1), 1,
    'the DELETEs of path ids starting with his id left his conversation';

# Paths nginx itself refuses (a NUL, raw spaces in the request line): a
# 4xx, and the worker, reached directly, finds no conversation either.
# The request line goes out byte for byte: an HTTP client library may
# refuse to send it at all, and its refusal is not nginx's answer.
for my $path ("/chat/conversations/$b1%00/messages",
    "/chat/conversations/$b1 OR 1=1/messages") {
	(my $shown = $path) =~ s/ /<SP>/g;
	my $r = $s->raw("GET $path HTTP/1.1\r\nHost: 127.0.0.1\r\n"
	    . "Authorization: Bearer $bob\r\nConnection: close\r\n\r\n");
	push @answers, [ "GET $path (bob)", $r->{status} ];
	ok $r->{status} >= 400 && $r->{status} < 500,
	    "bob, GET $shown: refused with a 4xx ($r->{status})";
	like $r->{headers}{'content-type'} // '', qr{\Aapplication/json},
	    "bob, GET $shown: JSON";
	ok $r->{json} && $r->{json}{error}{code},
	    "bob, GET $shown: an error code";
	$r = $s->fcgi(GET => $path, token => $bob);
	is $r->{status}, 404, "bob, GET $shown straight over FastCGI: 404";
}

# A key that is SQL: a key like any other.
my $evil_key = q{k' OR '1'='1'; DROP TABLE turns;--};
my $k1 = chat($bob, 'Add a task to feed the cat', undef,
    headers => { 'Idempotency-Key' => $evil_key });
is $k1->{status}, 200, 'bob, an Idempotency-Key that is SQL: 200'
    or diag $k1->{body};
is $s->sql_value(q{SELECT user_id FROM turns WHERE idempotency_key = $1},
    $evil_key), 'bob', '...stored verbatim as his';
my $k2 = chat($bob, 'Add a task to feed the cat', undef,
    headers => { 'Idempotency-Key' => $evil_key });
is_deeply $k2->{json}, $k1->{json}, '...and the replay is the first answer';

is_deeply alice_state(), $alice_before,
    "after all of bob's attempts, alice's rows are as they were";

# alice still has all of it.
$list = listed(ok_chat($alice, 'Show me all my tasks', $a1));
is_deeply [ map { $_->{id} } @$list ], \@alice_tasks,
    'alice still lists her three tasks';
is_deeply [ map { $_->{completed} ? 1 : 0 } @$list ], [ 0, 0, 1 ],
    'with only the rent paid';

# -------------------------- 5. alice's hostile text is her data, verbatim
for my $title (q{Robert'); DROP TABLE tasks;--},
    q{1; DROP TABLE conversations}, q{"; DELETE FROM messages; --},
    q{O'Brien\'s $1 $$ %s %n \x00}, q{Ünïcödé ✓ 🎉 '; DROP TABLE turns;--},
    q{' OR '1'='1}) {
	my $r = ok_chat($alice, "Add a task to $title", $a1);
	my $result = first_result($r);
	is $r->{tool_calls}[0]{arguments}{title}, $title,
	    'add_task gets the title verbatim';
	is $result->{title}, $title, '...the result has it verbatim';
	is $s->sql_value('SELECT title FROM tasks WHERE id = $1 AND
	    user_id = $2', $result->{task_id} // 0, 'alice'), $title,
	    '...and so does the row';
	push @alice_tasks, $result->{task_id};
}
$list = listed(ok_chat($alice, 'Show me all my tasks', $a1));
is_deeply [ map { $_->{id} } @$list ], \@alice_tasks,
    'alice lists every task, the SQL ones included';
is $list->[3]{title}, q{Robert'); DROP TABLE tasks;--},
    "and Robert'); DROP TABLE tasks;-- comes back verbatim";
my $description = q{'); UPDATE tasks SET user_id = 'bob';--};
$r = ok_chat($alice, "Change task $milk description to $description", $a1);
is $r->{tool_calls}[0]{result}{status}, 'updated', 'description updated';
is $s->sql_value('SELECT description FROM tasks WHERE id = $1', $milk),
    $description, 'the description is stored verbatim';
is $s->sql_value(q{SELECT count(*) FROM tasks WHERE user_id = 'alice'}),
    scalar @alice_tasks, 'and every task of hers is still hers';

# ---------------------------------- 6. Idempotency-Keys are per user
my $same = 'shared-key-1';
my $ra = chat($alice, 'Add a task to water the plants', undef,
    headers => { 'Idempotency-Key' => $same });
my $rb = chat($bob, 'Add a task to water the plants', undef,
    headers => { 'Idempotency-Key' => $same });
is $ra->{status}, 200, "alice's turn under $same: 200";
is $rb->{status}, 200, "bob's turn under the same key: 200, not a replay"
    or diag $rb->{body};
isnt $rb->{json}{conversation_id}, $ra->{json}{conversation_id},
    '...with a conversation of his own';
is $s->sql_value('SELECT user_id FROM conversations WHERE id = $1',
    $rb->{json}{conversation_id}), 'bob', '...which is his';
isnt first_result($rb->{json})->{task_id},
    first_result($ra->{json})->{task_id}, '...and a task of his own';
is $s->sql_value(q{SELECT count(*) FROM tasks WHERE title =
    'Water the plants' AND user_id IN ('alice', 'bob')}), 2,
    'both have the task';
is_deeply $s->sql(q{SELECT user_id, conversation_id FROM turns
    WHERE idempotency_key = $1 ORDER BY user_id}, $same),
    [ [ 'alice', $ra->{json}{conversation_id} ],
      [ 'bob', $rb->{json}{conversation_id} ] ], 'two turns, one each';
my $ra2 = chat($alice, 'Add a task to water the plants', undef,
    headers => { 'Idempotency-Key' => $same });
my $rb2 = chat($bob, 'Add a task to water the plants', undef,
    headers => { 'Idempotency-Key' => $same });
is_deeply $ra2->{json}, $ra->{json}, "alice's replay: her first answer";
is_deeply $rb2->{json}, $rb->{json}, "bob's replay: his first answer";
# Another request under a key of alice's is no conflict for bob.
$ra = chat($alice, 'Add a task to fix the fence', undef,
    headers => { 'Idempotency-Key' => 'shared-key-2' });
$rb = chat($bob, 'Add a task to paint the shed', undef,
    headers => { 'Idempotency-Key' => 'shared-key-2' });
is $rb->{status}, 200, "bob's other message under alice's key: 200, not 409"
    or diag $rb->{body};
is first_result($rb->{json})->{title}, 'Paint the shed', '...his own turn';
# Replaying alice's exact request under her key, as bob, is his own
# request on her conversation: 404, not her stored answer.
$ra = chat($alice, 'Add a task to clean the gutters', $a1,
    headers => { 'Idempotency-Key' => 'alice-only' });
is $ra->{status}, 200, "alice's turn under alice-only: 200";
$rb = chat($bob, 'Add a task to clean the gutters', $a1,
    headers => { 'Idempotency-Key' => 'alice-only' });
is $rb->{status}, 404, "bob replaying it with her key: 404"
    or diag $rb->{body};
unlike $rb->{body}, qr/gutters/i, '...with nothing of her answer';
is $s->sql_value(q{SELECT count(*) FROM tasks
    WHERE title = 'Clean the gutters'}), 1, '...and no second task';

# ------------------------------- 7. a sub that is SQL, correctly signed
for my $sub (q{alice' OR '1'='1}, q{alice'--}, q{alice;DROP TABLE tasks},
    q{*}, q{alice" OR ""="}, q{%}, q{alice') OR ('a'='a}) {
	my $token = $s->token($sub);
	for my $req ([ GET => '/chat/conversations' ],
	    [ POST => '/chat', { message => 'Show me all my tasks' } ],
	    [ GET => "/chat/conversations/$a1/messages" ]) {
		my ($method, $path, $body) = @$req;
		my $r = call("sub $sub", $method, $path, token => $token,
		    defined $body ? (body => $body) : ());
		is $r->{status}, 401, "sub $sub, $method $path: 401"
		    or diag $r->{body};
		is $r->{json}{error}{code}, 'invalid_token',
		    "sub $sub, $method $path: invalid_token";
	}
}

# ----------------------------------------- 8. nothing broke, nothing ran
is_deeply [ map { "$_->[0]: $_->[1]" } grep { $_->[1] >= 500 } @answers ],
    [], 'no request got a 5xx (' . scalar(@answers) . ' requests)';
is $s->sql_value(q{SELECT count(*) FROM information_schema.tables
    WHERE table_schema = 'public' AND table_name IN
    ('tasks', 'conversations', 'messages', 'turns')}), 4,
    'all four tables are still there';
is $s->sql_value(q{SELECT count(*) FROM tasks WHERE user_id = 'alice'}),
    @alice_tasks + 3, "alice's tasks are all there";
is $s->sql_value(q{SELECT count(*) FROM tasks
    WHERE user_id NOT IN ('alice', 'bob')}), 0,
    'no task belongs to anyone else';
is $s->sql_value(q{SELECT count(*) FROM messages m JOIN conversations c
    ON c.id = m.conversation_id WHERE m.user_id <> c.user_id}), 0,
    "no message sits in another user's conversation";
my $r_health = call('health', GET => '/chat/health');
is $r_health->{status}, 200, 'and the service is healthy';

done_testing;
