#!/usr/bin/perl
# t/65-browser.t: the chat page as a person meets it, in Debian's
# Chromium (t/js/browser.mjs drives it with puppeteer-core): the make-run
# link signs in; a message streams its answer and its task into the task
# panel; a reload mid-answer picks the turn up; Stop, Retry with the
# same Idempotency-Key, scrolling back through 300 messages and a long
# list of conversations, deleting one; markup in a message stays text
# and runs nothing; a refused token asks for another; axe-core finds no
# serious accessibility fault. Also what nginx sends with the page.
# A failure leaves screenshots in t/tmp/browser-*.png.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use JSON::PP;
use Test::More;
use Time::HiRes qw(time);
use Stack;

my $CHROMIUM = $ENV{CHROMIUM} // '/usr/bin/chromium';
-x $CHROMIUM or plan skip_all => "no $CHROMIUM (scripts/deps installs it)";

my $ROOT = "$FindBin::Bin/..";
my $t0 = time;
my $s = Stack->new(workers => 3, model => 'mock');
my $alice = $s->token('alice');

# What nginx serves at /: the page, under its protections; a path that
# is no file is still the API's JSON 404.
my $r = $s->request(GET => '/');
is $r->{status}, 200, 'GET /: 200';
like $r->{headers}{'content-type'}, qr{\Atext/html}, '... HTML';
my $csp = $r->{headers}{'content-security-policy'} // '';
like $csp, qr/(?:^|;)\s*default-src 'none'/, '... CSP: nothing by default';
like $csp, qr/script-src 'self'(?:;|$)/, '... only its own scripts';
like $csp, qr/style-src 'self'(?:;|$)/, '... only its own styles';
like $csp, qr/connect-src 'self'(?:;|$)/, '... calls to this origin only';
is $r->{headers}{'x-content-type-options'}, 'nosniff', '... nosniff';
is $r->{headers}{'referrer-policy'}, 'no-referrer', '... no Referer';
my $bytes = 0;
for my $f (sort glob "$ROOT/www/*") {
	(my $name = $f) =~ s{.*/}{};
	my $res = $s->request(GET => "/$name");
	is $res->{status}, 200, "GET /$name: 200";
	my %type = (js => 'text/javascript', css => 'text/css',
	    html => 'text/html', svg => 'image/svg+xml');
	my ($ext) = $name =~ /\.(\w+)\z/;
	like $res->{headers}{'content-type'}, qr{\A\Q$type{$ext}\E},
	    "... as $type{$ext}";
	$bytes += length $res->{body};
}
ok $bytes < 100_000, "the page's files weigh under 100 KB ($bytes bytes)";
$r = $s->request(GET => '/no/such/path');
is $r->{status}, 404, 'a path that is no file: 404';
is $r->{json}{error}{code}, 'not_found', '... in JSON';

# Alice's history: 29 short conversations and one of 300 messages, all
# older than what the test adds.
$s->sql(q{INSERT INTO conversations (user_id, title, created_at, updated_at)
    SELECT 'alice', 'Old conversation ' || g, now() - g * interval '1 hour',
    now() - g * interval '1 hour' FROM generate_series(1, 29) g});
my $long = $s->sql_value(q{INSERT INTO conversations (user_id, title,
    created_at, updated_at) VALUES ('alice', 'A long conversation',
    now() - interval '30 minutes', now() - interval '30 minutes')
    RETURNING id});
$s->sql(q{INSERT INTO messages (conversation_id, user_id, role, content)
    SELECT $1, 'alice', CASE WHEN g % 2 = 1 THEN 'user' ELSE 'assistant'
    END, 'seeded ' || g FROM generate_series(1, 300) g}, $long);

my $mock = $s->mock_url;
$mock =~ s{/v1\z}{};
my $tmp = "$ROOT/t/tmp";
Stack::mkdir_p($tmp);
my $run = Stack::Node->run('browser.mjs', timeout => 170,
    stdin => JSON::PP->new->encode({ url => 'http://127.0.0.1:'
    . $s->port, token => $alice, bad_token => $s->token('alice',
    exp => time - 60), mock => $mock, long_conversation => 0 + $long,
    many_conversations => 30, tmp => $tmp, chromium => $CHROMIUM }));
Stack::Node->report($run, 'browser.mjs');
diag "screenshots of the failure: t/tmp/browser-*.png"
    unless Test::More->builder->is_passing;

# What the page did, as the database has it.
is $s->sql_value(q{SELECT count(*) FROM tasks WHERE user_id = 'alice'
    AND title = 'Buy milk'}), 1, 'the task of the chat is stored, once';
is $s->sql_value(q{SELECT count(*) FROM conversations WHERE user_id =
    'alice' AND title = 'Please retry me'}), 0,
    'the deleted conversation is gone';
is $s->sql_value(q{SELECT count(*) FROM messages WHERE user_id = 'alice'
    AND role = 'user' AND content = 'Please retry me'}), 0,
    '... with its messages';
note sprintf 'browser test: %.1f s in all', time - $t0;

done_testing;
