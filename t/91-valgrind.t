#!/usr/bin/perl
# t/91-valgrind.t: one worker under valgrind's memcheck serves a mix of
# turns, tool rounds, browsing and bad requests, then exits as multiwatch
# stops it: no invalid access, no uninitialised read, no leak.
# VALGRIND_REQUESTS sets how many requests (default 1000).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Stack;

my $n = $ENV{VALGRIND_REQUESTS} // 1000;
my $bin = $ENV{CHAT_FCGI_PLAIN} // './chat.fcgi';
local $ENV{CHAT_FCGI} = join ' ', '/usr/bin/valgrind', '--leak-check=full',
    '--show-leak-kinds=definite,indirect',
    '--errors-for-leak-kinds=definite,indirect', '--track-origins=yes',
    '--error-exitcode=99', $bin;
my $s = Stack->new(workers => 1, max_seconds => 600);
my $alice = $s->token('alice');
my $expired = $s->token('alice', exp => time - 10);

my $conv = $s->request(POST => '/chat', token => $alice,
    body => { message => 'hello' })->{json}{conversation_id};

# [method, path, token, body, headers, status]
my @mix = (
 [ POST => '/chat', $alice, { message => 'Add a task to buy milk',
   conversation_id => $conv }, {}, 200 ],
 [ POST => '/chat', $alice, { message => 'Show me all my tasks',
   conversation_id => $conv }, {}, 200 ],
 [ POST => '/chat', $alice, { message => 'Delete the milk task',
   conversation_id => $conv }, {}, 200 ],
 [ POST => '/chat', $alice, { message => "What's pending?" }, {}, 200 ],
 [ POST => '/api/alice/chat', $alice, { message => 'hi there' }, {}, 200 ],
 [ GET => '/chat/conversations?limit=2', $alice, undef, {}, 200 ],
 [ GET => "/chat/conversations/$conv/messages?limit=5", $alice, undef, {},
   200 ],
 [ GET => '/chat/health', undef, undef, {}, 200 ],
 [ POST => '/chat', $alice, '{"message":', {}, 400 ],
 [ POST => '/chat', $alice, "{\"message\":\"\xff\"}", {}, 400 ],
 [ POST => '/chat', $alice, { message => 5 }, {}, 400 ],
 [ POST => '/chat', $expired, { message => 'hi' }, {}, 401 ],
 [ POST => '/chat', 'x.y.z', { message => 'hi' }, {}, 401 ],
 [ POST => '/api/bob/chat', $alice, { message => 'hi' }, {}, 403 ],
 [ GET => '/nowhere', $alice, undef, {}, 404 ],
 [ DELETE => '/chat', $alice, undef, {}, 405 ],
 [ POST => '/chat', $alice, { message => 'x' x 70000 }, {}, 413 ],
 [ GET => '/chat/conversations?limit=1000', $alice, undef, {}, 400 ],
);

my $bad = 0;
for my $i (1 .. $n) {
	my ($method, $path, $token, $body, $headers, $status) =
	    @{ $mix[$i % @mix] };
	my %o = (headers => { %$headers }, timeout => 60);
	$o{token} = $token if defined $token;
	$o{body} = $body if defined $body;
	$o{headers}{'Idempotency-Key'} = "vg-$i" if $i % 7 == 0 &&
	    $method eq 'POST';
	my $r = $s->request($method, $path, %o);
	if ($r->{status} != $status) {
		diag "request $i $method $path: $r->{status} $r->{body}";
		$bad++;
	}
}
is $bad, 0, "$n requests, each with the expected status";

$s->stop_workers;
my $log = $s->log;
my @summaries = $log =~ /ERROR SUMMARY: (\d+) errors/g;
ok @summaries >= 1, 'valgrind reported on the worker' or diag $log;
is_deeply [ grep { $_ != 0 } @summaries ], [], 'no memcheck error'
    or diag $log;
unlike $log, qr/definitely lost: [1-9]|indirectly lost: [1-9]/,
    'nothing leaked';

done_testing;
