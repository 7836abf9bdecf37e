#!/usr/bin/perl
# t/62-mcp.t: POST /mcp and the resource metadata, through nginx, as
# plain HTTP: every JSON-RPC error, the transport's header rules, the
# bearer token and the Origin, each user's tasks apart, tool errors as
# results, batches only where the revision has them, the database gone.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use Stack;

my $issuer = 'https://auth.example.test';
my $audience = 'https://todo.example.test';
my $s = Stack->new(workers => 2, env => { CHAT_JWT_ISSUER => $issuer,
    CHAT_JWT_AUDIENCE => $audience, CHAT_MAX_BODY_BYTES => 4096 });
my $origin = 'http://127.0.0.1:' . $s->port;
my $meta_url = "$origin/.well-known/oauth-protected-resource";
my %tok = map { $_ => $s->token($_, iss => $issuer, aud => $audience) }
    qw(alice bob carol);

# One POST /mcp: a message (a reference, or a string sent as it is),
# headers; alice's token unless another (or none: undef) is given.
sub mcp {
	my ($body, %o) = @_;
	my %h = ('mcp-protocol-version' => '2025-11-25',
	    accept => 'application/json, text/event-stream',
	    %{ $o{headers} // {} });
	delete @h{ grep { !defined $h{$_} } keys %h };
	return $s->request(POST => '/mcp', body => $body, headers => \%h,
	    exists $o{token} ? (defined $o{token} ? (token => $o{token}) : ())
	    : (token => $tok{alice}));
}

sub call {
	my ($user, $name, $args, $id) = @_;
	return mcp({ jsonrpc => '2.0', id => $id // 1, method => 'tools/call',
	    params => { name => $name, arguments => $args } },
	    token => $tok{$user});
}

my $init = { jsonrpc => '2.0', id => 1, method => 'initialize', params => {
    protocolVersion => '2025-11-25', capabilities => {},
    clientInfo => { name => 't', version => '1' } } };

# JSON-RPC errors: body, then the HTTP status, the error code and the id
# that comes back (undef: null).
my @errors = (
	[ 'not JSON', '{"jsonrpc":', 400, -32700, undef ],
	[ 'invalid UTF-8', qq({"jsonrpc":"2.0","id":1,"method":"p\xffing"}),
	  400, -32700, undef ],
	[ 'bytes after the message',
	  '{"jsonrpc":"2.0","id":1,"method":"ping"}x',
	  400, -32700, undef ],
	[ 'an empty body', '', 400, -32700, undef ],
	[ 'not an object', '"ping"', 400, -32600, undef ],
	[ 'no jsonrpc member', { id => 7, method => 'ping' }, 400, -32600, 7 ],
	[ 'jsonrpc 1.0', { jsonrpc => '1.0', id => 7, method => 'ping' },
	  400, -32600, 7 ],
	[ 'a method that is no string', { jsonrpc => '2.0', id => 7,
	  method => 5 }, 400, -32600, 7 ],
	[ 'neither request nor response', { jsonrpc => '2.0', id => 7 }, 400,
	  -32600, 7 ],
	[ 'a null id', '{"jsonrpc":"2.0","id":null,"method":"ping"}', 400,
	  -32600, undef ],
	[ 'a fractional id', '{"jsonrpc":"2.0","id":1.5,"method":"ping"}', 400,
	  -32600, undef ],
	[ 'an id past 2^53', '{"jsonrpc":"2.0","id":9007199254740993,'
	  . '"method":"ping"}', 400, -32600, undef ],
	[ 'an id of 1e999', '{"jsonrpc":"2.0","id":1e999,"method":"ping"}',
	  400, -32600, undef ],
	[ 'an object id', '{"jsonrpc":"2.0","id":{},"method":"ping"}', 400,
	  -32600, undef ],
	[ 'params a string', { jsonrpc => '2.0', id => 7, method => 'ping',
	  params => 'x' }, 400, -32600, 7 ],
	[ '\u0000 in a string', '{"jsonrpc":"2.0","id":7,"method":"tools/call",'
	  . '"params":{"name":"add_task","arguments":{"title":"a\u0000b"}}}',
	  400, -32600, undef ],
	[ 'an unknown method', { jsonrpc => '2.0', id => 'r-1',
	  method => 'resources/list' }, 200, -32601, 'r-1' ],
	[ 'params an array', { jsonrpc => '2.0', id => 7, method => 'ping',
	  params => [] }, 200, -32602, 7 ],
	[ 'initialize without protocolVersion', { jsonrpc => '2.0', id => 7,
	  method => 'initialize', params => {} }, 200, -32602, 7 ],
	[ 'tools/call of an unknown tool', { jsonrpc => '2.0', id => 7,
	  method => 'tools/call', params => { name => 'drop_tables' } }, 200,
	  -32602, 7 ],
	[ 'tools/call without a name', { jsonrpc => '2.0', id => 7,
	  method => 'tools/call', params => { arguments => {} } }, 200,
	  -32602, 7 ],
	[ 'tools/call with arguments an array', { jsonrpc => '2.0', id => 7,
	  method => 'tools/call', params => { name => 'list_tasks',
	  arguments => [] } }, 200, -32602, 7 ],
	[ 'a batch in 2025-11-25', [ { jsonrpc => '2.0', id => 1,
	  method => 'ping' } ], 400, -32600, undef ],
);
for my $e (@errors) {
	my ($name, $body, $status, $code, $id) = @$e;
	my $r = mcp($body);
	is $r->{status}, $status, "$name: $status" or diag $r->{body};
	is $r->{json}{jsonrpc}, '2.0', "$name: a JSON-RPC response";
	is $r->{json}{error}{code}, $code, "$name: error $code";
	is $r->{json}{id}, $id, "$name: id " . ($id // 'null');
	ok !exists $r->{json}{result}, "$name: no result";
}

# What needs no answer: 202 and no body.
for my $c ([ 'notifications/initialized', { jsonrpc => '2.0',
    method => 'notifications/initialized' } ],
    [ 'an unknown notification', { jsonrpc => '2.0', method => 'x/y',
    params => { a => 1 } } ],
    [ 'a response from the client', { jsonrpc => '2.0', id => 3,
    result => {} } ],
    [ 'an error response from the client', { jsonrpc => '2.0', id => 3,
    error => { code => -1, message => 'no' } } ]) {
	my $r = mcp($c->[1]);
	is $r->{status}, 202, "$c->[0]: 202";
	is $r->{body}, '', "$c->[0]: no body";
}

# The handshake and the rest of the lifecycle.
my $r = mcp($init, headers => { 'mcp-protocol-version' => undef });
is $r->{status}, 200, 'initialize: 200';
is $r->{headers}{'content-type'}, 'application/json', 'as application/json';
ok !exists $r->{headers}{'mcp-session-id'}, 'no session: stateless';
is $r->{json}{result}{protocolVersion}, '2025-11-25', 'the client\'s revision';
is $r->{json}{result}{serverInfo}{name}, 'todo-chat', 'serverInfo';
is_deeply $r->{json}{result}{capabilities}, { tools => { listChanged =>
    JSON::PP::false } }, 'capabilities: tools only';
for my $v ([ '2025-06-18', '2025-06-18' ], [ '2025-03-26', '2025-03-26' ],
    [ '2024-11-05', '2025-11-25' ], [ '2099-01-01', '2025-11-25' ]) {
	local $init->{params}{protocolVersion} = $v->[0];
	$r = mcp($init, headers => { 'mcp-protocol-version' => undef });
	is $r->{json}{result}{protocolVersion}, $v->[1],
	    "initialize asking $v->[0]: $v->[1]";
}
$r = mcp({ jsonrpc => '2.0', id => 'p', method => 'ping' });
is_deeply [ $r->{status}, $r->{json} ], [ 200, { jsonrpc => '2.0',
    id => 'p', result => {} } ], 'ping: {}';

# The transport's headers.
for my $c ([ 'MCP-Protocol-Version 2099-01-01', { 'mcp-protocol-version' =>
    '2099-01-01' }, 400, -32022 ],
    [ 'MCP-Protocol-Version 2024-11-05', { 'mcp-protocol-version' =>
    '2024-11-05' }, 400, -32022 ],
    [ 'MCP-Protocol-Version 2025-06-18', { 'mcp-protocol-version' =>
    '2025-06-18' }, 200 ],
    [ 'no MCP-Protocol-Version (2025-03-26)', { 'mcp-protocol-version' =>
    undef }, 200 ],
    [ 'Accept: text/html', { accept => 'text/html' }, 406 ],
    [ 'Accept: text/event-stream alone', { accept => 'text/event-stream' },
    406 ],
    [ 'Accept: application/json', { accept => 'application/json' }, 200 ],
    [ 'Accept: */*', { accept => '*/*' }, 200 ],
    [ 'no Accept', { accept => undef }, 200 ],
    [ 'Content-Type: text/plain', { 'content-type' => 'text/plain' }, 415 ],
    [ 'Content-Type with a charset', { 'content-type' =>
    'application/json; charset=utf-8' }, 200 ]) {
	$r = mcp({ jsonrpc => '2.0', id => 1, method => 'ping' },
	    headers => $c->[1]);
	is $r->{status}, $c->[2], "$c->[0]: $c->[2]" or diag $r->{body};
	is $r->{json}{error}{code}, $c->[3] // -32600,
	    "$c->[0]: a JSON-RPC error" if $c->[2] != 200;
}
$r = mcp({ jsonrpc => '2.0', id => 'v', method => 'ping' },
    headers => { 'mcp-protocol-version' => '2099-01-01' });
is_deeply [ $r->{json}{id}, $r->{json}{error}{data} ], [ 'v',
    { supported => [ qw(2026-07-28 2025-11-25 2025-06-18 2025-03-26) ],
    requested => '2099-01-01' } ],
    'an unsupported version: the request\'s id, what we speak, what it asked';

# The stateless revision: no handshake, _meta in every request, the
# method and the tool in headers too.
my $meta = { 'io.modelcontextprotocol/protocolVersion' => '2026-07-28',
    'io.modelcontextprotocol/clientCapabilities' => {} };
sub stateless {
	my ($method, $params, %h) = @_;
	return mcp({ jsonrpc => '2.0', id => 9, method => $method,
	    params => { _meta => $meta, %$params } }, token => $tok{carol},
	    headers => { 'mcp-protocol-version' => '2026-07-28',
	    'mcp-method' => $method, %h });
}
$r = stateless('server/discover', {});
is $r->{status}, 200, '2026-07-28: server/discover';
is_deeply [ @{ $r->{json}{result} }{qw(supportedVersions capabilities
    resultType)} ], [ [ qw(2026-07-28 2025-11-25 2025-06-18 2025-03-26) ],
    { tools => { listChanged => JSON::PP::false } }, 'complete' ],
    '2026-07-28: what we speak and offer';
is $r->{json}{result}{_meta}{'io.modelcontextprotocol/serverInfo'}{name},
    'todo-chat', '2026-07-28: who answered, in _meta';
$r = stateless('tools/call', { name => 'add_task',
    arguments => { title => 'Stateless' } }, 'mcp-name' => 'add_task');
is $r->{json}{result}{structuredContent}{title}, 'Stateless',
    '2026-07-28: tools/call runs the tool';
is $s->sql_value("SELECT user_id FROM tasks WHERE title = 'Stateless'"),
    'carol', '2026-07-28: for the token\'s user';
for my $c ([ 'ping is gone', sub { stateless('ping', {}) }, 404, -32601 ],
    [ 'initialize is gone', sub { stateless('initialize',
      $init->{params}) }, 404, -32601 ],
    [ 'an unknown method', sub { stateless('resources/list', {}) }, 404,
      -32601 ],
    [ 'Mcp-Method of another method', sub { stateless('tools/list', {},
      'mcp-method' => 'tools/call') }, 400, -32020 ],
    [ 'Mcp-Name of another tool', sub { stateless('tools/call',
      { name => 'list_tasks' }, 'mcp-name' => 'delete_task') }, 400,
      -32020 ],
    [ 'no _meta', sub { mcp({ jsonrpc => '2.0', id => 9,
      method => 'tools/list' }, headers => { 'mcp-protocol-version' =>
      '2026-07-28', 'mcp-method' => 'tools/list' }) }, 400, -32602 ]) {
	$r = $c->[1]->();
	is_deeply [ $r->{status}, $r->{json}{error}{code}, $r->{json}{id} ],
	    [ @$c[2, 3], 9 ], "2026-07-28: $c->[0]: $c->[2], $c->[3], the id";
}

# Batches: only in 2025-03-26 (no MCP-Protocol-Version, or that one).
my $v0326 = { 'mcp-protocol-version' => undef };
$r = mcp([ { jsonrpc => '2.0', id => 1, method => 'ping' },
    { jsonrpc => '2.0', method => 'notifications/initialized' },
    { jsonrpc => '2.0', id => 2, method => 'tools/call',
      params => { name => 'list_tasks' } },
    { jsonrpc => '2.0', id => 3, method => 'nope' },
    { jsonrpc => '2.0', id => 4, method => 'initialize',
      params => $init->{params} } ], headers => $v0326);
is $r->{status}, 200, 'a 2025-03-26 batch: 200';
is_deeply [ map { $_->{id} } @{ $r->{json} // [] } ], [ 1, 2, 3, 4 ],
    'a response a request, in order; none for the notification';
is_deeply [ map { $_->{error}{code} // 'ok' } @{ $r->{json} // [] } ],
    [ 'ok', 'ok', -32601, -32600 ],
    'each answered alone; initialize refused inside a batch';
$r = mcp([ { jsonrpc => '2.0', method => 'notifications/initialized' } ],
    headers => { 'mcp-protocol-version' => '2025-03-26' });
is_deeply [ $r->{status}, $r->{body} ], [ 202, '' ],
    'a batch of notifications: 202';
$r = mcp([], headers => $v0326);
is_deeply [ $r->{status}, $r->{json}{error}{code} ], [ 400, -32600 ],
    'an empty batch: invalid request';
$r = mcp([ map { { jsonrpc => '2.0', id => $_, method => 'ping' } }
    1 .. 33 ], headers => $v0326);
is_deeply [ $r->{status}, $r->{json}{error}{code} ], [ 400, -32600 ],
    'a batch of 33: invalid request';

# HTTP around it.
for my $m (qw(GET DELETE PUT)) {
	$r = $s->request($m => '/mcp', token => $tok{alice});
	is_deeply [ $r->{status}, $r->{headers}{allow} ], [ 405, 'POST' ],
	    "$m /mcp: 405, Allow: POST";
}
$r = mcp('{"jsonrpc":"2.0","id":1,"method":"ping","pad":"' . ('x' x 5000)
    . '"}');
is_deeply [ $r->{status}, $r->{json}{error}{code} ], [ 413,
    'body_too_large' ], 'a body over CHAT_MAX_BODY_BYTES: 413';

# Tokens: 401 naming the resource metadata, whatever is wrong.
my $bearer = qq{Bearer resource_metadata="$meta_url"};
for my $c ([ 'no token', undef ], [ 'a bad token', 'x.y.z' ],
    [ 'a token for another audience', $s->token('alice', iss => $issuer,
    aud => 'https://elsewhere.test') ],
    [ 'a token from another issuer', $s->token('alice',
    iss => 'https://other.test', aud => $audience) ],
    [ 'an expired token', $s->token('alice', iss => $issuer,
    aud => $audience, exp => time - 60) ]) {
	$r = mcp({ jsonrpc => '2.0', id => 1, method => 'ping' },
	    token => $c->[1]);
	is $r->{status}, 401, "$c->[0]: 401";
	is $r->{headers}{'www-authenticate'}, $bearer,
	    "$c->[0]: WWW-Authenticate names the metadata";
}
$r = $s->raw("POST /mcp HTTP/1.1\r\nHost: todo.example.test:8443\r\n"
    . "Content-Length: 0\r\nConnection: close\r\n\r\n");
is $r->{headers}{'www-authenticate'}, 'Bearer resource_metadata="'
    . 'http://todo.example.test:' . $s->port
    . '/.well-known/oauth-protected-resource"',
    'the origin: nginx\'s $host (no port) and SERVER_PORT';
$r = $s->fcgi(POST => '/mcp', params => { HTTPS => 'on',
    SERVER_PORT => 443, HTTP_HOST => 'todo.example.test' });
is $r->{headers}{'www-authenticate'}, 'Bearer resource_metadata="'
    . 'https://todo.example.test/.well-known/oauth-protected-resource"',
    'behind TLS on 443: https, no port';
$r = $s->fcgi(POST => '/mcp', params => { SERVER_PORT => 80,
    HTTP_HOST => 'a"b', SERVER_NAME => 'todo.example.test' });
is $r->{headers}{'www-authenticate'}, 'Bearer resource_metadata="'
    . 'http://todo.example.test/.well-known/oauth-protected-resource"',
    'a Host that is no host name: SERVER_NAME instead';

# The Origin of a browser's page.
for my $c ([ 'a foreign Origin', 'http://evil.example', 403 ],
    [ 'the same host on another port', 'http://127.0.0.1:1', 403 ],
    [ 'https for http', 'https://127.0.0.1:' . $s->port, 403 ],
    [ 'Origin null', 'null', 403 ],
    [ 'our own Origin', $origin, 200 ],
    [ 'our own Origin, in capitals', uc $origin, 200 ]) {
	$r = mcp({ jsonrpc => '2.0', id => 1, method => 'ping' },
	    headers => { origin => $c->[1] });
	is $r->{status}, $c->[2], "$c->[0]: $c->[2]";
}
$r = mcp({ jsonrpc => '2.0', id => 1, method => 'ping' }, token => undef,
    headers => { origin => 'http://evil.example' });
is $r->{status}, 403, 'a foreign Origin without a token: 403, not 401';
is $r->{json}{error}{code}, 'forbidden_origin', 'forbidden_origin';

# The RFC 9728 document.
for my $path ('/.well-known/oauth-protected-resource',
    '/.well-known/oauth-protected-resource/mcp') {
	$r = $s->request(GET => $path);
	is $r->{status}, 200, "GET $path: 200, no token needed";
	is_deeply $r->{json}, { resource => "$origin/mcp",
	    resource_name => 'todo-chat', authorization_servers => [ $issuer ],
	    bearer_methods_supported => [ 'header' ],
	    scopes_supported => [] }, "$path: the document";
	is $r->{headers}{'access-control-allow-origin'}, '*',
	    "$path: readable from any page";
}
$r = $s->request(POST => '/.well-known/oauth-protected-resource');
is $r->{status}, 405, 'POST to the document: 405';

# The tools: each user's own tasks; errors as results.
$r = call(alice => add_task => { title => 'Buy milk', user_id => 'bob' });
my $milk = $r->{json}{result}{structuredContent};
is $milk->{status}, 'created', 'alice adds a task (naming bob)';
is_deeply decode_json($r->{json}{result}{content}[0]{text}), $milk,
    'the text item holds the structuredContent';
is $s->sql_value('SELECT user_id FROM tasks WHERE id = $1',
    $milk->{task_id}), 'alice', 'stored as alice\'s: user_id is ignored';
for my $t ([ complete_task => { task_id => $milk->{task_id} } ],
    [ delete_task => { task_id => $milk->{task_id} } ],
    [ update_task => { task_id => $milk->{task_id}, title => 'Mine' } ],
    [ complete_task => { task_id => $milk->{task_id}, user_id => 'alice' } ]) {
	$r = call(bob => @$t);
	is_deeply [ $r->{status}, $r->{json}{result}{isError},
	    $r->{json}{result}{content}[0]{text} ], [ 200, JSON::PP::true,
	    "task $milk->{task_id} not found" ],
	    "bob's $t->[0] of alice's task: not found, as a tool error";
	ok !exists $r->{json}{result}{structuredContent},
	    "bob's $t->[0]: no structuredContent";
}
$r = call(bob => list_tasks => {});
is_deeply $r->{json}{result}{structuredContent}, { tasks => [] },
    'bob lists no task of alice\'s';
$r = call(alice => list_tasks => { status => 'pending' });
is_deeply [ map { $_->{title} } @{ $r->{json}{result}{structuredContent}
    {tasks} } ], [ 'Buy milk' ], 'alice\'s task is untouched';
is_deeply $s->sql('SELECT title, completed FROM tasks WHERE id = $1',
    $milk->{task_id}), [ [ 'Buy milk', 'f' ] ], 'in the table too';
for my $t ([ add_task => {}, 'missing required argument: title' ],
    [ add_task => { title => 'x' x 501 }, 'title must be valid text' ],
    [ add_task => { title => 5 }, 'title must be a string' ],
    [ list_tasks => { status => 'done' }, 'status must be' ],
    [ complete_task => { task_id => 'abc' }, 'positive integer' ],
    [ update_task => { task_id => $milk->{task_id} },
      'new title or description' ]) {
	$r = call(alice => @$t);
	is $r->{json}{result}{isError}, JSON::PP::true,
	    "$t->[0] with bad arguments: isError";
	like $r->{json}{result}{content}[0]{text}, qr/\Q$t->[2]\E/,
	    "$t->[0]: '$t->[2]'";
}
$r = mcp({ jsonrpc => '2.0', id => 1, method => 'tools/call',
    params => { name => 'list_tasks' } });
is ref $r->{json}{result}{structuredContent}{tasks}, 'ARRAY',
    'tools/call without arguments: as {}';
is $s->sql_value("SELECT count(*) FROM tasks WHERE user_id = 'alice'"), 1,
    'nothing refused was written';

# The database gone: a tool call is a JSON-RPC error and a 503; what
# needs no database still answers.
$s->stop_postgres;
$r = call(alice => list_tasks => {}, 9);
is $r->{status}, 503, 'the database down: tools/call 503';
is_deeply [ $r->{json}{id}, $r->{json}{error}{code} ], [ 9, -32603 ],
    'an internal error, with the id';
$r = mcp({ jsonrpc => '2.0', id => 1, method => 'tools/list' });
is $r->{status}, 200, 'tools/list needs no database';
$s->start_postgres;
$r = call(alice => list_tasks => {});
is $r->{status}, 200, 'back: 200';

unlike $s->log, qr/AddressSanitizer|runtime error/, 'workers clean';

# A tools/call counts as a turn against CHAT_USER_TURNS_PER_MINUTE,
# shared with the user's turns (Stack turns the limits off unless asked):
# with 5 a minute, 2 turns and 3 calls pass, the next call is a 429 with
# Retry-After, the API's error inside the JSON-RPC error, and the tool
# does not run.
$s->stop;
$s = Stack->new(workers => 2, env => { CHAT_USER_TURNS_PER_MINUTE => 5 });
$tok{dave} = $s->token('dave');
$tok{erin} = $s->token('erin');
is $s->request(POST => '/chat', token => $tok{dave},
    body => { message => 'Show me all my tasks' })->{status}, 200,
    "rate: dave's turn $_ passes" for 1 .. 2;
is call('dave', 'list_tasks', {}, $_)->{status}, 200,
    "rate: dave's tool call $_ passes" for 1 .. 3;
$r = call('dave', 'add_task', { title => 'one too many' }, 31);
is $r->{status}, 429, 'rate: the sixth in the minute is a 429';
like $r->{headers}{'retry-after'} // '', qr/\A[1-9][0-9]*\z/,
    'rate: ... with Retry-After in whole seconds';
ok +($r->{headers}{'retry-after'} // 99) <= 60, 'rate: ... within the minute';
is $r->{json}{id}, 31, 'rate: ... a JSON-RPC error for that request';
is $r->{json}{error}{code}, -32029, 'rate: ... code -32029';
is $r->{json}{error}{data}{error}{code}, 'rate_limited',
    'rate: ... the API\'s error in its data';
is $s->sql_value(q{SELECT count(*) FROM tasks WHERE user_id = 'dave'}), 0,
    'rate: ... and the tool did not run';
is $s->request(POST => '/chat', token => $tok{dave},
    body => { message => 'Show me all my tasks' })->{status}, 429,
    'rate: ... nor does a turn';
is call('erin', 'list_tasks', {}, 32)->{status}, 200,
    'rate: another user is not held back';

done_testing;
