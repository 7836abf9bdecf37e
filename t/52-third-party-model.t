#!/usr/bin/perl
# t/52-third-party-model.t: the remote backend against an OpenAI-compatible
# mock that no one here wrote, @dwmkerr/mock-llm (t/js/mock-llm.mjs), so
# that the client is not only checked against our own idea of the API
# (t/mock_model.py). mock-llm answers by rules (a JMESPath match on the
# request, last match wins) from a config file; with "stream": true it
# sends the rule's answer as chat.completion.chunk events, a few
# characters each, the last one carrying the finish_reason, then [DONE],
# and no usage chunk. It cannot stream a tool call (it streams
# message.content only), so the tool turn is a whole one.
#
#   1. a whole turn: 200, the rule's answer as "response", stored
#   2. a streamed turn: the chunks' text, joined, is the streamed rule's
#      answer (which only a request with "stream": true gets), the stream
#      ends with [DONE] and the stored answer is the same text
#   3. a tool call (add_task) in a whole turn: the task is created, and
#      the answer after the tool result is stored
#   4. usage: a rule's answer carries "usage" (cached tokens too): the
#      turn's reply sums it, the message stores it, GET /chat/usage
#      counts it
#   5. a wrong key: mock-llm's 401 (OpenAI's body) is a 502 model_error
# Every answer rule wants the key as a bearer token; any other request
# gets mock-llm's 401.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use JSON::PP;
use Stack;

Stack::node_modules();	# skips the test when there is no node

my $JSON = JSON::PP->new->utf8->canonical;
# For JSON inside JSON (a rule's content): characters, encoded once with
# the config file.
my $TEXT = JSON::PP->new->canonical;
binmode Test::More->builder->$_, ':encoding(UTF-8)'
    for qw(output failure_output todo_output);

my $KEY = 'mock-llm-key-' . join '', map { int rand 10 } 1 .. 12;
my $ANSWER = "Hello from mock-llm: caf\x{e9} \x{2014} all is well \x{2713}.";
my $STREAMED = "Streamed by mock-llm, seven characters a chunk: "
    . "na\x{ef}ve \x{2014} r\x{e9}sum\x{e9} \x{2713}, the end.";
my $AFTER_TOOL = 'Added "Buy milk" to your list.';

# A chat.completion as mock-llm's rules give it: the text of the body.
sub completion {
	my (%message) = @_;
	my $usage = delete $message{usage};
	return $TEXT->encode({ id => 'chatcmpl-{{timestamp}}',
	    object => 'chat.completion', created => 1700000000,
	    model => 'mock-llm', choices => [ { index => 0,
	    message => { role => 'assistant', content => undef, %message },
	    finish_reason => $message{tool_calls} ? 'tool_calls' : 'stop' } ],
	    $usage ? (usage => $usage) : () });
}
my $COUNTED = 'Counted by mock-llm.';
my $USAGE = { prompt_tokens => 1234, completion_tokens => 56,
    total_tokens => 1290, prompt_tokens_details => { cached_tokens => 1024 },
    completion_tokens_details => { reasoning_tokens => 0 } };

my $authorized = "headers.authorization == 'Bearer $KEY'";
my $config = {
	streaming => { chunkSize => 7, chunkIntervalMs => 5 },
	rules => [
		# Anything else: OpenAI's 401.
		{ path => '^/v1/chat/completions$', method => 'POST',
		  match => '@', response => { status => 401,
		  content => $TEXT->encode({ error => {
		  message => 'Incorrect API key provided.',
		  type => 'invalid_request_error', param => undef,
		  code => 'invalid_api_key' } }) } },
		{ path => '^/v1/chat/completions$', method => 'POST',
		  match => $authorized,
		  response => { status => 200,
		  content => completion(content => $ANSWER) } },
		{ path => '^/v1/chat/completions$', method => 'POST',
		  match => "$authorized && body.stream == `true`",
		  response => { status => 200,
		  content => completion(content => $STREAMED) } },
		{ path => '^/v1/chat/completions$', method => 'POST',
		  match => "$authorized && body.messages[-1].role == 'user'"
		  . " && contains(body.messages[-1].content, 'milk')",
		  response => { status => 200, content => completion(
		  tool_calls => [ { id => 'call_mockllm_1', type => 'function',
		  function => { name => 'add_task', arguments =>
		  $TEXT->encode({ title => 'Buy milk' }) } } ]) } },
		{ path => '^/v1/chat/completions$', method => 'POST',
		  match => "$authorized && body.messages[-1].role == 'tool'",
		  response => { status => 200,
		  content => completion(content => $AFTER_TOOL) } },
		{ path => '^/v1/chat/completions$', method => 'POST',
		  match => "$authorized && body.messages[-1].role == 'user'"
		  . " && contains(body.messages[-1].content, 'count me')",
		  response => { status => 200,
		  content => completion(content => $COUNTED,
		  usage => $USAGE) } },
	],
};

# Its config is YAML, and JSON is YAML.
my $dir = tempdir('mock-llm-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $config_file = "$dir/mock-llm.yaml";
open my $fh, '>', $config_file or die "$config_file: $!\n";
print $fh $JSON->encode($config);
close $fh or die "$config_file: $!\n";

# At most 10 minutes up, whatever happens to this test.
my $mock = Stack::Node->start('mock-llm.mjs', $config_file, 600);
my $port = $mock->info->{port};
like $port, qr/\A\d+\z/, 'mock-llm listens on a port of its own';
is $mock->info->{version}, '0.1.29', 'mock-llm is the pinned version';

my $s = Stack->new(workers => 2, env => {
    CHAT_MODEL_URL => "http://127.0.0.1:$port/v1",
    CHAT_MODEL_KEY => $KEY, CHAT_MODEL_TIMEOUT_MS => 10000 });
my $alice = $s->token('alice');

sub stored {
	my ($conversation_id) = @_;
	return [ map { "$_->[0]: $_->[1]" } @{ $s->sql(q{SELECT role,
	    coalesce(content, '(calls ' || tool_calls::text || ')')
	    FROM messages WHERE conversation_id = $1 ORDER BY id},
	    $conversation_id) } ];
}

# ------------------------------------------------------- 1. whole turn

my $r = $s->request(POST => '/chat', token => $alice,
    body => { message => 'hello mock' });
is $r->{status}, 200, 'whole: 200' or diag $r->{body}, $mock->log_text;
is $r->{json}{response}, $ANSWER, 'whole: the response is mock-llm\'s answer';
my $conv = $r->{json}{conversation_id};
is_deeply stored($conv // 0), [ 'user: hello mock', "assistant: $ANSWER" ],
    'whole: the user message and the answer are stored';

# ---------------------------------------------------- 2. streamed turn

my $u = $s->ui_stream('/chat', token => $alice,
    body => { message => 'stream me something' });
my $t = Stack::ui_turn($u->{raw});
is $u->{status}, 200, 'streamed: 200' or diag $u->{raw}, $mock->log_text;
is_deeply $t->{problems}, [], 'streamed: the stream keeps the contract'
    or diag explain $t->{problems};
ok $t->{done}, 'streamed: it ends with [DONE]';
like $u->{raw}, qr/data: \[DONE\]\n\n\z/, '... the last event';
ok !defined $t->{error}, 'streamed: no error part'
    or diag $t->{error};
is $t->{answer}, $STREAMED,
    'streamed: the text deltas, joined, are mock-llm\'s streamed answer';
my $sconv = $s->sql_value(q{SELECT conversation_id FROM messages
    WHERE content = $1 ORDER BY id DESC LIMIT 1}, 'stream me something');
is_deeply stored($sconv // 0),
    [ 'user: stream me something', "assistant: $t->{answer}" ],
    'streamed: the stored answer is the joined deltas';

# ------------------------------------------------ 3. a tool call, whole

$r = $s->request(POST => '/chat', token => $alice,
    body => { message => 'please add buy milk' });
is $r->{status}, 200, 'tool: 200' or diag $r->{body}, $mock->log_text;
is $r->{json}{response}, $AFTER_TOOL, 'tool: the answer after the tool';
my $tasks = $s->sql(q{SELECT id, title, completed FROM tasks
    WHERE user_id = $1 ORDER BY id}, 'alice');
is_deeply [ map { [ @$_[1, 2] ] } @$tasks ], [ [ 'Buy milk', 'f' ] ],
    'tool: add_task created alice\'s task';
my $task_id = @$tasks ? 0 + $tasks->[0][0] : -1;
is_deeply $r->{json}{tool_calls}, [ { name => 'add_task',
    arguments => { title => 'Buy milk' }, result => { task_id => $task_id,
    status => 'created', title => 'Buy milk' } } ],
    'tool: tool_calls in the response: name, arguments, result';
my $rows = stored($r->{json}{conversation_id} // 0);
is scalar @$rows, 4, 'tool: stored user, call, result, answer'
    or diag explain $rows;
like $rows->[1] // '', qr/\Aassistant: \(calls .*call_mockllm_1.*add_task/,
    'tool: the call is stored with mock-llm\'s id';
is $rows->[3], "assistant: $AFTER_TOOL", 'tool: the answer is stored';

# ------------------------------------------------------------ 4. usage

my $before = $s->request(GET => '/chat/usage', token => $s->token('carol'));
$r = $s->request(POST => '/chat', token => $s->token('carol'),
    body => { message => 'please count me in' });
is $r->{status}, 200, 'usage: 200' or diag $r->{body}, $mock->log_text;
is $r->{json}{response}, $COUNTED, 'usage: the rule\'s answer';
is_deeply $r->{json}{usage}, { prompt_tokens => 1234,
    completion_tokens => 56, total_tokens => 1290 },
    'usage: the reply carries what mock-llm reported';
is_deeply $s->sql(q{SELECT prompt_tokens, completion_tokens, cached_tokens
    FROM messages WHERE conversation_id = $1 AND role = 'assistant'},
    $r->{json}{conversation_id}), [ [ 1234, 56, 1024 ] ],
    'usage: stored with the answer, cached tokens too';
my $after = $s->request(GET => '/chat/usage', token => $s->token('carol'));
is_deeply [ map { $after->{json}{today}{$_} - $before->{json}{today}{$_} }
    qw(turns prompt_tokens completion_tokens) ], [ 1, 1234, 56 ],
    'usage: GET /chat/usage counts the turn and its tokens';

# -------------------------------------------------------- 5. wrong key

my $bad = Stack->new(workers => 1, env => {
    CHAT_MODEL_URL => "http://127.0.0.1:$port/v1",
    CHAT_MODEL_KEY => 'not-the-key', CHAT_MODEL_TIMEOUT_MS => 10000 });
$r = $bad->request(POST => '/chat', token => $bad->token('alice'),
    body => { message => 'hello mock' });
is $r->{status}, 502, 'wrong key: mock-llm\'s 401 is a 502'
    or diag $r->{body};
is $r->{json}{error}{code}, 'model_error', 'wrong key: model_error'
    or diag $r->{body};
$bad->stop;

$s->stop;
$mock->stop;
done_testing;
