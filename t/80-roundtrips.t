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
		push @st, [ $1, $3, $2 // '' ]
		    if /^rt\|todo-chat\|([^|]+)\| LOG:  (?:statement|execute ([^:]*)): (.*)/;
	}
	return @st;
}

sub turn_cost {
	my ($message, $conv, %o) = @_;
	my $offset = -s $log;
	my %body = (message => $message);
	$body{conversation_id} = $conv if $conv;
	my $r = $s->request(POST => '/chat', token => $alice, body => \%body,
	    $o{stream} ? (headers => { Accept => 'text/event-stream' }) : ());
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
# Prepared once a connection (lib/dbconn.c): PostgreSQL neither parses
# nor plans them again. Each name is its text's hash, so two texts never
# share one.
like $st[$_][2], qr/\Atodo_chat_[0-9a-f]{16}\z/,
    "statement $_ runs prepared ($st[$_][2])" for 0, 1;
isnt $st[0][2], $st[1][2], '...each under a name of its own';

($json, $statements, $trips, @st) = turn_cost(
    'Add a task to count round trips', $conv);
is $trips, 3, 'one tool round: three round trips';
is_deeply [ map { /\ASELECT (?:[^(]*? FROM )?(\w+)\(/ } map { $_->[1] } @st ],
    [ qw(chat_turn_begin chat_round chat_tool chat_turn_finish) ],
    '...the round being one call that stores the request, one per tool';

($json, $statements, $trips) = turn_cost('Delete the round trips task',
    $conv);
is scalar @{ $json->{tool_calls} }, 2, 'two rounds of tool calls';
is $trips, 4, 'two tool rounds: four round trips';

($json, $statements, $trips) = turn_cost('new conversation, same cost');
is $trips, 2, 'a turn that starts a conversation: two round trips';

# A streamed turn keeps a live record that others may follow (schema.sql
# turn_streams); the turn's own first and last statements make and end
# it, so that one no one follows costs no more round trips.
($json, $statements, $trips, @st) = turn_cost('how are you, streamed',
    $conv, stream => 1);
is $trips, 2, 'a streamed turn with no tool call: two round trips';
is_deeply [ map { /\ASELECT (?:[^(]*? FROM )?(\w+)\(/ } map { $_->[1] } @st ],
    [ qw(chat_turn_begin chat_turn_finish) ], '...its first and last';
is_deeply $s->sql(q{SELECT batches, done::text, followed::text
    FROM turn_streams WHERE user_id = 'alice'
    ORDER BY user_message_id DESC LIMIT 1}), [ [ 2, 'true', 'false' ] ],
    '...which made its record and ended it';

# The last statement ends only a record no one follows: a followed one
# is left open for the worker, which stores its last events, then ends it.
my $begin = q{SELECT conversation_id, message_id FROM chat_turn_begin(
    'alice', $1, 't', 'followed at the end', 40, NULL, NULL,
    '{0,0,0,0,0,30}', true) WHERE kind = 'new'};
my $finish = q{SELECT chat_turn_finish('alice', $1, 'done', $2, '{}',
    true)::text};
for my $followed (0, 1) {
	my ($c, $m) = @{ $s->sql($begin, $conv)->[0] };
	$s->sql(q{UPDATE turn_streams SET followed = true
	    WHERE user_message_id = $1}, $m) if $followed;
	is $s->sql_value($finish, $c, $m), $followed ? 'true' : 'false',
	    'chat_turn_finish: the record left open when followed: '
	    . ($followed ? 'yes' : 'no');
	is $s->sql_value(q{SELECT done::text FROM turn_streams
	    WHERE user_message_id = $1}, $m), $followed ? 'false' : 'true',
	    '...and the record ended only when not';
}

# A new connection prepares its statements anew: the worker's backend
# ends between two turns, and the next turn, on the connection the
# worker opens instead, runs prepared again (rather than taking the
# statements it no longer finds for a pooler's doing: lib/dbconn.c).
$s->sql(q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity
    WHERE application_name = 'todo-chat'});
$s->wait_until(sub { !$s->sql_value(q{SELECT count(*) FROM pg_stat_activity
    WHERE application_name = 'todo-chat'}) }, 10, 'the backend to end');
($json, $statements, $trips, @st) = turn_cost('after a new connection',
    $conv);
is $trips, 2, 'on a new connection: two round trips';
like $st[$_][2], qr/\Atodo_chat_[0-9a-f]{16}\z/,
    "...statement $_ prepared there" for 0, 1;
unlike $s->log, qr/sending statements unprepared/,
    '...nothing sent unprepared';

done_testing;
