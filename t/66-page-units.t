#!/usr/bin/perl
# t/66-page-units.t: the chat page's pure parts in Node, no browser and
# no stack (t/js/page-units.mjs): the event-stream parser of www/stream.js
# on bytes cut every way a network may cut them, and the words that say
# what a tool did.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Stack;

my $run = Stack::Node->run('page-units.mjs', timeout => 60);
Stack::Node->report($run, 'page-units.mjs');

done_testing;
