#!/usr/bin/perl
# t/41-stream-pings.t: a streamed turn whose model thinks for a minute
# before it answers, through an nginx that gives up on an upstream
# silent for 25 s (a stricter proxy than the 60 s read timeouts found in
# front of services). The worker's ": ping" comments, one at least every
# 15 s while nothing else goes out, keep the connection: the answer
# arrives after the minute, and the stream is never silent longer than
# 15 s. Without the pings nginx would end the response at 25 s.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Stack;

my $THINK_MS = 61000;
my $s = Stack->new(workers => 1, model => 'mock', read_timeout => 25,
    env => { CHAT_MODEL_TIMEOUT_MS => $THINK_MS + 20000 });
my $alice = $s->token('alice');

$s->mock_script([ { reply => { content => 'Worth the wait.' },
    delay_ms => $THINK_MS } ]);
my $st = $s->stream_open('/chat', token => $alice,
    body => { message => 'Take your time' });
ok $st->read_all($THINK_MS / 1000 + 30), 'the stream ended';
is $st->status, 200, '200';
my $t = Stack::ui_turn($st->body);
is_deeply $t->{problems}, [], 'the stream keeps the contract'
    or diag explain $t->{problems};
is $t->{answer}, 'Worth the wait.', 'the answer came';
like $st->body, qr/data: \[DONE\]\n\n\z/, 'the stream ends with [DONE]';

# Arrival times: the longest silence, and pings before the answer.
my ($last, $gap, $pings_before) = (0, 0, 0);
my $answered;
for my $a (@{ $st->arrivals }) {
	$gap = $a->[0] - $last if $a->[0] - $last > $gap;
	$last = $a->[0];
	$answered //= $a->[0]
	    if $a->[1] =~ /"type":"(?:text-delta|finish-step)"/;
	$pings_before++ if !defined $answered && $a->[1] =~ /^: ping\n\n/m;
}
ok $answered && $answered >= $THINK_MS / 1000 - 1,
    sprintf 'the answer after the model\'s %d s (%.1f s)', $THINK_MS / 1000,
    $answered // -1;
ok $pings_before >= 4, "$pings_before pings before the answer";
ok $gap <= 15, sprintf 'never silent over 15 s (longest %.1f s)', $gap;
is $s->sql_value(q{SELECT content FROM messages WHERE user_id = 'alice'
    AND role = 'assistant'}), 'Worth the wait.', 'the answer is stored';

done_testing;
