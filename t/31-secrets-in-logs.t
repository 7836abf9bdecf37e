#!/usr/bin/perl
# t/31-secrets-in-logs.t: the logs a worker writes while things go wrong
# (the model failing, refusing its key, the database gone) name what
# failed but never the model key, the JWT secret, a token or a message.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Stack;

my $key = 'sk-test-NEVER-LOGGED-7f3a9c';
my $s = Stack->new(workers => 1, model => 'mock', mock_key => $key,
    env => { CHAT_MODEL_TIMEOUT_MS => 1500 });
my $token = $s->token('alice');
my $message = 'private words 5e1d0c';

sub turn {
	return $s->request(POST => '/chat', token => $token,
	    body => { message => $message });
}

is turn()->{status}, 200, 'a turn that works';
$s->mock_script([ map { { status => 500 } } 1 .. 10 ]);
is turn()->{status}, 502, 'the model failing: 502';
$s->mock_reset;
$s->mock_script([ { status => 401, body => { error => {
    message => "Incorrect API key provided: $key", code =>
    'invalid_api_key' } } } ]);
is turn()->{status}, 502, 'the model refusing the key: 502';
$s->mock_reset;
$s->mock_script([ { raw => "{\"echo\": \"$key\"" } ]);
is turn()->{status}, 502, 'a malformed reply quoting the key: 502';
$s->mock_reset;
$s->stop_postgres;
is turn()->{status}, 503, 'the database down: 503';
$s->start_postgres;

my $log = $s->log;
like $log, qr/model: attempt/, 'the worker logged the model failures';
like $log, qr/database/, '...and the database one';
for ([ 'the model key', $key ], [ 'the JWT secret', $s->secret ],
    [ 'the token', $token ], [ "the token's signature",
    (split /\./, $token)[2] ], [ 'the message', $message ]) {
	my ($what, $secret) = @$_;
	ok index($log, $secret) < 0, "the workers' log never holds $what";
}

done_testing;
