#!/usr/bin/perl
# t/00-stack.t: the harness itself: a whole stack starts, nginx reaches a
# worker, the worker reaches PostgreSQL, and schema.sql made the tables.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Stack;

my $s = Stack->new(workers => 2);
note sprintf 'stack up in %.2f s in %s', $s->start_seconds, $s->dir;

my $r = $s->request(GET => '/chat/health');
is $r->{status}, 200, 'GET /chat/health through nginx: 200';
like $r->{headers}{'content-type'}, qr{\Aapplication/json\b},
    'Content-Type application/json';
is_deeply $r->{json}, { status => 'ok' }, 'body {"status":"ok"}';

$r = $s->fcgi(GET => '/chat/health');
is $r->{status}, 200, 'GET /chat/health straight over FastCGI: 200';
is_deeply $r->{json}, { status => 'ok' }, 'same body over FastCGI';

my @workers = $s->worker_pids;
is scalar @workers, 2, 'multiwatch runs two workers';

my $tables = $s->sql(q{SELECT table_name FROM information_schema.tables
    WHERE table_schema = 'public' ORDER BY table_name});
my %have = map { $_->[0] => 1 } @$tables;
ok $have{$_}, "schema.sql created the table $_"
    for qw(tasks conversations messages);

open my $fh, '<', "$FindBin::Bin/../schema.sql" or die "schema.sql: $!";
my $schema = do { local $/; <$fh> };
ok eval { $s->sql($schema); 1 }, 'schema.sql runs again on the loaded database'
    or diag $@;

# The shapes of a message (messages_shape): each rule refuses what breaks
# it, and a message of each role passes.
my $conv = $s->sql_value(q{INSERT INTO conversations (user_id)
    VALUES ('shape') RETURNING id});
my $insert = q{INSERT INTO messages (conversation_id, user_id, role, content,
    tool_calls, tool_call_id) VALUES ($1, 'shape', $2, $3, $4::jsonb, $5)};
for my $bad ([ 'system', 'hi', undef, undef, 'an unknown role' ],
    [ 'tool', '{}', undef, undef, 'a tool result without its call' ],
    [ 'user', 'hi', undef, 'call_1', 'a call id on another role' ],
    [ 'user', 'hi', '[]', undef, 'tool calls from another role' ],
    [ 'assistant', undef, undef, undef, 'a message that says nothing' ]) {
	my $why = pop @$bad;
	ok !eval { $s->sql($insert, $conv, @$bad); 1 }
	    && $@ =~ /messages_shape/, "messages_shape refuses $why";
}
ok eval { $s->sql($insert, $conv, 'user', 'hi', undef, undef);
    $s->sql($insert, $conv, 'assistant', undef, '[]', undef);
    $s->sql($insert, $conv, 'tool', '{}', undef, 'call_1'); 1 },
    'a message of each role passes' or diag $@;

# A database from before messages_shape, with the four constraints that
# said the same: schema.sql puts the one in their place.
$s->sql(q{ALTER TABLE messages DROP CONSTRAINT messages_shape,
    ADD CONSTRAINT messages_role_check
     CHECK (role IN ('user', 'assistant', 'tool')),
    ADD CONSTRAINT messages_tool_has_call_id
     CHECK ((role = 'tool') = (tool_call_id IS NOT NULL)),
    ADD CONSTRAINT messages_only_assistant_calls
     CHECK (tool_calls IS NULL OR role = 'assistant'),
    ADD CONSTRAINT messages_not_empty
     CHECK (content IS NOT NULL OR tool_calls IS NOT NULL)});
ok eval { $s->sql($schema); 1 }, 'schema.sql on a database with the four '
    . 'constraints of before' or diag $@;
is_deeply $s->sql(q{SELECT conname, convalidated::int FROM pg_constraint
    WHERE conrelid = 'messages'::regclass AND contype = 'c'}),
    [ [ 'messages_shape', 1 ] ], '... leaves messages_shape alone, validated';

is_deeply $s->sql('SELECT $1::text, $2::int, $3::text',
    "it's \x{1f600}; DROP TABLE tasks", 42, undef),
    [ [ "it's \x{1f600}; DROP TABLE tasks", 42, undef ] ],
    'sql() passes parameters as values, NULL as undef';

$r = $s->request(GET => '/no/such/path');
is $r->{status}, 404, 'a path outside /chat and /api/ is 404 from nginx';
is $r->{json}{error}{code}, 'not_found', '... with a JSON error';

$r = $s->request(POST => '/chat', body => 'x' x (200 * 1024));
is $r->{status}, 413, 'a body over nginx\'s cap is 413';
is $r->{json}{error}{code}, 'body_too_large', '... with a JSON error';

$s->stop_workers;
$r = $s->request(GET => '/chat/health');
like $r->{status}, qr/\A50[23]\z/, 'no workers: nginx answers 502 or 503';
like $r->{json}{error}{code} // '', qr/\A[a-z_]+\z/, '... with a JSON error';

done_testing;
