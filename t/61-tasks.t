#!/usr/bin/perl
# t/61-tasks.t: GET /chat/tasks, the task panel's read: a user's own
# tasks newest first in list_tasks' item shape, paged by next_before
# (every task once, even while new ones arrive), filtered by status, and
# refused with 400 for a status or limit it does not know, 401 without a
# token.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Stack;

my $s = Stack->new(workers => 2);
my $alice = $s->token('alice');
my $bob = $s->token('bob');

sub get {
	my ($path, $token) = @_;
	my $r = $s->request(GET => $path, token => $token // $alice);
	is $r->{status}, 200, "GET $path: 200" or diag $r->{body};
	return $r->{json} // {};
}

# Every task of a listing, following next_before to the end.
sub all_pages {
	my ($query, $token) = @_;
	my (@tasks, $before);
	for my $n (1 .. 100) {
		my $page = get("/chat/tasks?$query"
		    . (defined $before ? "&before=$before" : ''), $token);
		push @tasks, @{ $page->{tasks} // [] };
		$before = $page->{next_before};
		last unless defined $before;
	}
	return @tasks;
}

# A task made the way a person makes one, through a turn.
my $r = $s->request(POST => '/chat', token => $alice,
    body => { message => 'Add a task to buy milk' });
is $r->{status}, 200, 'a turn adds a task' or diag $r->{body};
my $page = get('/chat/tasks');
is_deeply $page, { tasks => [ { id => $page->{tasks}[0]{id},
    title => 'Buy milk', description => '', completed => JSON::PP::false } ],
    next_before => undef }, 'the task, in list_tasks\' item shape';
ok JSON::PP::is_bool($page->{tasks}[0]{completed}), 'completed is a boolean';

# 30 more of alice's, every third completed; 3 of bob's.
$s->sql(q{INSERT INTO tasks (user_id, title, description, completed)
    SELECT 'alice', 'task ' || g, 'about ' || g, g % 3 = 0
    FROM generate_series(1, 30) g});
$s->sql(q{INSERT INTO tasks (user_id, title) SELECT 'bob', 'bob ' || g
    FROM generate_series(1, 3) g});
my $mine = $s->sql(q{SELECT id, completed FROM tasks WHERE user_id = 'alice'
    ORDER BY id DESC});
my @all = map { $_->[0] } @$mine;
my @done = map { $_->[0] } grep { $_->[1] eq 't' } @$mine;
my @pending = map { $_->[0] } grep { $_->[1] eq 'f' } @$mine;

is scalar @{ get('/chat/tasks')->{tasks} }, 31, 'default limit: 50';
is_deeply [ map { $_->{id} } all_pages('limit=7') ], \@all,
    'all, paged by 7: every task once, newest first';
my @c = all_pages('status=completed&limit=4');
is_deeply [ map { $_->{id} } @c ], \@done, 'status=completed: only those';
ok !grep({ !$_->{completed} } @c), '... each completed';
my @p = all_pages('status=pending&limit=100');
is_deeply [ map { $_->{id} } @p ], \@pending, 'status=pending: only those';
is_deeply [ map { $_->{id} } all_pages('status=all&limit=100') ], \@all,
    'status=all: all';
$page = get('/chat/tasks?limit=1');
is scalar @{ $page->{tasks} }, 1, 'limit=1: one';
is $page->{next_before}, $all[0], '... next_before is its id';
$page = get("/chat/tasks?before=$all[-1]");
is_deeply $page, { tasks => [], next_before => undef },
    'before the oldest: an empty page, next_before null';

# New tasks while paging land above the cursor: never seen twice.
my ($first, @seen) = get('/chat/tasks?limit=10');
push @seen, map { $_->{id} } @{ $first->{tasks} };
$s->request(POST => '/chat', token => $alice,
    body => { message => 'Add a task to call mom' });
my $cursor = $first->{next_before};
while (defined $cursor) {
	my $next = get("/chat/tasks?limit=10&before=$cursor");
	push @seen, map { $_->{id} } @{ $next->{tasks} };
	$cursor = $next->{next_before};
}
is_deeply \@seen, \@all, 'a task added mid-way does not shift the pages';

# Isolation: bob sees his three, alice none of his.
is_deeply [ map { $_->{title} } @{ get('/chat/tasks', $bob)->{tasks} } ],
    [ 'bob 3', 'bob 2', 'bob 1' ], 'bob sees only his';
ok !grep({ $_->{title} =~ /\Abob / } all_pages('limit=100')),
    'alice sees none of bob\'s';
my $bobs = $s->sql_value(q{SELECT max(id) FROM tasks WHERE user_id = 'bob'});
ok !grep({ $_->{title} =~ /\Abob / } @{ get("/chat/tasks?before="
    . ($bobs + 1))->{tasks} }), 'a cursor past bob\'s ids shows no bob task';

# Refusals, as data: query, status, code.
for my $case (
    [ 'status=done',		400, 'invalid_status' ],
    [ 'status=',		400, 'invalid_status' ],
    [ 'status=ALL',		400, 'invalid_status' ],
    [ 'status=%ZZ',		400, 'invalid_status' ],
    [ 'status=' . 'x' x 40,	400, 'invalid_status' ],
    [ 'limit=0',		400, 'invalid_limit' ],
    [ 'limit=101',		400, 'invalid_limit' ],
    [ 'limit=-1',		400, 'invalid_limit' ],
    [ 'limit=ten',		400, 'invalid_limit' ],
    [ 'before=0',		400, 'invalid_before' ],
    [ 'before=x',		400, 'invalid_before' ],
    ) {
	my ($q, $status, $code) = @$case;
	my $res = $s->request(GET => "/chat/tasks?$q", token => $alice);
	is $res->{status}, $status, "?$q: $status";
	is $res->{json}{error}{code}, $code, "... $code";
}
$r = $s->request(GET => '/chat/tasks');
is $r->{status}, 401, 'no token: 401';
is $r->{json}{error}{code}, 'missing_token', '... missing_token';
is $s->request(GET => '/chat/tasks', token => 'x.y.z')->{status}, 401,
    'a bad token: 401';
$r = $s->request(POST => '/chat/tasks', token => $alice, body => '{}');
is $r->{status}, 405, 'POST: 405';
is $r->{headers}{allow}, 'GET', '... Allow: GET';

done_testing;
