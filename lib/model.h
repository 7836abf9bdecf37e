/* model.h: asking the language model what to do next.
 *
 * The conversation goes in as a cJSON array of OpenAI chat messages
 * ({"role","content"}, assistant "tool_calls", tool "tool_call_id"); the
 * reply comes back as a struct model_reply, whether it came from an
 * OpenAI-compatible server over HTTP (model.c) or from the built-in
 * offline model (offline.c). */
#ifndef MODEL_H
#define MODEL_H

#include <stddef.h>

#include "err.h"

struct cJSON;
struct config;

/* One function call the model asked for, as it sent it. */
struct model_call {
	char	*id;		/* tool_call id, never NULL */
	char	*name;		/* function name, never NULL (maybe unknown) */
	char	*arguments;	/* JSON text as sent, never NULL (maybe bad) */
};

/* The model's answer: a final text, or calls to run, or both. All memory
 * is owned by the reply; model_reply_free() releases it. */
struct model_reply {
	char			*content;	/* NULL when the model sent none */
	struct model_call	*calls;
	size_t			 ncalls;
};

/* Most calls a single reply may carry; more is a malformed reply. */
#define MODEL_MAX_CALLS	32

/* Once per process, after config_load() and before the worker threads
 * start: sets libcurl up when a model URL is configured. Each thread
 * then makes its own CURL handle on its first call and keeps it. 0, or
 * -1 with a message on stderr. */
int	 model_init(const struct config *cfg);
/* Releases the calling thread's handle, as a worker thread ends. */
void	 model_thread_cleanup(void);
/* Releases the calling thread's handle and what model_init() set up, at
 * exit, once the other threads are gone. */
void	 model_cleanup(void);

/* Asks the model for the next step: the configured server, or the
 * offline model when no URL is set. messages (the OpenAI array) and tools
 * (the OpenAI "tools" array, or NULL to offer none) are borrowed. Fills
 * *out (caller frees with model_reply_free()) and returns 0, or returns
 * -1 with err set: 502 model_error, 504 model_timeout. */
int	 model_complete(const struct cJSON *messages, const struct cJSON *tools,
	    struct model_reply *out, struct chat_err *err);

/* Parses a chat-completions response body into *out. 0, or -1 (and *out
 * left empty) when the body is not a usable reply. Pure; for model.c and
 * its tests. */
int	 model_parse_reply(const char *body, size_t len,
	    struct model_reply *out);

/* Appends a call to reply, copying the strings; 0 or -1 on ENOMEM or
 * past MODEL_MAX_CALLS. For the offline model and the parser. */
int	 model_reply_add_call(struct model_reply *reply, const char *id,
	    const char *name, const char *arguments);

/* Frees what the reply owns and empties it; harmless on an empty one. */
void	 model_reply_free(struct model_reply *reply);

/* The system prompt every request opens with (static storage). */
const char	*model_system_prompt(void);

#endif
