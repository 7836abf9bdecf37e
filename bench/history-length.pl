#!/usr/bin/perl
# bench/history-length.pl: does a turn cost more in a long conversation?
# Starts the real stack (nginx, workers, PostgreSQL with stock durability,
# the built-in model), seeds one conversation of 20 messages and one of
# 100,000 with SQL, then times turns in each, alternating, through nginx.
# Prints the median and p90 of each and their ratio (target: at most 1.2),
# and appends the row to bench/results/history-length.tsv.
#
#   perl bench/history-length.pl [turns per conversation, default 300]
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../t/lib";
use POSIX qw(strftime);
use Time::HiRes qw(time);
use Stack;

my $turns = shift // 300;
my $s = Stack->new(workers => 1, durable => 1);
my $token = $s->token('bench');

sub seed {
	my ($n) = @_;
	my $r = $s->request(POST => '/chat', token => $token,
	    body => { message => 'hello' });
	my $conv = $r->{json}{conversation_id} or die "no conversation\n";
	# Whole turns of four messages: user, call, result, answer.
	$s->sql(q{INSERT INTO messages (conversation_id, user_id, role,
	    content, tool_calls, tool_call_id, reply_to, round)
	    SELECT $1, 'bench', r.role,
	    CASE r.role WHEN 'assistant' THEN CASE WHEN r.k = 1 THEN NULL
	     ELSE 'Added it.' END
	     WHEN 'tool' THEN '{"task_id": 1, "status": "created"}'
	     ELSE 'Add a task number ' || g END,
	    CASE WHEN r.k = 1 THEN ('[{"id":"call_' || g || '","type":'
	     || '"function","function":{"name":"add_task","arguments":'
	     || '"{\"title\":\"x\"}"}}]')::jsonb END,
	    CASE WHEN r.role = 'tool' THEN 'call_' || g END,
	    NULL, CASE WHEN r.k = 1 THEN 1 END
	    FROM generate_series(1, $2) g,
	    (VALUES (0, 'user'), (1, 'assistant'), (2, 'tool'),
	     (3, 'assistant')) AS r(k, role)
	    ORDER BY g, r.k}, $conv, int($n / 4));
	$s->sql('ANALYZE messages');
	return $conv;
}

my %conv = (short => seed(20), long => seed(100_000));
printf "seeded: %s\n", join ', ', map {
    "$_ = " . $s->sql_value('SELECT count(*) FROM messages
    WHERE conversation_id = $1', $conv{$_}) . ' messages' } sort keys %conv;

my %ms = (short => [], long => []);
for my $i (1 .. $turns) {
	for my $which ($i % 2 ? qw(short long) : qw(long short)) {
		my $t0 = time;
		my $r = $s->request(POST => '/chat', token => $token, body => {
		    message => 'how are you', conversation_id => $conv{$which} });
		die "turn failed: $r->{status} $r->{body}\n"
		    unless $r->{status} == 200;
		push @{ $ms{$which} }, (time - $t0) * 1000;
	}
}

sub pct {
	my ($p, @v) = @_;
	@v = sort { $a <=> $b } @v;
	return $v[int($p * $#v + 0.5)];
}
my %med = map { $_ => pct(0.5, @{ $ms{$_} }) } keys %ms;
my %p90 = map { $_ => pct(0.9, @{ $ms{$_} }) } keys %ms;
my $ratio = $med{long} / $med{short};
printf "%-28s %8s %8s\n", 'conversation', 'p50 ms', 'p90 ms';
printf "%-28s %8.2f %8.2f\n", '20 messages', $med{short}, $p90{short};
printf "%-28s %8.2f %8.2f\n", '100,000 messages', $med{long}, $p90{long};
printf "ratio of medians: %.3f (target <= 1.2), %d turns each\n", $ratio,
    $turns;

mkdir "$FindBin::Bin/results";
my $file = "$FindBin::Bin/results/history-length.tsv";
my $new = !-e $file;
open my $out, '>>', $file or die "$file: $!";
print $out "date\tturns\tp50_20\tp50_100k\tp90_20\tp90_100k\tratio\n" if $new;
printf $out "%s\t%d\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\n",
    strftime('%Y-%m-%dT%H:%M:%SZ', gmtime), $turns, $med{short},
    $med{long}, $p90{short}, $p90{long}, $ratio;
print "appended to $file\n";
