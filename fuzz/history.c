/* fuzz/history.c: hist_window() on a message list read from the input. */
/*
 * Input, as text: a first line "max_messages max_tokens", then one
 * message a line, newest first (as the database returns them), written
 * as in t/unit/history.c: "u<content>" user, "a<tool_calls>" assistant
 * calling tools, "A<content>" assistant answer, "t<tool_call_id>
 * <content>" tool result; any other first byte picks a role from its
 * value and keeps the rest as content. The window is checked against
 * history.h: the longest prefix within both limits, shortened past any
 * tool result at its oldest edge.
 */
#include <limits.h>

#include "fuzz.h"
#include "history.h"

/* The database returns a few hundred at most. */
#define MESSAGES_MAX	4096

/* A number at *p (strtoll's syntax), clamped to [lo, hi]; 0 if none. */
static long long
number(char **p, long long lo, long long hi)
{
	char		*end;
	long long	 v;

	v = strtoll(*p, &end, 10);
	if (end == *p)
		return 0;
	*p = end;
	return v < lo ? lo : v > hi ? hi : v;
}

static void
message(char *line, struct hist_msg *m)
{
	char	*sp;

	memset(m, 0, sizeof(*m));
	switch (line[0]) {
	case 'u':
		m->role = HIST_USER;
		m->content = line + 1;
		break;
	case 'a':
		m->role = HIST_ASSISTANT;
		m->tool_calls = line + 1;
		break;
	case 'A':
		m->role = HIST_ASSISTANT;
		m->content = line + 1;
		break;
	case 't':
		m->role = HIST_TOOL;
		m->tool_call_id = line + 1;
		if ((sp = strchr(line + 1, ' ')) != NULL) {
			*sp = '\0';
			m->content = sp + 1;
		}
		break;
	default:
		m->role = (enum hist_role)((unsigned char)line[0] % 3);
		m->content = line[0] != '\0' ? line + 1 : NULL;
		break;
	}
}

/* What history.h says the window is, worked out the slow way. */
static size_t
expected(const struct hist_msg *msgs, size_t n, size_t max_messages,
    long max_tokens)
{
	size_t		 k, best = 0;
	long double	 sum = 0;

	for (k = 1; k <= n && k <= max_messages; k++) {
		sum += hist_tokens(&msgs[k - 1]);
		if (sum > max_tokens)
			break;
		best = k;
	}
	while (best > 0 && msgs[best - 1].role == HIST_TOOL)
		best--;
	return best;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct hist_msg	 msgs[MESSAGES_MAX];
	char			*text, *p, *nl;
	size_t			 n = 0, k, max_messages;
	long			 max_tokens;

	text = fuzz_string(data, size);
	p = text;
	max_messages = (size_t)number(&p, 0, LLONG_MAX);
	max_tokens = (long)number(&p, LONG_MIN, LONG_MAX);
	if ((p = strchr(p, '\n')) != NULL)
		p++;
	while (p != NULL && n < MESSAGES_MAX) {
		if ((nl = strchr(p, '\n')) != NULL)
			*nl = '\0';
		message(p, &msgs[n++]);
		p = nl != NULL ? nl + 1 : NULL;
	}
	k = hist_window(msgs, n, max_messages, max_tokens);
	FUZZ_CHECK(k <= n && k <= max_messages);
	FUZZ_CHECK(k == 0 || msgs[k - 1].role != HIST_TOOL);
	FUZZ_CHECK(k == expected(msgs, n, max_messages, max_tokens));
	free(text);
	return 0;
}
