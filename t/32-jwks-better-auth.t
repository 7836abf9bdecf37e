#!/usr/bin/perl
# t/32-jwks-better-auth.t: a site signs its users in with Better Auth and
# hands its jwt plugin's tokens to todo-chat. For each algorithm the
# plugin can be set to (EdDSA, its default; RS256; ES256): Better Auth
# itself (t/js/better-auth.mjs) signs a user up and in and takes a token
# from /api/auth/token; workers given its JWKS URL, and iss and aud set
# to what the plugin puts in, serve that user under the plugin's user id
# and go on doing so when Better Auth stops.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use HTTP::Tiny;
use JSON::PP;
use MIME::Base64 qw(decode_base64url encode_base64url);
use Stack;

Stack::node_modules();	# skips the test when there is no node

sub part {
	my ($token, $i) = @_;
	return decode_json(decode_base64url((split /\./, $token)[$i]));
}

for my $alg (qw(EdDSA RS256 ES256)) {
	my $ba = Stack::Node->start('better-auth.mjs', '--alg', $alg);
	my $info = $ba->info;
	my ($token, $user) = @$info{qw(token user_id)};
	my $base = "http://127.0.0.1:$info->{port}";

	# What the plugin puts in, which the configuration below copies: a
	# change here is a change operators must know of.
	my ($hdr, $claims) = (part($token, 0), part($token, 1));
	is $hdr->{alg}, $alg, "$alg: the token's alg";
	ok length($hdr->{kid} // ''), "$alg: the token names its key (kid)";
	is $claims->{iss}, $base, "$alg: iss is Better Auth's base URL";
	is $claims->{aud}, $base, "$alg: aud is the base URL, a string";
	is $claims->{sub}, $user, "$alg: sub is the user's id";
	cmp_ok $claims->{exp} - $claims->{iat}, '==', 900,
	    "$alg: the token lasts 15 minutes";
	my $jwks = HTTP::Tiny->new(timeout => 10)->get($info->{jwks_url});
	my @keys = @{ decode_json($jwks->{content})->{keys} };
	is scalar @keys, 1, "$alg: the JWKS holds one key";
	is $keys[0]{kid}, $hdr->{kid}, "$alg: the token's kid is that key's";
	note "Better Auth $alg: header " . JSON::PP->new->canonical
	    ->encode($hdr) . ', JWK ' . join(',', map { "$_=" . (length
	    $keys[0]{$_} > 20 ? '...' : $keys[0]{$_}) } sort keys %{ $keys[0] });

	my $s = Stack->new(workers => 2, env => {
		CHAT_JWT_JWKS => $info->{jwks_url},
		CHAT_JWT_ISSUER => $claims->{iss},
		CHAT_JWT_AUDIENCE => $claims->{aud},
	});
	my $r = $s->request(POST => '/chat', token => $token,
	    body => { message => 'Add a task to buy milk' });
	is $r->{status}, 200, "$alg: Better Auth's token chats: 200"
	    or diag $r->{body};
	my $task = $r->{json}{tool_calls}[0]{result}{task_id};
	is $s->sql_value('SELECT user_id FROM tasks WHERE id = $1', $task),
	    $user, "$alg: the task is stored under Better Auth's user id";
	$r = $s->request(GET => '/chat/conversations', token => $token);
	is $r->{status}, 200, "$alg: the user lists their conversations";
	is scalar @{ $r->{json}{conversations} // [] }, 1,
	    "$alg: and sees the one just started";

	# The same token with its sub changed is someone else's forgery.
	my @p = split /\./, $token;
	$p[1] = encode_base64url(encode_json({ %$claims, sub => 'someone' }));
	$r = $s->request(GET => '/chat/conversations', token => join '.', @p);
	is $r->{status}, 401, "$alg: its payload changed: 401";
	is $r->{json}{error}{code}, 'invalid_token', "$alg: invalid_token";

	# Better Auth goes down (a deploy, a crash): its users keep working
	# on the keys the workers already hold.
	$ba->stop;
	$r = $s->request(POST => '/chat', token => $token,
	    body => { message => 'Add a task to buy bread' });
	is $r->{status}, 200, "$alg: with Better Auth stopped, its token "
	    . 'still chats' or diag $r->{body};
	$s->stop;

	# Workers that expect another site's tokens refuse this one.
	$ba = Stack::Node->start('better-auth.mjs', '--alg', $alg);
	$info = $ba->info;
	$s = Stack->new(workers => 1, env => {
		CHAT_JWT_JWKS => $info->{jwks_url},
		CHAT_JWT_ISSUER => $info->{iss},
		CHAT_JWT_AUDIENCE => 'https://another-site.example.test',
	});
	$r = $s->request(GET => '/chat/conversations', token => $info->{token});
	is $r->{status}, 401, "$alg: workers set for another audience: 401";
	is $r->{json}{error}{code}, 'invalid_token',
	    "$alg: another audience: invalid_token";
	$s->stop;
	$ba->stop;
}

done_testing;
