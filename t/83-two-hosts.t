#!/usr/bin/perl
# t/83-two-hosts.t: workers on two hosts behind one nginx upstream. Each
# host is a network namespace of this machine, reached over a veth pair,
# running spawn-fcgi -a ADDR -p PORT + multiwatch as a worker machine
# would (README, "Several hosts"); PostgreSQL stays in the test's
# namespace, on its unix socket. Checked: nginx passes a GET on to the
# other host whether host a refused the connection or died with the
# request; a POST only when nothing was sent (connection refused), never
# one that reached a worker; and under a load of keyed turns, killing
# every process of host a loses no acknowledged turn, and each turn that
# failed completes exactly once when the client retries it with its key.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX qw(_exit setsid);
use Socket qw(inet_aton inet_ntoa);
use Time::HiRes qw(sleep time);
use Stack;

my $SECONDS = $ENV{LOAD_SECONDS} // 8;
my $CLIENTS = 8;
my $PORT = 9000;
# What README recommends for each worker host: a host is out after 3
# failed attempts (a lone worker crash does not take it out), tried
# again 10 s later.
my $PARAMS = 'max_fails=3 fail_timeout=10s';

my ($ip) = grep { -x } qw(/usr/sbin/ip /sbin/ip /usr/bin/ip /bin/ip);
plan skip_all => 'no ip command: iproute2 is not installed (scripts/deps '
    . 'installs it)' unless $ip;
plan skip_all => 'network namespaces need root (CAP_NET_ADMIN); running '
    . 'as uid ' . $> unless $> == 0;

# ------------------------------------------------------------- the hosts

# Names carry our pid, so that parallel runs cannot clash; a veth's name
# holds at most 15 bytes.
my %host = map { $_ => { name => $_, netns => "todo-chat-$$-$_",
    veth => "tc" . $$ . $_ } } qw(a b);
my @made;	# [ kind, name ] of what exists, for the cleanup

sub ip {
	my @argv = @_;
	my $out = qx{$ip @argv 2>&1};
	return ($? == 0, $out);
}

sub cleanup {
	for my $m (reverse @made) {
		my ($kind, $name) = @$m;
		system $ip, $kind eq 'netns' ? ('netns', 'del', $name)
		    : ('link', 'del', $name);
	}
	@made = ();
}

# A guardian removes the namespaces if this process disappears without
# running END (a kill -9): it outlives nothing but us.
my $guardian;
sub start_guardian {
	my $parent = $$;
	$guardian = fork // die "fork: $!";
	return if $guardian;
	setsid();
	open STDIN, '<', '/dev/null';
	open STDOUT, '>', '/dev/null';
	open STDERR, '>&', \*STDOUT;
	$0 = "t/83-two-hosts.t netns guardian of $parent";
	sleep 0.2 while getppid() == $parent;
	system $ip, 'netns', 'del', $_->{netns} for values %host;
	system $ip, 'link', 'del', $_->{veth} for values %host;
	_exit(0);
}

# A /29 of 198.18.0.0/15 (RFC 2544's range for test networks, used by
# nothing real) chosen by our pid, skipping any that an address of this
# machine is in already: a /30 for each host's veth pair.
sub choose_addresses {
	my (undef, $have) = ip('-4', '-o', 'addr', 'show');
	my %taken;
	$taken{ unpack 'N', inet_aton($1) & pack('N', 0xfffffff8) } = 1
	    while $have =~ m{inet (\d+\.\d+\.\d+\.\d+)/}g;
	my $base = unpack 'N', inet_aton('198.18.0.0');
	for my $try (0 .. 63) {
		my $block = $base + ((($$ + $try) % 16384) * 8);
		next if $taken{$block};
		my $addr = sub { inet_ntoa(pack 'N', $block + $_[0]) };
		@{ $host{a} }{qw(peer addr)} = ($addr->(1), $addr->(2));
		@{ $host{b} }{qw(peer addr)} = ($addr->(5), $addr->(6));
		return;
	}
	die "no free /29 in 198.18.0.0/15\n";
}

sub make_host {
	my ($h) = @_;
	my ($ok, $out) = ip('netns', 'add', $h->{netns});
	return "ip netns add: $out" unless $ok;
	push @made, [ netns => $h->{netns} ];
	for my $cmd (
	    "link add $h->{veth} type veth peer name eth0 netns $h->{netns}",
	    "addr add $h->{peer}/30 dev $h->{veth}",
	    "link set $h->{veth} up",
	    "-n $h->{netns} addr add $h->{addr}/30 dev eth0",
	    "-n $h->{netns} link set eth0 up",
	    "-n $h->{netns} link set lo up") {
		($ok, $out) = ip(split ' ', $cmd);
		return "ip $cmd: $out" unless $ok;
		push @made, [ link => $h->{veth} ] if $cmd =~ /\Alink add/;
	}
	return;
}

my $s;		# the stack, stopped before its hosts go
my $owner = $$;	# a forked client that dies runs END too: not its job
start_guardian();
END {
	# (undef when a skip ended the test before the line above)
	if (defined $owner && $$ == $owner) {
		my $status = $?;	# system and waitpid would change it
		$s->stop if $s;
		cleanup();
		if ($guardian) {
			kill 'KILL', $guardian;
			waitpid $guardian, 0;
		}
		$? = $status;
	}
}
choose_addresses();
for my $h (@host{qw(a b)}) {
	my $why = make_host($h) or next;
	cleanup();
	plan skip_all => "cannot make a network namespace here: $why";
}
note "host $_: $host{$_}{addr}:$PORT in netns $host{$_}{netns}"
    for qw(a b);

# ------------------------------------------------------------- the stack

$s = Stack->new(hosts => [ map { { name => $_, addr => $host{$_}{addr},
    port => $PORT, netns => $host{$_}{netns}, workers => 2,
    params => $PARAMS } } qw(a b) ]);
my $alice = $s->token('alice');
my $A = "$host{a}{addr}:$PORT";
my $B = "$host{b}{addr}:$PORT";

for my $n (qw(a b)) {
	my $r = $s->fcgi(GET => '/chat/health',
	    connect => "$host{$n}{addr}:$PORT");
	is $r->{status}, 200, "host $n answers on its own address";
}
my $conf = Stack::_slurp($s->dir . '/nginx/server.conf');
like $conf, qr/server \Q$A $PARAMS\E;\s*server \Q$B $PARAMS\E;/,
    'nginx has one upstream listing both hosts';

# The server block's settings for several hosts, as README gives them:
# nginx.conf is for one host and has neither.
my $server_conf = $s->dir . '/nginx/server.conf';
(my $patched = $conf) =~ s{^(\tfastcgi_read_timeout \d+s;\n)}
    {$1\tfastcgi_connect_timeout 2s;\n\tfastcgi_next_upstream error timeout;\n}m
    or die "server.conf: no fastcgi_read_timeout line\n";
Stack::_spew($server_conf, $patched);
reload_nginx();

sub turn {
	my ($key, $message, %o) = @_;
	return $s->request(POST => '/chat', token => $o{token} // $alice,
	    timeout => $o{timeout} // 30, body => { message => $message },
	    headers => { 'Idempotency-Key' => $key });
}

sub count_messages {
	return $s->sql_value(q{SELECT count(*) FROM messages
	    WHERE role = 'user' AND content = $1}, $_[0]);
}

# nginx's error log from a mark on: what it did with each upstream.
my $error_log = $s->dir . '/nginx/error.log';
sub log_mark { -s $error_log // 0 }
sub log_since {
	my ($mark) = @_;
	return substr Stack::_slurp($error_log), $mark;
}

sub children_of {
	my ($ppid) = @_;
	my @pids;
	for my $stat (glob '/proc/[0-9]*/stat') {
		my ($pid, $rest) = Stack::_slurp($stat) =~ /\A(\d+) \(.*\) (.*)\z/s
		    or next;
		my ($state, $parent) = split ' ', $rest;
		push @pids, $pid if $parent == $ppid && $state ne 'Z';
	}
	return @pids;
}

# Every process of host a: multiwatch and its children, the workers,
# all at once (they are one process group, led by multiwatch), so that
# none is restarted: stopped (SIGSTOP: connections queue, nothing is
# answered) or killed. Killing returns once they are all gone.
sub host_a {
	my ($signal) = @_;
	my $multiwatch = $s->pids->{'host-a'};
	my @pids = ($multiwatch, $s->worker_pids('host-a'));
	kill $signal, -$multiwatch, @pids;
	return if $signal ne 'KILL';
	$s->wait_until(sub { !grep { -e "/proc/$_"
	    && Stack::_slurp("/proc/$_/stat") !~ /\A\d+ \(.*\) Z /s } @pids },
	    10, 'host a to be gone');
}

# Established connections to host a's port, from its namespace's TCP
# table (seen through multiwatch's /proc entry): turns being served or
# waiting in the listen queue.
sub connections_on_a {
	my $port = sprintf ':%04X', $PORT;
	return scalar grep { my @f = split ' ';
	    ($f[1] // '') =~ /\Q$port\E\z/ && ($f[3] // '') eq '01' }
	    split /\n/, Stack::_slurp('/proc/' . $s->pids->{'host-a'}
	    . '/net/tcp');
}

# A fresh nginx worker: its round robin starts at the first server (host
# a) with no failures counted.
sub reload_nginx {
	my $master = $s->pids->{nginx};
	my %old = map { $_ => 1 } children_of($master);
	kill 'HUP', $master;
	$s->wait_until(sub { my @w = children_of($master);
	    @w && !grep { $old{$_} } @w }, 10, 'nginx to reload');
}

# A request in the background: its answer's status and error code land
# in a file.
sub background {
	my ($code) = @_;
	my $file = $s->dir . "/bg-" . int(rand 1e9);
	my $pid = fork // die "fork: $!";
	if (!$pid) {
		my $r = $code->();
		open my $fh, '>', "$file.tmp" or _exit(1);
		print $fh "$r->{status} " . ($r->{json}{error}{code} // '-');
		close $fh;
		rename "$file.tmp", $file;
		_exit(0);
	}
	return { pid => $pid, file => $file };
}

sub answered {
	my ($bg, $seconds) = @_;
	my $deadline = time + $seconds;
	sleep 0.02 while !-e $bg->{file} && time < $deadline;
	return -e $bg->{file} ? do { waitpid $bg->{pid}, 0;
	    Stack::_slurp($bg->{file}) } : undef;
}

# Requests one at a time until one hangs on host a (stopped): one that
# got no answer while a connection to host a appeared. (A slow answer
# of host b's is waited for.)
sub stuck_on_a {
	my ($what, $code) = @_;
	for my $n (1 .. 4) {
		my $before = connections_on_a();
		my $bg = background(sub { $code->($n) });
		my $answer = answered($bg, 1);
		return ($bg, $n) if !defined $answer
		    && connections_on_a() > $before;
		$answer //= answered($bg, 30) // 'none';
		like $answer, qr/\A200 /, "$what $n: answered by host b";
	}
	die "no $what reached host a\n";
}

# ------------------------------------------ requests in flight on a dead host

host_a('STOP');
my $mark = log_mark();
my ($post, $post_n) = stuck_on_a('POST', sub { turn("stuck-$_[0]",
    "Add a task to stuck $_[0]") });
my ($get) = stuck_on_a('GET', sub { $s->request(GET => '/chat/tasks',
    token => $alice, timeout => 30) });
host_a('KILL');
is answered($post, 10), '502 worker_failed',
    'a POST sent to a host that died: 502 from nginx, not passed on';
is answered($get, 10), '200 -', 'a GET sent to a host that died: passed '
    . 'on to host b, 200';
my $log = log_since($mark);
like $log, qr/request: "POST \/chat HTTP[^"]*", upstream: "fastcgi:\/\/\Q$A\E/,
    'nginx saw the POST fail on host a';
like $log, qr/request: "GET \/chat\/tasks HTTP[^"]*", upstream: "fastcgi:\/\/\Q$A\E/,
    'and the GET';
is count_messages("Add a task to stuck $post_n"), 0,
    'the 502 POST never reached a worker: nothing stored';
my $r = turn("stuck-$post_n", "Add a task to stuck $post_n");
is $r->{status}, 200, 'the client retries it with its key: 200';
is count_messages("Add a task to stuck $post_n"), 1, 'stored once';

# ------------------------------------- a dead host refuses: nginx moves on

# After a reload nginx's first pick is host a, whose port now refuses.
my %first = (
	'POST /chat' => sub { turn('refused-1', 'Add a task to refused 1') },
	'GET /chat/health' => sub { $s->request(GET => '/chat/health') },
	'GET /chat/conversations' => sub { $s->request(GET =>
	    '/chat/conversations', token => $alice) },
);
for my $what (sort keys %first) {
	reload_nginx();
	$mark = log_mark();
	my $t0 = time;
	$r = $first{$what}->();
	my $ms = 1000 * (time - $t0);
	is $r->{status}, 200, "$what with host a refusing: 200";
	my ($m, $path) = split ' ', $what;
	like log_since($mark), qr/\(111: Connection refused\) while connecting to upstream.*request: "$m \Q$path\E HTTP[^"]*", upstream: "fastcgi:\/\/\Q$A\E/,
	    "... after host a refused it (answered in ${\ sprintf '%.0f', $ms} ms)";
}
is count_messages('Add a task to refused 1'), 1, 'the refused POST ran once';

# ---------------------- a host gone from the network: the connect times out

# Host a's address gone: nothing answers for it, not even a refusal, as
# when a machine is switched off. nginx waits fastcgi_connect_timeout
# (2 s), then passes the request on: nothing was sent.
ip('-n', $host{a}{netns}, 'addr', 'del', "$host{a}{addr}/30", 'dev', 'eth0');
reload_nginx();
$mark = log_mark();
my $t0 = time;
$r = turn('vanished-1', 'Add a task to vanished 1');
my $waited = time - $t0;
is $r->{status}, 200, 'a POST with host a gone from the network: 200';
ok $waited > 1.5 && $waited < 10, sprintf '... after the connect timeout '
    . '(%.1f s)', $waited;
like log_since($mark), qr/upstream timed out \(110: Connection timed out\) while connecting to upstream.*request: "POST \/chat HTTP[^"]*", upstream: "fastcgi:\/\/\Q$A\E/,
    '... which nginx logged for host a';
is count_messages('Add a task to vanished 1'), 1, '... and the turn ran once';
ip('-n', $host{a}{netns}, 'addr', 'add', "$host{a}{addr}/30", 'dev', 'eth0');

# ------------------------------------------------------- under load, kill a

$s->start_workers;	# host a again
reload_nginx();
$mark = log_mark();
is $s->request(GET => '/chat/health')->{status}, 200, 'host a is back';
unlike log_since($mark), qr/\Q$A\E/, '... and nginx uses it again';

my $out = $s->dir . '/load';
mkdir $out or die "$out: $!";
my $t_start = time;
my $deadline = $t_start + $SECONDS;
my @clients;
for my $c (1 .. $CLIENTS) {
	my $pid = fork // die "fork: $!";
	if (!$pid) {
		open my $fh, '>', "$out/$c" or _exit(1);
		select((select($fh), $| = 1)[0]);
		# A user a client: each turn starts a conversation, and one
		# user may keep 1000 (CHAT_USER_MAX_CONVERSATIONS).
		my $token = $s->token("load-$c");
		my $n = 0;
		while (time < $deadline) {
			$n++;
			my $t0 = time;
			my $key = "load-$c-$n";
			my $message = "Add a task to two hosts $c-$n";
			my %o = (token => $token, timeout => 10);
			my $r = turn($key, $message, %o);
			my ($first, $tries, $t1) = ($r->{status}, 1, time);
			# A client retries a turn with no answer or a 5xx at
			# once, with its key; a turn still held by the dead
			# worker (409 turn_in_progress) is left for later.
			while ($r->{status} =~ /\A(?:5\d\d)\z/ && $tries < 5) {
				sleep 0.05 * $tries;
				$r = turn($key, $message, %o);
				$tries++;
			}
			printf $fh "%s\t%s\t%.3f\t%d\t%s\t%.3f\t%.3f\n", $key,
			    $first, $t1 - $t_start, $tries, $r->{status}
			    . ($r->{status} == 200 ? ''
			    : ' ' . ($r->{json}{error}{code} // '-')),
			    $t0 - $t_start, time - $t_start;
		}
		close $fh;
		_exit(0);
	}
	push @clients, $pid;
}
# A real turn spends seconds waiting for the model, which is when a
# worker's death costs most: its message is stored, its tool round not
# yet. The offline model answers at once, so a lock on tasks, held most
# of the time, stands in for the model: turns wait between storing their
# message and committing the round that adds their task.
my $prober = fork // die "fork: $!";
if (!$prober) {
	open my $fh, '>', "$out/probe" or _exit(1);
	select((select($fh), $| = 1)[0]);
	while (time < $deadline) {
		my $r = $s->request(GET => '/chat/health', timeout => 10);
		printf $fh "%.3f\t%s\n", time - $t_start, $r->{status};
		sleep 0.02;
	}
	_exit(0);
}
my $locker = fork // die "fork: $!";
if (!$locker) {
	$s->sql(q{BEGIN; LOCK TABLE tasks IN SHARE ROW EXCLUSIVE MODE;
	    SELECT pg_sleep(0.2); COMMIT}) while time < $deadline;
	_exit(0);
}
# A third of the way through, once host a has connections open (turns in
# flight, or queued for a worker).
sleep $SECONDS / 3;
my $in_flight = eval { $s->wait_until(sub { my $n = connections_on_a();
    $n >= 2 && $n }, 3, 'turns in flight on host a') } // connections_on_a();
my $t_kill = time - $t_start;
host_a('KILL');
my $t_gone = time - $t_start;
waitpid $_, 0 for @clients, $locker, $prober;

my (@turns, %first_status);
for my $c (1 .. $CLIENTS) {
	open my $fh, '<', "$out/$c" or die "$out/$c: $!";
	while (<$fh>) {
		chomp;
		my %t;
		@t{qw(key first answered tries final start end)} = split /\t/;
		push @turns, \%t;
		$first_status{ $t{first} }++;
	}
}
my @failed = grep { $_->{first} != 200 } @turns;
my @later = grep { $_->{final} !~ /\A200\z/ } @turns;
diag sprintf '%d turns in %d s from %d clients; host a killed at %.2f s '
    . 'with %d connections open (gone %.0f ms later); first answers: %s',
    scalar @turns, $SECONDS, $CLIENTS, $t_kill, $in_flight,
    1000 * ($t_gone - $t_kill),
    join ', ', map { "$first_status{$_} x $_" } sort keys %first_status;
ok @turns > 100, 'the clients kept turns coming';
ok !$in_flight || @failed, "the kill cost the turns in flight on host a "
    . '(else it missed them)';

my @after = grep { $_->{start} > $t_gone } @turns;
is_deeply [ map { "$_->{key}: $_->{first}" } grep { $_->{first} != 200 }
    @after ], [], scalar(@after) . ' turns sent after host a was gone: '
    . 'every one 200 at the first try (nginx moved on)';
is_deeply [ map { "$_->{key} sent at $_->{start}" } grep {
    $_->{start} > $t_gone || $_->{answered} < $t_kill } @failed ], [],
    'the only failures were turns in flight on host a when it was killed';
my ($last_failed) = sort { $b <=> $a } map { $_->{answered} } @failed;
diag sprintf 'after the kill: %d turns in flight on host a failed, the '
    . 'last answered at +%.0f ms; their clients retried them at once '
    . '(%d then 200, %d held by the dead worker: 409 turn_in_progress)',
    scalar @failed, 1000 * (($last_failed // $t_kill) - $t_kill),
    @failed - @later, scalar @later;
my $since = log_since($mark);
my $refused = () = $since =~ /\(111: Connection refused\)[^\n]*\Q$A\E/g;
my $lost = () = $since =~ /while reading response header[^\n]*\Q$A\E/g;
diag "nginx: $lost requests cut off on host a (POSTs: 502; GETs passed "
    . "on to host b), $refused connections it refused passed on to host b; "
    . 'host a taken out: '
    . ($since =~ /temporarily disabled[^\n]*\Q$A\E/ ? 'yes' : 'no');

# The health probe, nginx's view of the service every 20 ms: a GET cut
# off on host a went on to host b.
my @probe = map { (split /\t/)[1] } split /\n/,
    Stack::_slurp("$out/probe");
is_deeply [ grep { $_ != 200 } @probe ], [], scalar(@probe) . ' health '
    . 'probes through nginx: every one 200';

# Thirty seconds pass (the test does not wait them out): the leases of
# turns whose worker died run out, and their clients retry once more.
$s->sql(q{UPDATE turns SET lease_until = now() WHERE lease_until > now()});
my @still;
for my $t (@later) {
	(my $suffix = $t->{key}) =~ s/\Aload-//;
	my ($c) = $suffix =~ /\A(\d+)-/;
	my $r = turn($t->{key}, "Add a task to two hosts $suffix",
	    token => $s->token("load-$c"));
	push @still, "$t->{key}: $r->{status}" if $r->{status} != 200;
}
is_deeply \@still, [], scalar(@later) . ' turns held by the dead worker: '
    . 'completed by the retry after their lease';

# The books: every turn the clients sent is stored once, with its tool's
# effect once and its answer once.
my %user = map { $_->[0] => $_->[1] } @{ $s->sql(q{SELECT content, count(*)
    FROM messages WHERE role = 'user'
    AND content LIKE 'Add a task to two hosts %' GROUP BY content}) };
my %task = map { $_->[0] => $_->[1] } @{ $s->sql(q{SELECT title, count(*)
    FROM tasks WHERE title LIKE 'Two hosts %' GROUP BY title}) };
my %answered = map { $_->[0] => $_->[1] } @{ $s->sql(q{SELECT u.content,
    count(*) FROM messages u JOIN messages a ON a.reply_to = u.id
    AND a.role = 'assistant' AND a.tool_calls IS NULL GROUP BY u.content}) };
my @bad;
for my $t (@turns) {
	(my $suffix = $t->{key}) =~ s/\Aload-//;
	my $msg = "Add a task to two hosts $suffix";
	push @bad, "$t->{key}: message x" . ($user{$msg} // 0)
	    unless ($user{$msg} // 0) == 1;
	push @bad, "$t->{key}: task x" . ($task{"Two hosts $suffix"} // 0)
	    unless ($task{"Two hosts $suffix"} // 0) == 1;
	push @bad, "$t->{key}: answer x" . ($answered{$msg} // 0)
	    unless ($answered{$msg} // 0) == 1;
}
is_deeply \@bad, [], scalar(@turns) . ' turns sent, each stored exactly '
    . 'once with its task and its answer';
my $dup = grep { $_ > 1 } values %user, values %task;
diag sprintf 'books: %d sent, %d acknowledged at once, %d retried, %d '
    . 'found in the database, %d duplicated', scalar @turns,
    @turns - @failed, scalar @failed, scalar keys %user, $dup;
is scalar keys %user, scalar @turns, 'no stray turn in the database';

is $s->request(GET => '/chat/health')->{status}, 200,
    'healthy on host b alone';

done_testing;
