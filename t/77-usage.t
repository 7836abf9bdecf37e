#!/usr/bin/perl
# t/77-usage.t: token accounting. Each model call's "usage" is stored with
# the message it produced (cached tokens too), the turn's reply sums them
# as "usage", a server that reports none costs nothing and fails nothing,
# a streamed turn counts its usage chunk, and GET /chat/usage answers the
# caller's turns and tokens today and this month (a keyed replay not
# counted again) with the limits that apply. A streamed turn over a
# limit is the same JSON 429 as a whole one: the check comes before the
# stream starts.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Stack;

# The workers' own defaults for the turn limits.
my $s = Stack->new(workers => 1, model => 'mock', env => {
    CHAT_USER_CONCURRENT_TURNS => undef, CHAT_USER_TURNS_PER_MINUTE => undef });
my $alice = $s->token('alice');

sub turn {
	my ($token, $message, %headers) = @_;
	return $s->request(POST => '/chat', token => $token,
	    body => { message => $message }, headers => \%headers);
}

# ------------------------------------------- a turn with a tool round

$s->mock_script([
    { reply => { tool_calls => [ { name => 'list_tasks',
      arguments => {} } ] }, usage => { prompt_tokens => 100,
      completion_tokens => 20, total_tokens => 120,
      prompt_tokens_details => { cached_tokens => 64 } } },
    { reply => { content => 'You have no tasks.' },
      usage => { prompt_tokens => 130, completion_tokens => 7,
      total_tokens => 137 } } ]);
my $r = turn($alice, 'what do I have to do?');
is $r->{status}, 200, 'tool turn: 200' or diag $r->{body};
is_deeply $r->{json}{usage}, { prompt_tokens => 230, completion_tokens => 27,
    total_tokens => 257 }, 'tool turn: usage summed over its two calls';
is_deeply $s->sql(q{SELECT role, tool_calls IS NOT NULL, prompt_tokens,
    completion_tokens, cached_tokens FROM messages
    WHERE conversation_id = $1 ORDER BY id}, $r->{json}{conversation_id}),
    [ [ 'user', 'f', undef, undef, undef ],
      [ 'assistant', 't', 100, 20, 64 ],
      [ 'tool', 'f', undef, undef, undef ],
      [ 'assistant', 'f', 130, 7, undef ] ],
    'tool turn: each call\'s usage stored on the message it produced';

# ------------------------------------------------------- no usage

$s->mock_script([ { reply => { content => 'no usage here' },
    usage => undef } ]);
$r = turn($alice, 'a server that reports none');
is $r->{status}, 200, 'no usage: the turn is answered';
is_deeply $r->{json}{usage}, { prompt_tokens => 0, completion_tokens => 0,
    total_tokens => 0 }, 'no usage: zeros';
is_deeply $s->sql(q{SELECT prompt_tokens, completion_tokens FROM messages
    WHERE conversation_id = $1 AND role = 'assistant'},
    $r->{json}{conversation_id}), [ [ undef, undef ] ],
    'no usage: NULL stored, not 0';

# ---------------------------------------------------- streamed turn

my $u = $s->ui_stream('/chat', token => $alice,
    body => { message => 'stream it' });
is $u->{status}, 200, 'streamed: 200';
is_deeply $s->sql(q{SELECT prompt_tokens, completion_tokens FROM messages
    WHERE role = 'assistant' AND user_id = 'alice'
    ORDER BY id DESC LIMIT 1}), [ [ 10, 5 ] ],
    'streamed: the usage chunk is stored';

# ------------------------------------------------ a keyed replay

$r = turn($alice, 'keyed one', 'Idempotency-Key' => 'usage-key-1');
is $r->{status}, 200, 'keyed: 200';
$r = turn($alice, 'keyed one', 'Idempotency-Key' => 'usage-key-1');
is $r->{status}, 200, 'keyed replay: 200';
is_deeply $r->{json}{usage}, { prompt_tokens => 10, completion_tokens => 5,
    total_tokens => 15 }, 'keyed replay: the first answer\'s usage again';

# ---------------------------------------------------- GET /chat/usage

$r = $s->request(GET => '/chat/usage');
is $r->{status}, 401, 'usage: no token, 401';
$r = $s->request(POST => '/chat/usage', token => $alice);
is $r->{status}, 405, 'usage: POST, 405';

# Days before today: one of last month (not this month's), and the 1st
# of this month when today is not it.
$s->sql(q{INSERT INTO usage_days (user_id, day, turns, prompt_tokens,
    completion_tokens) VALUES ('alice', (date_trunc('month',
    now() AT TIME ZONE 'UTC') - interval '1 day')::date, 50, 5000, 500)});
my $first_of_month = $s->sql_value(q{SELECT extract(day FROM
    now() AT TIME ZONE 'UTC') > 1});
$s->sql(q{INSERT INTO usage_days (user_id, day, turns, prompt_tokens,
    completion_tokens) VALUES ('alice', date_trunc('month',
    now() AT TIME ZONE 'UTC')::date, 2, 200, 20)}) if $first_of_month eq 't';
my ($mt, $mp, $mc) = $first_of_month eq 't' ? (2, 200, 20) : (0, 0, 0);

$r = $s->request(GET => '/chat/usage', token => $alice);
is $r->{status}, 200, 'usage: 200' or diag $r->{body};
like $r->{headers}{'content-type'}, qr{\Aapplication/json}, 'usage: JSON';
# Turns: the tool turn, the one without usage, the streamed one, the
# keyed one (its replay is not a turn).
is_deeply $r->{json}, {
    today => { turns => 4, prompt_tokens => 250, completion_tokens => 37 },
    month => { turns => 4 + $mt, prompt_tokens => 250 + $mp,
      completion_tokens => 37 + $mc },
    limits => { concurrent_turns => 4, turns_per_minute => 30,
      tokens_per_day => 0 } }, 'usage: today, month and limits'
    or diag explain $r->{json};
$r = $s->request(GET => '/chat/usage', token => $s->token('bob'));
is_deeply [ @{ $r->{json} }{qw(today month)} ], [ map { { turns => 0,
    prompt_tokens => 0, completion_tokens => 0 } } 1 .. 2 ],
    'usage: another user sees only their own (none)';

# ------------------------------------------------- a day that ends

# The user's day lives in their row of chat_users; the first model call
# stored on a later day moves it to usage_days. Carol's row is made to
# say it is yesterday's (1 turn, 10 + 5 tokens); her next turn moves it.
my $today = $s->sql_value(q{SELECT (now() AT TIME ZONE 'UTC')::date});
my $yesterday = $s->sql_value(q{SELECT (now() AT TIME ZONE 'UTC')::date - 1});
$s->sql(q{INSERT INTO chat_users (user_id, day, day_turns, day_prompt,
    day_completion, day_cached) VALUES ('carol',
    (now() AT TIME ZONE 'UTC')::date - 1, 1, 10, 5, 2)});
$s->mock_script([ { reply => { content => 'A new day.' },
    usage => { prompt_tokens => 7, completion_tokens => 3,
    total_tokens => 10 } } ]);
$r = turn($s->token('carol'), 'good morning');
is $r->{status}, 200, 'next day: 200' or diag $r->{body};
is_deeply $s->sql(q{SELECT day::text, turns, prompt_tokens,
    completion_tokens, cached_tokens FROM usage_days
    WHERE user_id = 'carol'}), [ [ $yesterday, 1, 10, 5, 2 ] ],
    'next day: yesterday moved to usage_days whole';
is_deeply $s->sql(q{SELECT day::text, day_turns, day_prompt, day_completion,
    day_cached FROM chat_users WHERE user_id = 'carol'}),
    [ [ $today, 1, 7, 3, 0 ] ], '... and today counts from zero';
$r = $s->request(GET => '/chat/usage', token => $s->token('carol'));
my $same_month = $s->sql_value(q{SELECT date_trunc('month', $1::date)
    = date_trunc('month', $2::date)}, $yesterday, $today) eq 't';
is_deeply [ @{ $r->{json} }{qw(today month)} ],
    [ { turns => 1, prompt_tokens => 7, completion_tokens => 3 },
      $same_month ? { turns => 2, prompt_tokens => 17, completion_tokens => 8 }
      : { turns => 1, prompt_tokens => 7, completion_tokens => 3 } ],
    'next day: GET /chat/usage, today alone and the month with yesterday';
is_deeply $s->sql(q{SELECT day::text, sum(turns), sum(prompt_tokens)
    FROM usage_by_day WHERE user_id = 'carol' GROUP BY day ORDER BY day}),
    [ [ $yesterday, 1, 10 ], [ $today, 1, 7 ] ],
    'usage_by_day: both days, for the operator\'s query';

# A database from before the day columns: schema.sql adds them and moves
# today's rows of usage_days into them.
$s->sql(q{ALTER TABLE chat_users DROP COLUMN day CASCADE, DROP COLUMN day_turns,
    DROP COLUMN day_prompt, DROP COLUMN day_completion,
    DROP COLUMN day_cached;
    INSERT INTO usage_days (user_id, day, turns, prompt_tokens,
    completion_tokens, cached_tokens) VALUES ('carol',
    (now() AT TIME ZONE 'UTC')::date, 3, 30, 20, 1)});
open my $fh, '<', "$FindBin::Bin/../schema.sql" or die "schema.sql: $!";
my $schema = do { local $/; <$fh> };
ok eval { $s->sql($schema); 1 }, 'schema.sql on a database from before '
    . 'the day columns' or diag $@;
is_deeply $s->sql(q{SELECT day::text, day_turns, day_prompt, day_completion,
    day_cached FROM chat_users WHERE user_id = 'carol'}),
    [ [ $today, 3, 30, 20, 1 ] ], '... today\'s row moved into chat_users';
is $s->sql_value(q{SELECT count(*) FROM usage_days WHERE user_id = 'carol'
    AND day = (now() AT TIME ZONE 'UTC')::date}), 0, '... and out of usage_days';

# ------------------------------------- a streamed turn over a limit

$s->sql(q{INSERT INTO chat_users (user_id, turn_starts) VALUES ('streamer',
    ARRAY(SELECT now() - interval '1 second' FROM generate_series(1, 30)))});
$u = $s->ui_stream('/chat', token => $s->token('streamer'),
    body => { message => 'one too many' });
is $u->{status}, 429, 'streamed over the limit: 429 before the stream';
like $u->{headers}{'content-type'} // '', qr{\Aapplication/json},
    '... as JSON';
like $u->{raw}, qr/"code":"rate_limited"/, '... rate_limited';
like $u->{headers}{'retry-after'} // '', qr/\A\d+\z/, '... with Retry-After';
is $s->sql_value(q{SELECT count(*) FROM messages
    WHERE user_id = 'streamer'}), 0, '... and nothing stored';

done_testing;
