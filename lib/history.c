/* history.c: which past messages go to the model: a count, a token
 * budget, and no orphaned tool result (see history.h). Pure. */
#include <limits.h>
#include <string.h>

#include "history.h"

/* Role, name and separators of one message, in OpenAI's accounting. */
#define HIST_FRAMING_TOKENS	4
#define HIST_BYTES_PER_TOKEN	4

static size_t
len_or_zero(const char *s)
{
	return s != NULL ? strlen(s) : 0;
}

long
hist_tokens(const struct hist_msg *m)
{
	size_t	 bytes, tokens;

	/* Each field is bounded by the request and column limits, far
	 * below SIZE_MAX; the clamp is for the long we return. */
	bytes = len_or_zero(m->content) + len_or_zero(m->tool_calls) +
	    len_or_zero(m->tool_call_id);
	tokens = bytes / HIST_BYTES_PER_TOKEN +
	    (bytes % HIST_BYTES_PER_TOKEN != 0);
	if (tokens > (size_t)(LONG_MAX - HIST_FRAMING_TOKENS))
		return LONG_MAX;
	return (long)tokens + HIST_FRAMING_TOKENS;
}

/*
 * The window is the longest run of newest messages within both limits; a
 * message that does not fit ends it, since skipping it for an older one
 * that fits would hand the model a conversation with a hole in it.
 *
 * Only the oldest edge can break the pairing OpenAI checks (an assistant
 * message's tool_calls answered by tool messages right after it, each
 * tool message answering one). A round, the assistant's calls and all
 * their results, is stored in one transaction, so the stored history
 * never holds half a round, and a call's results are newer than the
 * call. The window keeps a prefix of the newest messages: if it keeps a
 * call it keeps everything newer, results included. What it can do is
 * cut between a call and its results, keeping results without their
 * call; those are dropped from the oldest edge. What lies beyond them is
 * newer than the whole round, so never a call waiting for them.
 */
size_t
hist_window(const struct hist_msg *msgs, size_t n, size_t max_messages,
    long max_tokens)
{
	size_t	 k = 0;
	long	 used = 0, tokens;

	while (k < n && k < max_messages) {
		tokens = hist_tokens(&msgs[k]);
		if (max_tokens - used < tokens)
			break;
		used += tokens;
		k++;
	}
	while (k > 0 && msgs[k - 1].role == HIST_TOOL)
		k--;
	return k;
}
