#!/usr/bin/perl
# t/39-stream-resume.t: a streamed turn followed from another connection,
# which any worker may serve (GET /chat/conversations/{id}/stream): the
# same events from the start, or after a Last-Event-ID, live to [DONE];
# 204 when no turn runs, 404 for a conversation that is not the
# caller's; and POST .../stop answering 204 or 404 as the contract says.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use POSIX qw(_exit);
use Test::More;
use Time::HiRes qw(sleep time);
use Stack;

my $s = Stack->new(workers => 3, model => 'mock');
my $alice = $s->token('alice');
my $bob = $s->token('bob');
my $U = 'http://127.0.0.1:' . $s->port;
my $dir = $s->dir;

# curl in a child of its own, its answer (head and body) into a file: a
# follower runs beside the turn it follows.
sub follow {
	my ($name, $path, $token, @headers) = @_;
	my $pid = fork // die "fork: $!\n";
	if (!$pid) {
		{ no warnings 'exec'; exec 'curl', '-s', '-N', '-i',
		    '--max-time', '30', '-o', "$dir/$name", "$U$path",
		    '-H', "Authorization: Bearer $token",
		    map({ ('-H', $_) } @headers) }
		_exit(127);
	}
	return $pid;
}

sub slurp {
	open my $fh, '<:raw', $_[0] or return '';
	local $/;
	return scalar <$fh>;
}

# The events of a stream's text, pings left out (each connection makes
# its own), as "id: N\ndata: ..." blocks.
sub events {
	my ($text) = @_;
	$text =~ s/\A.*?\r\n\r\n//s;	# the head, when there is one
	return grep { !/\A:/ && length } split /\n\n/, $text;
}

sub wait_until {
	my ($cond, $seconds) = @_;
	my $end = time + $seconds;
	sleep 0.05 until $cond->() || time > $end;
	return $cond->();
}

# A turn that runs for 3 s: the model answers late.
$s->mock_script([{ delay_ms => 3000,
    reply => { content => 'Hello there, friend.' } }]);
my $orig = $s->stream_open('/chat', token => $alice,
    body => { message => 'hello' });
ok wait_until(sub { $s->sql_value(q{SELECT count(*) FROM turn_streams
    WHERE NOT done}) == 1 }, 10), 'the running turn has its record';
my $conv = $s->sql_value('SELECT max(conversation_id) FROM turn_streams');
my @kids = (follow('all', "/chat/conversations/$conv/stream", $alice),
    follow('after2', "/chat/conversations/$conv/stream", $alice,
    'Last-Event-ID: 2'),
    follow('bob', "/chat/conversations/$conv/stream", $bob));
$orig->read_all(30);
waitpid $_, 0 for @kids;

my @want = events($orig->body);
ok @want >= 6 && $want[-1] =~ /\Aid: \d+\ndata: \[DONE\]\z/,
    'the original stream ran to [DONE]' or diag $orig->body;
my $all = slurp("$dir/all");
like $all, qr{\AHTTP/1\.1 200 }, 'a follower of the running turn: 200';
like $all, qr{^Content-Type: text/event-stream\r$}mi, '... an event stream';
like $all, qr{^x-vercel-ai-ui-message-stream: v1\r$}mi,
    '... of the UI message stream protocol';
is_deeply [ events($all) ], \@want,
    '... with the same events as the original, from its start to [DONE]';
is_deeply [ events(slurp("$dir/after2")) ], [ grep { !/\Aid: [12]\n/ }
    @want ], 'after Last-Event-ID: 2, the events from the third on';
like slurp("$dir/bob"), qr{\AHTTP/1\.1 404 .*"conversation_not_found"}s,
    "another user's conversation: 404, as everywhere";

# No turn runs now.
my $r = $s->request(GET => "/chat/conversations/$conv/stream",
    token => $alice);
is $r->{status}, 204, 'a conversation with no running turn: 204';
is $s->request(GET => '/chat/conversations/x1/stream',
    token => $alice)->{status}, 404, 'a path id that is no id: 404';
is $s->request(GET => "/chat/conversations/$conv/stream")->{status}, 401,
    'without a token: 401';

# Stop: 204 running or not, 404 for what is not the caller's.
is $s->request(POST => "/chat/conversations/$conv/stop",
    token => $alice)->{status}, 204, 'stop with no running turn: 204';
$r = $s->request(POST => "/chat/conversations/$conv/stop", token => $bob);
is $r->{status}, 404, "stop of another user's conversation: 404";
is $r->{json}{error}{code}, 'conversation_not_found', '... not_found';
is $s->request(GET => "/chat/conversations/$conv/stop",
    token => $alice)->{status}, 405, 'stop is a POST: 405 otherwise';

my $answer = $s->sql_value(q{SELECT content FROM messages
    WHERE conversation_id = $1 AND role = 'assistant'}, $conv);
is $answer, 'Hello there, friend.', 'the turn was stored';

# Stopping a running turn: the model streams a long answer slowly; a
# stop asked on another connection ends it within a second, the words
# so far stored as its answer, its stream and a follower's ended.
my $long = join ' ', map { "word$_" } 1 .. 200;
$s->mock_script([{ reply => { content => $long }, piece_chars => 6,
    chunk_delay_ms => 100 }]);
my $st = $s->stream_open('/chat', token => $alice,
    body => { message => 'tell me a long story',
    conversation_id => 0 + $conv });
$st->read_until(qr/"text-delta"/, 10);
my $follower = follow('stopped', "/chat/conversations/$conv/stream",
    $alice);
sleep 0.5;
my $t0 = time;
is $s->request(POST => "/chat/conversations/$conv/stop",
    token => $alice)->{status}, 204, 'stop of a running turn: 204';
$st->read_all(10);
my $took = time - $t0;
ok $took < 1.5, sprintf 'the stopped stream ended within a second or so '
    . '(%.2f s)', $took;
waitpid $follower, 0;
my @got = events($st->body);
diag $st->body unless @got && $got[-1] =~ /DONE/;
like $got[-1], qr/\Aid: \d+
data: \[DONE\]\z/, '... with [DONE]';
like $got[-2], qr/"type":"finish"/, '... after finish';
my $deltas = join '', map { /"delta":"((?:[^"\\]|\\.)*)"/ ? $1 : () } @got;
my $stored = $s->sql_value(q{SELECT content FROM messages
    WHERE conversation_id = $1 AND role = 'assistant'
    ORDER BY id DESC LIMIT 1}, $conv);
ok length $stored > 0 && length $stored < length $long,
    sprintf 'the words so far are the answer (%d of %d bytes)',
    length $stored, length $long;
is $deltas, $stored, '... exactly what the stream gave';
like slurp("$dir/stopped"), qr/data: \[DONE\]\n\n\z/,
    "the follower's stream ended too";
is $s->sql_value(q{SELECT count(*) FROM turn_streams WHERE NOT done}), 0,
    'no stream is left running';

# A turn no one follows keeps its events to itself (the database holds
# its head only: a write at its start and one at its end, reads between)
# and still sees a stop within a second: its worker reads the flags
# every half second.
my $before = $s->sql_value(q{SELECT count(*) FROM turn_stream_batches});
$s->mock_script([{ reply => { content => $long }, piece_chars => 6,
    chunk_delay_ms => 100 }]);
$st = $s->stream_open('/chat', token => $alice,
    body => { message => 'another long story',
    conversation_id => 0 + $conv });
$st->read_until(qr/"text-delta"/, 10);
sleep 1.5;
$t0 = time;
is $s->request(POST => "/chat/conversations/$conv/stop",
    token => $alice)->{status}, 204, 'unfollowed: stop: 204';
$st->read_all(10);
$took = time - $t0;
ok $took < 1.5, sprintf 'unfollowed: the stream ended within a second or '
    . 'so (%.2f s)', $took;
like $st->body, qr/"type":"finish".*data: \[DONE\]\n\n\z/s,
    'unfollowed: ... with finish and [DONE]';
is $s->sql_value(q{SELECT count(*) FROM turn_stream_batches}), $before,
    'unfollowed: no events were written to the database';
ok $s->sql_value(q{SELECT batches FROM turn_streams
    ORDER BY user_message_id DESC LIMIT 1}) <= 3,
    'unfollowed: its record was written at its start and end only';

# The client that started a turn goes away mid-answer (a page reloaded, a
# connection cut) and comes back after its last event: the record went
# on without it, so the rest of the turn follows, to [DONE], with not a
# word lost or repeated.
my $words = join ' ', map { "step$_" } 1 .. 30;
$s->mock_script([{ reply => { content => $words }, piece_chars => 5,
    chunk_delay_ms => 100 }]);
my $gone = $s->stream_open('/chat', token => $alice,
    body => { message => 'count the steps', conversation_id => 0 + $conv });
ok $gone->read_until(qr/^id: 10\n.*?\n\n/ms, 10), 'a turn streams';
my @first = events($gone->body);
pop @first unless $gone->body =~ /\n\n\z/;	# an event cut in two
my ($seen) = $first[-1] =~ /\Aid: (\d+)/;
$gone->close;
my $back = follow('back', "/chat/conversations/$conv/stream", $alice,
    "Last-Event-ID: $seen");
waitpid $back, 0;
my $rest = slurp("$dir/back");
like $rest, qr{\AHTTP/1\.1 200 }, 'followed after its last event: 200';
my @after = events($rest);
like $after[0], qr/\Aid: @{[ $seen + 1 ]}\n/, '... from the next event on';
like $after[-1], qr/data: \[DONE\]\z/, '... to [DONE], though its client '
    . 'left';
my $joined = join '', map { /"delta":"((?:[^"\\]|\\.)*)"/ ? $1 : () }
    @first, @after;
is $joined, $words, '... the deltas, joined, are the whole answer';

# Following after an id past what the turn will send: nothing to send
# is no stream, a 204 once the turn ends (not a 502 without a head).
$s->mock_script([{ reply => { content => 'short and slow' },
    piece_chars => 5, chunk_delay_ms => 200 }]);
my $next = $s->stream_open('/chat', token => $alice,
    body => { message => 'again', conversation_id => 0 + $conv });
ok $next->read_until(qr/text-delta/, 10), 'another turn streams';
$r = $s->request(GET => "/chat/conversations/$conv/stream",
    token => $alice, headers => { 'Last-Event-ID' => 999999 });
is $r->{status}, 204, 'after an id past its last event: 204 at its end';
$next->read_all(10);

done_testing;
