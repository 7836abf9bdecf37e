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

/*
 * What a streamed model call reports as it goes. Each callback returns 0
 * to go on, or 1 to stop the call (the person asked to stop): the backend
 * then returns 0 at once with what it has, out->stopped set and no calls.
 */
struct model_stream {
	/* A piece of the reply's words, in order, as it arrives; joined,
	 * the pieces are the reply's text. */
	int	(*text)(void *arg, const char *delta, size_t len);
	/* Called each time the call waits for the model, the words that
	 * came before passed on, and at least once a second while nothing
	 * arrives: the caller sends what it holds (the words that came
	 * together go out together) and keeps its own client's connection
	 * alive. */
	int	(*idle)(void *arg);
	void	*arg;
};

struct model_backend {
	const char	*name;		/* for the operator's log */
	/* Once per process, before the worker threads start. 0, or -1
	 * with a line logged. */
	int		(*init)(const struct config *cfg);
	/* The next step of t: fills *out (reply_init()ed by the caller)
	 * and returns 0, or -1 with err 502 model_error or 504
	 * model_timeout. offer_tools 0: the model may not call any.
	 * stream not NULL: the reply is streamed, its words passed to
	 * stream->text as they come (a streamed call cut short is a 502);
	 * the timeout then bounds the wait for the first piece and every
	 * silence after it, not the whole reply. */
	int		(*complete)(const struct transcript *t,
			    int offer_tools, const struct model_stream *stream,
			    struct model_reply *out, struct chat_err *err);
	/* Releases what the calling thread holds, as a worker thread
	 * ends; may be NULL. */
	void		(*thread_cleanup)(void);
	/* Releases what init() set up, at exit; may be NULL. */
	void		(*cleanup)(void);
};

#endif
