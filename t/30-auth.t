#!/usr/bin/perl
# t/30-auth.t: authentication end to end through nginx. A table of tokens
# (each Authorization value and what it must get), then every route that
# needs a caller refusing a missing or bad token, /api/{user_id}/chat's
# 403, a worker without CHAT_JWT_SECRET refusing to start, and no token
# in the workers' log afterwards.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::UNIX;
use MIME::Base64 qw(encode_base64url);
use Stack;

my $s = Stack->new(workers => 2);
my $now = int time;

# Every token sent, for the log check at the end.
my @sent;

my %HS256 = (alg => 'HS256', typ => 'JWT');
# Claims of a good token, changed by the arguments (undef drops one).
sub claims {
	my %c = (sub => 'alice', iat => $now, exp => $now + 3600, @_);
	delete @c{ grep { !defined $c{$_} } keys %c };
	return \%c;
}
# A token with header and payload as given, HS256-signed with the secret
# unless the header is a hash naming another alg (Stack::token_raw).
sub jwt { $s->token_raw(@_) }
sub b64 { encode_base64url($_[0]) }

my $alice = $s->token('alice');
my ($h, $p, $sig) = split /\./, $alice;
my $tampered = "$h." . b64('{"sub":"bob","iat":' . $now . ',"exp":'
    . ($now + 3600) . '}') . ".$sig";
(my $bad_sig = $sig) =~ s/\A(.)/$1 eq 'A' ? 'B' : 'A'/e;
my $exp_later = $now + 3600;

# A token of about n bytes: a correctly signed one, padded by a claim.
sub token_of {
	my ($n) = @_;
	my ($pad, $t) = (0);
	while (length($t = $s->token('alice', pad => 'x' x $pad)) < $n) {
		$pad += int(($n - length $t) * 3 / 4) || 1;
	}
	return $t;
}
my $huge = token_of(9 * 1024);

# name, Authorization value (undef: no header), status, error code, and
# a TODO reason for a known bug.
my @cases = (
 [ 'valid token', "Bearer $alice", 200 ],
 [ 'lower-case bearer', "bearer $alice", 200 ],
 [ 'upper-case BEARER', "BEARER $alice", 200 ],
 [ 'header without typ', 'Bearer ' . jwt({ alg => 'HS256' }, claims()),
   200 ],
 [ 'no exp', 'Bearer ' . jwt(\%HS256, claims(exp => undef)), 200 ],
 [ 'exp in a minute', 'Bearer ' . jwt(\%HS256, claims(exp => $now + 60)),
   200 ],
 [ 'nbf a minute ago', 'Bearer ' . jwt(\%HS256, claims(nbf => $now - 60)),
   200 ],
 [ 'nbf 5 s ahead: within the 30 s clock leeway',
   'Bearer ' . jwt(\%HS256, claims(nbf => $now + 5)), 200 ],
 [ 'sub of 128 bytes', 'Bearer ' . jwt(\%HS256, claims(sub => 'a' x 128)),
   200 ],
 [ 'sub of every allowed kind of character', 'Bearer '
   . jwt(\%HS256, claims(sub => 'Al.ice_09@example.com+x-y')), 200 ],

 [ 'no Authorization header', undef, 401, 'missing_token' ],
 [ 'empty Authorization header', '', 401, 'missing_token' ],
 [ '"Bearer" with nothing', 'Bearer', 401, 'missing_token' ],
 [ '"Bearer" and spaces', 'Bearer    ', 401, 'missing_token' ],
 [ 'Basic scheme', 'Basic YWxpY2U6c2VjcmV0', 401, 'missing_token' ],
 [ 'a token without a scheme', $alice, 401, 'missing_token' ],
 [ 'Bearer glued to the token', "Bearer$alice", 401, 'missing_token' ],
 [ 'a second word after the token', "Bearer $alice x", 401,
   'invalid_token' ],

 [ 'alg none, unsigned', 'Bearer ' . jwt({ alg => 'none', typ => 'JWT' },
   claims()), 401, 'invalid_token' ],
 [ 'alg none with an HS256 signature', 'Bearer '
   . jwt('{"alg":"none","typ":"JWT"}', claims()), 401, 'invalid_token' ],
 [ 'alg HS512, correctly signed with the secret', 'Bearer '
   . jwt({ alg => 'HS512', typ => 'JWT' }, claims()), 401,
   'invalid_token' ],
 [ 'alg HS384, correctly signed with the secret', 'Bearer '
   . jwt({ alg => 'HS384', typ => 'JWT' }, claims()), 401,
   'invalid_token' ],
 [ 'alg hs256 in lower case', 'Bearer '
   . jwt('{"alg":"hs256","typ":"JWT"}', claims()), 401, 'invalid_token' ],
 [ 'alg missing', 'Bearer ' . jwt('{"typ":"JWT"}', claims()), 401,
   'invalid_token' ],
 [ 'alg RS256, HMAC-signed with the secret (key confusion)', 'Bearer '
   . jwt('{"alg":"RS256","typ":"JWT"}', claims()), 401, 'invalid_token' ],
 [ 'alg twice, HS256 first', 'Bearer '
   . jwt('{"alg":"HS256","alg":"none","typ":"JWT"}', claims()), 401,
   'invalid_token' ],
 [ 'crit header', 'Bearer '
   . jwt('{"alg":"HS256","typ":"JWT","crit":["exp"]}', claims()), 401,
   'invalid_token' ],
 [ 'header JSON an array', 'Bearer ' . jwt('["HS256"]', claims()), 401,
   'invalid_token' ],
 [ 'header JSON a string', 'Bearer ' . jwt('"HS256"', claims()), 401,
   'invalid_token' ],
 [ 'header not JSON', 'Bearer ' . jwt('alg=HS256', claims()), 401,
   'invalid_token' ],
 [ 'header not base64url', "Bearer !!$h.$p.$sig", 401, 'invalid_token' ],

 [ 'wrong secret', 'Bearer '
   . jwt(\%HS256, claims(), 'not-the-secret'), 401, 'invalid_token' ],
 [ 'payload changed after signing', "Bearer $tampered", 401,
   'invalid_token' ],
 [ 'signature changed', "Bearer $h.$p.$bad_sig", 401, 'invalid_token' ],
 [ 'signature cut short', "Bearer $h.$p." . substr($sig, 0, 40), 401,
   'invalid_token' ],
 [ 'signature with base64 padding', "Bearer $h.$p.$sig=", 401,
   'invalid_token' ],
 [ 'signature missing', "Bearer $h.$p.", 401, 'invalid_token' ],
 [ 'two parts', "Bearer $h.$p", 401, 'invalid_token' ],
 [ 'four parts', "Bearer $alice.$sig", 401, 'invalid_token' ],
 [ 'three dots', 'Bearer ...', 401, 'invalid_token' ],
 [ 'one word', 'Bearer alice', 401, 'invalid_token' ],

 [ 'expired an hour ago', 'Bearer '
   . jwt(\%HS256, claims(exp => $now - 3600)), 401, 'invalid_token' ],
 [ 'exp exactly now', 'Bearer ' . jwt(\%HS256, claims(exp => $now)), 401,
   'invalid_token' ],
 [ 'exp a second ago', 'Bearer '
   . jwt(\%HS256, claims(exp => $now - 1)), 401, 'invalid_token' ],
 [ 'nbf in two minutes: beyond the leeway', 'Bearer '
   . jwt(\%HS256, claims(nbf => $now + 120)), 401, 'invalid_token' ],
 [ 'exp a string', 'Bearer ' . jwt(\%HS256,
   qq({"sub":"alice","iat":$now,"exp":"$exp_later"})), 401,
   'invalid_token' ],
 [ 'exp null', 'Bearer ' . jwt(\%HS256,
   qq({"sub":"alice","iat":$now,"exp":null})), 401, 'invalid_token' ],
 [ 'exp twice, the later second', 'Bearer ' . jwt(\%HS256,
   qq({"sub":"alice","exp":$now,"exp":$exp_later})), 401,
   'invalid_token' ],
 [ 'nbf a string', 'Bearer ' . jwt(\%HS256,
   qq({"sub":"alice","exp":$exp_later,"nbf":"0"})), 401, 'invalid_token' ],

 [ 'sub missing', 'Bearer ' . jwt(\%HS256, claims(sub => undef)), 401,
   'invalid_token' ],
 [ 'sub a number', 'Bearer ' . jwt(\%HS256,
   qq({"sub":42,"exp":$exp_later})), 401, 'invalid_token' ],
 [ 'sub null', 'Bearer ' . jwt(\%HS256,
   qq({"sub":null,"exp":$exp_later})), 401, 'invalid_token' ],
 [ 'sub an array', 'Bearer ' . jwt(\%HS256,
   qq({"sub":["alice"],"exp":$exp_later})), 401, 'invalid_token' ],
 [ 'sub empty', 'Bearer ' . jwt(\%HS256, claims(sub => '')), 401,
   'invalid_token' ],
 [ 'sub of 129 bytes', 'Bearer ' . jwt(\%HS256, claims(sub => 'a' x 129)),
   401, 'invalid_token' ],
 [ "sub with '/'", 'Bearer ' . jwt(\%HS256, claims(sub => 'bob/../alice')),
   401, 'invalid_token' ],
 [ "sub with ' '", 'Bearer ' . jwt(\%HS256, claims(sub => 'alice bob')),
   401, 'invalid_token' ],
 [ "sub with '%'", 'Bearer ' . jwt(\%HS256, claims(sub => 'bob%2Falice')),
   401, 'invalid_token' ],
 [ 'sub in unicode', 'Bearer ' . jwt(\%HS256, claims(sub => "b\x{f8}b")),
   401, 'invalid_token' ],
 [ 'sub with a NUL escape', 'Bearer ' . jwt(\%HS256,
   qq({"sub":"alice\\u0000bob","exp":$exp_later})), 401, 'invalid_token' ],
 [ 'sub twice', 'Bearer ' . jwt(\%HS256,
   qq({"sub":"alice","sub":"bob","exp":$exp_later})), 401,
   'invalid_token' ],
 [ 'payload JSON an array', 'Bearer ' . jwt(\%HS256, '["alice"]'), 401,
   'invalid_token' ],
 [ 'payload not JSON', 'Bearer ' . jwt(\%HS256, 'sub=alice'), 401,
   'invalid_token' ],

 [ 'token of 9 KiB', "Bearer $huge", 401, 'invalid_token' ],
);
# The words of an Authorization value but its scheme, and their dot-
# separated parts, those long enough not to occur in a message by chance.
sub parts {
	my ($auth) = @_;
	my @words = grep { !/\A(?:bearer|basic)\z/i } split ' ', $auth // '';
	return grep { length >= 6 } map { ($_, split /\./) } @words;
}

for my $c (@cases) {
	my ($name, $auth, $status, $code, $todo) = @$c;
	push @sent, $auth if defined $auth;
	my $r = $s->request(GET => '/chat/conversations',
	    headers => { defined $auth ? (Authorization => $auth) : () });
	my @leaked = grep { index($r->{body} // '', $_) >= 0 } parts($auth);
	is scalar @leaked, 0, "$name: the body holds no part of the token";
	ok $r->{status} >= 400 && $r->{status} < 500,
	    "$name: refused with a 4xx ($r->{status})" if $status != 200;
	local $TODO = $todo;
	is $r->{status}, $status, "$name: $status" or diag $r->{body};
	like $r->{headers}{'content-type'} // '', qr{\Aapplication/json},
	    "$name: JSON";
	if ($status == 200) {
		is ref $r->{json}{conversations}, 'ARRAY',
		    "$name: the conversations";
		next;
	}
	is $r->{json}{error}{code}, $code, "$name: code $code";
	ok length($r->{json}{error}{message} // ''), "$name: a message";
	like $r->{headers}{'www-authenticate'} // '', qr/\ABearer\b/,
	    "$name: WWW-Authenticate: Bearer";
}

# The worker's own cap, straight over FastCGI.
my $r = $s->fcgi(GET => '/chat/conversations', token => $huge);
is $r->{status}, 401, 'token of 9 KiB straight over FastCGI: 401';
is $r->{json}{error}{code}, 'invalid_token', '...invalid_token';
is scalar(grep { index($r->{body}, $_) >= 0 } parts("Bearer $huge")), 0,
    '...without echoing it';
push @sent, "Bearer $huge";

# The token decides who the caller is.
$r = $s->request(POST => '/chat', token => $alice,
    body => { message => 'Add a task to buy milk' });
is $r->{status}, 200, 'alice chats: 200' or diag $r->{body};
my $conv = $r->{json}{conversation_id};
is $s->sql_value('SELECT user_id FROM conversations WHERE id = $1', $conv),
    'alice', "the conversation is alice's";

# Every route that needs a caller refuses a missing or bad one, before
# looking at anything else: a bad body is still a 401.
my $wrong = jwt(\%HS256, claims(), 'not-the-secret');
my $expired = jwt(\%HS256, claims(exp => $now - 10));
push @sent, "Bearer $wrong", "Bearer $expired";
my @routes = (
 [ POST => '/chat', { message => 'Add a task to sneak in' } ],
 [ POST => '/chat', 'not json' ],
 [ POST => '/api/alice/chat', { message => 'Add a task to sneak in' } ],
 [ POST => '/api/alice/chat', { message => 'hi', conversation_id => $conv } ],
 [ GET => '/chat/conversations' ],
 [ GET => "/chat/conversations/$conv/messages" ],
 [ GET => "/chat/conversations/$conv/messages?limit=500" ],
 [ DELETE => "/chat/conversations/$conv" ],
);
my @callers = (
 [ 'no token', undef, 'missing_token' ],
 [ 'Basic', 'Basic YWxpY2U6eA==', 'missing_token' ],
 [ 'wrong secret', "Bearer $wrong", 'invalid_token' ],
 [ 'expired', "Bearer $expired", 'invalid_token' ],
 [ 'alg none', 'Bearer ' . jwt({ alg => 'none' }, claims()),
   'invalid_token' ],
);
my $counts = q{SELECT (SELECT count(*) FROM tasks) || '/' ||
    (SELECT count(*) FROM conversations) || '/' ||
    (SELECT count(*) FROM messages) || '/' || (SELECT count(*) FROM turns)};
my $before = $s->sql_value($counts);
for my $route (@routes) {
	my ($method, $path, $body) = @$route;
	for my $caller (@callers) {
		my ($who, $auth, $code) = @$caller;
		my $r = $s->request($method, $path, defined $body
		    ? (body => $body) : (), headers => { defined $auth
		    ? (Authorization => $auth) : () });
		my $name = "$method $path, $who"
		    . (defined $body && !ref $body ? ' and a bad body' : '');
		is $r->{status}, 401, "$name: 401" or diag $r->{body};
		is $r->{json}{error}{code}, $code, "$name: $code";
		like $r->{headers}{'www-authenticate'} // '', qr/\ABearer\b/,
		    "$name: WWW-Authenticate";
	}
}
is $s->sql_value($counts), $before, 'no refused request wrote a row';
is $s->sql_value('SELECT count(*) FROM conversations WHERE id = $1', $conv),
    1, 'the DELETEs without a caller deleted nothing';

# The health check needs no token, and ignores a bad one.
for my $caller ([ 'no token', undef ], [ 'a bad token', "Bearer $wrong" ],
    [ 'Basic', 'Basic YWxpY2U6eA==' ]) {
	my ($who, $auth) = @$caller;
	my $r = $s->request(GET => '/chat/health',
	    headers => { defined $auth ? (Authorization => $auth) : () });
	is $r->{status}, 200, "GET /chat/health, $who: 200";
	is_deeply $r->{json}, { status => 'ok' }, "...$who: status ok";
}

# /api/{user_id}/chat: the path must name the token's user.
my $bob = $s->token('bob');
my $odd = $s->token('a.b@c+d-e');
push @sent, "Bearer $bob", "Bearer $odd";
my @api = (
 # token, user in the path, status, code
 [ 'alice', $alice, 'alice', 200 ],
 [ 'alice', $alice, 'bob', 403, 'forbidden' ],
 [ 'bob', $bob, 'alice', 403, 'forbidden' ],
 [ 'alice', $alice, 'Alice', 403, 'forbidden' ],
 [ 'alice', $alice, 'alice.', 403, 'forbidden' ],
 [ 'a.b@c+d-e', $odd, 'a.b@c+d-e', 200 ],
 [ 'a.b@c+d-e', $odd, 'alice', 403, 'forbidden' ],
);
for my $c (@api) {
	my ($who, $token, $user, $status, $code) = @$c;
	my $rows = $s->sql_value($counts);
	my $r = $s->request(POST => "/api/$user/chat", token => $token,
	    body => { message => 'Show me all my tasks' });
	my $name = "POST /api/$user/chat as $who";
	is $r->{status}, $status, "$name: $status" or diag $r->{body};
	if ($status == 200) {
		is $s->sql_value('SELECT user_id FROM conversations
		    WHERE id = $1', $r->{json}{conversation_id}), $user,
		    "$name: the conversation is $user\'s";
		next;
	}
	is $r->{json}{error}{code}, $code, "$name: $code";
	is $s->sql_value($counts), $rows, "$name: nothing written";
}
# alice's conversation through bob's path is still refused, not found.
$r = $s->request(POST => '/api/bob/chat', token => $alice,
    body => { message => 'hi', conversation_id => $conv });
is $r->{status}, 403, "alice on /api/bob/chat with her conversation: 403";

# A request that fails on the server's side is logged: with the database
# gone, an authenticated turn is a 503 and a line in the log.
$s->stop_postgres;
$r = $s->request(POST => '/chat', token => $alice,
    body => { message => 'Add a task to buy bread' });
is $r->{status}, 503, 'with PostgreSQL down, an authenticated turn: 503';
$r = $s->request(GET => '/chat/conversations', token => $bob);
is $r->{status}, 503, '...and an authenticated read: 503';
like $s->log, qr/503/, 'the workers logged the failures';

# No token, nor the signature of one, ever reaches the workers' log.
my $log = $s->log;
my @leaked = grep { my $t = $_; grep { index($log, $_) >= 0 } parts($t) }
    @sent;
is_deeply \@leaked, [], 'no token in the workers\' log'
    or diag "leaked: @leaked";
$s->stop;

# A worker without a secret refuses to start, saying why, and none stays
# up (multiwatch gives up on a child that keeps dying).
for my $secret ([ 'unset', undef ], [ 'empty', '' ]) {
	my ($how, $value) = @$secret;
	my $n = Stack->new(workers => 2, wait => 0,
	    env => { CHAT_JWT_SECRET => $value });
	my $gave_up = eval {
		$n->wait_until(sub {
			my $count = () = $n->log =~ /died to+ often/g;
			return $count >= 2;
		}, 10, 'multiwatch to give up on both workers');
	};
	ok $gave_up, "CHAT_JWT_SECRET $how: multiwatch gives up"
	    or diag $n->logs;
	like $n->log, qr/CHAT_JWT_SECRET/,
	    "CHAT_JWT_SECRET $how: the log names the variable";
	like $n->log, qr/CHAT_JWT_SECRET is not set: refusing to start/,
	    "CHAT_JWT_SECRET $how: and says the worker refuses to start";
	my $count = () = $n->log =~ /died to+ often/g;
	is $count, 2, "CHAT_JWT_SECRET $how: both children given up on";
	ok eval { $n->wait_until(sub { !$n->worker_pids }, 5,
	    'the workers to be gone') },
	    "CHAT_JWT_SECRET $how: no worker process is left";
	# multiwatch holds the listening socket while it runs: a refused
	# connection means it is gone too, and nothing will respawn.
	ok !IO::Socket::UNIX->new(Peer => $n->socket),
	    "CHAT_JWT_SECRET $how: nothing listens on the FastCGI socket";
	my $r = $n->request(GET => '/chat/health', timeout => 5);
	isnt $r->{status}, 200, "CHAT_JWT_SECRET $how: nothing answers "
	    . "the health check ($r->{status})";
	$n->stop;
}

done_testing;
