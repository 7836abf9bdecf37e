#!/usr/bin/perl
# t/80-roundtrips.t: what a turn costs the database, counted from
# PostgreSQL's own statement log. Each of a turn's round trips is one
# transaction (a statement, or a pipeline ending in one Sync), so the
# distinct virtual transaction ids of the worker's statements count them:
# two for a turn with no tool call, one more per round of tool calls. A
# turn's statements are calls of schema.sql's functions, which carry their
# own settings: no set_config travels with them.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep);
use Stack;

my $s = Stack->new(workers => 1, pg_conf => {
    log_statement => 'all',
    log_line_prefix => 'rt|%a|%v| ',
});
my $alice = $s->token('alice');
my $log = $s->dir . '/postgres.log';

# The worker's statements logged since offset: [vxid, statement text].
sub statements_since {
	my ($offset) = @_;
	open my $fh, '<', $log or die "$log: $!";
	seek $fh, $offset, 0;
	my @st;
	while (<$fh>) {
		push @st, [ $1, $2 ]
		    if /^rt\|todo-chat\|([^|]+)\| LOG:  (?:statement|execute [^:]*): (.*)/;
	}
	return @st;
}

sub turn_cost {
	my ($message, $conv) = @_;
	my $offset = -s $log;
	my %body = (message => $message);
	$body{conversation_id} = $conv if $conv;
	my $r = $s->request(POST => '/chat', token => $alice, body => \%body);
	is $r->{status}, 200, "'$message': 200";
	sleep 0.2;	# the log is written by the server, a moment later
	my @st = statements_since($offset);
	my %tx = map { $_->[0] => 1 } @st;
	return ($r->{json}, scalar @st, scalar keys %tx, @st);
}

# A first turn warms the connection: its cost is the same, but the
# connection set-up is not a turn's.
my ($r) = turn_cost('hello');
my $conv = $r->{conversation_id};

my ($json, $statements, $trips, @st) = turn_cost('how are you', $conv);
is $trips, 2, 'a turn with no tool call: two round trips';
is $statements, 2, '...of one statement each';
like $st[0][1], qr/\ASELECT \* FROM chat_turn_begin\(/,
    'the first stores the message and reads the window';
like $st[1][1], qr/\ASELECT chat_turn_finish\(/,
    'the second stores the answer';

($json, $statements, $trips, @st) = turn_cost(
    'Add a task to count round trips', $conv);
is $trips, 3, 'one tool round: three round trips';
is_deeply [ map { /\ASELECT (?:\* FROM )?(\w+)/ } map { $_->[1] } @st ],
    [ qw(chat_turn_begin chat_round chat_tool chat_turn_finish) ],
    '...the round being one call that stores the request, one per tool';

($json, $statements, $trips) = turn_cost('Delete the round trips task',
    $conv);
is scalar @{ $json->{tool_calls} }, 2, 'two rounds of tool calls';
is $trips, 4, 'two tool rounds: four round trips';

($json, $statements, $trips) = turn_cost('new conversation, same cost');
is $trips, 2, 'a turn that starts a conversation: two round trips';

done_testing;
