#!/usr/bin/perl
# t/37-stream-model.t: streamed turns against a remote model (the mock,
# t/mock_model.py), through nginx: a scripted answer and tool round
# streamed and read by the ai package; a model that fails after the
# stream began (an error part carrying the JSON error, then finish and
# [DONE], the user message kept); and a client that goes away while the
# model is still thinking (the turn is finished and stored all the
# same). t/41-stream-pings.t has the model that thinks for a minute.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use Stack;

Stack::node_modules();	# skips the test when there is no node

my $JSON = JSON::PP->new->utf8->canonical;
binmode Test::More->builder->$_, ':encoding(UTF-8)'
    for qw(output failure_output todo_output);
# Retries of quick 500s are over in a few seconds whatever the timeout.
my $s = Stack->new(workers => 2, model => 'mock', mock_key => 'k',
    env => { CHAT_MODEL_TIMEOUT_MS => 20000,
    CHAT_MAX_TOOL_ROUNDS => 3 });
my $alice = $s->token('alice');

sub script {
	my (@steps) = @_;
	$s->mock_reset;
	$s->mock_script(\@steps) if @steps;
}

sub answer { return { reply => { content => $_[0] }, @_[1 .. $#_] } }

sub calls {
	return { reply => { content => undef, tool_calls => [ map { {
	    id => $_->[0], name => $_->[1], arguments => $_->[2] } } @_ ] } };
}

sub shape {
	my ($t) = @_;
	return join ' ', 'start', (map { '[' . join(' ',
	    (map { "$_->{name}" } @{ $_->{tools} }),
	    (map { 'text' } grep { length } @{ $_->{texts} })) . ']' }
	    @{ $t->{steps} }), (defined $t->{error} ? 'error' : ()), 'finish';
}

sub roles {
	my ($conversation_id) = @_;
	return join ' ', map { $_->[0] eq 'assistant'
	    ? ($_->[1] eq 't' ? 'calls' : 'answer') : $_->[0] }
	    @{ $s->sql(q{SELECT role, tool_calls IS NOT NULL FROM messages
	    WHERE conversation_id = $1 ORDER BY id}, $conversation_id) };
}

# ------------------------------------ 1. a scripted answer and a round

my $words = "Sure \x{2014} I\x{2019}ve added \"Buy milk\" to your list.";
script(calls([ 'call_a1', 'add_task', { title => 'Buy milk' } ]),
    answer($words));
my $r = $s->ui_stream('/chat', token => $alice,
    body => { message => 'Add a task to buy milk' });
is $r->{status}, 200, 'mock round: 200' or diag $r->{raw};
is_deeply $r->{errors}, [], 'mock round: the ai package takes every chunk'
    or diag explain $r->{errors};
my $t = Stack::ui_turn($r->{raw});
is_deeply $t->{problems}, [], 'mock round: the stream keeps the contract'
    or diag explain $t->{problems}, $r->{raw};
is shape($t), 'start [add_task] [text] finish',
    'mock round: the call\'s step, then the answer\'s';
is $t->{steps}[0]{tools}[0]{id}, 'call_a1', 'mock round: the model\'s call id';
is_deeply $t->{steps}[0]{tools}[0]{input}, { title => 'Buy milk' },
    'mock round: the model\'s arguments';
is $t->{answer}, $words, 'mock round: the model\'s words, UTF-8 intact';
is scalar($s->sql_value(q{SELECT content FROM messages WHERE conversation_id
    = $1 ORDER BY id DESC LIMIT 1}, $t->{metadata}{conversation_id})),
    $words, 'mock round: ... stored';
is $r->{message}{parts}[-1]{text}, $words, 'mock round: useChat\'s text';

# Text the model sends with its calls belongs to that step.
script({ reply => { content => 'Let me look.', tool_calls => [
    { id => 'call_l1', name => 'list_tasks', arguments => {} } ] } },
    answer('You have one task.'));
$r = $s->ui_stream('/chat', token => $alice,
    body => { message => 'What is on my list?' });
$t = Stack::ui_turn($r->{raw});
is_deeply [ $r->{errors}, $t->{problems} ], [ [], [] ],
    'words with calls: the ai package and the contract agree'
    or diag explain $r->{errors}, $t->{problems};
is shape($t), 'start [list_tasks text] [text] finish',
    'words with calls: text in the call\'s step';
is join('', @{ $t->{steps}[0]{texts} }), 'Let me look.',
    'words with calls: ... those words';
is $t->{answer}, 'You have one task.', 'words with calls: the answer is the'
    . ' last step\'s text only';

# ------------------------------------- 2. the model fails after the start

script(map { { status => 500 } } 1 .. 8);
my $j = $s->request(POST => '/chat', token => $alice,
    body => { message => 'always 500, JSON' });
is $j->{status}, 502, 'always 500 without streaming: 502';
is $j->{json}{error}{code}, 'model_error', '... model_error';

script(map { { status => 500 } } 1 .. 8);
$r = $s->ui_stream('/chat', token => $alice,
    body => { message => 'always 500' });
is $r->{status}, 200, 'always 500 streamed: 200, the stream had begun';
is_deeply $r->{errors}, [], 'always 500: the ai package takes every chunk'
    or diag explain $r->{errors};
$t = Stack::ui_turn($r->{raw});
# An output-less call is not expected here: no call was made.
is_deeply $t->{problems}, [], 'always 500: the stream keeps the contract'
    or diag explain $t->{problems}, $r->{raw};
my @types = map { $_->{type} } @{ $t->{parts} };
is $types[-2], 'error', 'always 500: an error part before finish';
is $types[-1], 'finish', 'always 500: then finish';
ok $t->{done}, 'always 500: then [DONE]';
is scalar(grep { $_ eq 'error' } @types), 1, 'always 500: one error part';
is_deeply $r->{error_texts}, [ $t->{error} ],
    'always 500: useChat\'s onError gets its errorText';
my $e = eval { $JSON->decode($t->{error} // '') };
is ref $e, 'HASH', 'always 500: the errorText is a JSON object'
    or diag $t->{error};
is $e->{error}{code}, 'model_error', 'always 500: error.code model_error';
is $e->{error}{message}, $j->{json}{error}{message},
    'always 500: error.message as the JSON answer\'s';
is $e->{conversation_id}, $t->{metadata}{conversation_id},
    'always 500: conversation_id, the stream\'s';
is_deeply [ sort keys %$e ], [ sort keys %{ $j->{json} } ],
    'always 500: the keys of the JSON error body';
is roles($t->{metadata}{conversation_id}), 'user',
    'always 500: the user message is stored, no answer';
is scalar($s->sql_value(q{SELECT content FROM messages WHERE id = $1},
    $t->{metadata}{user_message_id})), 'always 500',
    'always 500: ... the message sent';
ok !grep({ /\A(?:text-delta|tool-)/ } @types),
    'always 500: no words and no calls made up';

# A failure in the second round: the first round's call and output
# stand, the error follows.
script(calls([ 'call_f1', 'add_task', { title => 'Half done' } ]),
    map { { status => 500 } } 1 .. 8);
$r = $s->ui_stream('/chat', token => $alice,
    body => { message => 'Add a task, then fail' });
$t = Stack::ui_turn($r->{raw});
is_deeply [ $r->{errors}, $t->{problems} ], [ [], [] ],
    'fails in round 2: the ai package and the contract agree'
    or diag explain $r->{errors}, $t->{problems}, $r->{raw};
like shape($t), qr/\Astart \[add_task\] (?:\[\] )?error finish\z/,
    'fails in round 2: the round, then the error' or diag shape($t);
is $t->{steps}[0]{tools}[0]{output}{title}, 'Half done',
    'fails in round 2: the first round\'s output';
is eval { $JSON->decode($t->{error})->{error}{code} }, 'model_error',
    'fails in round 2: model_error';
is roles($t->{metadata}{conversation_id}), 'user calls tool',
    'fails in round 2: the committed round is stored, no answer';

# ------------------ 3. a client gone while the model is still thinking

script(calls([ 'call_g1', 'add_task', { title => 'Left behind' } ]),
    answer('Added "Left behind" while you were away.', delay_ms => 2000));
my $st = $s->stream_open('/chat', token => $alice,
    body => { message => 'Add a task and wait' });
my $opened = time;
ok $st->read_until(qr/"tool-output-available"/, 20),
    'gone: the first round streamed' or diag $st->body;
ok time - $opened < 1.5, sprintf 'gone: ... in %.2f s, while the model'
    . ' still thinks: nothing on the way holds it back', time - $opened;
my ($conv) = $st->body =~ /"conversation_id":([0-9]+)/;
$st->close;
my $t0 = time;
my $stored = eval { $s->wait_until(sub { $s->sql_value(q{SELECT content
    FROM messages WHERE conversation_id = $1 AND role = 'assistant'
    AND tool_calls IS NULL}, $conv // 0) }, 20, 'the answer stored') };
is $stored, 'Added "Left behind" while you were away.',
    sprintf 'gone: the answer was stored all the same (%.1f s later)',
    time - $t0;
is roles($conv // 0), 'user calls tool answer', 'gone: the whole turn';
is $s->request(GET => '/chat/health')->{status}, 200,
    'gone: the workers still answer';

done_testing;
