/* history.h: the window of past messages sent to the model.
 *
 * Pure: given the newest stored messages (newest first, as the database
 * returns them), it chooses how many of them go to the model. */
#ifndef HISTORY_H
#define HISTORY_H

#include <stddef.h>

enum hist_role {
	HIST_USER,
	HIST_ASSISTANT,	/* with or without tool_calls */
	HIST_TOOL,
};

struct hist_msg {
	long long	 id;
	enum hist_role	 role;
	const char	*content;	/* may be NULL (assistant with calls) */
	const char	*tool_calls;	/* jsonb text, NULL unless assistant */
	const char	*tool_call_id;	/* NULL unless tool */
};

/* Rough token count of one message: about four bytes a token, plus a
 * little for the role and framing, as OpenAI's own guidance suggests. */
long	 hist_tokens(const struct hist_msg *m);

/* msgs[0..n) are newest first. Returns k: the k newest messages form the
 * window, with k <= max_messages, their tokens summed within max_tokens,
 * and msgs[k - 1] (the oldest kept) never a tool result, since a tool
 * result whose assistant call was cut off is rejected by OpenAI. */
size_t	 hist_window(const struct hist_msg *msgs, size_t n,
	    size_t max_messages, long max_tokens);

#endif
