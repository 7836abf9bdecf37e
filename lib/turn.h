/* turn.h: one chat turn, steps 2 to 5 of doc/request-cycle.md: the
 * conversation and the user message stored, the model asked in rounds,
 * the tools run, the answer stored. No HTTP here, no SQL.
 *
 * A turn may be watched as it runs (a streamed turn): it then tells an
 * observer what happens, in events that know no wire format (uistream.c
 * turns them into the stream a chat client reads). */
#ifndef TURN_H
#define TURN_H

#include <stddef.h>

#include "err.h"
#include "reply.h"

struct cJSON;

struct turn_request {
	const char	*user_id;	/* authenticated; borrowed */
	const char	*message;	/* valid UTF-8, 1..32000 bytes */
	long long	 conversation_id; /* 0: start a new conversation */
	const char	*idempotency_key; /* NULL: none */
};

enum turn_event_type {
	TURN_START,		/* the message is stored: ids below */
	TURN_STEP_START,	/* a model call (or a stored round) begins */
	TURN_TEXT,		/* words of this step: text[0..len) */
	TURN_TOOL_INPUT,	/* a call the step asks for: call */
	TURN_TOOL_OUTPUT,	/* its result, committed: call_id, result */
	TURN_STEP_FINISH,
	TURN_IDLE,		/* the model is awaited: send what is told */
	TURN_ERROR,		/* the turn failed after its start: err */
	TURN_FINISH,		/* the last event, after an error too */
};

/* One event; only the fields its type names are set, all borrowed for
 * the call. */
struct turn_event {
	enum turn_event_type	 type;
	long long		 conversation_id;
	long long		 user_message_id;
	const char		*text;
	size_t			 len;
	const struct model_call	*call;
	const char		*call_id;
	const char		*result;	/* JSON text */
	const struct chat_err	*err;
	/* For an observer that keeps a live record: TURN_START, the
	 * turn's first statement made it; TURN_FINISH, its last statement
	 * ended it (no one followed it). */
	int			 record_made;
	int			 record_ended;
};

/* What watches a turn. event() is called in the order things happen; a
 * failure to pass an event on (a client gone) is the observer's concern:
 * the turn goes on and is stored whatever happens to its watcher. It
 * returns 0, or 1 when someone asked the turn to stop: the model call
 * under way is abandoned, no more rounds are run, and the words of the
 * step so far are stored as the answer. */
struct turn_observer {
	int	(*event)(void *arg, const struct turn_event *ev);
	void	*arg;
	/* It keeps the turn's live record (live.h), which the turn's first
	 * and last statements then make and end in passing, sparing the
	 * observer a round trip for each. */
	int	 records;
};

/* Runs the turn, told to observer as it goes when not NULL (then the
 * model's words are streamed as they come). On success returns 0 and
 * *reply is the response body {"conversation_id", "response",
 * "tool_calls"} (caller cJSON_Delete()s). Else -1 with err set; on
 * 502/504 err->conversation_id says where the user message was kept.
 * With an observer, a failure before TURN_START is only returned (the
 * caller answers it as usual); one after it is also told as TURN_ERROR,
 * and TURN_FINISH always ends what TURN_START began. */
int	 turn_run(const struct turn_request *req,
	    const struct turn_observer *observer, struct cJSON **reply,
	    struct chat_err *err);

#endif
