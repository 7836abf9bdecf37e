#!/usr/bin/perl
# t/20-errors.t: every client error of README's Errors table, as data: method,
# path, token, body and headers in; status, error code and headers out.
# Each is a JSON error, and none of them writes a row.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Stack;

my $s = Stack->new(workers => 2, env => { CHAT_MAX_BODY_BYTES => 40000 });
my $alice = $s->token('alice');
my $bob = $s->token('bob');

# A conversation of alice's, for the cases that name one.
my $r = $s->request(POST => '/chat', token => $alice,
    body => { message => 'hello' });
my $conv = $r->{json}{conversation_id} or BAIL_OUT('no conversation');

my $long = 'x' x 32001;
my $max = 'x' x 32000;
my $huge = '{"message":"' . ('y' x 50000) . '"}';

# token: 'alice', 'bob', 'none' (no header) or a literal header value.
my @cases = (
 # name, method, path, token, body, headers, status, code
 [ 'unknown path', 'GET', '/nope', 'alice', undef, {}, 404, 'not_found' ],
 [ 'unknown path under /chat', 'POST', '/chat/x', 'alice', '{}', {},
   404, 'not_found' ],
 [ 'trailing slash', 'POST', '/chat/', 'alice', '{}', {}, 404, 'not_found' ],
 [ 'GET /chat', 'GET', '/chat', 'alice', undef, {}, 405,
   'method_not_allowed', 'POST' ],
 [ 'PUT /chat/health', 'PUT', '/chat/health', 'alice', '{}', {}, 405,
   'method_not_allowed', 'GET' ],
 [ 'POST to a conversation', 'POST', "/chat/conversations/$conv", 'alice',
   '{}', {}, 405, 'method_not_allowed', 'DELETE' ],
 [ 'no token', 'POST', '/chat', 'none', '{"message":"hi"}', {}, 401,
   'missing_token' ],
 [ 'not a bearer', 'POST', '/chat', 'Basic YWxpY2U6eA==',
   '{"message":"hi"}', {}, 401, 'missing_token' ],
 [ 'garbage token', 'POST', '/chat', 'Bearer abc.def.ghi',
   '{"message":"hi"}', {}, 401, 'invalid_token' ],
 [ 'no token on browsing', 'GET', '/chat/conversations', 'none', undef, {},
   401, 'missing_token' ],
 [ 'another user in the path', 'POST', '/api/bob/chat', 'alice',
   '{"message":"hi"}', {}, 403, 'forbidden' ],
 [ 'empty body', 'POST', '/chat', 'alice', '', {}, 400, 'invalid_json' ],
 [ 'not JSON', 'POST', '/chat', 'alice', 'message=hi', {}, 400,
   'invalid_json' ],
 [ 'truncated JSON', 'POST', '/chat', 'alice', '{"message":"hi"', {}, 400,
   'invalid_json' ],
 [ 'trailing garbage', 'POST', '/chat', 'alice', '{"message":"hi"} x', {},
   400, 'invalid_json' ],
 [ 'JSON array', 'POST', '/chat', 'alice', '["hi"]', {}, 400,
   'invalid_json' ],
 [ 'JSON string', 'POST', '/chat', 'alice', '"hi"', {}, 400,
   'invalid_json' ],
 [ 'no message', 'POST', '/chat', 'alice', '{"text":"hi"}', {}, 400,
   'missing_message' ],
 [ 'message a number', 'POST', '/chat', 'alice', '{"message":5}', {}, 400,
   'invalid_message' ],
 [ 'message null', 'POST', '/chat', 'alice', '{"message":null}', {}, 400,
   'invalid_message' ],
 [ 'message an object', 'POST', '/chat', 'alice', '{"message":{}}', {},
   400, 'invalid_message' ],
 [ 'empty message', 'POST', '/chat', 'alice', '{"message":""}', {}, 400,
   'empty_message' ],
 [ 'blank message', 'POST', '/chat', 'alice', '{"message":" \n\t "}', {},
   400, 'empty_message' ],
 [ 'message over 32,000 bytes', 'POST', '/chat', 'alice',
   "{\"message\":\"$long\"}", {}, 400, 'message_too_long' ],
 [ 'invalid UTF-8', 'POST', '/chat', 'alice', "{\"message\":\"a\xff\"}", {},
   400, 'invalid_utf8' ],
 [ 'overlong UTF-8', 'POST', '/chat', 'alice',
   "{\"message\":\"\xc0\xaf\"}", {}, 400, 'invalid_utf8' ],
 [ 'NUL escape', 'POST', '/chat', 'alice', '{"message":"abc\u0000def"}', {},
   400, 'invalid_json' ],
 [ 'lone surrogate escape', 'POST', '/chat', 'alice',
   '{"message":"\ud800"}', {}, 400, 'invalid_json' ],
 [ 'conversation_id a string', 'POST', '/chat', 'alice',
   "{\"message\":\"hi\",\"conversation_id\":\"$conv\"}", {}, 400,
   'invalid_conversation_id' ],
 [ 'conversation_id fractional', 'POST', '/chat', 'alice',
   '{"message":"hi","conversation_id":1.5}', {}, 400,
   'invalid_conversation_id' ],
 [ 'conversation_id negative', 'POST', '/chat', 'alice',
   '{"message":"hi","conversation_id":-1}', {}, 400,
   'invalid_conversation_id' ],
 [ 'conversation_id zero', 'POST', '/chat', 'alice',
   '{"message":"hi","conversation_id":0}', {}, 400,
   'invalid_conversation_id' ],
 [ 'unknown conversation', 'POST', '/chat', 'alice',
   '{"message":"hi","conversation_id":987654}', {}, 404,
   'conversation_not_found' ],
 [ "bob on alice's conversation", 'POST', '/chat', 'bob',
   "{\"message\":\"hi\",\"conversation_id\":$conv}", {}, 404,
   'conversation_not_found' ],
 [ 'empty Idempotency-Key', 'POST', '/chat', 'alice', '{"message":"hi"}',
   { 'Idempotency-Key' => '' }, 400, 'invalid_idempotency_key' ],
 [ 'Idempotency-Key of 256 bytes', 'POST', '/chat', 'alice',
   '{"message":"hi"}', { 'Idempotency-Key' => 'k' x 256 }, 400,
   'invalid_idempotency_key' ],
 [ 'body over CHAT_MAX_BODY_BYTES', 'POST', '/chat', 'alice', $huge, {},
   413, 'body_too_large' ],
 [ 'limit 0', 'GET', '/chat/conversations?limit=0', 'alice', undef, {},
   400, 'invalid_limit' ],
 [ 'limit 101', 'GET', '/chat/conversations?limit=101', 'alice', undef,
   {}, 400, 'invalid_limit' ],
 [ 'limit text', 'GET', '/chat/conversations?limit=ten', 'alice', undef,
   {}, 400, 'invalid_limit' ],
 [ 'limit empty', 'GET', '/chat/conversations?limit=', 'alice', undef,
   {}, 400, 'invalid_limit' ],
 [ 'limit with sign', 'GET', "/chat/conversations/$conv/messages?limit=+5",
   'alice', undef, {}, 400, 'invalid_limit' ],
 [ 'before text', 'GET', '/chat/conversations?before=x', 'alice', undef,
   {}, 400, 'invalid_before' ],
 [ 'messages of an unknown conversation', 'GET',
   '/chat/conversations/987654/messages', 'alice', undef, {}, 404,
   'conversation_not_found' ],
 [ "messages of alice's, as bob", 'GET',
   "/chat/conversations/$conv/messages", 'bob', undef, {}, 404,
   'conversation_not_found' ],
 [ 'a conversation id that is no number', 'GET',
   '/chat/conversations/abc/messages', 'alice', undef, {}, 404,
   'conversation_not_found' ],
 [ "delete alice's, as bob", 'DELETE', "/chat/conversations/$conv", 'bob',
   undef, {}, 404, 'conversation_not_found' ],
);

my $counts = q{SELECT (SELECT count(*) FROM tasks) || '/' ||
    (SELECT count(*) FROM conversations) || '/' ||
    (SELECT count(*) FROM messages) || '/' || (SELECT count(*) FROM turns)};
my $before = $s->sql_value($counts);

for my $c (@cases) {
	my ($name, $method, $path, $who, $body, $headers, $status, $code,
	    $allow) = @$c;
	my %o = (headers => { %$headers });
	if ($who eq 'alice' || $who eq 'bob') {
		$o{token} = $who eq 'alice' ? $alice : $bob;
	} elsif ($who ne 'none') {
		$o{headers}{Authorization} = $who;
	}
	$o{body} = $body if defined $body;
	my $r = $s->request($method, $path, %o);
	is $r->{status}, $status, "$name: $status" or diag $r->{body};
	like $r->{headers}{'content-type'} // '', qr{\Aapplication/json},
	    "$name: JSON";
	is $r->{json}{error}{code}, $code, "$name: code $code";
	ok length($r->{json}{error}{message} // ''), "$name: a message";
	is $r->{headers}{allow}, $allow, "$name: Allow: $allow" if $allow;
	like $r->{headers}{'www-authenticate'} // '', qr/^Bearer/,
	    "$name: WWW-Authenticate" if $status == 401;
}
# Keys with bytes outside printable ASCII, which an HTTP client library
# may refuse to send: written byte for byte to nginx, which passes them
# on, and straight over FastCGI.
for my $key ("k\xc3\xa9", "k\x01", "k\x7f") {
	my $bytes = sprintf '%vx', substr($key, 1);
	my $body = '{"message":"hi"}';
	my $r = $s->raw("POST /chat HTTP/1.1\r\nHost: 127.0.0.1\r\n"
	    . "Authorization: Bearer $alice\r\nIdempotency-Key: $key\r\n"
	    . "Content-Type: application/json\r\nContent-Length: "
	    . length($body) . "\r\nConnection: close\r\n\r\n$body");
	is $r->{status}, 400, "Idempotency-Key with byte $bytes: 400";
	is $r->{json}{error}{code}, 'invalid_idempotency_key', '...its code';
	$r = $s->fcgi(POST => '/chat', token => $alice,
	    body => { message => 'hi' },
	    params => { HTTP_IDEMPOTENCY_KEY => $key });
	is $r->{status}, 400,
	    "Idempotency-Key with byte $bytes, straight over FastCGI: 400";
	is $r->{json}{error}{code}, 'invalid_idempotency_key', '...its code';
}
is $s->sql_value($counts), $before, 'no error wrote a row';

# A message of exactly 32,000 bytes is fine.
$r = $s->request(POST => '/chat', token => $alice,
    body => { message => $max, conversation_id => $conv });
is $r->{status}, 200, 'a message of 32,000 bytes: 200';

# Headers too large for nginx itself: its 400, but as JSON too.
$r = $s->request(POST => '/chat', token => $alice,
    body => { message => 'hi' }, headers => { 'X-Padding' => 'p' x 20000 });
is $r->{status}, 400, 'a 20 KiB header: 400 from nginx';
is $r->{json}{error}{code}, 'header_too_large', '...as a JSON error';

# The health check needs no token.
is $s->request(GET => '/chat/health')->{status}, 200, 'health: no token';

done_testing;
