#!/usr/bin/perl
# t/33-jwks.t: tokens signed with public keys from a JWKS, made by a real
# signer (jose, t/js/issuer.mjs) rather than by us, through nginx:
#
#   1. one issuer of EdDSA, ES256, RS256 and PS256 keys (and keys a
#      verifier must skip) at a URL, a secret too, iss and aud required:
#      each algorithm accepted and its sub the owner of what it writes; a
#      key rotated in after start; a table of forged and malformed tokens
#      refused; a flood of unknown kids that must not become a flood of
#      fetches; the issuer gone after the first fetch;
#   2. a set of one key and no secret: a token without a kid, and HS256
#      tokens keyed with the public key's text (key confusion);
#   3. the JWKS as a file of two keys: a token without a kid is refused;
#   4. the issuer down from the start: 503 auth_unavailable, HS256 still
#      served, and the keys taken once it answers.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use MIME::Base64 qw(encode_base64url decode_base64url);
use Time::HiRes qw(sleep time);
use Stack;

Stack::node_modules();	# skips the test when there is no node

my $ISS = 'https://auth.example.test';
my $AUD = 'todo-chat';
# A worker asks its JWKS again at most this often (seconds).
my $REFETCH = 5;

my $now = int time;
# Claims of a good token for sub, changed by the arguments (undef drops).
sub claims {
	my ($sub, %c) = @_;
	my %claims = (sub => $sub, iss => $ISS, aud => $AUD, iat => $now,
	    exp => $now + 900, %c);
	# undef goes out as null, which the issuer leaves out of the token.
	return \%claims;
}

sub mint {
	my ($issuer, %req) = @_;
	return $issuer->call(POST => '/mint', \%req)->{token};
}

# The answer to a token on a route that needs a caller and writes
# nothing, and what a client depends on in it.
sub check {
	my ($s, $name, $token, $status, $code) = @_;
	my $r = $s->request(GET => '/chat/conversations', token => $token);
	is $r->{status}, $status, "$name: $status" or diag $r->{body};
	like $r->{headers}{'content-type'} // '', qr{\Aapplication/json},
	    "$name: a JSON answer";
	if ($status == 200) {
		is ref $r->{json}{conversations}, 'ARRAY',
		    "$name: the caller's conversations";
		return;
	}
	is $r->{json}{error}{code}, $code, "$name: code $code";
	like $r->{headers}{'www-authenticate'} // '', qr/\ABearer\b/,
	    "$name: WWW-Authenticate: Bearer" if $status == 401;
}

# A token's holder chats and the task is theirs: the user id a worker
# takes from the token is the one it writes under.
sub adds_task {
	my ($s, $name, $token, $sub) = @_;
	my $r = $s->request(POST => '/chat', token => $token,
	    body => { message => 'Add a task to buy milk' });
	is $r->{status}, 200, "$name: POST /chat 200" or diag $r->{body};
	my $task = $r->{json}{tool_calls}[0]{result}{task_id};
	is $s->sql_value('SELECT user_id FROM tasks WHERE id = $1', $task),
	    $sub, "$name: the task is stored under the token's sub";
}

# A token with its header or payload replaced, the signature kept.
sub with_part {
	my ($token, $i, $json) = @_;
	my @p = split /\./, $token, -1;
	$p[$i] = encode_base64url($json);
	return join '.', @p;
}
sub part {
	my ($token, $i) = @_;
	return decode_json(decode_base64url((split /\./, $token)[$i]));
}

# ------------------------------------------------------ 1. one issuer

my $issuer = Stack::Node->start('issuer.mjs', '--publish',
    'EdDSA,ES256,RS256,PS256,RSA1024,oct,P-384');
my $kids = $issuer->info->{kids};
my $s = Stack->new(workers => 2, env => {
	CHAT_JWT_JWKS => $issuer->info->{jwks_url},
	CHAT_JWT_ISSUER => $ISS,
	CHAT_JWT_AUDIENCE => $AUD,
});
my $started = time;
# Stack->new returns once one worker answers; the other may still be
# starting (slowly under a sanitizer).
ok eval { $s->wait_until(sub { $issuer->call(GET => '/stats')->{jwks_gets}
    >= 2 }, 20, 'both workers\' fetches'); 1 },
    'each worker fetched the JWKS as it started';

# Each algorithm a provider may sign with.
for my $alg (qw(EdDSA ES256 RS256 PS256)) {
	my $sub = lc "user-$alg";
	my $t = mint($issuer, alg => $alg, claims => claims($sub));
	check($s, "$alg token", $t, 200);
	adds_task($s, "$alg token", $t, $sub);
}
# The secret still works beside the keys, under the same iss and aud.
my $hs = $s->token('user-hs256', iss => $ISS, aud => $AUD);
check($s, 'HS256 token with iss and aud', $hs, 200);
adds_task($s, 'HS256 token with iss and aud', $hs, 'user-hs256');
check($s, 'aud an array holding the audience', mint($issuer, alg => 'EdDSA',
    claims => claims('alice', aud => [ 'other-api', $AUD ])), 200);

# A key rotated in after the workers started: a worker reads the JWKS
# again for a kid it does not know, once its $REFETCH s have passed
# since the last read (the one at start).
sleep 0.1 while time < $started + $REFETCH + 0.5;
my $new_kid = $issuer->call(POST => '/rotate', { alg => 'EdDSA' })->{kid};
my $rotated = mint($issuer, alg => 'EdDSA', key => 'rotated',
    claims => claims('user-rotated'));
is part($rotated, 0)->{kid}, $new_kid, 'the rotated token names the new kid';
# Several times: both workers must pick the new key up.
check($s, "token of a key rotated in after start, try $_", $rotated, 200)
    for 1 .. 4;
adds_task($s, 'token of a key rotated in after start', $rotated,
    'user-rotated');
check($s, 'the old key still works after the rotation', mint($issuer,
    alg => 'EdDSA', claims => claims('alice')), 200);

# What a forger, a misconfigured provider or a confused client sends.
my $ed = mint($issuer, alg => 'EdDSA', claims => claims('alice'));
my $ed_pub = $issuer->call(GET => '/public?alg=EdDSA');
my $rs_pub = $issuer->call(GET => '/public?alg=RS256');
# A symmetric key in a JWKS is public: nobody may sign with it.
my ($oct) = grep { $_->{kty} eq 'oct' }
    @{ $issuer->call(GET => '/jwks')->{keys} };
my $t_now = int time;
my @refused = (
 [ 'a key never published (its own kid)',
   mint($issuer, alg => 'EdDSA', key => 'foreign', claims => claims('alice')) ],
 [ 'a key never published, with a published kid',
   mint($issuer, alg => 'EdDSA', key => 'foreign', kid => $kids->{EdDSA},
   claims => claims('alice')) ],
 [ 'payload changed after signing (sub)', with_part($ed, 1,
   encode_json({ %{ part($ed, 1) }, sub => 'bob' })) ],
 [ 'header changed after signing (alg ES256 on an EdDSA signature)',
   with_part($ed, 0, encode_json({ %{ part($ed, 0) }, alg => 'ES256' })) ],
 [ 'signature cut off', join('.', (split /\./, $ed)[0, 1]) . '.' ],
 [ 'HS256 keyed with the EdDSA key\'s PEM, its kid',
   $s->token_raw({ alg => 'HS256', typ => 'JWT', kid => $ed_pub->{kid} },
   claims('alice'), $ed_pub->{pem}) ],
 [ 'HS256 keyed with the EdDSA key\'s PEM and a newline, no kid',
   $s->token_raw({ alg => 'HS256', typ => 'JWT' }, claims('alice'),
   "$ed_pub->{pem}\n") ],
 [ 'HS256 keyed with the EdDSA key\'s JWK text, its kid',
   $s->token_raw({ alg => 'HS256', typ => 'JWT', kid => $ed_pub->{kid} },
   claims('alice'), $ed_pub->{jwk}) ],
 [ 'HS256 keyed with the RS256 key\'s PEM, its kid',
   $s->token_raw({ alg => 'HS256', typ => 'JWT', kid => $rs_pub->{kid} },
   claims('alice'), $rs_pub->{pem}) ],
 [ 'HS256 keyed with the RS256 key\'s JWK text',
   $s->token_raw({ alg => 'HS256', typ => 'JWT' }, claims('alice'),
   $rs_pub->{jwk}) ],
 [ 'HS256 keyed with the symmetric key the JWKS lists, its kid',
   $s->token_raw({ alg => 'HS256', typ => 'JWT', kid => $oct->{kid} },
   claims('alice'), decode_base64url($oct->{k})) ],
 [ 'RS256 with the key published for PS256 only',
   mint($issuer, alg => 'RS256', key_of => 'PS256', claims => claims('alice')) ],
 [ 'RS256 with a 1024-bit key the JWKS lists',
   mint($issuer, alg => 'RS256', key => 'weak', claims => claims('alice')) ],
 [ 'ES384 with the P-384 key the JWKS lists',
   mint($issuer, alg => 'ES384', key_of => 'P-384', claims => claims('alice')) ],
 [ 'no kid, several keys in the set',
   mint($issuer, alg => 'EdDSA', kid => JSON::PP::false,
   claims => claims('alice')) ],
 [ 'alg none with a published kid', $s->token_raw({ alg => 'none',
   typ => 'JWT', kid => $kids->{EdDSA} }, claims('alice')) ],
 [ 'alg none, no kid', $s->token_raw({ alg => 'none' }, claims('alice')) ],
 [ 'a crit header the workers do not know', mint($issuer, alg => 'EdDSA',
   header => { crit => ['x-policy'], 'x-policy' => 1 },
   claims => claims('alice')) ],
 [ 'wrong iss', mint($issuer, alg => 'EdDSA',
   claims => claims('alice', iss => 'https://evil.example.test')) ],
 [ 'iss missing', mint($issuer, alg => 'EdDSA',
   claims => claims('alice', iss => undef)) ],
 [ 'wrong aud', mint($issuer, alg => 'EdDSA',
   claims => claims('alice', aud => 'another-api')) ],
 [ 'aud an array without the audience', mint($issuer, alg => 'ES256',
   claims => claims('alice', aud => [ 'a', 'b' ])) ],
 [ 'aud missing', mint($issuer, alg => 'EdDSA',
   claims => claims('alice', aud => undef)) ],
 [ 'HS256 with the secret but the wrong iss',
   $s->token('alice', iss => 'https://evil.example.test', aud => $AUD) ],
 [ 'HS256 with the secret but no aud', $s->token('alice', iss => $ISS) ],
 [ 'expired a minute ago', mint($issuer, alg => 'EdDSA',
   claims => claims('alice', exp => $t_now - 60)) ],
 [ 'nbf in two minutes', mint($issuer, alg => 'ES256',
   claims => claims('alice', nbf => $t_now + 120)) ],
 [ 'sub missing', mint($issuer, alg => 'RS256',
   claims => claims('alice', sub => undef)) ],
 [ "sub with '/'", mint($issuer, alg => 'PS256',
   claims => claims('bob/../alice')) ],
 [ 'sub of 129 bytes', mint($issuer, alg => 'EdDSA',
   claims => claims('a' x 129)) ],
);
check($s, $_->[0], $_->[1], 401, 'invalid_token') for @refused;

# A flood of tokens naming kids nobody published must not turn into a
# flood of requests to the provider: each worker asks at most once per
# $REFETCH s, whatever comes in. The refused tokens above made them ask
# already: the flood starts once they may ask again.
sleep $REFETCH + 0.5;
my $gets = $issuer->call(GET => '/stats')->{jwks_gets};
my $t0 = time;
my @answers;
for my $i (1 .. 50) {
	my $kid = sprintf 'made-up-%d-%08x', $i, int rand 0xffffffff;
	my $r = $s->request(GET => '/chat/conversations', token => mint($issuer,
	    alg => 'EdDSA', key => 'foreign', kid => $kid,
	    claims => claims('alice')));
	push @answers, $r->{status};
}
my $took = time - $t0;
is_deeply [ grep { $_ != 401 } @answers ], [],
    '50 tokens of made-up kids: each 401';
my $fetches = $issuer->call(GET => '/stats')->{jwks_gets} - $gets;
my $allowed = 2 * (1 + int($took / $REFETCH));
ok $fetches >= 1 && $fetches <= $allowed, sprintf '50 made-up kids in '
    . '%.1f s: %d JWKS fetches, at least one, at most %d (2 workers, one '
    . 'per %d s)', $took, $fetches, $allowed, $REFETCH;

# The provider goes away after the workers have its keys: tokens of
# those keys still work, a kid nobody knows is still a plain 401 (not a
# 503: the keys are there, this token is not theirs), and a failed fetch
# drops none of the keys read before.
$issuer->call(POST => '/down', { mode => '503' });
check($s, "issuer down after the first fetch: $_ token", mint($issuer,
    alg => $_, claims => claims('alice')), 200) for qw(EdDSA RS256);
sleep $REFETCH + 0.5;	# so that the next unknown kid is fetched for
for my $try (1 .. 2) {
	check($s, "issuer down: an unknown kid, try $try", mint($issuer,
	    alg => 'EdDSA', key => 'foreign', kid => "gone-$try",
	    claims => claims('alice')), 401, 'invalid_token');
}
check($s, "issuer down: after the failed fetch, the rotated key, try $_",
    $rotated, 200) for 1 .. 2;
adds_task($s, 'issuer down: an ES256 token', mint($issuer, alg => 'ES256',
    claims => claims('user-after-down')), 'user-after-down');
unlike $s->log, qr/\Q$ed\E|\Q$rotated\E/, 'no token in the workers\' log';
$s->stop;
$issuer->stop;

# ------------------------------------------ 2. one key and no secret

# A set of one key: a token without a kid can only mean that key. No
# secret: HS256 tokens have nothing to be checked with, whatever key
# text they were made with.
$issuer = Stack::Node->start('issuer.mjs', '--publish', 'EdDSA');
$s = Stack->new(workers => 1, env => {
	CHAT_JWT_SECRET => undef,
	CHAT_JWT_JWKS => $issuer->info->{jwks_url},
	CHAT_JWT_ISSUER => $ISS,
	CHAT_JWT_AUDIENCE => $AUD,
});
my $nokid = mint($issuer, alg => 'EdDSA', kid => JSON::PP::false,
    claims => claims('user-nokid'));
ok !exists part($nokid, 0)->{kid}, 'the token has no kid';
check($s, 'no kid, a set of one key', $nokid, 200);
adds_task($s, 'no kid, a set of one key', $nokid, 'user-nokid');
$ed_pub = $issuer->call(GET => '/public?alg=EdDSA');
my @confused = (
 [ 'the PEM, its kid', { kid => $ed_pub->{kid} }, $ed_pub->{pem} ],
 [ 'the PEM, no kid', {}, $ed_pub->{pem} ],
 [ 'the PEM and a newline', {}, "$ed_pub->{pem}\n" ],
 [ 'the JWK text, its kid', { kid => $ed_pub->{kid} }, $ed_pub->{jwk} ],
 [ 'the JWK text, no kid', {}, $ed_pub->{jwk} ],
 [ 'the raw public key', {}, decode_base64url(decode_json($ed_pub->{jwk})->{x}) ],
 [ 'an empty secret', {}, '' ],
);
for (@confused) {
	my ($how, $hdr, $key) = @$_;
	check($s, "no secret: HS256 keyed with $how", $s->token_raw(
	    { alg => 'HS256', typ => 'JWT', %$hdr }, claims('alice'), $key),
	    401, 'invalid_token');
}
check($s, 'no secret: an HS256 token of a secret the workers never had',
    $s->token('alice', iss => $ISS, aud => $AUD), 401, 'invalid_token');
$s->stop;
$issuer->stop;

# ------------------------------------------- 3. the JWKS as a file

# The file form, holding two keys (one rotated in before the workers
# start): each key's token works; without a kid there is no telling
# which key is meant.
my $dir = "$FindBin::Bin/tmp";
Stack::mkdir_p($dir);
my $file = "$dir/jwks-$$.json";
$issuer = Stack::Node->start('issuer.mjs', '--publish', 'EdDSA',
    '--jwks-file', $file);
$issuer->call(POST => '/rotate', { alg => 'EdDSA' });
is scalar @{ decode_json(do { local (@ARGV, $/) = $file; <> })->{keys} }, 2,
    'the file holds two keys';
$s = Stack->new(workers => 2, env => {
	CHAT_JWT_JWKS => $file,
	CHAT_JWT_ISSUER => $ISS,
	CHAT_JWT_AUDIENCE => $AUD,
});
for my $which (qw(current rotated)) {
	my $t = mint($issuer, alg => 'EdDSA', key => $which,
	    claims => claims("user-file-$which"));
	check($s, "JWKS file: the $which key's token", $t, 200);
	adds_task($s, "JWKS file: the $which key's token", $t,
	    "user-file-$which");
}
check($s, 'JWKS file: no kid, two keys in the set', mint($issuer,
    alg => 'EdDSA', kid => JSON::PP::false, claims => claims('alice')),
    401, 'invalid_token');
check($s, 'JWKS file: a key not in the file', mint($issuer, alg => 'EdDSA',
    key => 'foreign', claims => claims('alice')), 401, 'invalid_token');
$s->stop;
$issuer->stop;
unlink $file;

# ----------------------------------- 4. the issuer down from the start

# Workers start without their keys: an asymmetric token cannot be
# judged yet, which is the service's fault, not the caller's (503, try
# again); HS256 tokens are served meanwhile; once the provider answers,
# its keys are fetched on the next token.
$issuer = Stack::Node->start('issuer.mjs', '--publish', 'EdDSA,RS256');
$issuer->call(POST => '/down', { mode => 'close' });
$s = Stack->new(workers => 2, env => {
	CHAT_JWT_JWKS => $issuer->info->{jwks_url},
	CHAT_JWT_ISSUER => $ISS,
	CHAT_JWT_AUDIENCE => $AUD,
});
pass 'the workers start while the JWKS URL does not answer';
for my $alg (qw(EdDSA RS256)) {
	check($s, "issuer down since the start: $alg token", mint($issuer,
	    alg => $alg, claims => claims('alice')), 503, 'auth_unavailable');
}
check($s, 'issuer down since the start: no kid', mint($issuer,
    alg => 'EdDSA', kid => JSON::PP::false, claims => claims('alice')),
    503, 'auth_unavailable');
$hs = $s->token('user-hs-down', iss => $ISS, aud => $AUD);
check($s, 'issuer down since the start: HS256 token', $hs, 200);
adds_task($s, 'issuer down since the start: HS256 token', $hs,
    'user-hs-down');
check($s, 'issuer down since the start: an HS256 token of a wrong '
    . 'secret is still a 401', $s->token_raw({ alg => 'HS256' },
    claims('alice'), 'not-the-secret-but-32-bytes-long!'), 401,
    'invalid_token');
$issuer->call(POST => '/up');
my $back = mint($issuer, alg => 'EdDSA', claims => claims('user-back'));
my $ok = eval { $s->wait_until(sub {
	my @st = map { $s->request(GET => '/chat/conversations',
	    token => $back)->{status} } 1 .. 2;
	return !grep { $_ != 200 } @st;
}, 3 * $REFETCH, 'both workers to take the keys') };
ok $ok, "the issuer back: its tokens accepted within ${\ (3 * $REFETCH)} s";
adds_task($s, 'the issuer back: EdDSA token', $back, 'user-back');
$s->stop;
$issuer->stop;

done_testing;
