/* fuzz/model_reply.c: openai_parse_reply() on a chat-completions body. */
/*
 * The body goes in a block of exactly its length (openai.h: body[0..len),
 * a length the server chose). What is accepted must be usable as it
 * stands: text PostgreSQL will store, non-empty ids and names, at most
 * REPLY_MAX_CALLS calls.
 */
#include "fuzz.h"
#include "openai.h"
#include "text.h"

static int
text(const char *s)
{
	return s != NULL && text_utf8_valid(s, strlen(s));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct model_reply	 r;
	char			*body;
	size_t			 i;

	body = fuzz_bytes(data, size);
	if (openai_parse_reply(body, size, &r) == 0) {
		FUZZ_CHECK(reply_text(&r) != NULL || r.ncalls > 0);
		FUZZ_CHECK(reply_text(&r) == NULL || text(reply_text(&r)));
		FUZZ_CHECK(r.ncalls <= REPLY_MAX_CALLS);
		for (i = 0; i < r.ncalls; i++) {
			FUZZ_CHECK(text(r.calls[i].id) &&
			    r.calls[i].id[0] != '\0');
			FUZZ_CHECK(text(r.calls[i].name) &&
			    r.calls[i].name[0] != '\0');
			FUZZ_CHECK(text(r.calls[i].arguments.data));
		}
	} else
		FUZZ_CHECK(reply_text(&r) == NULL && r.calls == NULL &&
		    r.ncalls == 0);
	reply_free(&r);
	free(body);
	return 0;
}
