/* chatreq.h: the body and headers of POST /chat checked into a turn:
 * {"message": str, "conversation_id"?: int} and Idempotency-Key, with
 * the limits of README's "POST /chat". Pure: no I/O, for the handler, tests and fuzzing. */
#ifndef CHATREQ_H
#define CHATREQ_H

#include <stddef.h>

#include "err.h"
#include "turn.h"

/* A message is 1 to 32,000 bytes (README, "Errors"). */
#define CHATREQ_MESSAGE_MAX	32000
/* An Idempotency-Key is 1 to 255 printable ASCII bytes (README,
 * "Retrying safely"). */
#define CHATREQ_KEY_MAX		255

struct chat_request {
	struct turn_request	 turn;	/* strings borrowed from root and */
	struct cJSON		*root;	/* the key; user_id left NULL */
};

/* Checks body[0..len) and the Idempotency-Key header value (NULL when
 * absent). 0 and *out filled (chatreq_free() it), or -1 with err 400
 * and nothing to free. */
int	 chatreq_parse(const char *body, size_t len,
	    const char *idempotency_key, struct chat_request *out,
	    struct chat_err *err);
void	 chatreq_free(struct chat_request *req);

#endif
