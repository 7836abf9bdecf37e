#!/usr/bin/perl
# t/35-stream-reader.t: the judge of the streaming tests, judged first.
# t/js/read-ui-stream.mjs reads a UI message stream with the ai
# package's own transport, parser and state machine (what useChat runs);
# here it reads hand-written streams from files, no server: a good turn
# (a tool round, then words, a ping between) gives the UIMessage a
# browser would show, and each kind of fault a server could make (a
# chunk of the wrong shape, a chunk type the protocol does not have, a
# data line that is not JSON, a delta of a text never started, an output
# for a call never made) is reported as an error, never passed over.
# Stack::ui_turn, which reads the same bytes against our own contract,
# is held to the same standard.
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
my $dir = tempdir(CLEANUP => 1);
my $seq = 0;

# A stream of the given events: each a chunk (a hash, sent as JSON) or
# a string (the data line as it is), numbered from 1, then [DONE].
sub stream {
	my (@events) = @_;
	my ($id, $text) = (0, '');
	for my $e (@events) {
		if (ref $e eq 'SCALAR') {	# \': ping': a comment
			$text .= "$$e\n\n";
			next;
		}
		$text .= sprintf "id: %d\ndata: %s\n\n", ++$id,
		    ref $e ? $JSON->encode($e) : $e;
	}
	return $text . sprintf "id: %d\ndata: [DONE]\n\n", ++$id;
}

sub read_file {
	my ($text) = @_;
	my $f = "$dir/stream-" . ++$seq;
	open my $fh, '>:raw', $f or die "$f: $!\n";
	print $fh $text;
	close $fh;
	my $r = Stack::Node->run('read-ui-stream.mjs', args => [ '--file', $f ],
	    timeout => 60);
	my $line = $r->{json} or die "no JSON from read-ui-stream.mjs: $r->{err}\n";
	$line->{exit} = $r->{exit};
	return $line;
}

my @call = ({ type => 'start-step' },
    { type => 'tool-input-available', toolCallId => 'call_1',
      toolName => 'add_task', input => { title => 'Buy milk' } },
    { type => 'tool-output-available', toolCallId => 'call_1',
      output => { task_id => 3, status => 'created', title => 'Buy milk' } },
    { type => 'finish-step' });
my @words = ({ type => 'start-step' },
    { type => 'text-start', id => 't1' },
    { type => 'text-delta', id => 't1', delta => 'Added ' },
    { type => 'text-delta', id => 't1', delta => "\"Buy milk\" \x{2014} done." },
    { type => 'text-end', id => 't1' },
    { type => 'finish-step' });
my $start = { type => 'start',
    messageMetadata => { conversation_id => 7, user_message_id => 12 } };

# 1. A good turn.
my $r = read_file(stream($start, @call, \': ping', @words,
    { type => 'finish' }));
is $r->{exit}, 0, 'a good stream: exit 0';
is_deeply $r->{errors}, [], '... no errors' or diag explain $r->{errors};
is_deeply $r->{chunks}, [ qw(start start-step tool-input-available
    tool-output-available finish-step start-step text-start text-delta
    text-delta text-end finish-step finish) ], '... every chunk, in order';
is_deeply $r->{message}{metadata},
    { conversation_id => 7, user_message_id => 12 },
    '... the start\'s messageMetadata is the message\'s metadata';
is $r->{message}{role}, 'assistant', '... an assistant message';
is_deeply [ map { $_->{type} } @{ $r->{message}{parts} } ],
    [ qw(step-start tool-add_task step-start text) ],
    '... parts: a step with the tool, a step with the text';
my ($tool) = grep { $_->{type} eq 'tool-add_task' } @{ $r->{message}{parts} };
is $tool->{state}, 'output-available', '... the tool part has its output';
is_deeply $tool->{input}, { title => 'Buy milk' }, '... and its input';
is $tool->{output}{task_id}, 3, '... the output as sent';
my ($text) = grep { $_->{type} eq 'text' } @{ $r->{message}{parts} };
is $text->{text}, "Added \"Buy milk\" \x{2014} done.",
    '... the text is the deltas joined (UTF-8 kept)';
is $text->{state}, 'done', '... and done';
like $r->{raw}, qr/\A id: \s 1 \n/x, '... raw: the bytes as read';

# CRLF line ends are SSE too.
(my $crlf = stream($start, @words, { type => 'finish' })) =~ s/\n/\r\n/g;
$r = read_file($crlf);
is_deeply $r->{errors}, [], 'CRLF line ends: no errors';
is $r->{message}{parts}[-1]{text}, "Added \"Buy milk\" \x{2014} done.",
    '... the same text';

# 2. An error part: useChat's onError gets its text; not a fault.
my $err = $JSON->encode({ error => { code => 'model_error',
    message => 'The model failed' }, conversation_id => 7 });
$r = read_file(stream($start, { type => 'start-step' },
    { type => 'error', errorText => $err }, { type => 'finish' }));
is $r->{exit}, 0, 'an error part: exit 0';
is_deeply $r->{errors}, [], '... no fault' or diag explain $r->{errors};
is_deeply $r->{error_texts}, [ $err ], '... its errorText, as sent';

# 3. What a faulty server could send: each is an error, with the
# offending chunk or text.
my @faults = (
	[ 'a delta that is a number',
	  [ $start, { type => 'start-step' }, { type => 'text-start', id => 't' },
	    { type => 'text-delta', id => 't', delta => 5 } ],
	  'AI_TypeValidationError' ],
	[ 'a tool call without its input',
	  [ $start, { type => 'start-step' }, { type => 'tool-input-available',
	    toolCallId => 'c', toolName => 'add_task' } ],
	  'AI_TypeValidationError' ],
	[ 'a chunk type the protocol does not have',
	  [ $start, { type => 'text', text => 'hello' } ],
	  'AI_TypeValidationError' ],
	[ 'a data line that is not JSON',
	  [ $start, '{"type":"start-step"' ], 'AI_JSONParseError' ],
	[ 'a delta of a text never started',
	  [ $start, { type => 'start-step' },
	    { type => 'text-delta', id => 'nope', delta => 'x' } ],
	  'AI_UIMessageStreamError' ],
	[ 'an output for a call never made',
	  [ $start, { type => 'start-step' }, { type => 'tool-output-available',
	    toolCallId => 'nope', output => {} } ],
	  'AI_UIMessageStreamError' ],
	[ 'a finish reason the protocol does not have',
	  [ $start, { type => 'finish', finishReason => 'done' } ],
	  'AI_TypeValidationError' ],
);
for my $f (@faults) {
	my ($name, $events, $error) = @$f;
	$r = read_file(stream(@$events));
	is $r->{exit}, 1, "$name: exit 1";
	is_deeply [ map { $_->{name} } @{ $r->{errors} } ], [ $error ],
	    "$name: $error" or diag explain $r->{errors};
}
ok exists $r->{errors}[0]{value}, 'a schema error names the chunk';

# 4. Stack::ui_turn, the contract's own reading of the bytes: the good
# turn keeps it; each break of it is named.
my $good = stream($start, @call, \': ping', @words, { type => 'finish' });
my $t = Stack::ui_turn($good);
is_deeply $t->{problems}, [], 'ui_turn: the good turn keeps the contract'
    or diag explain $t->{problems};
is $t->{pings}, 1, 'ui_turn: one ping';
is $t->{answer}, "Added \"Buy milk\" \x{2014} done.",
    'ui_turn: the last step\'s text, decoded';
is_deeply [ map { $_->{name} } @{ $t->{steps}[0]{tools} } ], [ 'add_task' ],
    'ui_turn: the first step\'s call';
is $t->{steps}[0]{tools}[0]{output}{task_id}, 3, 'ui_turn: ... with its output';
my @broken = (
	[ 'no [DONE]', sub { $_[0] =~ s/id: \d+\ndata: \[DONE\]\n\n//r },
	  qr/does not end with \[DONE\]/ ],
	[ 'an id that does not grow', sub { $_[0] =~ s/id: 3\n/id: 2\n/r },
	  qr/does not grow/ ],
	[ 'an id that is not decimal', sub { $_[0] =~ s/id: 3\n/id: x3\n/r },
	  qr/neither one event/ ],
	[ 'two data lines in an event',
	  sub { $_[0] =~ s/(data: \{"type":"start-step"\})/$1\ndata: {}/r },
	  qr/neither one event/ ],
	[ 'a part outside a step',
	  sub { $_[0] =~ s/id: 6\ndata: \{"type":"start-step"\}\n\n//r },
	  qr/outside a step/ ],
	[ 'a delta after its text ended', sub { stream($start,
	  @words[0, 1, 4, 2], $words[5], { type => 'finish' }) },
	  qr/a delta of text 't1', not open/ ],
	[ 'no finish', sub { $_[0] =~ s/id: \d+\ndata: \{"type":"finish"\}\n\n//r },
	  qr/no finish part/ ],
	[ 'an output without its input', sub { $_[0] =~
	  s/id: 3\ndata: \{[^\n]*tool-input-available[^\n]*\}\n\n//r },
	  qr/never asked for/ ],
);
for my $b (@broken) {
	my ($name, $edit, $re) = @$b;
	my $text = $edit->($good);
	isnt $text, $good, "ui_turn: $name: the stream was edited";
	my @p = @{ Stack::ui_turn($text)->{problems} };
	ok scalar(grep { /$re/ } @p), "ui_turn: $name: named"
	    or diag explain \@p;
}

done_testing;
