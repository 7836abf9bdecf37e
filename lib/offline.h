/* offline.h: the built-in offline model, a deterministic intent reader.
 *
 * It reads the same transcript a real model would get and answers in the
 * same reply type: tool calls for the five tools, then, once it sees
 * their results, a friendly sentence. It keeps no state of its own:
 * everything it needs (the last user message, the results so far) is in
 * the transcript. No network. */
#ifndef OFFLINE_H
#define OFFLINE_H

#include "backend.h"

extern const struct model_backend	 offline_backend;

/* The next step of t (borrowed), as if every tool were offered: fills
 * *out (reply_init()ed by the caller; it frees it with reply_free()).
 * 0, or -1 on ENOMEM only: every input gets an answer. */
int	 offline_complete(const struct transcript *t,
	    struct model_reply *out);

#endif
