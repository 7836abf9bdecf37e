#!/usr/bin/perl
# t/88-load-faults.t: concurrent clients for a while (LOAD_SECONDS, 12 by
# default) while PostgreSQL is restarted once and a worker is killed once;
# then the books: every 200 has its message, tool rows and answer stored
# exactly once, every failure left at most its message, no task twice.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use Stack;

my $seconds = $ENV{LOAD_SECONDS} // 12;
my $clients = 8;
my $s = Stack->new(workers => 4);
my $alice = $s->token('alice');
my $out = $s->dir . '/load';
mkdir $out or die "$out: $!";

my $deadline = time + $seconds;
my @pids;
for my $c (1 .. $clients) {
	my $pid = fork // die "fork: $!";
	if ($pid == 0) {
		open my $fh, '>', "$out/$c" or die;
		my $n = 0;
		while (time < $deadline) {
			$n++;
			my $title = "load $c-$n";
			my $r = $s->request(POST => '/chat', token => $alice,
			    timeout => 30, body => {
			    message => "Add a task to $title" },
			    headers => { 'Idempotency-Key' => "load-$c-$n" });
			print $fh "$r->{status}\t" . ucfirst($title) . "\n";
		}
		close $fh;
		POSIX::_exit(0);
	}
	push @pids, $pid;
}

# The faults, a third and two thirds of the way through.
sleep $seconds / 3;
$s->stop_postgres;
sleep 1;
$s->start_postgres;
sleep $seconds / 3;
my @workers = $s->worker_pids;
kill 'KILL', $workers[0];
waitpid $_, 0 for @pids;

my (%status, @ok, @failed);
for my $c (1 .. $clients) {
	open my $fh, '<', "$out/$c" or die;
	while (<$fh>) {
		chomp;
		my ($st, $title) = split /\t/;
		$status{$st}++;
		push @{ $st == 200 ? \@ok : \@failed }, $title;
	}
}
my $total = @ok + @failed;
diag sprintf 'load with faults: %d requests in %d s: %s', $total, $seconds,
    join ', ', map { "$status{$_} x $_" } sort keys %status;
ok @ok > 50, 'most requests succeeded' or diag 'only ' . scalar @ok;
ok @failed > 0, 'the faults cost some requests (else they missed)';

# The books, from the tables.
my %user = map { $_->[0] => $_->[1] } @{ $s->sql(q{SELECT content, count(*)
    FROM messages WHERE role = 'user' GROUP BY content}) };
my %task = map { $_->[0] => $_->[1] } @{ $s->sql(q{SELECT title, count(*)
    FROM tasks GROUP BY title}) };
my %answered = map { $_->[0] => $_->[1] } @{ $s->sql(q{SELECT u.content,
    count(*) FROM messages u JOIN messages a ON a.reply_to = u.id
    AND a.role = 'assistant' AND a.tool_calls IS NULL GROUP BY u.content}) };
my %rounds = map { $_->[0] => $_->[1] } @{ $s->sql(q{SELECT u.content,
    count(*) FROM messages u JOIN messages a ON a.reply_to = u.id
    AND a.tool_calls IS NOT NULL GROUP BY u.content}) };
my %results = map { $_->[0] => $_->[1] } @{ $s->sql(q{SELECT u.content,
    count(*) FROM messages u JOIN messages t ON t.reply_to = u.id
    AND t.role = 'tool' GROUP BY u.content}) };

my @bad;
for my $title (@ok) {
	my $msg = 'Add a task to ' . lcfirst $title;
	push @bad, "$title: user message x" . ($user{$msg} // 0)
	    unless ($user{$msg} // 0) == 1;
	push @bad, "$title: task x" . ($task{$title} // 0)
	    unless ($task{$title} // 0) == 1;
	push @bad, "$title: answer x" . ($answered{$msg} // 0)
	    unless ($answered{$msg} // 0) == 1;
	push @bad, "$title: tool round x" . ($rounds{$msg} // 0)
	    unless ($rounds{$msg} // 0) == 1 && ($results{$msg} // 0) == 1;
}
is_deeply \@bad, [], scalar(@ok) . ' answered turns, each stored exactly once';

@bad = ();
for my $title (@failed) {
	my $msg = 'Add a task to ' . lcfirst $title;
	push @bad, "$title: user message x$user{$msg}"
	    if ($user{$msg} // 0) > 1;
	push @bad, "$title: task x$task{$title}" if ($task{$title} // 0) > 1;
}
is_deeply \@bad, [], scalar(@failed) . ' failed turns left at most their '
    . 'message and one task';
is_deeply [ grep { $task{$_} > 1 } keys %task ], [], 'no task created twice';
diag sprintf 'books: %d user messages, %d tasks, %d answers',
    scalar keys %user, scalar keys %task, scalar keys %answered;

is $s->request(GET => '/chat/health')->{status}, 200, 'healthy afterwards';

done_testing;
