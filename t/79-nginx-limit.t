#!/usr/bin/perl
# t/79-nginx-limit.t: nginx's per-address backstop (nginx.conf's
# limit_req on /chat, /api/ and /mcp), here at 1 request a second with a burst
# of 3: the first four requests pass, then the address gets 429 in the
# API's error shape with a Retry-After, before any worker sees them. The
# pages nginx serves itself are not limited.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Stack;

my $s = Stack->new(workers => 1, nginx_rate => '1r/s', nginx_burst => 3);
# Stack's own readiness check spent some of the burst: let it refill.
sleep 4;

my @status = map { $s->request(GET => '/chat/health')->{status} } 1 .. 20;
is_deeply [ @status[0 .. 3] ], [ (200) x 4 ],
    'the rate and its burst pass' or diag "@status";
my $r = $s->request(GET => '/chat/health');
is $r->{status}, 429, 'then 429' or diag "@status";
is $r->{json}{error}{code}, 'rate_limited', '... in the API\'s error shape'
    or diag $r->{body};
like $r->{headers}{'retry-after'} // '', qr/\A\d+\z/, '... with Retry-After';
$r = $s->request(POST => '/api/alice/chat', body => { message => 'hi' });
is $r->{status}, 429, '/api/ is limited too';
$r = $s->request(POST => '/mcp', body => { jsonrpc => '2.0', id => 1,
    method => 'ping' });
is $r->{status}, 429, '/mcp is limited too';
$r = $s->request(GET => '/');
is $r->{status}, 200, 'the chat page, which nginx serves itself, is not';
unlike $s->log, qr/429/, 'the workers never saw the refused requests';

done_testing;
