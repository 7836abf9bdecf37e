#!/usr/bin/perl
# t/75-concurrent.t: twenty messages sent at once to one conversation all
# succeed, each stored once with its answer, and the conversation stays in
# an order OpenAI accepts: every tool result right after its call.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Stack;

my $clients = 20;
my $s = Stack->new(workers => 6);
my $alice = $s->token('alice');

my $r = $s->request(POST => '/chat', token => $alice,
    body => { message => 'hello' });
my $conv = $r->{json}{conversation_id} or BAIL_OUT('no conversation');

# Children wait on a pipe so that all of them send at the same moment.
pipe my $go_r, my $go_w or die "pipe: $!";
my @pids;
for my $i (1 .. $clients) {
	my $pid = fork // die "fork: $!";
	if ($pid == 0) {
		close $go_w;
		sysread $go_r, my $byte, 1;
		my $c = $s->request(POST => '/chat', token => $alice, body => {
		    message => "Add a task to buy item $i",
		    conversation_id => $conv });
		POSIX::_exit($c->{status} == 200 ? 0 : 1);
	}
	push @pids, $pid;
}
close $go_r;
close $go_w;	# EOF: every child's read returns now
my $ok = 0;
for (@pids) {
	waitpid $_, 0;
	$ok++ if $? == 0;
}
is $ok, $clients, "all $clients concurrent turns answered 200";

is $s->sql_value(q{SELECT count(*) FROM messages WHERE conversation_id = $1
    AND role = 'user' AND content LIKE 'Add a task to buy item %'}, $conv),
    $clients, 'each user message stored once';
is $s->sql_value(q{SELECT count(*) FROM messages WHERE conversation_id = $1
    AND role = 'assistant' AND tool_calls IS NULL}, $conv), $clients + 1,
    'each turn answered once';
is $s->sql_value(q{SELECT count(DISTINCT title) || '/' || count(*)
    FROM tasks WHERE user_id = 'alice'}), "$clients/$clients",
    'each task added once';

# The order the next turn would send: a tool message only ever follows
# its assistant call or a sibling result, and every call is answered
# before anything else comes.
my $rows = $s->sql(q{SELECT role, tool_calls::text, tool_call_id
    FROM messages WHERE conversation_id = $1 ORDER BY id}, $conv);
my (%open, @bad);
for my $m (@$rows) {
	if ($m->[0] eq 'tool') {
		push @bad, "orphan result $m->[2]" unless delete $open{ $m->[2] };
		next;
	}
	push @bad, 'a call left unanswered' if %open;
	%open = map { $_->{id} => 1 } @{ JSON::PP->new->decode($m->[1]) }
	    if defined $m->[1];
}
push @bad, 'last call unanswered' if %open;
is_deeply \@bad, [], 'the conversation is in an order OpenAI accepts';

# And the next turn, which replays it, works.
$r = $s->request(POST => '/chat', token => $alice,
    body => { message => 'Show me all my tasks', conversation_id => $conv });
is $r->{status}, 200, 'the next turn: 200';
is scalar @{ $r->{json}{tool_calls}[0]{result} }, $clients,
    'and it lists every task';

done_testing;
