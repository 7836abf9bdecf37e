#!/usr/bin/perl
# t/78-bounds.t: what one turn may send the model is bounded, whatever the
# model asks for:
#
#   1. a list_tasks result of 100 tasks with 4,000-byte descriptions
#      (some 450 KB) reaches the model cut to CHAT_MAX_TOOL_RESULT_BYTES:
#      the first tasks and a note, one JSON object; the client's
#      tool_calls still carry the whole list
#   2. a reply asking for more calls than CHAT_MAX_TOOL_CALLS: the first
#      ones run, the others get an error as their result
#   3. a request over CHAT_MAX_REQUEST_BYTES leaves out the oldest history
#      (never opening on a tool result)
#   4. a message that cannot fit even without history: 200, an answer
#      that says so, the model never asked
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use Stack;

my $RESULT_MAX = 16384;	# the default
my $REQUEST_MAX = 65536;
my $s = Stack->new(workers => 1, model => 'mock', env => {
    CHAT_MAX_TOOL_RESULT_BYTES => $RESULT_MAX,
    CHAT_MAX_REQUEST_BYTES => $REQUEST_MAX,
    CHAT_MAX_TOOL_CALLS => 2,
    CHAT_HISTORY_TOKENS => 1000000 });
my $alice = $s->token('alice');
my $JSON = JSON::PP->new->utf8->canonical;

sub turn {
	my ($message, $conv) = @_;
	return $s->request(POST => '/chat', token => $alice, body => {
	    message => $message, $conv ? (conversation_id => $conv) : () });
}

# The messages of the model's requests since the last reset.
sub sent { [ map { $_->{body} } @{ $s->mock_requests } ] }

# ------------------------------------------------- 1. a huge list

$s->sql(q{INSERT INTO tasks (user_id, title, description)
    SELECT 'alice', 'task ' || g, repeat('d', 4000)
    FROM generate_series(1, 100) g});
$s->mock_reset;
$s->mock_script([ { reply => { tool_calls => [ { name => 'list_tasks',
    arguments => {} } ] } }, { reply => { content => 'Many tasks.' } } ]);
my $r = turn('show me all my tasks');
is $r->{status}, 200, 'huge list: 200' or diag $r->{body};
is scalar @{ $r->{json}{tool_calls}[0]{result} // [] }, 100,
    'huge list: the client gets the whole list';
my $req = sent()->[1];
my ($tool) = grep { $_->{role} eq 'tool' } @{ $req->{messages} };
ok $tool && length $tool->{content} <= $RESULT_MAX,
    'huge list: the model gets at most CHAT_MAX_TOOL_RESULT_BYTES'
    or diag length($tool->{content} // '');
my $cut = eval { $JSON->decode($tool->{content}) } // {};
ok ref $cut eq 'HASH', 'huge list: one JSON object, not cut mid-JSON';
my $kept = scalar @{ $cut->{tasks} // [] };
ok $kept > 0 && $kept < 100, "huge list: the first $kept tasks";
is $cut->{tasks}[0]{title}, 'task 1', '... in order';
like $cut->{note} // '', qr/first $kept of 100 tasks/,
    'huge list: a note tells the model';
my $conv = $r->{json}{conversation_id};

# The next turn reads the stored result as history: cut the same way.
$s->mock_reset;
turn('and now?', $conv);
($tool) = grep { $_->{role} eq 'tool' } @{ sent()->[0]{messages} };
ok $tool && length $tool->{content} <= $RESULT_MAX,
    'huge list: in a later turn\'s history, cut too';

# --------------------------------------------- 2. too many calls

$s->mock_reset;
$s->mock_script([ { reply => { tool_calls => [ map { { name => 'add_task',
    arguments => { title => "call $_" } } } 1 .. 3 ] } },
    { reply => { content => 'Added two.' } } ]);
$r = turn('add three at once');
is $r->{status}, 200, 'calls: 200';
my @results = map { $_->{result} } @{ $r->{json}{tool_calls} // [] };
is scalar @results, 3, 'calls: each of the three calls has a result';
is scalar(grep { $_->{status} && $_->{status} eq 'created' } @results), 2,
    'calls: the first two ran';
like $results[2]{error} // '', qr/too many tool calls/,
    'calls: the third is an error for the model';
is $s->sql_value(q{SELECT count(*) FROM tasks
    WHERE user_id = 'alice' AND title LIKE 'call %'}), 2,
    'calls: two tasks added';

# ------------------------------------------ 3. history left out

my $big = 'h' x 20000;
$r = turn("first $big");
my $hconv = $r->{json}{conversation_id};
turn("second $big", $hconv);
$s->mock_reset;
$r = turn("third $big", $hconv);
is $r->{status}, 200, 'history: 200';
$req = sent()->[0];
my $size = length $JSON->encode($req);
ok $size <= $REQUEST_MAX, "history: the request is within the bound "
    . "($size bytes)";
my @users = map { substr $_->{content}, 0, 6 }
    grep { $_->{role} eq 'user' } @{ $req->{messages} };
is_deeply \@users, [ 'second', 'third ' ],
    'history: the oldest went first, the newest stayed';
isnt $req->{messages}[1]{role}, 'tool', '... not opening on a tool result';

# --------------------------------------- 4. too large, even alone

$s->mock_reset;
# Every byte a quote: twice as long once escaped, over the bound alone.
$r = turn('"' x 32000);
is $r->{status}, 200, 'too large: still a 200' or diag $r->{body};
like $r->{json}{response}, qr/too large/, 'too large: the answer says so';
is scalar @{ $s->mock_requests }, 0, 'too large: the model was not asked';
is $s->sql_value(q{SELECT content FROM messages WHERE conversation_id = $1
    AND role = 'assistant'}, $r->{json}{conversation_id}),
    $r->{json}{response}, 'too large: the answer is stored';

done_testing;
