/* model.h: asking the language model what to do next, through the
 * backend the configuration chooses: an OpenAI-compatible server when
 * CHAT_MODEL_URL is set (remote.c), else the built-in offline model
 * (offline.c). The conversation goes in as a transcript, the answer
 * comes back as a struct model_reply, whichever backend answered. */
#ifndef MODEL_H
#define MODEL_H

#include "backend.h"
#include "err.h"
#include "reply.h"
#include "transcript.h"

struct config;

/* Once per process, after config_load() and before the worker threads
 * start: chooses and sets up the backend. 0, or -1 with a line logged. */
int	 model_init(const struct config *cfg);
/* Releases the calling thread's handles, as a worker thread ends. */
void	 model_thread_cleanup(void);
/* Releases what model_init() set up, at exit, once the other threads
 * are gone. */
void	 model_cleanup(void);

/* Asks the model for the next step of t (borrowed), offering it the
 * tools of tools.h when offer_tools, streaming the words to stream when
 * not NULL (backend.h). Fills *out (the caller frees it with
 * reply_free()) and returns 0, or -1 with err set: 502 model_error, 504
 * model_timeout. */
int	 model_complete(const struct transcript *t, int offer_tools,
	    const struct model_stream *stream, struct model_reply *out,
	    struct chat_err *err);

#endif
