/* fuzz/chatreq.c: chatreq_parse() on a POST /chat body and Idempotency-Key. */
/*
 * Input: the header value, a newline, the body. Without a newline the
 * whole input is the body and the header is absent (NULL). The body goes
 * in a block of exactly its length, since chatreq.h promises to read
 * body[0..len) and no further.
 */
#include <cJSON.h>

#include "chatreq.h"
#include "fuzz.h"
#include "text.h"

/* chatreq.h: what a request that passed is guaranteed to hold. */
static void
check_accepted(const struct chat_request *req, const char *key)
{
	const char	*m = req->turn.message;
	size_t		 len;

	FUZZ_CHECK(req->root != NULL && m != NULL);
	len = strlen(m);
	FUZZ_CHECK(len >= 1 && len <= CHATREQ_MESSAGE_MAX);
	FUZZ_CHECK(strspn(m, " \t\r\n") < len);
	FUZZ_CHECK(text_utf8_valid(m, len));
	FUZZ_CHECK(req->turn.conversation_id >= 0);
	FUZZ_CHECK(req->turn.user_id == NULL);
	FUZZ_CHECK(req->turn.idempotency_key == key);
	if (key != NULL) {
		len = strlen(key);
		FUZZ_CHECK(len >= 1 && len <= CHATREQ_KEY_MAX);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct chat_request	 req;
	struct chat_err		 err;
	const uint8_t		*nl;
	char			*key = NULL, *body;
	size_t			 body_len = size;

	if ((nl = memchr(data, '\n', size)) != NULL) {
		key = fuzz_string(data, (size_t)(nl - data));
		body_len = size - (size_t)(nl - data) - 1;
		data = nl + 1;
	}
	body = fuzz_bytes(data, body_len);
	memset(&err, 0, sizeof(err));
	if (chatreq_parse(body, body_len, key, &req, &err) == 0) {
		check_accepted(&req, key);
		chatreq_free(&req);
	} else {
		FUZZ_CHECK(err.status == 400 && err.code != NULL &&
		    err.msg[0] != '\0');
		FUZZ_CHECK(req.root == NULL && req.turn.message == NULL);
	}
	free(body);
	free(key);
	return 0;
}
