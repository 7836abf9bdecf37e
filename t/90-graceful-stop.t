#!/usr/bin/perl
# t/90-graceful-stop.t: a worker process told to stop (SIGTERM, or
# multiwatch's SIGUSR1) finishes the turns it is serving, answers them,
# and only then exits; its idle workers stop at once. Run with one
# worker a process and with several threads.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);
use Stack;

for my $threads (1, 3) {
	my $s = Stack->new(workers => 1, model => 'mock', mock_delay_ms => 1500,
	    env => { CHAT_WORKER_THREADS => $threads });
	my $token = $s->token('alice');
	my ($pid) = $s->worker_pids;

	# A turn that will spend 1.5 s in the model, answered into a file.
	my $out = $s->dir . "/answer-$threads";
	my $kid = fork // die;
	if ($kid == 0) {
		my $r = $s->request(POST => '/chat', token => $token,
		    body => { message => "slow turn $threads" });
		open my $fh, '>', $out or die;
		print $fh "$r->{status}\n";
		close $fh;
		POSIX::_exit(0);
	}
	$s->wait_until(sub { @{ $s->mock_requests } > 0 }, 10,
	    'the turn reaches the model');
	my $t0 = time;
	kill 'TERM', $pid;
	waitpid $kid, 0;
	open my $fh, '<', $out or die "no answer: $!";
	chomp(my $status = <$fh>);
	is $status, 200, "$threads thread(s): the turn in flight is answered";
	is $s->sql_value(q{SELECT count(*) FROM messages
	    WHERE role = 'assistant' AND content LIKE $1},
	    "%slow turn $threads%"), 1, '...and its answer stored';
	$s->wait_until(sub { !kill 0, $pid }, 5, 'the worker exits');
	my $took = time - $t0;
	ok $took < 4, sprintf '...then the process exits (%.1f s after '
	    . 'SIGTERM)', $took;
	unlike $s->log, qr/could not accept/, '...as asked, not as a failure';
}

done_testing;
