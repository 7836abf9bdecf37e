/* turn.h: one chat turn, steps 2 to 5 of doc/request-cycle.md: the
 * conversation and the user message stored, the model asked in rounds,
 * the tools run, the answer stored. No HTTP here, no SQL. */
#ifndef TURN_H
#define TURN_H

#include "err.h"

struct cJSON;

struct turn_request {
	const char	*user_id;	/* authenticated; borrowed */
	const char	*message;	/* valid UTF-8, 1..32000 bytes */
	long long	 conversation_id; /* 0: start a new conversation */
	const char	*idempotency_key; /* NULL: none */
};

/* Runs the turn. On success returns 0 and *reply is the response body
 * {"conversation_id", "response", "tool_calls"} (caller cJSON_Delete()s).
 * Else -1 with err set; on 502/504 err->conversation_id says where the
 * user message was kept. */
int	 turn_run(const struct turn_request *req, struct cJSON **reply,
	    struct chat_err *err);

#endif
