/* backend.h: what a model backend is: a small table of operations that
 * model.c chooses from at start (remote.c: an OpenAI-compatible server;
 * offline.c: the built-in model). A backend reads a transcript and fills
 * a reply; it knows nothing of the database or of HTTP requests. */
#ifndef BACKEND_H
#define BACKEND_H

#include "err.h"
#include "reply.h"
#include "transcript.h"

struct config;

struct model_backend {
	const char	*name;		/* for the operator's log */
	/* Once per process, before the worker threads start. 0, or -1
	 * with a line logged. */
	int		(*init)(const struct config *cfg);
	/* The next step of t: fills *out (reply_init()ed by the caller)
	 * and returns 0, or -1 with err 502 model_error or 504
	 * model_timeout. offer_tools 0: the model may not call any. */
	int		(*complete)(const struct transcript *t,
			    int offer_tools, struct model_reply *out,
			    struct chat_err *err);
	/* Releases what the calling thread holds, as a worker thread
	 * ends; may be NULL. */
	void		(*thread_cleanup)(void);
	/* Releases what init() set up, at exit; may be NULL. */
	void		(*cleanup)(void);
};

#endif
