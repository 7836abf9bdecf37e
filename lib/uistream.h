/* uistream.h: a turn's events (turn.h) as the AI SDK's UI message
 * stream, version 1: the server-sent events that a chat client's useChat
 * reads. One JSON part an event, each event with an "id:" that grows
 * within the turn, "[DONE]" at the end, and a ": ping" comment while the
 * turn is quiet, so that proxies keep the connection.
 *
 * The bytes go to a writer the caller gives: this module knows the
 * protocol, not the transport. */
#ifndef UISTREAM_H
#define UISTREAM_H

#include <stddef.h>

#include "buf.h"

#include "turn.h"

/* A comment goes out when nothing else did for this long: well within
 * the 60 s read timeout proxies commonly have. */
#define UISTREAM_PING_MS	10000

struct uistream {
	/* Writes bytes to the client: 0, or -1 once it is gone; nothing
	 * more is written then, and the turn goes on regardless. */
	int		(*write)(void *arg, const char *p, size_t len);
	void		*arg;
	/* Private. */
	unsigned long	 next_id;
	unsigned	 steps;		/* steps begun: names the text parts */
	int		 step_open, text_open, gone;
	long long	 last_write_ms;
	struct buf	 event;		/* the event being written */
};

void	 uistream_init(struct uistream *u,
	    int (*write)(void *arg, const char *p, size_t len), void *arg);
/* Frees what u holds, once the stream is over. */
void	 uistream_free(struct uistream *u);

/* Writes an event of turn.h to the stream. */
void	 uistream_event(struct uistream *u, const struct turn_event *ev);

#endif
