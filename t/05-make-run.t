#!/usr/bin/perl
# t/05-make-run.t: what `make run` runs (scripts/run), in a state
# directory of its own (VAR) on a free port: every variable of the
# README's configuration table reaches its workers, and nothing else of
# the caller's environment; CHAT_WORKER_THREADS makes threads and
# CHAT_MAX_BODY_BYTES a 413; the link to the chat page signs in as the
# demo user; SIGTERM stops everything it started.
use strict;
use warnings;
use Cwd qw(abs_path);
use File::Path qw(remove_tree);
use FindBin;
use lib "$FindBin::Bin/lib";
use HTTP::Tiny;
use IO::Socket::INET;
use POSIX qw(WNOHANG setsid _exit);
use Test::More;
use Time::HiRes qw(sleep time);
use Stack;

my $ROOT = abs_path("$FindBin::Bin/..");
my $PATH = '/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin';
my $SECONDS = 180;	# the whole test, PostgreSQL's initdb included
my $THREADS = 3;
my $WORKERS = 2;

-x "$ROOT/chat.fcgi" or plan skip_all => 'no ./chat.fcgi (make all)';
# scripts/run starts ./chat.fcgi, whatever CHAT_FCGI asks for (the
# sanitizer passes of make test): nothing new to see there.
plan skip_all => 'scripts/run runs ./chat.fcgi, not CHAT_FCGI'
    if defined $ENV{CHAT_FCGI};
-x '/usr/sbin/nginx' && -x '/usr/bin/spawn-fcgi'
    or plan skip_all => 'nginx or spawn-fcgi missing (scripts/deps)';

# A value for every variable of the README's table, none its default, so
# each can be told apart in a worker's environment; a row without one
# here fails the test. DATABASE_URL is scripts/run's own (a database of
# ours would have to exist), the rest is passed through as given.
# A JWKS file of one Ed25519 key (RFC 8037's example): the workers must
# find a usable key in it to start.
my $JWKS = "$ROOT/t/tmp/t05-jwks-$$.json";
my %VALUE = (
	CHAT_JWT_SECRET		=> 't05: a secret of 32 bytes, not for use',
	CHAT_JWT_JWKS		=> $JWKS,
	CHAT_JWT_ISSUER		=> 'https://t05.example',
	CHAT_JWT_AUDIENCE	=> 't05 audience',
	CHAT_MODEL_URL		=> 'http://127.0.0.1:9/v1',
	CHAT_MODEL_KEY		=> 'key-t05',
	# Quoting: a space and a newline that looks like another variable.
	CHAT_MODEL		=> "model t05\nCHAT_FORGED=1",
	CHAT_MODEL_TIMEOUT_MS	=> 1234,
	CHAT_MAX_TOOL_ROUNDS	=> 3,
	CHAT_HISTORY_MESSAGES	=> 7,
	CHAT_HISTORY_TOKENS	=> 999,
	CHAT_MAX_BODY_BYTES	=> 40000,
	CHAT_WORKER_THREADS	=> $THREADS,
	CHAT_USER_CONCURRENT_TURNS => 5,
	CHAT_USER_TURNS_PER_MINUTE => 31,
	CHAT_USER_TOKENS_PER_DAY => 100000,
	CHAT_USER_MAX_TASKS	=> 9999,
	CHAT_USER_MAX_CONVERSATIONS => 999,
	CHAT_USER_MAX_MESSAGES	=> 99999,
	CHAT_MAX_TOOL_CALLS	=> 7,
	CHAT_MAX_TOOL_RESULT_BYTES => 20000,
	CHAT_MAX_REQUEST_BYTES	=> 300000,
);
my %EXTRA = (
	OPENAI_API_KEY		=> 'openai-t05',	# CHAT_MODEL_KEY's fallback
	CHAT_NOT_IN_THE_TABLE	=> 'passed too',	# every CHAT_* is
	T05_NOT_FOR_WORKERS	=> 'kept out',
);

sub slurp {
	open my $fh, '<:raw', $_[0] or return '';
	local $/;
	return scalar <$fh>;
}

sub readme_vars {
	my ($section) = slurp("$ROOT/README")
	    =~ /^## Configuration\n(.*?)^## /ms or return ();
	return $section =~ /^\| `([A-Z0-9_]+)` \|/mg;
}

sub reachable {
	my ($dir) = @_;
	return 1 if $> != 0;
	for my $user (qw(postgres nobody)) {
		system('/usr/sbin/runuser', '-u', $user, '--', 'test', '-x',
		    $dir) == 0 or return 0;
	}
	return 1;
}

sub free_port {
	my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
	    LocalPort => 0, Proto => 'tcp', Listen => 1, ReuseAddr => 1)
	    or die "no free port: $!\n";
	return $s->sockport;
}

# pid => [ppid, state, name] of every process.
sub processes {
	my %p;
	for my $stat (glob '/proc/[0-9]*/stat') {
		my ($pid, $name, $rest) = slurp($stat)
		    =~ /\A(\d+) \((.*)\) (.*)\z/s or next;
		my ($state, $ppid) = split ' ', $rest;
		$p{$pid} = [ $ppid, $state, $name ];
	}
	return \%p;
}

sub descendants {
	my ($root) = @_;
	my $p = processes();
	my %kids;
	push @{ $kids{ $p->{$_}[0] } }, $_ for keys %$p;
	my (@out, @todo);
	@todo = @{ $kids{$root} // [] };
	while (defined(my $pid = shift @todo)) {
		push @out, $pid;
		push @todo, @{ $kids{$pid} // [] };
	}
	return @out;
}

# A zombie counts as gone: its parent may reap it a little later.
sub alive {
	my ($pid) = @_;
	my ($state) = slurp("/proc/$pid/stat") =~ /\) (\S)/ or return 0;
	return $state ne 'Z';
}

sub environ {
	my %env = map { /\A([^=]*)=(.*)\z/s ? ($1 => $2) : () }
	    split /\0/, slurp("/proc/$_[0]/environ");
	return \%env;
}

my @vars = readme_vars();
ok @vars >= 10, 'the README lists the configuration (' . @vars . ' rows)';
ok exists $VALUE{$_} || $_ eq 'DATABASE_URL', "a value to pass for $_"
    for @vars;

# The checkout may be out of their reach (under /root, say): then /tmp.
my $dir;
for my $try ("$ROOT/t/tmp/make-run-$$", "/tmp/todo-chat-tests/make-run-$$") {
	Stack::mkdir_p($try);
	if (reachable($try)) {
		$dir = $try;
		last;
	}
	remove_tree($try);
}
$dir or BAIL_OUT('no directory the postgres and nobody users can reach');
my $var = "$dir/var";
my $port = free_port();

# scripts/run in a session of its own, so that whatever it leaves can be
# found and killed if this test fails half-way.
my $run = fork // die "fork: $!\n";
if (!$run) {
	setsid();
	open STDIN, '<', '/dev/null';
	open STDOUT, '>', "$dir/stdout";
	open STDERR, '>', "$dir/stderr";
	%ENV = (PATH => $PATH, PORT => $port, WORKERS => $WORKERS,
	    VAR => $var, %VALUE, %EXTRA);
	exec "$ROOT/scripts/run" or _exit(127);
}
my $run_status;

sub run_alive {
	return 0 if defined $run_status;
	return 1 if waitpid($run, WNOHANG) == 0;
	$run_status = $?;
	return 0;
}

sub wait_until {
	my ($code, $seconds) = @_;
	my $until = time + $seconds;
	while (time < $until) {
		return 1 if $code->();
		sleep 0.1;
	}
	return $code->();
}

# Whatever happens below, scripts/run and what it started stop.
my %seen;	# pid => name of every process scripts/run started
sub postmaster { (slurp("$var/pg/postmaster.pid") =~ /\A(\d+)/)[0] }
sub stop_all {
	return unless $run;
	local $?;	# END's: the test's exit status
	kill 'TERM', $run if run_alive();
	wait_until(sub { !run_alive() }, 30);
	kill 'KILL', -$run, keys %seen;
	if (my $pm = postmaster()) {
		kill 'QUIT', $pm if alive($pm);
	}
	$run = undef;
}
END { stop_all(); unlink $JWKS if defined $JWKS }
Stack::mkdir_p("$ROOT/t/tmp");
open my $jwks, '>', $JWKS or die "$JWKS: $!\n";
print $jwks '{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"t05",'
    . '"x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}';
close $jwks or die "$JWKS: $!\n";
$SIG{ALRM} = sub { die "timed out after $SECONDS s\n" };
$SIG{$_} = sub { exit 1 } for qw(INT TERM HUP);
alarm $SECONDS;

my $up = wait_until(sub {
	return 1 if slurp("$dir/stdout") =~ /todo-chat is up at/;
	return !run_alive();	# done waiting: it failed
}, $SECONDS - 30) && run_alive();
ok $up, 'scripts/run comes up' or diag slurp("$dir/stderr"),
    slurp("$var/log/workers.log");

SKIP: {
	skip 'scripts/run is not up', 1 unless $up;
	my $p = processes();
	%seen = map { $_ => $p->{$_}[2] } descendants($run);
	my $pm = postmaster();
	$seen{$pm} = 'postgres' if $pm;
	$seen{$_} = 'postgres' for $pm ? descendants($pm) : ();
	my @workers = sort { $a <=> $b } grep {
	    (readlink("/proc/$_/exe") // '') eq "$ROOT/chat.fcgi" } keys %seen;
	is scalar @workers, $WORKERS, "$WORKERS chat.fcgi processes";

	for my $pid (@workers) {
		my ($threads) = slurp("/proc/$pid/status") =~ /^Threads:\s*(\d+)/m;
		is $threads, $THREADS + 1, "worker $pid: CHAT_WORKER_THREADS "
		    . "$THREADS threads and the main one";
		my $env = environ($pid);
		is $env->{$_}, $VALUE{$_}, "worker $pid has $_"
		    for sort keys %VALUE;
		is $env->{DATABASE_URL}, "host=$var/run port=5433 "
		    . 'dbname=todo_chat user=postgres',
		    "worker $pid has scripts/run's DATABASE_URL";
		is $env->{OPENAI_API_KEY}, $EXTRA{OPENAI_API_KEY},
		    "worker $pid has OPENAI_API_KEY";
		is $env->{CHAT_NOT_IN_THE_TABLE}, $EXTRA{CHAT_NOT_IN_THE_TABLE},
		    "worker $pid has any CHAT_* variable";
		is_deeply [ sort grep { !exists $VALUE{$_} && !/\A(?:PATH|
		    DATABASE_URL|OPENAI_API_KEY|CHAT_NOT_IN_THE_TABLE)\z/x }
		    keys %$env ], [], "worker $pid has nothing else"
		    . ' (no T05_NOT_FOR_WORKERS, no CHAT_FORGED)';
	}

	# The settings act, not just arrive: 40,000 bytes is the cap.
	my ($token) = slurp("$dir/stdout") =~ /Bearer ([\w.-]+)/;
	my $http = HTTP::Tiny->new(timeout => 10);
	my $body = '{"message": "' . ('x' x 45000) . '"}';
	my $r = $http->post("http://127.0.0.1:$port/chat", { content => $body,
	    headers => { authorization => "Bearer $token",
	    'content-type' => 'application/json' } });
	is $r->{status}, 413, 'a 45,000-byte body: 413 under '
	    . 'CHAT_MAX_BODY_BYTES=40000';
	$r = $http->get("http://127.0.0.1:$port/chat/health");
	is $r->{status}, 200, 'GET /chat/health: 200';

	# The link to the chat page: this port, the demo token in the
	# fragment; the page behind it is served, with its protections.
	my ($link, $link_token) = slurp("$dir/stdout")
	    =~ m{^ *(http://127\.0\.0\.1:(?:\d+)/)#token=([\w.-]+)$}m;
	is $link, "http://127.0.0.1:$port/", 'a link to the chat page';
	is $link_token, $token, '... carrying the demo token in its fragment';
	$r = $http->get($link // "http://127.0.0.1:$port/");
	is $r->{status}, 200, 'the page: 200';
	like $r->{headers}{'content-type'} // '', qr{\Atext/html},
	    '... as HTML';
	like $r->{content}, qr{<textarea[^>]*id="message"}, '... with its '
	    . 'message box';
	like $r->{headers}{'content-security-policy'} // '',
	    qr/script-src 'self'/, '... under a Content-Security-Policy';
	$r = $http->get("http://127.0.0.1:$port/chat/tasks",
	    { headers => { authorization => "Bearer $link_token" } });
	is $r->{status}, 200, 'the token of the link works: GET /chat/tasks';
	like slurp("$dir/stdout"), qr/\($WORKERS processes of $THREADS workers,/,
	    'the startup line counts the threads';

	# SIGTERM to scripts/run alone: it stops what it started.
	kill 'TERM', $run;
	ok wait_until(sub { !run_alive() }, 60), 'SIGTERM stops scripts/run';
	is $run_status >> 8, 143, 'and it exits 143' if defined $run_status;
	ok wait_until(sub { !grep { alive($_) } keys %seen }, 10),
	    'every process it started is gone'
	    or diag join ' ', map { "$_ ($seen{$_})" } grep { alive($_) }
	    keys %seen;
	my @left = grep { index(slurp("/proc/$_/cmdline"), $var) >= 0 }
	    keys %{ processes() };
	is_deeply \@left, [], "no process left running on $var";
	ok !-e "$var/run/workers.pid", 'workers.pid removed';
	$run = undef;
}
alarm 0;

if (Test::More->builder->is_passing && !$ENV{KEEP_TMP}) {
	remove_tree($dir);
} else {
	diag "kept $dir";
}
done_testing;
