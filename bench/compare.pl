#!/usr/bin/perl
# bench/compare.pl: this tree's turn against another build's, in
# bench/perf.pl's terms (the turn over the minimal turn), as README's
# "Benchmarks" says two builds must be compared on a shared machine:
# runs of the two in turn, the order alternating (this, other, other,
# this, this, other, ...), so that the drift of the machine between runs
# falls on both alike, and the medians of their runs compared.
#
#   perl bench/compare.pl REV [RUNS]
#
# REV: the other build, any commit git names; RUNS (6): perf.pl runs in
# all, half of each build. The other build is checked out in a worktree
# of its own under TMPDIR, with this tree's perf.pl, minimal-turn.sql
# and turn.lua copied in (both builds measured by the same script, on
# the same data), built with make, and removed at the end. perf.pl reads
# its environment as usual: BENCH_CONCURRENCY, BENCH_SECONDS,
# BENCH_PAIRS...; BENCH_ROWS=turn for a build from before streamed turns
# and MCP (from before 2026-12-02), which perf.pl's other rows need.
# Prints each run's medians of the turn over the minimal turn at each
# concurrency (*: some of its pairs disturbed from outside, as perf.pl
# stars them), the median of each build's runs with and without the
# disturbed ones, and this build's over the other's; writes it to
# bench/results/compare-<UTC time>.txt, each run's report beside it.
# A run takes perf.pl's time: about four minutes by default, half as
# much with BENCH_ROWS=turn.
use strict;
use warnings;
use FindBin;
use Cwd qw(abs_path);
use File::Copy qw(copy);
use File::Temp qw(tempdir);
use POSIX qw(strftime);

my ($REV, $RUNS) = @ARGV;
defined $REV or die "usage: perl bench/compare.pl REV [RUNS]\n";
$RUNS //= 6;
$RUNS =~ /\A[1-9]\d*\z/ && $RUNS % 2 == 0
    or die "RUNS: an even number of runs, half of each build\n";
my $ROOT = abs_path("$FindBin::Bin/..");
my $commit = eval { git('rev-parse', '--verify', '--quiet', "$REV^{commit}") }
    or die "not a commit here: $REV\n";
my $here = git('rev-parse', '--short', 'HEAD');
chomp $commit;
chomp $here;
my $short = substr $commit, 0, 7;

my $tmp = tempdir('todo-chat-compare-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $other = "$tmp/tree";
git('worktree', 'add', '--detach', '--force', $other, $commit);
# The worktree goes whatever ends this script, the die of a run too.
END { system('git', '-C', $ROOT, 'worktree', 'remove', '--force', $other)
    if $other && -d $other }
for my $f (qw(perf.pl minimal-turn.sql turn.lua)) {
	copy("$ROOT/bench/$f", "$other/bench/$f")
	    or die "copying bench/$f: $!\n";
}
progress("building $short in $other");
system('make', '-s', '-C', $other, 'all') == 0 or die "make in $other failed\n";

mkdir "$ROOT/bench/results";
my $stamp = strftime('%Y%m%dT%H%M%SZ', gmtime);
# this, other, other, this, ...: each build first as often as second.
my @order = map { ($_ % 4 == 0 || $_ % 4 == 3) ? 'this' : 'other' }
    0 .. $RUNS - 1;
my (%ratios, @runs);
for my $i (0 .. $#order) {
	my $build = $order[$i];
	my $dir = $build eq 'this' ? $ROOT : $other;
	progress(sprintf 'run %d of %d: %s', $i + 1, $RUNS,
	    $build eq 'this' ? "this tree ($here)" : $short);
	my $text = perf($dir);
	my $file = "$ROOT/bench/results/compare-$stamp-run" . ($i + 1)
	    . "-$build.txt";
	open my $fh, '>', $file or die "$file: $!\n";
	print $fh $text;
	close $fh or die "$file: $!\n";
	my %run = (build => $build);
	# perf.pl's verdict a concurrency, its disturbed pairs last.
	my $verdict = qr/^ratio at c=(\d+): ([\d.]+), the median .*?/m;
	$verdict = qr/$verdict(\(\d+ of \d+ pairs disturbed\))?$/m;
	while ($text =~ /$verdict/g) {
		$run{$1} = { ratio => $2, disturbed => $3 ? 1 : 0 };
		push @{ $ratios{$build}{$1} }, $run{$1};
	}
	die "no ratio in perf.pl's report ($file)\n" if scalar(keys %run) == 1;
	die "a run was refused: $file\n" if $text =~ /\*\*\* REFUSED/;
	push @runs, \%run;
}

my @conc = sort { $a <=> $b } keys %{ $ratios{this} };
my $report = sprintf "todo-chat compare, %s: this tree (%s) against %s, "
    . "%d runs of bench/perf.pl, the order alternating\n(BENCH_ROWS=%s, "
    . "BENCH_CONCURRENCY=%s); the turn over the minimal turn, each "
    . "run's median of its pairs\n(*: some of its pairs disturbed from "
    . "outside):\n\n", $stamp, $here, $short, $RUNS,
    $ENV{BENCH_ROWS} // 'all', $ENV{BENCH_CONCURRENCY} // '1 8';
$report .= sprintf "  %-4s %-8s %s\n", 'run', 'build',
    join ' ', map { sprintf '%8s', "c=$_" } @conc;
for my $i (0 .. $#runs) {
	my $r = $runs[$i];
	$report .= sprintf "  %-4d %-8s %s\n", $i + 1,
	    $r->{build} eq 'this' ? $here : $short, join ' ', map {
	    sprintf '%7.3f%s', $r->{$_}{ratio}, $r->{$_}{disturbed} ? '*' : ' '
	    } @conc;
}
$report .= "\nmedians of the runs (of the undisturbed ones in brackets):\n";
for my $c (@conc) {
	my %m = map { my $all = $ratios{$_}{$c} // [];
	    ($_ => [ median(map { $_->{ratio} } @$all),
	    median(map { $_->{ratio} } grep { !$_->{disturbed} } @$all) ]) }
	    qw(this other);
	$report .= sprintf "  c=%-3d %s %s (%s), %s %s (%s): this / other "
	    . "%s (%s)\n", $c, $here, fmt($m{this}[0]), fmt($m{this}[1]),
	    $short, fmt($m{other}[0]), fmt($m{other}[1]),
	    quotient($m{this}[0], $m{other}[0]),
	    quotient($m{this}[1], $m{other}[1]);
}
print $report;
my $file = "$ROOT/bench/results/compare-$stamp.txt";
open my $fh, '>', $file or die "$file: $!\n";
print $fh $report;
close $fh or die "$file: $!\n";
print "wrote $file\n";
exit 0;

sub progress { printf STDERR "compare: %s\n", $_[0] }

# perf.pl's report (its output and errors) from a run in tree $dir, with
# no shell between; dies when the run fails.
sub perf {
	my ($dir) = @_;
	my $pid = open(my $fh, '-|') // die "fork: $!\n";
	if (!$pid) {
		chdir $dir or die "$dir: $!\n";
		open STDERR, '>&', \*STDOUT or die "stderr: $!\n";
		exec 'perl', 'bench/perf.pl' or die "perl: $!\n";
	}
	my $text = do { local $/; <$fh> } // '';
	close $fh or die "perf.pl in $dir failed:\n$text";
	return $text;
}

# git's output (its errors go to ours); dies when it fails.
sub git {
	open my $fh, '-|', 'git', '-C', $ROOT, @_ or die "git: $!\n";
	my $out = do { local $/; <$fh> } // '';
	close $fh or die "git @_ failed\n";
	return $out;
}

sub median {
	my @v = sort { $a <=> $b } @_;
	return undef unless @v;
	return @v % 2 ? $v[$#v / 2] : ($v[@v / 2 - 1] + $v[@v / 2]) / 2;
}

sub fmt { defined $_[0] ? sprintf('%.3f', $_[0]) : '-' }

sub quotient {
	my ($a, $b) = @_;
	return '-' unless defined $a && defined $b && $b > 0;
	return sprintf '%.3f', $a / $b;
}
