#!/usr/bin/perl
# t/60-browse.t: reading conversations and messages back a page at a time
# (keyset paging: every row exactly once, in order, even while new turns
# arrive), and deleting a conversation with its messages.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Stack;

my $s = Stack->new(workers => 2);
my $alice = $s->token('alice');
my $bob = $s->token('bob');

sub get {
	my ($path, $token) = @_;
	my $r = $s->request(GET => $path, token => $token // $alice);
	is $r->{status}, 200, "GET $path: 200" or diag $r->{body};
	return $r->{json};
}

# Five conversations of alice's, one of bob's; the third is the newest
# by activity because it gets a second turn last.
my @convs;
for my $i (1 .. 5) {
	my $r = $s->request(POST => '/chat', token => $alice,
	    body => { message => "Add a task to do thing number $i" });
	push @convs, $r->{json}{conversation_id};
}
$s->request(POST => '/chat', token => $bob, body => { message => 'hi' });
$s->request(POST => '/chat', token => $alice,
    body => { message => 'Show me all my tasks',
    conversation_id => $convs[2] });

# Conversations: newest activity first, paged by two.
my @seen;
my $path = '/chat/conversations?limit=2';
while (1) {
	my $page = get($path);
	ok @{ $page->{conversations} } <= 2, 'at most limit per page';
	push @seen, @{ $page->{conversations} };
	last unless defined $page->{next_before};
	$path = "/chat/conversations?limit=2&before=$page->{next_before}";
}
is_deeply [ map { $_->{id} } @seen ],
    [ $convs[2], reverse(@convs[0, 1, 3, 4]) ],
    'every conversation once, by latest activity';
is $seen[0]{title}, 'Add a task to do thing number 3',
    'title from the first message';
like $seen[0]{created_at}, qr/\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/,
    'ISO 8601 timestamps';
ok $seen[0]{updated_at} gt $seen[0]{created_at}, 'updated_at moved on';
is scalar @{ get('/chat/conversations')->{conversations} }, 5,
    'default limit holds them all';
is scalar @{ get('/chat/conversations', $bob)->{conversations} }, 1,
    'bob sees only his';

# Messages: newest first, all roles with their tool fields.
my $m = get("/chat/conversations/$convs[0]/messages");
is_deeply [ map { $_->{role} } @{ $m->{messages} } ],
    [ qw(assistant tool assistant user) ], 'newest first, every role';
is $m->{messages}[1]{tool_call_id}, $m->{messages}[2]{tool_calls}[0]{id},
    'the tool message names the call';
is $m->{messages}[2]{tool_calls}[0]{function}{name}, 'add_task',
    'tool_calls in OpenAI format';
is $m->{messages}[3]{content}, 'Add a task to do thing number 1',
    'the user message';
ok !defined $m->{next_before}, 'one page: next_before null';

# A long conversation, paged while new turns are added to it.
my $long = $convs[4];
$s->sql(q{INSERT INTO messages (conversation_id, user_id, role, content)
    SELECT $1, 'alice', CASE WHEN g % 2 = 0 THEN 'user' ELSE 'assistant'
    END, 'seeded ' || g FROM generate_series(1, 2000) g}, $long);
my $all = $s->sql_value(q{SELECT count(*) FROM messages
    WHERE conversation_id = $1}, $long);
my (@ids, $cursor);
my $pages = 0;
while (1) {
	my $q = "/chat/conversations/$long/messages?limit=100"
	    . (defined $cursor ? "&before=$cursor" : '');
	my $r = $s->request(GET => $q, token => $alice);
	last unless $r->{status} == 200;
	push @ids, map { $_->{id} } @{ $r->{json}{messages} };
	$cursor = $r->{json}{next_before};
	# New turns land at the top, behind the cursor: never seen twice.
	$s->request(POST => '/chat', token => $alice, body => {
	    message => 'hello again', conversation_id => $long })
	    if $pages++ < 3;
	last unless defined $cursor;
}
is scalar @ids, $all, "all $all messages paged through";
my %uniq = map { $_ => 1 } @ids;
is scalar keys %uniq, scalar @ids, 'each exactly once';
is_deeply \@ids, [ sort { $b <=> $a } @ids ], 'newest first throughout';

# Deleting: 204 with no body, messages and turns go with it.
my $r = $s->request(DELETE => "/chat/conversations/$convs[0]",
    token => $alice);
is $r->{status}, 204, 'DELETE: 204';
is $r->{body} // '', '', 'no body';
is $s->sql_value('SELECT count(*) FROM messages WHERE conversation_id = $1',
    $convs[0]), 0, 'its messages are gone';
is $s->request(DELETE => "/chat/conversations/$convs[0]",
    token => $alice)->{status}, 404, 'deleting again: 404';
is $s->request(GET => "/chat/conversations/$convs[0]/messages",
    token => $alice)->{status}, 404, 'reading it: 404';
is $s->request(POST => '/chat', token => $alice, body => { message => 'hi',
    conversation_id => $convs[0] })->{status}, 404, 'chatting in it: 404';
is $s->sql_value(q{SELECT count(*) FROM tasks WHERE user_id = 'alice'}), 5,
    'tasks are not conversations: they stay';

done_testing;
