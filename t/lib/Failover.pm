package Failover;
# t/lib/Failover.pm: a throwaway PostgreSQL cluster under pg_auto_failover
# for a failover test: a monitor, a primary and a synchronous secondary,
# each a `pg_autoctl run` on 127.0.0.1, with the app database and
# ../../schema.sql; the node that is primary can be killed and brought
# back.

=head1 SYNOPSIS

  use lib 't/lib';
  use Failover;
  use Stack;
  my $f = Failover->new;
  my $s = Stack->new(database_url => $f->uri);
  my $old = $f->primary;                 # 'node1'
  my $killed_at = $f->kill_node($old);   # kill -9: its keeper, postmaster
  $f->wait_states({ $f->other($old) => 'wait_primary' }, 30,
      'the promotion');
  $f->start_node($old);                  # pg_autoctl run: it rejoins
  $f->wait_states({ $old => 'secondary', $f->other($old) => 'primary' },
      60, 'the old primary to rejoin');
  my $rows = $f->sql('SELECT count(*) FROM messages');  # on the primary

=head1 CONSTRUCTOR

Failover->new(%opt) makes the cluster and returns once the primary is
"primary" and the secondary "secondary" (synchronous replication on),
or dies with the tails of every log. Options:

  max_seconds    the cluster's lifetime bound (300): a guardian kills it
                 after that or as soon as the test process is gone

It runs as the postgres user when the test runs as root (PostgreSQL
refuses root), in /tmp/todo-chat-tests/failover-PID-N (kept when the
test fails or KEEP_TMP=1), on free ports of 127.0.0.1, its unix
sockets in the directory's run/.

The monitor's health checks are tuned for a quick failover (defaults in
parentheses): pgautofailover.health_check_period 1 s (5), its
health_check_timeout 1 s (5), health_check_max_retries 1 (2) and
health_check_retry_delay 0.5 s (2); node_considered_unhealthy_timeout
2 s (20: how long a node's keeper must have been silent, as well as the
health check failing, before the node is called unhealthy);
primary_demote_timeout 3 s (30: how long the monitor lets a primary that
may still be alive demote itself before the promoted node takes writes);
startup_grace_period 1 s (10). The keepers' network_partition_timeout is
2 s (20), under primary_demote_timeout as it must be: an isolated
primary stops taking writes before its successor starts. With these a
dead primary is replaced in about five seconds; pg_auto_failover's own
defaults take about 30.

=head1 METHODS

  uri                 the multi-host URI `pg_autoctl show uri` prints:
                      postgres://127.0.0.1:P1,127.0.0.1:P2/todo_chat?
                      target_session_attrs=read-write&sslmode=prefer
  database_url        uri with the role the workers use (user=postgres):
                      their DATABASE_URL
  nodes               the data nodes' names ('node1', 'node2')
  other($name)        the other data node
  states              { name => { reported => ..., assigned => ... } }:
                      the data nodes' states as the monitor has them
  primary             the node whose reported and assigned states are
                      both single, wait_primary or primary; undef if none
  wait_states(\%want, $seconds, $what)   polls until every named node
                      reports and is assigned the state wanted, or dies
                      with the states and the monitor's last events
  kill_node($name)    SIGKILL to the node's keeper (`pg_autoctl run` and
                      its services), to its postmaster (its pid from
                      postmaster.pid) and to the postmaster's children
                      (backends, walsender...): the machine gone at once. Returns the time (Time::HiRes) of
                      the kill, once all of them are gone.
  start_node($name)   `pg_autoctl run` for the node again: a dead primary
                      rejoins as a secondary (pg_rewind, or a new base
                      backup)
  postmaster_pid($name)
  port($name)         its PostgreSQL port
  sql($query)         psql on the primary through uri: arrayref of rows
                      (arrayrefs of column values; NULL is undef); dies
                      on an error
  events($n)          the monitor's last n events, as text
  logs                the tails of every log
  dir, start_seconds  accessors
  stop                stops every node, then the monitor, by pid; also
                      on DESTROY and at END

Why the keeper dies with the postmaster: `pg_autoctl run` supervises
PostgreSQL and starts it again within a second when the postmaster
alone dies (its postgres service), so that kill -9 of the postmaster
alone is a crash and a restart on the same node, not a failover. The
failover this module shows is the one a lost machine causes.

=cut

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(remove_tree);
use IO::Socket::INET;
use POSIX qw(WNOHANG _exit setsid);
use Scalar::Util qw(refaddr weaken);
use Time::HiRes qw(sleep time);

my $ROOT = abs_path(dirname(__FILE__) . '/../..');

# The helpers that start, run and watch processes, shared with Stack,
# which starts its servers the same way: the cluster's object keeps the
# fields they use (dir, procs, io_seq).
use Stack ();
BEGIN {
	no strict 'refs';
	*{"Failover::$_"} = \&{"Stack::$_"} for qw(_is_root _postgres_ids
	    _become_postgres _free_port _write_pids _slurp wait_until
	    _start_guardian);
}
my $PATH = '/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin';
my $AUTOCTL = '/usr/bin/pg_autoctl';
my $DB = 'todo_chat';
my %LIVE;
my $SEQ = 0;

# The monitor's settings (see the POD).
my %MONITOR_CONF = (
	'pgautofailover.health_check_period'		=> 1000,
	'pgautofailover.health_check_timeout'		=> 1000,
	'pgautofailover.health_check_max_retries'	=> 1,
	'pgautofailover.health_check_retry_delay'	=> 500,
	'pgautofailover.node_considered_unhealthy_timeout' => 2000,
	'pgautofailover.primary_demote_timeout'		=> 3000,
	'pgautofailover.startup_grace_period'		=> 1000,
);
my $NETWORK_PARTITION_TIMEOUT = 2;

sub new {
	my ($class, %opt) = @_;
	my $self = bless {
		max_seconds	=> $opt{max_seconds} // 300,
		guardian_grace	=> 5,
		owner		=> $$,
		procs		=> {},	# name => pid, each leading its group
		nodes		=> [ qw(node1 node2) ],
	}, $class;
	$LIVE{refaddr $self} = $self;
	weaken $LIVE{refaddr $self};
	my $t0 = time;
	eval { $self->_start; 1 } or do {
		my $err = $@;
		$self->{failed} = 1;
		my $logs = eval { $self->logs } // '';
		$self->stop;
		die "Failover: $err\n$logs";
	};
	$self->{start_seconds} = time - $t0;
	return $self;
}

sub dir		  { $_[0]{dir} }
sub uri		  { $_[0]{uri} }
sub database_url  { "$_[0]{uri}&user=postgres" }
sub nodes	  { @{ $_[0]{nodes} } }
sub port	  { $_[0]{port}{$_[1]} }
sub start_seconds { $_[0]{start_seconds} }

sub other {
	my ($self, $name) = @_;
	my ($other) = grep { $_ ne $name } $self->nodes;
	return $other;
}

# ---------------------------------------------------------------- setup

sub _start {
	my ($self) = @_;
	-x $AUTOCTL or die "pg_autoctl is not installed (scripts/deps)\n";
	$self->{bin} = _pg_bin();
	$self->_make_dir;
	$self->_start_guardian;
	$self->{port}{$_} = _free_port() for 'monitor', $self->nodes;
	$self->_start_monitor;
	my ($first, $second) = $self->nodes;
	$self->_initdb($first);
	$self->_autoctl(create => 'postgres', $self->_node_args($first));
	$self->_autoctl(config => set => '--pgdata', "$self->{dir}/$first",
	    'timeout.network_partition_timeout', $NETWORK_PARTITION_TIMEOUT);
	$self->start_node($first);
	# create left it "single" already: wait for the server itself.
	$self->wait_until(sub {
		die "$first\'s pg_autoctl exited\n" unless $self->_alive($first);
		my ($status) = $self->_run([ "$self->{bin}/pg_isready", '-q',
		    '-h', '127.0.0.1', '-p', $self->{port}{$first} ]);
		return !$status;
	}, 30, "$first to accept connections");
	# Loaded before the secondary exists: its base backup copies it.
	# The checkpoint now, at full speed: pg_basebackup asks for a
	# spread one, which would take seconds to write out what is dirty.
	my ($status, $out, $err) = $self->_run([ "$self->{bin}/psql", '-X',
	    '-q', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1',
	    '-p', $self->{port}{$first}, '-U', 'postgres', '-d', $DB ],
	    stdin => _slurp("$ROOT/schema.sql") . "\nCHECKPOINT;\n",
	    timeout => 60);
	die "loading schema.sql failed: $out$err\n" if $status;
	# create --run: the base backup from the primary, then the keeper.
	$self->_spawn($second, $AUTOCTL, 'create', 'postgres',
	    $self->_node_args($second), '--run');
	$self->wait_states({ $first => 'primary', $second => 'secondary' }, 60,
	    'the secondary to catch up');
	$self->_autoctl(config => set => '--pgdata', "$self->{dir}/$second",
	    'timeout.network_partition_timeout', $NETWORK_PARTITION_TIMEOUT);
	my ($uri) = $self->_autoctl(show => uri => '--formation', 'default',
	    '--pgdata', "$self->{dir}/monitor") =~ /^\s*(postgres\S+)\s*$/m
	    or die "pg_autoctl show uri printed no URI\n";
	$self->{uri} = $uri;
}

# The PostgreSQL whose lib has the pgautofailover extension
# (postgresql-15-auto-failover).
sub _pg_bin {
	my @libs = sort { ($a =~ m{/(\d+)/lib/})[0] <=> ($b =~ m{/(\d+)/lib/})[0] }
	    glob '/usr/lib/postgresql/*/lib/pgautofailover.so';
	@libs or die "no pgautofailover extension (scripts/deps)\n";
	(my $bin = dirname($libs[-1])) =~ s{/lib\z}{/bin};
	-x "$bin/postgres" or die "no $bin/postgres\n";
	return $bin;
}

# Short, so that unix socket paths fit (107 bytes), and where the
# postgres user can reach it whatever the checkout's permissions.
sub _make_dir {
	my ($self) = @_;
	my $base = '/tmp/todo-chat-tests';
	my $dir = sprintf '%s/failover-%d-%d', $base, $$, ++$SEQ;
	remove_tree($dir);
	for my $d ($base, $dir, map { "$dir/$_" } qw(run io home config data)) {
		mkdir $d or -d $d or die "mkdir $d: $!\n";
		chmod 0755, $d;
	}
	if (_is_root()) {
		my ($uid, $gid) = _postgres_ids();
		chown $uid, $gid, $dir, map { "$dir/$_" } qw(run io home config data)
		    or die "chown: $!\n";
	}
	$self->{dir} = $dir;
}

# pg_autoctl keeps its configuration and state under XDG directories and
# reaches its local PostgreSQL through PGHOST: all in the cluster's dir.
sub _env {
	my ($self) = @_;
	my $d = $self->{dir};
	return { PATH => "$self->{bin}:$PATH", HOME => "$d/home",
	    XDG_CONFIG_HOME => "$d/config", XDG_DATA_HOME => "$d/data",
	    XDG_RUNTIME_DIR => "$d/run", PGHOST => "$d/run",
	    PGCLIENTENCODING => 'UTF8' };
}

# initdb, and the settings pg_autoctl's own would otherwise set: its
# tuning takes a quarter of the machine's memory for shared_buffers, and
# it listens on '*'. postgresql.auto.conf is read last, so these win; a
# secondary's base backup copies them.
sub _initdb {
	my ($self, $name) = @_;
	my $data = "$self->{dir}/$name";
	my ($status, $out, $err) = $self->_run([ "$self->{bin}/initdb",
	    '-D', $data, '--no-sync', '-A', 'trust', '-U', 'postgres',
	    '-E', 'UTF8', '--locale=C' ], timeout => 60);
	die "initdb $name failed: $out$err\n" if $status;
	my %conf = (
		unix_socket_directories	=> "'$self->{dir}/run'",
		shared_buffers		=> "'16MB'",
		work_mem		=> "'4MB'",
		maintenance_work_mem	=> "'16MB'",
		effective_cache_size	=> "'128MB'",
		max_connections		=> 100,
		logging_collector	=> 'off',
		log_line_prefix		=> "'%m [%p] %q%u@%d '",
		# A kill -9 loses no page the kernel holds: the data
		# survives without fsync, and the test runs faster. Full
		# page writes stay on: pg_rewind, which brings the old
		# primary back, refuses a server without them.
		fsync			=> 'off',
	);
	%conf = (%conf, %{ $_[2] // {} });
	open my $fh, '>>', "$data/postgresql.auto.conf"
	    or die "$data/postgresql.auto.conf: $!\n";
	print $fh map { "$_ = $conf{$_}\n" } sort keys %conf;
	close $fh or die "$data/postgresql.auto.conf: $!\n";
}

sub _monitor_uri {
	my ($self) = @_;
	return "postgres://autoctl_node\@127.0.0.1:$self->{port}{monitor}"
	    . '/pg_auto_failover?sslmode=disable';
}

sub _node_args {
	my ($self, $name) = @_;
	return ('--pgdata', "$self->{dir}/$name",
	    '--pgport', $self->{port}{$name}, '--pghost', "$self->{dir}/run",
	    '--listen', '127.0.0.1', '--hostname', '127.0.0.1',
	    '--name', $name, '--pgctl', "$self->{bin}/pg_ctl",
	    '--dbname', $DB, '--username', 'postgres',
	    '--monitor', $self->_monitor_uri, '--auth', 'trust', '--no-ssl');
}

sub _start_monitor {
	my ($self) = @_;
	my $data = "$self->{dir}/monitor";
	$self->_initdb(monitor => \%MONITOR_CONF);
	$self->_autoctl(create => 'monitor', '--pgdata', $data,
	    '--pgport', $self->{port}{monitor}, '--pgctl',
	    "$self->{bin}/pg_ctl", '--hostname', '127.0.0.1', '--auth',
	    'trust', '--no-ssl');
	# create monitor has no --listen: pg_autoctl would start it on '*'.
	$self->_autoctl(config => set => '--pgdata', $data,
	    'postgresql.listen_addresses', '127.0.0.1');
	$self->_spawn(monitor => $AUTOCTL, 'run', '--pgdata', $data);
	$self->wait_until(sub {
		die "the monitor's pg_autoctl exited\n"
		    unless $self->_alive('monitor');
		my ($status) = $self->_monitor_sql('SELECT 1');
		return !$status;
	}, 30, 'the monitor');
}

# ------------------------------------------------------------ processes

# A pg_autoctl command to its end; its stdout, or it dies with both.
sub _autoctl {
	my ($self, @args) = @_;
	my ($status, $out, $err) = $self->_run([ $AUTOCTL, @args ],
	    timeout => 60);
	die "pg_autoctl @args[0, 1] failed: $out$err\n" if $status;
	return $out;
}

# A pg_autoctl of ours, as the postgres user, in a process group of its
# own (Stack's way: t/lib/Stack.pm), its output to NAME.log.
sub _spawn {
	my ($self, $name, @argv) = @_;
	return Stack::_spawn($self, $name, argv => \@argv,
	    log => "$self->{dir}/$name.log", as_postgres => 1,
	    env => $self->_env);
}

sub _alive {
	my ($self, $name) = @_;
	my $pid = $self->{procs}{$name} or return 0;
	return 1 if waitpid($pid, WNOHANG) == 0;
	delete $self->{procs}{$name};
	$self->_write_pids;
	return 0;
}

# For Stack's guardian (which Failover uses, with 5 s of grace): the
# nodes' postmasters, which pg_autoctl starts outside the groups it
# kills.
sub _guardian_strays {
	my ($self) = @_;
	return grep { $_ } map {
		(_slurp("$self->{dir}/$_/postmaster.pid") =~ /\A(\d+)/)[0]
	} qw(node1 node2 monitor);
}

# Runs argv as the postgres user to completion, as Stack does: (exit
# status, stdout, stderr); dies after timeout seconds (30).
sub _run {
	my ($self, $argv, %o) = @_;
	return Stack::_run($self, $argv, as_postgres => 1, env => $self->_env,
	    timeout => 30, %o);
}

# ---------------------------------------------------------------- nodes

sub start_node {
	my ($self, $name) = @_;
	die "$name is running\n" if $self->_alive($name);
	$self->_spawn($name, $AUTOCTL, 'run', '--pgdata', "$self->{dir}/$name");
}

sub postmaster_pid {
	my ($self, $name) = @_;
	my ($pid) = _slurp("$self->{dir}/$name/postmaster.pid") =~ /\A(\d+)/;
	return $pid;
}

sub _gone {
	my ($pid) = @_;
	return 1 unless kill 0, $pid;
	# A zombie until its parent (init, once its keeper is gone) reaps it.
	my ($state) = _slurp("/proc/$pid/stat") =~ /\) (\S)/;
	return !defined $state || $state eq 'Z';
}

sub kill_node {
	my ($self, $name) = @_;
	my $keeper = $self->{procs}{$name} or die "$name is not running\n";
	my $postmaster = $self->postmaster_pid($name)
	    or die "$name has no postmaster.pid\n";
	# PostgreSQL's children each lead a session of their own, out of
	# the keeper's group, and a backend outlives its postmaster until
	# it next looks: long enough to answer a statement or two (its
	# walsender too). A lost machine takes them all at once.
	my @children = _children($postmaster);
	my $t = time;
	# One call: the keeper's group (its services and the postmaster),
	# the postmaster by its pid, its backends and other children.
	kill 'KILL', -$keeper, $postmaster, @children;
	waitpid $keeper, 0;
	delete $self->{procs}{$name};
	$self->_write_pids;
	$self->wait_until(sub { !grep { !_gone($_) } $postmaster, @children },
	    10, "$name\'s postmaster ($postmaster) and its children to die");
	return $t;
}

sub _children {
	my ($parent) = @_;
	my @pids;
	for my $stat (glob '/proc/[0-9]*/stat') {
		my ($pid, $ppid) = _slurp($stat) =~ /\A(\d+) \(.*\) \S+ (\d+)/s
		    or next;
		push @pids, $pid if $ppid == $parent;
	}
	return @pids;
}

sub _monitor_sql {
	my ($self, $query) = @_;
	return $self->_run([ "$self->{bin}/psql", '-X', '-A', '-t',
	    '-F', "\t", '-h', "$self->{dir}/run", '-p', $self->{port}{monitor},
	    '-U', 'autoctl_node', '-d', 'pg_auto_failover', '-c', $query ],
	    timeout => 10);
}

sub states {
	my ($self) = @_;
	my ($status, $out, $err) = $self->_monitor_sql(q{SELECT nodename,
	    reportedstate, goalstate FROM pgautofailover.node ORDER BY nodeid});
	die "the monitor's node states: $err\n" if $status;
	my %s;
	for (split /\n/, $out) {
		my ($name, $reported, $assigned) = split /\t/;
		$s{$name} = { reported => $reported, assigned => $assigned };
	}
	return \%s;
}

sub primary {
	my ($self) = @_;
	my $s = $self->states;
	my @p = grep { $s->{$_}{reported} eq $s->{$_}{assigned}
	    && $s->{$_}{reported} =~ /\A(?:single|primary|wait_primary)\z/ }
	    sort keys %$s;
	return @p == 1 ? $p[0] : undef;
}

sub _states_text {
	my ($s) = @_;
	return join ', ', map { "$_ $s->{$_}{reported}/$s->{$_}{assigned}" }
	    sort keys %$s;
}

sub wait_states {
	my ($self, $want, $seconds, $what) = @_;
	my $s;
	my $ok = eval {
		$self->wait_until(sub {
			$s = $self->states;
			return !grep { !$s->{$_}
			    || $s->{$_}{reported} ne $want->{$_}
			    || $s->{$_}{assigned} ne $want->{$_} } keys %$want;
		}, $seconds, $what // 'the nodes\' states');
		1;
	};
	return $s if $ok;
	die $@ . 'states: ' . _states_text($s // {}) . "\n"
	    . $self->events(12);
}

sub events {
	my ($self, $n) = @_;
	my ($status, $out, $err) = eval { $self->_monitor_sql(
	    "SELECT eventtime, nodename, reportedstate, goalstate, description"
	    . " FROM pgautofailover.event ORDER BY eventid DESC LIMIT "
	    . int($n // 10)) };
	return "monitor events: " . ($@ || $err) if $@ || $status;
	return join '', map { "  $_\n" } reverse split /\n/, $out;
}

sub sql {
	my ($self, $query) = @_;
	my ($status, $out, $err) = $self->_run([ "$self->{bin}/psql", '-X',
	    '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1', '-F', "\t",
	    '-P', 'null=\N', '-d', $self->{uri} ], stdin => "$query\n;\n",
	    timeout => 30);
	die "sql failed: $err" if $status;
	return [ map { [ map { $_ eq '\N' ? undef : $_ } split /\t/, $_, -1 ] }
	    split /\n/, $out ];
}

sub logs {
	my ($self) = @_;
	return Stack::_log_tails($self->{dir}, 30,
	    qw(monitor.log node1.log node2.log guardian.log));
}

# ----------------------------------------------------------------- stop

sub stop {
	my ($self) = @_;
	return if $self->{stopped} || ($self->{owner} // 0) != $$;
	$self->{stopped} = 1;
	local ($?, $@);
	# The data nodes first: a keeper that loses its monitor keeps
	# trying it. SIGTERM: pg_autoctl stops PostgreSQL (fast) and exits.
	for my $name ($self->nodes, 'monitor') {
		my $pid = delete $self->{procs}{$name} or next;
		kill 'TERM', $pid;
		my $deadline = time + 20;
		sleep 0.05 while !waitpid($pid, WNOHANG) && time < $deadline;
		kill 'KILL', -$pid, $pid;
		waitpid $pid, WNOHANG;
	}
	# Postmasters of killed keepers, if any outlived them.
	for my $name ($self->nodes, 'monitor') {
		my $pm = $self->postmaster_pid($name) or next;
		kill 'KILL', $pm unless _gone($pm);
	}
	$self->_write_pids;
	if (my $g = delete $self->{guardian}) {
		kill 'KILL', $g;
		waitpid $g, 0;
	}
	delete $LIVE{refaddr $self};
	my $dir = $self->{dir} or return;
	my $failed = $self->{failed} || $self->{exit_failed}
	    || (Test::Builder->can('new') && !Test::Builder->new->is_passing);
	if ($ENV{KEEP_TMP} || $failed) {
		print STDERR "# Failover: kept $dir\n";
	} else {
		remove_tree($dir);
	}
}

sub DESTROY { $_[0]->stop }

END {
	for my $f (grep { defined } values %LIVE) {
		$f->{exit_failed} = 1 if $?;
		$f->stop;
	}
}

1;
