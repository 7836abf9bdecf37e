#!/usr/bin/perl
# t/34-jwks-startup.t: a worker whose token settings cannot check a token
# safely refuses to start, and its log says which setting and why, so an
# operator fixes it before anyone is let in or locked out: a secret under
# 32 bytes, neither a secret nor a JWKS, a JWKS (file, or a URL that
# answered) with no key the workers can use. The boundaries start: a
# secret of exactly 32 bytes, a JWKS of usable keys beside unusable ones.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::UNIX;
use Stack;

Stack::node_modules();	# skips the test when there is no node

my $dir = "$FindBin::Bin/tmp";
Stack::mkdir_p($dir);
sub spew {
	my ($file, $text) = @_;
	open my $fh, '>', $file or die "$file: $!\n";
	print $fh $text;
	close $fh or die "$file: $!\n";
}

# JWKS files of keys no worker may use, written by the issuer (a 1024-bit
# RSA key, a symmetric key, a P-384 key) or by hand.
my $weak = "$dir/jwks-weak-$$.json";
system('node', "$FindBin::Bin/js/issuer.mjs", '--once', '--publish',
    'RSA1024,oct,P-384', '--jwks-file', $weak) == 0
    or BAIL_OUT("issuer.mjs --once failed");
my $oct = "$dir/jwks-oct-$$.json";
spew($oct, '{"keys":[{"kty":"oct","kid":"k1","alg":"HS256",'
    . '"k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}]}');
my $empty = "$dir/jwks-empty-$$.json";
spew($empty, '{"keys":[]}');
my $garbage = "$dir/jwks-garbage-$$.json";
spew($garbage, "not a JWKS\n");

# A good one: usable keys do not excuse a short secret.
my $good = "$dir/jwks-good-$$.json";
system('node', "$FindBin::Bin/js/issuer.mjs", '--once', '--publish',
    'EdDSA', '--jwks-file', $good) == 0
    or BAIL_OUT("issuer.mjs --once failed");

# An issuer that answers, with nothing usable.
my $useless = Stack::Node->start('issuer.mjs', '--publish', 'RSA1024,oct');

# name, worker environment, what the log must say
my @refused = (
 [ 'a secret of 31 bytes', { CHAT_JWT_SECRET => 'x' x 31 },
   [ qr/CHAT_JWT_SECRET/, qr/\b32\b/ ] ],
 [ 'a secret of 31 bytes beside a good JWKS file',
   { CHAT_JWT_SECRET => 'x' x 31, CHAT_JWT_JWKS => $good },
   [ qr/CHAT_JWT_SECRET/, qr/\b32\b/ ] ],
 [ 'neither a secret nor a JWKS', { CHAT_JWT_SECRET => undef },
   [ qr/CHAT_JWT_SECRET/, qr/CHAT_JWT_JWKS/ ] ],
 [ 'an empty secret and no JWKS', { CHAT_JWT_SECRET => '' },
   [ qr/CHAT_JWT_SECRET/ ] ],
 [ 'a JWKS file of a 1024-bit RSA, an oct and a P-384 key',
   { CHAT_JWT_JWKS => $weak }, [ qr/CHAT_JWT_JWKS/, qr/\Q$weak\E/ ] ],
 [ 'a JWKS file of a symmetric key only, no secret',
   { CHAT_JWT_JWKS => $oct, CHAT_JWT_SECRET => undef },
   [ qr/CHAT_JWT_JWKS/, qr/\Q$oct\E/ ] ],
 [ 'a JWKS file with no keys', { CHAT_JWT_JWKS => $empty },
   [ qr/CHAT_JWT_JWKS/ ] ],
 [ 'a JWKS file that is not JSON', { CHAT_JWT_JWKS => $garbage },
   [ qr/CHAT_JWT_JWKS/ ] ],
 [ 'a JWKS file that is not there',
   { CHAT_JWT_JWKS => "$dir/no-such-jwks-$$.json" },
   [ qr/CHAT_JWT_JWKS/ ] ],
 [ 'a JWKS URL that answers with no usable key',
   { CHAT_JWT_JWKS => $useless->info->{jwks_url} },
   [ qr/CHAT_JWT_JWKS/ ] ],
);

for my $c (@refused) {
	my ($name, $env, $says) = @$c;
	my $s = Stack->new(workers => 1, wait => 0, env => $env);
	my $gave_up = eval { $s->wait_until(sub { $s->log =~ /died to+ often/ },
	    10, 'multiwatch to give up on the worker') };
	ok $gave_up, "$name: the worker does not start" or diag $s->logs;
	like $s->log, qr/refusing to start/, "$name: the log says it refuses";
	like $s->log, $_, "$name: the log names the reason ($_)" for @$says;
	ok eval { $s->wait_until(sub { !$s->worker_pids }, 5,
	    'the worker to be gone') }, "$name: no worker process is left";
	ok !IO::Socket::UNIX->new(Peer => $s->socket),
	    "$name: nothing listens on the FastCGI socket";
	$s->stop;
}
$useless->stop;

# Just enough starts and serves.
my $secret = 'y' x 32;
my $s = Stack->new(workers => 1, env => { CHAT_JWT_SECRET => $secret });
my $r = $s->request(GET => '/chat/conversations',
    token => $s->token('alice'));
is $r->{status}, 200, 'a secret of exactly 32 bytes: the worker starts '
    . 'and takes its tokens';
$s->stop;

# Unusable keys beside a usable one are skipped, not fatal.
my $mixed = "$dir/jwks-mixed-$$.json";
my $issuer = Stack::Node->start('issuer.mjs', '--publish',
    'EdDSA,RSA1024,oct,P-384', '--jwks-file', $mixed);
$s = Stack->new(workers => 1, env => { CHAT_JWT_SECRET => undef,
    CHAT_JWT_JWKS => $mixed });
$r = $s->request(GET => '/chat/conversations', token => $issuer->call(
    POST => '/mint', { alg => 'EdDSA', claims => { sub => 'alice' } })
    ->{token});
is $r->{status}, 200, 'a JWKS file of one usable key among unusable ones, '
    . 'no secret: the worker starts and takes its tokens' or diag $r->{body};
$s->stop;
$issuer->stop;

unlink $weak, $oct, $empty, $garbage, $good, $mixed;
done_testing;
