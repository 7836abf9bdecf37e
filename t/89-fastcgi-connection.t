#!/usr/bin/perl
# t/89-fastcgi-connection.t: how a worker ends a FastCGI connection,
# spoken to in raw FastCGI records (cgi-fcgi cannot keep a connection
# open or reuse it).
#
# - A front that keeps its end of the connection open after the reply
#   (or is slow to close it) does not hold the worker: once the request's
#   input is read to its end the worker closes at once, instead of
#   libfcgi's shutdown and wait of up to 2 s for the peer to hang up.
# - A front that asks to keep the connection (FCGI_KEEP_CONN, nginx's
#   fastcgi_keep_conn) gets several requests served on it, and SIGTERM
#   still stops a worker waiting there for the next request.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use IO::Socket::UNIX;
use IO::Select;
use Test::More;
use Time::HiRes qw(sleep time);
use Stack;

my $s = Stack->new(workers => 1);
my $token = $s->token('alice');

use constant {
	FCGI_BEGIN_REQUEST => 1, FCGI_END_REQUEST => 3, FCGI_PARAMS => 4,
	FCGI_STDIN => 5, FCGI_STDOUT => 6, FCGI_RESPONDER => 1,
	FCGI_KEEP_CONN => 1,
};

sub record {
	my ($type, $id, $content) = @_;
	return pack('CCnnCC', 1, $type, $id, length $content, 0, 0)
	    . $content;
}

sub pairs {
	my (%env) = @_;
	my $out = '';
	for my $k (sort keys %env) {
		$out .= join '', map { length($_) < 128 ? pack('C', length)
		    : pack('N', length($_) | 0x80000000) } $k, $env{$k};
		$out .= $k . $env{$k};
	}
	return $out;
}

# Sends one request on the connection and reads its records up to
# END_REQUEST: (HTTP status, body), or (undef, why) on EOF or timeout.
sub request {
	my ($sock, $id, $flags, $method, $path, $body) = @_;
	my %env = (REQUEST_METHOD => $method, REQUEST_URI => $path,
	    SERVER_PROTOCOL => 'HTTP/1.1', GATEWAY_INTERFACE => 'CGI/1.1');
	$env{HTTP_AUTHORIZATION} = "Bearer $token";
	$env{CONTENT_LENGTH} = length $body if defined $body;
	my $p = pairs(%env);
	print $sock record(FCGI_BEGIN_REQUEST, $id, pack('nCx5', FCGI_RESPONDER,
	    $flags)), record(FCGI_PARAMS, $id, $p), record(FCGI_PARAMS, $id, ''),
	    (defined $body && length $body ? record(FCGI_STDIN, $id, $body) : ()),
	    record(FCGI_STDIN, $id, '');
	my ($stdout, $buf) = ('', '');
	my $sel = IO::Select->new($sock);
	while (1) {
		while (length $buf >= 8) {
			my ($v, $type, $rid, $len, $pad) = unpack 'CCnnC', $buf;
			last if length $buf < 8 + $len + $pad;
			my $content = substr $buf, 8, $len;
			substr($buf, 0, 8 + $len + $pad) = '';
			$stdout .= $content if $type == FCGI_STDOUT;
			if ($type == FCGI_END_REQUEST) {
				my ($head, $b) = split /\r\n\r\n/, $stdout, 2;
				my ($code) = $head =~ /^Status: (\d{3})/m;
				return ($code // 200, $b);
			}
		}
		return (undef, 'timeout') unless $sel->can_read(10);
		my $n = sysread $sock, $buf, 65536, length $buf;
		return (undef, 'eof') unless $n;
	}
}

sub connect_worker {
	return IO::Socket::UNIX->new(Peer => $s->socket, Type => SOCK_STREAM)
	    // die "connect " . $s->socket . ": $!";
}

# A front that keeps its end open after the reply.
my $a = connect_worker();
my ($code, $body) = request($a, 1, 0, 'GET', '/chat/health');
is $code, 200, 'a request on a connection the front keeps open';
my $b = connect_worker();
my $t0 = time;
($code) = request($b, 1, 0, 'POST', '/chat',
    '{"message":"Add a task to close promptly"}');
my $took = time - $t0;
is $code, 200, 'the next connection is served';
# libfcgi's own close would wait up to 2 s for the first to hang up.
ok $took < 1.5, sprintf 'without waiting for the first front to close '
    . '(%.2f s)', $took;
my $closed = IO::Select->new($a)->can_read(2) && !sysread($a, my $x, 1);
ok $closed, 'the first connection was closed by the worker';
close $a;
close $b;

# Connections that end with no request on them (a front that opens one
# and gives up, or closes one it kept): the worker waits for the next,
# and serves it. lib/accept.h takes the connections; libfcgi then finds
# no request and tries an accept of its own on the non-blocking socket.
for my $i (1 .. 3) {
	my $idle = connect_worker();
	close $idle;
}
my $kept = connect_worker();
($code) = request($kept, 1, FCGI_KEEP_CONN, 'GET', '/chat/health');
is $code, 200, 'a request on a kept connection';
close $kept;
for my $i (1 .. 3) {
	my $c = connect_worker();
	($code) = request($c, 1, 0, 'GET', '/chat/health');
	is $code, 200, "after connections with no request, the next is "
	    . "served ($i)";
	close $c;
}

# A front that asks to keep the connection.
my ($pid) = $s->worker_pids;
my $k = connect_worker();
for my $i (1 .. 3) {
	($code, $body) = request($k, $i, FCGI_KEEP_CONN, 'POST', '/chat',
	    qq({"message":"Add a task number $i on a kept connection"}));
	is $code, 200, "request $i on a kept connection";
}
my $tasks = $s->sql_value(q{SELECT count(*) FROM tasks
    WHERE user_id = 'alice' AND title LIKE '%kept connection%'});
is $tasks, 3, 'each stored once';

# The worker now waits in read(2) on the kept connection.
kill 'TERM', $pid;
$s->wait_until(sub { !kill 0, $pid }, 5,
    'SIGTERM stops a worker idle on a kept connection');
ok !kill(0, $pid), 'the worker is gone';
my ($n) = sysread $k, my $rest, 1;
ok !$n, 'its connection is closed';
$s->wait_until(sub { my @p = $s->worker_pids; @p == 1 && $p[0] != $pid },
    10, 'multiwatch starts another');
is $s->request(GET => '/chat/health')->{status}, 200,
    'and the service answers';
$s->stop;

# FCGI_WEB_SERVER_ADDRS asks libfcgi to check who connects over TCP: the
# workers then leave the accepting to libfcgi, and serve as before.
my $t = Stack->new(workers => 2,
    env => { FCGI_WEB_SERVER_ADDRS => '127.0.0.1' });
for my $i (1 .. 4) {
	my $r = $t->request(POST => '/chat', token => $t->token('bob'),
	    body => { message => "Add a task to check libfcgi's accept $i" });
	is $r->{status}, 200, "with FCGI_WEB_SERVER_ADDRS set, turn $i";
}
is $t->sql_value(q{SELECT count(*) FROM tasks WHERE user_id = 'bob'}), 4,
    'each stored once';

done_testing;
