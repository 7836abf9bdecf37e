#!/usr/bin/perl
# t/51-model-stream.t: the remote backend streaming, through a streamed
# POST /chat against t/mock_model.py: an answer streamed in small pieces
# is stored as the same answer; a model that goes silent mid-stream for
# longer than CHAT_MODEL_TIMEOUT_MS gives an error part model_timeout;
# a stream cut short gives model_error; the user message is kept.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use Stack;

Stack::node_modules();	# skips the test when there is no node

my $JSON = JSON::PP->new->utf8->canonical;
binmode Test::More->builder->$_, ':encoding(UTF-8)'
    for qw(output failure_output todo_output);
# A silence of 3 s is past the timeout; the quick cases are far below.
my $s = Stack->new(workers => 2, model => 'mock', mock_key => 'k',
    env => { CHAT_MODEL_TIMEOUT_MS => 1500 });
my $alice = $s->token('alice');

sub script {
	$s->mock_reset;
	$s->mock_script([ @_ ]);
}

sub turn {
	my ($message) = @_;
	my $r = $s->ui_stream('/chat', token => $alice,
	    body => { message => $message });
	return ($r, Stack::ui_turn($r->{raw}));
}

sub stored {
	my ($conversation_id) = @_;
	return [ map { "$_->[0]: $_->[1]" } @{ $s->sql(q{SELECT role,
	    coalesce(content, '') FROM messages WHERE conversation_id = $1
	    ORDER BY id}, $conversation_id) } ];
}

sub conversation {
	my ($message) = @_;
	return $s->sql_value(q{SELECT conversation_id FROM messages
	    WHERE content = $1 ORDER BY id DESC LIMIT 1}, $message);
}

# ------------------------------------------- 1. pieces make the answer

my $words = "Caf\x{e9} \x{2014} tout est pr\x{ea}t \x{2713}, in pieces.";
script({ reply => { content => $words }, piece_chars => 2,
    chunk_delay_ms => 5 });
my ($r, $t) = turn('stream me an answer');
is $r->{status}, 200, 'pieces: 200' or diag $r->{raw};
is_deeply $t->{problems}, [], 'pieces: the stream keeps the contract'
    or diag explain $t->{problems};
is $t->{answer}, $words, 'pieces: the words, joined, are the answer';
my $req = $s->mock_requests;
is_deeply [ map { [ $_->{body}{stream}, $_->{body}{stream_options} ] }
    @$req ], [ [ JSON::PP::true, { include_usage => JSON::PP::true } ] ],
    'pieces: one request, asking for a stream with usage';
is_deeply stored(conversation('stream me an answer')),
    [ 'user: stream me an answer', "assistant: $words" ],
    'pieces: the stored answer is the one sent in pieces';

# ------------------------------------ 2. silence mid-stream: a timeout

script({ reply => { content => 'one two three four' }, piece_chars => 4,
    stall_after => 2, stall_ms => 3000 });
($r, $t) = turn('go quiet halfway');
my $e = eval { $JSON->decode($t->{error} // '') } // {};
is $e->{error}{code}, 'model_timeout', 'silence: an error part model_timeout'
    or diag $r->{raw};
is_deeply stored(conversation('go quiet halfway')),
    [ 'user: go quiet halfway' ], 'silence: the user message is kept alone';

# ------------------------------------------- 3. cut short: an error

script({ reply => { content => 'one two three four' }, piece_chars => 4,
    cut_after => 3 });
($r, $t) = turn('hang up on me');
$e = eval { $JSON->decode($t->{error} // '') } // {};
is $e->{error}{code}, 'model_error', 'cut short: an error part model_error'
    or diag $r->{raw};
is_deeply stored(conversation('hang up on me')),
    [ 'user: hang up on me' ], 'cut short: the user message is kept alone';

done_testing;
