/* chatreq.c: checking the body and headers of a chat request (chatreq.h). */
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "chatreq.h"
#include "text.h"

/* The Idempotency-Key header, when sent, must be 1..255 bytes of
 * printable ASCII; anything else is refused, not ignored. */
static int
idempotency_key_valid(const char *key)
{
	size_t	 len = strlen(key), i;

	if (len == 0 || len > CHATREQ_KEY_MAX)
		return 0;
	for (i = 0; i < len; i++)
		if (key[i] < 0x20 || key[i] > 0x7e)
			return 0;
	return 1;
}

/* Parses the body as one JSON object and nothing after it. */
static cJSON *
parse_body(const char *body, size_t len, struct chat_err *err)
{
	cJSON		*root;

	if (len == 0) {
		err_set(err, 400, "invalid_json", "The body must be a JSON "
		    "object.");
		return NULL;
	}
	if (!text_utf8_valid(body, len)) {
		err_set(err, 400, "invalid_utf8", "The body is not valid "
		    "UTF-8.");
		return NULL;
	}
	root = text_json_parse(body, len);
	if (root != NULL && text_json_has_nul(body, len)) {
		cJSON_Delete(root);
		err_set(err, 400, "invalid_json", "Text in the body may not "
		    "contain NUL characters (\\u0000).");
		return NULL;
	}
	if (root == NULL) {
		cJSON_Delete(root);
		err_set(err, 400, "invalid_json", "The body is not valid "
		    "JSON.");
		return NULL;
	}
	if (!cJSON_IsObject(root)) {
		cJSON_Delete(root);
		err_set(err, 400, "invalid_json", "The body must be a JSON "
		    "object.");
		return NULL;
	}
	return root;
}

/* Fills the turn from {"message": str, "conversation_id"?: int}. */
static int
chat_fields(const cJSON *root, struct turn_request *t, struct chat_err *err)
{
	const cJSON	*msg, *conv;
	size_t		 len;

	msg = cJSON_GetObjectItemCaseSensitive(root, "message");
	if (msg == NULL)
		return err_set(err, 400, "missing_message", "The body needs "
		    "a \"message\" string.");
	if (!cJSON_IsString(msg))
		return err_set(err, 400, "invalid_message", "\"message\" "
		    "must be a string.");
	len = strlen(msg->valuestring);
	if (strspn(msg->valuestring, " \t\r\n") == len)
		return err_set(err, 400, "empty_message", "\"message\" must "
		    "not be empty.");
	if (len > CHATREQ_MESSAGE_MAX)
		return err_set(err, 400, "message_too_long", "\"message\" is "
		    "over %d bytes.", CHATREQ_MESSAGE_MAX);
	t->message = msg->valuestring;

	conv = cJSON_GetObjectItemCaseSensitive(root, "conversation_id");
	if (conv == NULL || cJSON_IsNull(conv))
		return 0;
	if (text_id_json(conv, 0, &t->conversation_id) == -1)
		return err_set(err, 400, "invalid_conversation_id",
		    "\"conversation_id\" must be a positive integer.");
	return 0;
}

int
chatreq_parse(const char *body, size_t len, const char *idempotency_key,
    struct chat_request *out, struct chat_err *err)
{
	memset(out, 0, sizeof(*out));
	if (idempotency_key != NULL && !idempotency_key_valid(idempotency_key))
		return err_set(err, 400, "invalid_idempotency_key",
		    "Idempotency-Key must be 1 to %d printable ASCII "
		    "characters.", CHATREQ_KEY_MAX);
	if ((out->root = parse_body(body, len, err)) == NULL)
		return -1;
	if (chat_fields(out->root, &out->turn, err) == -1) {
		chatreq_free(out);
		return -1;
	}
	out->turn.idempotency_key = idempotency_key;
	return 0;
}

void
chatreq_free(struct chat_request *req)
{
	cJSON_Delete(req->root);
	memset(req, 0, sizeof(*req));
}
