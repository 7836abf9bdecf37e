/* t/unit/history.c: hist_tokens() and the window hist_window() chooses,
 * on histories written as role strings. Prints TAP. */
#include <stdio.h>
#include <string.h>

#include "history.h"

#define HISTORY_MAX	64

/*
 * A history is written oldest first, one letter a message: u user, a
 * assistant calling tools, t tool result, A assistant answer, L a long
 * user message. Each message but L costs 8 tokens (16 bytes), L costs 20
 * (64 bytes). The window is the oldest-first tail that stays.
 */
static const struct {
	const char	*name, *history;
	size_t		 max_messages;
	long		 max_tokens;
	const char	*kept;
} cases[] = {
	{ "empty history",		  "",	     40, 8000, "" },
	{ "short history kept whole",	  "uA",      40, 8000, "uA" },
	{ "message limit 0",		  "uAuA",    0,  8000, "" },
	{ "token limit 0",		  "uAuA",    40, 0,    "" },
	{ "negative token limit",	  "uAuA",    40, -1,   "" },
	{ "newest messages win",	  "uAuAuA",  4,  8000, "uAuA" },
	{ "message limit exactly met",	  "uAuA",    4,  8000, "uAuA" },
	{ "token limit cuts",		  "uAuAuA",  40, 32,   "uAuA" },
	{ "token limit one short",	  "uAuAuA",  40, 31,   "AuA" },
	{ "token limit exactly met",	  "uAuAuA",  40, 48,   "uAuAuA" },
	{ "newest alone over budget",	  "uAuA",    40, 7,    "" },
	{ "a message too big ends it",	  "uALuA",   40, 24,   "uA" },
	{ "big message fits",		  "uALuA",   40, 36,   "LuA" },
	{ "tighter of the two limits",	  "uAuAuA",  3,  32,   "AuA" },
	{ "never opens on a tool result", "uattAuA", 5,  8000, "AuA" },
	{ "a call keeps its results",	  "uattAuA", 6,  8000, "attAuA" },
	{ "cut after one result",	  "uattAuA", 4,  8000, "AuA" },
	{ "tokens cut into results",	  "uattAuA", 40, 40,   "AuA" },
	{ "cut between two rounds",	  "uatatA",  4,  8000, "atA" },
	{ "cut in the newer round",	  "uatatA",  2,  8000, "A" },
	{ "only tool results",		  "ttt",     40, 8000, "" },
	{ "results of an unfinished turn", "uat",    1,  8000, "" },
	{ "unfinished turn with its call", "uat",    2,  8000, "at" },
	{ "whole multi-round turn",	  "uatatAuA", 40, 8000, "uatatAuA" },
};

/* What hist_tokens() should say: bytes of content, tool_calls and
 * tool_call_id together, a quarter rounded up, plus 4 for framing. */
static const struct {
	const char	*name;
	const char	*content, *tool_calls, *tool_call_id;
	long		 tokens;
} tokens[] = {
	{ "empty message",		NULL, NULL, NULL, 4 },
	{ "empty content",		"", NULL, NULL, 4 },
	{ "one byte",			"a", NULL, NULL, 5 },
	{ "four bytes",			"abcd", NULL, NULL, 5 },
	{ "five bytes",			"abcde", NULL, NULL, 6 },
	{ "tool_calls counted",		NULL, "[{\"id\":1}]", NULL, 7 },
	{ "tool_call_id counted",	"ok", NULL, "call_1", 6 },
	{ "fields summed, not rounded each", "a", "b", NULL, 5 },
	{ "all three fields",		"abcd", "efgh", "ijkl", 7 },
};

static const char	 bytes16[] = "0123456789abcdef";
static const char	 bytes64[] = "0123456789abcdef0123456789abcdef"
			    "0123456789abcdef0123456789abcdef";

/* Runs hist_window() on history (oldest first) and returns the kept
 * tail, oldest first, as a role string. */
static const char *
kept_roles(const char *history, size_t max_messages, long max_tokens)
{
	static struct hist_msg	 msgs[HISTORY_MAX];
	size_t			 i, n = strlen(history), k;

	/* msgs is newest first, as the database returns it. */
	for (i = 0; i < n; i++) {
		struct hist_msg	*m = &msgs[n - 1 - i];

		memset(m, 0, sizeof(*m));
		m->id = (long long)i + 1;
		switch (history[i]) {
		case 'a':
			m->role = HIST_ASSISTANT;
			m->tool_calls = bytes16;
			break;
		case 't':
			m->role = HIST_TOOL;
			m->content = bytes16 + 6;
			m->tool_call_id = "call_1";
			break;
		case 'A':
			m->role = HIST_ASSISTANT;
			m->content = bytes16;
			break;
		case 'L':
			m->role = HIST_USER;
			m->content = bytes64;
			break;
		default:
			m->role = HIST_USER;
			m->content = bytes16;
			break;
		}
	}
	k = hist_window(msgs, n, max_messages, max_tokens);
	return k <= n ? history + n - k : "(k past n)";
}

int
main(void)
{
	size_t		 i, n = sizeof(cases) / sizeof(cases[0]);
	size_t		 ntokens = sizeof(tokens) / sizeof(tokens[0]);
	struct hist_msg	 m;

	printf("1..%zu\n", n + ntokens);
	for (i = 0; i < n; i++)
		printf("%sok %zu - %s\n", strcmp(kept_roles(cases[i].history,
		    cases[i].max_messages, cases[i].max_tokens),
		    cases[i].kept) ? "not " : "", i + 1, cases[i].name);
	for (i = 0; i < ntokens; i++) {
		memset(&m, 0, sizeof(m));
		m.content = tokens[i].content;
		m.tool_calls = tokens[i].tool_calls;
		m.tool_call_id = tokens[i].tool_call_id;
		printf("%sok %zu - tokens: %s\n", hist_tokens(&m) ==
		    tokens[i].tokens ? "" : "not ", n + i + 1, tokens[i].name);
	}
	return 0;
}
