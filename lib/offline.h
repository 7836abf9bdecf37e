/* offline.h: the built-in offline model, a deterministic intent reader.
 *
 * It reads the same OpenAI-format message array a real model would get and
 * answers in model.h's shape: tool calls for the five tools, then, once it
 * sees their results, a friendly sentence. It keeps no state of its own:
 * everything it needs (the last user message, the results so far) is in
 * the messages. No network; what it allocates on the way is freed or
 * handed to the reply. */
#ifndef OFFLINE_H
#define OFFLINE_H

#include "model.h"

/* Fills *out (caller frees with model_reply_free()) from messages
 * (borrowed). 0, or -1 on ENOMEM only: every input gets an answer. */
int	 offline_complete(const struct cJSON *messages,
	    struct model_reply *out);

#endif
