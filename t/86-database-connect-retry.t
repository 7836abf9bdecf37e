#!/usr/bin/perl
# t/86-database-connect-retry.t: a database connection refused at once is
# tried again before the request fails. A pooler whose listen queue is
# full refuses that way when many workers connect together, and so does
# a server that is starting; the user should not see a 503 for a refusal
# that lasts milliseconds.
#
# The worker reaches PostgreSQL through a small unix-socket relay of our
# own, which refuses the next connection (closes it at once) whenever the
# file REFUSE exists, and relays every other one.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use IO::Select;
use IO::Socket::UNIX;
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);
use Stack;

# The relay reads where PostgreSQL is (TARGET) at each connection: Stack
# picks the port, so the file is written once the stack is up.
my $relay_dir = do {
	my $d = "$FindBin::Bin/tmp/86-relay-$$";
	mkdir "$FindBin::Bin/tmp";
	mkdir $d or die "$d: $!";
	$d;
};
my $port = 5432;
my $target_file = "$relay_dir/TARGET";
my $refuse = "$relay_dir/REFUSE";
my $listen = IO::Socket::UNIX->new(Local => "$relay_dir/.s.PGSQL.$port",
    Type => SOCK_STREAM, Listen => 64) or die "relay: $!";

my $relay = fork // die;
if ($relay == 0) {
	$SIG{CHLD} = 'IGNORE';
	alarm 300;
	while (my $c = $listen->accept) {
		if (unlink $refuse) {
			close $c;
			next;
		}
		my $kid = fork // die;
		if ($kid) {
			close $c;
			next;
		}
		open my $fh, '<', $target_file or POSIX::_exit(1);
		chomp(my $target = <$fh>);
		my $db = IO::Socket::UNIX->new(Peer => $target,
		    Type => SOCK_STREAM) or POSIX::_exit(1);
		my $sel = IO::Select->new($c, $db);
		RELAY: while (my @ready = $sel->can_read) {
			for my $from (@ready) {
				my $to = $from == $c ? $db : $c;
				my $n = sysread $from, my $buf, 65536;
				last RELAY unless $n;
				syswrite $to, $buf or last RELAY;
			}
		}
		POSIX::_exit(0);
	}
	POSIX::_exit(0);
}
close $listen;

my $s = Stack->new(workers => 1, wait => 0, env => {
    DATABASE_URL => "host=$relay_dir port=$port dbname=todo_chat "
    . 'user=postgres', CHAT_WORKER_THREADS => 1 });
{
	open my $fh, '>', $target_file or die "$target_file: $!";
	print $fh $s->dir . '/run/.s.PGSQL.' . $s->pg_port . "\n";
	close $fh;
}
$s->wait_until(sub { $s->request(GET => '/chat/health')->{status} == 200 },
    10, 'the service through the relay');
my $token = $s->token('alice');

sub chat {
	my ($message) = @_;
	return $s->request(POST => '/chat', token => $token,
	    body => { message => $message });
}

is chat('Add a task to pass the relay')->{status}, 200,
    'a turn through the relay';

sub terminate {
	$s->sql(q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity
	    WHERE application_name = 'todo-chat'});
	sleep 0.1;	# the FATAL message reaches the worker's socket
}

# A connection the server ended while the worker was idle (a backend
# terminated, a pooler restarted) is found dead before it is used.
terminate();
is chat('Add a task after a terminated backend')->{status}, 200,
    'a terminated connection is replaced, not reported as a 503';

# The worker's connection is cut; its next request reconnects, and the
# relay refuses that first try.
terminate();
open my $fh, '>', $refuse or die;
close $fh;
my $t0 = time;
my $r = chat('Add a task after a refusal');
my $took = time - $t0;
ok !-e $refuse, 'the relay refused a connection';
is $r->{status}, 200, 'the turn still succeeds: the refusal was retried'
    or diag $r->{body};
ok $took < 2, sprintf '...within moments (%.2f s)', $took;
is $s->sql_value(q{SELECT count(*) FROM tasks WHERE user_id = 'alice'}), 3,
    'every task stored once';

# A refusal that lasts is still a 503, quickly: three tries, then done.
terminate();
my $stop = fork // die;
if ($stop == 0) {
	# Keep REFUSE in place for a second: every try is refused.
	my $end = time + 1;
	while (time < $end) {
		if (!-e $refuse) { open my $f, '>', $refuse; close $f }
		sleep 0.002;
	}
	POSIX::_exit(0);
}
sleep 0.05;
$t0 = time;
$r = chat('Add a task that cannot be stored');
$took = time - $t0;
waitpid $stop, 0;
unlink $refuse;
is $r->{status}, 503, 'a database that keeps refusing: 503';
ok $took < 1, sprintf '...after a few quick tries (%.2f s)', $took;

kill 'TERM', $relay;
waitpid $relay, 0;
unlink glob "$relay_dir/* $relay_dir/.s.*";
rmdir $relay_dir;
done_testing;
