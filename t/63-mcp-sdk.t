#!/usr/bin/perl
# t/63-mcp-sdk.t: /mcp as software no one here wrote sees it, through
# nginx. MCP's official TypeScript SDK (t/js/mcp-client.mjs: its Client
# and Streamable HTTP transport) connects with a token, lists the tools,
# calls all five, and the tasks table shows what it did, under the
# token's user; without a token it gets 401 and finds the resource
# metadata; all of it through pgbouncer. Then the official conformance
# suite, in server mode, runs every scenario of the revisions we speak
# (the stateless 2026-07-28 too) against the same workers;
# t/mcp/conformance-expected*.yml list the scenarios and checks of
# features this server does not offer, and the suite fails the run on
# any other failure (and on a listed one that passes).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use Stack;

Stack::node_modules();	# skips the test when there is no node

# The suite sends no token: a second nginx server block sets one (a
# user of its own) for every request, so that the suite goes through the
# same workers and the same token check as any client.
my $secret = join '', map { chr(97 + int rand 26) } 1 .. 40;
my $minter = bless { env => { CHAT_JWT_SECRET => $secret } }, 'Stack';
# Through pgbouncer in transaction mode, as deployments run: each call is
# one transaction of its own, with no session state to lose.
my $s = Stack->new(workers => 2, pgbouncer => 1,
    env => { CHAT_JWT_SECRET => $secret },
    fixed_params => { HTTP_AUTHORIZATION => 'Bearer '
    . $minter->token('conformance', exp => time + 3600) });
my $url = 'http://127.0.0.1:' . $s->port . '/mcp';

my $run = Stack::Node->run('mcp-client.mjs', timeout => 60,
    stdin => encode_json({ url => $url, token => $s->token('alice') }));
my $out = $run->{json}
    or BAIL_OUT("mcp-client.mjs printed no JSON (exit "
    . ($run->{exit} // 'killed') . "): $run->{out}\n$run->{err}");

is $out->{server}{name}, 'todo-chat', 'the SDK connects: serverInfo';
is $out->{protocol}, '2025-11-25', 'and negotiates the current revision';
ok $out->{capabilities}{tools}, 'capabilities name tools';
is_deeply [ map { $_->{name} } @{ $out->{tools} } ],
    [ qw(add_task list_tasks complete_task delete_task update_task) ],
    'tools/list: the five tools, in the table\'s order';
is_deeply [ grep { ($_->{output_type} // '') ne 'object'
    || ($_->{input_type} // '') ne 'object' } @{ $out->{tools} } ], [],
    'every tool has an object inputSchema and outputSchema';

my %call;
push @{ $call{$_->{name}} }, $_ for @{ $out->{calls} };
my @errors = grep { $_->{error} && $_->{name} ne 'no_such_tool' }
    @{ $out->{calls} };
is_deeply \@errors, [], 'no call of a task tool threw in the SDK (each '
    . 'structuredContent matched its outputSchema)';
my ($milk, $mom) = map { $_->{result}{structuredContent} }
    @{ $call{add_task} };
is $milk->{status}, 'created', 'add_task: created';
is_deeply decode_json($call{add_task}[0]{result}{content}[0]{text}), $milk,
    'add_task: the text item holds the same JSON as structuredContent';
is_deeply [ map { $_->{title} } @{ $call{list_tasks}[0]{result}
    {structuredContent}{tasks} } ], [ 'Buy milk', 'Call mom' ],
    'list_tasks: {"tasks": [...]}, both tasks';
is $call{complete_task}[0]{result}{structuredContent}{status}, 'completed',
    'complete_task';
is $call{update_task}[0]{result}{structuredContent}{title},
    'Call mom tonight', 'update_task';
is $call{delete_task}[0]{result}{structuredContent}{status}, 'deleted',
    'delete_task';
is_deeply [ map { $_->{title} } @{ $call{list_tasks}[1]{result}
    {structuredContent}{tasks} } ], [ 'Call mom tonight' ],
    'list_tasks pending: what is left';
my $missing = $call{complete_task}[1]{result};
ok $missing->{isError}, 'a task that is not there: isError';
like $missing->{content}[0]{text}, qr/task 999999 not found/,
    'with the message';
like $call{no_such_tool}[0]{error}{message}, qr/Unknown tool/,
    'an unknown tool: the SDK gets the protocol error';

is_deeply $s->sql('SELECT user_id, title, description, completed FROM tasks'
    . ' ORDER BY id'), [ [ 'alice', 'Call mom tonight', 'Sunday', 'f' ] ],
    'the tasks table: the calls\' effects, under the token\'s user '
    . '(the user_id argument ignored)';
is $s->sql_value('SELECT count(*) FROM messages'), 0,
    'MCP calls write no conversation';

is $out->{no_token}{code}, 401, 'without a token the SDK gets 401';
my $meta_url = 'http://127.0.0.1:' . $s->port
    . '/.well-known/oauth-protected-resource';
is $out->{discovery}{resource_metadata_url}, $meta_url,
    'the SDK read the resource metadata URL from WWW-Authenticate';
is $out->{discovery}{resource_metadata}{resource}, $url,
    'and fetched the document: its resource is the URL it asked';
ok !exists $out->{discovery}{resource_metadata}{authorization_servers},
    'no CHAT_JWT_ISSUER: no authorization_servers';
like $out->{discovery}{error}{message} // '', qr/discovery done/,
    'the test stopped the OAuth flow there';

# The suite: every revision we speak (2025-03-26 has only its session
# scenario, which a stateless server passes by having no session), each
# with the scenarios that must pass whatever the baseline says.
my $suite = 'node_modules/@modelcontextprotocol/conformance/dist/index.js';
my $conf_url = 'http://127.0.0.1:' . $s->fixed_port . '/mcp';
my %must = (
	'2026-07-28' => [ qw(tools-list dns-rebinding-protection
	    http-header-validation) ],
	'2025-11-25' => [ qw(server-initialize server-session-lifecycle ping
	    tools-list dns-rebinding-protection) ],
	'2025-06-18' => [ qw(server-initialize server-session-lifecycle ping
	    tools-list) ],
	'2025-03-26' => [ qw(server-session-lifecycle) ],
);
for my $version (sort { $b cmp $a } keys %must) {
	my $baseline = "$FindBin::Bin/mcp/conformance-expected"
	    . ($version eq '2026-07-28' ? "-$version" : '') . '.yml';
	my $r = Stack::Node->run($suite, node => Stack::node22(),
	    timeout => 120, args => [ 'server', '--url', $conf_url,
	    '--suite', 'all', '--spec-version', $version,
	    '--expected-failures', $baseline ]);
	(my $text = $r->{out}) =~ s/\e\[[0-9;]*m//g;
	my @passed = $text =~ /^✓ (\S+):/mg;
	my @failed = $text =~ /^✗ (\S+):/mg;
	note "conformance $version: passed: @passed";
	note "conformance $version: failed (as the baseline expects): @failed";
	is $r->{exit}, 0, "conformance $version: only the expected failures"
	    or diag "$text\n$r->{err}";
	my %ok = map { $_ => 1 } @passed;
	is_deeply [ grep { !$ok{$_} } @{ $must{$version} } ], [],
	    "conformance $version: @{ $must{$version} } ran and passed"
	    or diag $text;
	# The stateless revision's own scenario fails only its baseline's
	# checks (the exit says so); it must have run.
	like $text, qr/^✗ server-stateless: [1-9]\d* passed, 4 failed$/m,
	    'conformance 2026-07-28: server-stateless ran'
	    if $version eq '2026-07-28';
}

# The suite's user got what the suite did, and no one else's rows.
is $s->sql_value("SELECT count(*) FROM tasks WHERE user_id NOT IN "
    . "('alice', 'conformance')"), 0, 'nothing written for anyone else';

done_testing;
