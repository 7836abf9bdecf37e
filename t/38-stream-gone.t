#!/usr/bin/perl
# t/38-stream-gone.t: a streamed turn whose client goes away after the
# first word (the offline model): the worker finishes the turn and
# stores exactly the answer a full stream gives, and keeps serving; and
# streamed turns through pgbouncer in transaction mode, tool rounds and
# all, read by the ai package.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Stack;

Stack::node_modules();	# skips the test when there is no node

my $s = Stack->new(workers => 2);
my $alice = $s->token('alice');
my $bob = $s->token('bob');

sub answer_of {
	my ($st, $conversation_id) = @_;
	return $st->sql_value(q{SELECT content FROM messages
	    WHERE conversation_id = $1 AND role = 'assistant'
	    AND tool_calls IS NULL ORDER BY id DESC LIMIT 1}, $conversation_id);
}

# Two users' identical turns differ in task numbers only.
sub masked { (my $t = $_[0] // '') =~ s/[0-9]+/N/g; return $t }

sub roles {
	my ($st, $conversation_id) = @_;
	return join ' ', map { $_->[0] eq 'assistant'
	    ? ($_->[1] eq 't' ? 'calls' : 'answer') : $_->[0] }
	    @{ $st->sql(q{SELECT role, tool_calls IS NOT NULL FROM messages
	    WHERE conversation_id = $1 ORDER BY id}, $conversation_id) };
}

# Drops the stream right after its first text-delta; returns the
# conversation and what had come.
sub drop_after_first_word {
	my ($name, $token, $message) = @_;
	my $st = $s->stream_open('/chat', token => $token,
	    body => { message => $message });
	ok $st->read_until(qr/"type":"text-delta"/, 20),
	    "$name: a first word came" or diag $st->body;
	is $st->status, 200, "$name: 200";
	my ($conv) = $st->body =~ /"conversation_id":([0-9]+)/;
	my $seen = $st->body;
	$st->close;
	return ($conv // 0, $seen);
}

# 1. Words only, and a turn with a tool round, each dropped after the
# first word; the same turn in full by bob for comparison.
for my $case ([ 'thanks', 'thanks!' ],
    [ 'two rounds', 'Delete the meeting task' ]) {
	my ($name, $message) = @$case;
	$s->sql(q{INSERT INTO tasks (user_id, title) VALUES ('alice', 'Team meeting'),
	    ('bob', 'Team meeting')}) if $name eq 'two rounds';
	my $full = $s->ui_stream('/chat', token => $bob,
	    body => { message => $message });
	my $t = Stack::ui_turn($full->{raw});
	is_deeply [ $full->{errors}, $t->{problems} ], [ [], [] ],
	    "$name: the full stream reads clean"
	    or diag explain $full->{errors}, $t->{problems};
	my ($conv, $seen) = drop_after_first_word($name, $alice, $message);
	my $stored = eval { $s->wait_until(sub { answer_of($s, $conv) }, 20,
	    'the answer stored') };
	ok defined $stored, "$name: dropped after the first word, the"
	    . ' answer is stored';
	is masked($stored), masked($t->{answer}),
	    "$name: ... the whole answer, as a full stream gives it"
	    . ($name eq 'thanks' ? '' : ' (task numbers aside)');
	is $stored, $t->{answer}, "$name: ... exactly" if $name eq 'thanks';
	my ($first) = $seen =~ m{"delta":"([^"\\]*)"};
	like $stored // '', qr/\A\Q$first\E/,
	    "$name: ... beginning with the word that came" if defined $first;
	is roles($s, $conv), roles($s, $t->{metadata}{conversation_id}),
	    "$name: ... the same rows as the full stream's turn";
}
is $s->sql_value(q{SELECT count(*) FROM tasks WHERE user_id = 'alice'
    AND title = 'Team meeting'}), 0, 'two rounds: alice\'s task deleted';

# 2. The workers still serve, streamed and not.
my $r = $s->ui_stream('/chat', token => $alice, body => { message => 'thanks!' });
is_deeply [ $r->{status}, $r->{errors} ], [ 200, [] ],
    'after the drops: a streamed turn reads clean';
is $s->request(POST => '/chat', token => $alice,
    body => { message => 'thanks!' })->{status}, 200,
    'after the drops: a JSON turn answers';
unlike $s->log, qr/\b(?:SIGPIPE|crash|abort)/i, 'no worker crashed';
$s->stop;

# 3. Through pgbouncer in transaction mode: four workers, two server
# connections.
my $p = Stack->new(workers => 4, pgbouncer => 1,
    pgbouncer_conf => { default_pool_size => 2 });
my $carol = $p->token('carol');
my $conv;
for my $message ('Add a task to buy milk', 'Add a task for the meeting notes',
    'Delete the meeting task', 'thanks!') {
	my $u = $p->ui_stream('/chat', token => $carol, body => { message =>
	    $message, $conv ? (conversation_id => $conv) : () });
	my $t = Stack::ui_turn($u->{raw});
	is $u->{status}, 200, "pgbouncer: '$message': 200" or diag $u->{raw};
	is_deeply [ $u->{errors}, $t->{problems} ], [ [], [] ],
	    "pgbouncer: '$message': the ai package and the contract agree"
	    or diag explain $u->{errors}, $t->{problems};
	is $t->{answer}, answer_of($p, $t->{metadata}{conversation_id}),
	    "pgbouncer: '$message': the stored answer streamed";
	$conv //= $t->{metadata}{conversation_id};
	is $t->{metadata}{conversation_id}, $conv,
	    "pgbouncer: '$message': one conversation";
	is_deeply [ map { $_->{name} } map { @{ $_->{tools} } }
	    @{ $t->{steps} } ], [ 'list_tasks', 'delete_task' ],
	    'pgbouncer: two rounds' if $message =~ /Delete/;
}
is_deeply $p->sql(q{SELECT title FROM tasks WHERE user_id = 'carol'}),
    [ [ 'Buy milk' ] ], 'pgbouncer: the tasks as the turns left them';

# Six streams at once through two server connections, one dropped.
my @pids;
for my $i (1 .. 6) {
	my $pid = fork // die;
	if ($pid == 0) {
		my $ok;
		if ($i == 6) {
			my $st = $p->stream_open('/chat', token => $carol,
			    body => { message => "Add a task to pool number $i" });
			$ok = $st->read_until(qr/"type":"text-delta"/, 30);
			$st->close;
		} else {
			my $u = $p->ui_stream('/chat', token => $carol,
			    body => { message => "Add a task to pool number $i" });
			$ok = $u->{status} == 200 && !@{ $u->{errors} }
			    && !@{ Stack::ui_turn($u->{raw})->{problems} };
		}
		POSIX::_exit($ok ? 0 : 1);
	}
	push @pids, $pid;
}
my $ok = grep { waitpid($_, 0); $? == 0 } @pids;
is $ok, 6, 'pgbouncer: six streams at once, all clean';
is eval { $p->wait_until(sub { $p->sql_value(q{SELECT count(*) FROM tasks
    WHERE title LIKE 'Pool number%'}) == 6 }, 20, 'six tasks') }, 1,
    'pgbouncer: each task once, the dropped one too';
unlike $p->log, qr/prepared statement|database error/,
    'pgbouncer: no session-state error in the workers\' log';

done_testing;
