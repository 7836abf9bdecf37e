/* transcript.h: the conversation as the model reads it in one step: the
 * system prompt, the window of history, the new user message, and each
 * round of this turn (the assistant's calls and their results).
 *
 * turn.c appends to it; a backend (remote.c through openai.c, or
 * offline.c) reads it. Nothing here knows a wire format: only openai.c
 * turns a transcript into OpenAI's JSON. The transcript owns copies of
 * everything appended to it. */
#ifndef TRANSCRIPT_H
#define TRANSCRIPT_H

#include <stddef.h>

#include "reply.h"

enum chat_role {
	ROLE_SYSTEM,
	ROLE_USER,
	ROLE_ASSISTANT,		/* words, calls of tools, or both */
	ROLE_TOOL,		/* the result of one call */
};

struct transcript_msg {
	enum chat_role		 role;
	char			*content;	/* NULL: none (only an
						 * assistant asking for tools) */
	struct model_call	*calls;		/* assistant: what it asked */
	size_t			 ncalls;
	char			*tool_call_id;	/* tool: the call answered */
};

struct transcript {
	struct transcript_msg	*msgs;
	size_t			 n;
	size_t			 size;	/* allocated; private */
};

/* An empty transcript that opens with the system prompt. 0, or -1 on
 * ENOMEM (then nothing to free). */
int	 transcript_init(struct transcript *t);

/* Appends a message: content (NULL for none) and, for a tool result,
 * the id of the call it answers. 0, or -1 on ENOMEM (t unchanged). */
int	 transcript_add(struct transcript *t, enum chat_role role,
	    const char *content, const char *tool_call_id);

/* Appends an assistant message asking for calls[0..n), taking the calls
 * over whatever happens (the caller no longer frees them). 0 or -1. */
int	 transcript_add_calls(struct transcript *t, const char *content,
	    struct model_call *calls, size_t n);

/* Removes the n messages from msgs[first] on (the oldest history, to fit
 * a request's bound), freeing them; the later ones move up. */
void	 transcript_drop(struct transcript *t, size_t first, size_t n);

/* The role's name in chat formats: "system", "user", "assistant",
 * "tool". */
const char	*transcript_role_name(enum chat_role role);

/* The system prompt every transcript opens with (static storage). */
const char	*transcript_system_prompt(void);

void	 transcript_free(struct transcript *t);

#endif
