/* fuzz/model_chunks.c: a streamed reply (openai_stream_feed()) fed in
 * pieces. */
/*
 * The input's first byte picks the size of the pieces (1 to 64 bytes);
 * the rest is the body of an event stream. The promises checked: how
 * the body is cut changes nothing (the same outcome, the same reply, as
 * when it is fed whole); the words heard, joined, are the reply's; each
 * piece is valid UTF-8; an accepted reply is usable as it stands (text
 * PostgreSQL will store, non-empty ids and names, at most
 * REPLY_MAX_CALLS calls).
 */
#include "fuzz.h"
#include "openai.h"
#include "text.h"

struct heard {
	struct buf	 words;
};

static int
hear(void *arg, const char *p, size_t n)
{
	struct heard	*h = arg;

	FUZZ_CHECK(n > 0 && text_utf8_valid(p, n));
	FUZZ_CHECK(buf_add(&h->words, p, n) == 0);
	return 0;
}

static int
text(const char *s)
{
	return s != NULL && text_utf8_valid(s, strlen(s));
}

/* Reads body[0..len) in pieces of step bytes: 0 or -1, as
 * openai_stream_end() says. */
static int
read_body(const char *body, size_t len, size_t step, struct model_reply *r,
    struct heard *h)
{
	struct openai_stream	 s;
	char			*piece;
	size_t			 at, n;
	int			 rc = 0;

	openai_stream_init(&s, r);
	h->words = (struct buf)BUF_INIT(OPENAI_STREAM_MAX);
	for (at = 0; rc == 0 && at < len; at += n) {
		n = len - at < step ? len - at : step;
		/* Each piece in a block of its own size, as libcurl's. */
		piece = fuzz_bytes((const uint8_t *)body + at, n);
		rc = openai_stream_feed(&s, piece, n, hear, h);
		free(piece);
	}
	FUZZ_CHECK(rc != 1);
	if (rc == 0)
		rc = openai_stream_end(&s);
	FUZZ_CHECK(rc == 0 || s.error != NULL);
	openai_stream_free(&s);
	return rc;
}

static int
same(const char *a, const char *b)
{
	return (a == NULL && b == NULL) ||
	    (a != NULL && b != NULL && strcmp(a, b) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct model_reply	 whole, cut;
	struct heard		 hw, hc;
	char			*body;
	size_t			 i, len, step;
	int			 rc;

	if (size == 0)
		return 0;
	step = data[0] % 64 + 1;
	len = size - 1;
	body = fuzz_bytes(data + 1, len);
	rc = read_body(body, len, len > 0 ? len : 1, &whole, &hw);
	FUZZ_CHECK(read_body(body, len, step, &cut, &hc) == rc);
	if (rc == 0) {
		FUZZ_CHECK(same(reply_text(&whole), reply_text(&cut)));
		FUZZ_CHECK(whole.ncalls == cut.ncalls);
		FUZZ_CHECK(reply_text(&whole) != NULL || whole.ncalls > 0);
		FUZZ_CHECK(reply_text(&whole) == NULL ||
		    text(reply_text(&whole)));
		FUZZ_CHECK(hw.words.len == whole.text.len &&
		    hc.words.len == cut.text.len);
		FUZZ_CHECK(hw.words.len == 0 || memcmp(hw.words.data,
		    whole.text.data, hw.words.len) == 0);
		FUZZ_CHECK(whole.ncalls <= REPLY_MAX_CALLS);
		for (i = 0; i < whole.ncalls; i++) {
			FUZZ_CHECK(text(whole.calls[i].id) &&
			    whole.calls[i].id[0] != '\0' &&
			    strcmp(whole.calls[i].id, cut.calls[i].id) == 0);
			FUZZ_CHECK(text(whole.calls[i].name) &&
			    whole.calls[i].name[0] != '\0' &&
			    strcmp(whole.calls[i].name,
			    cut.calls[i].name) == 0);
			FUZZ_CHECK(text(whole.calls[i].arguments.data) &&
			    strcmp(whole.calls[i].arguments.data,
			    cut.calls[i].arguments.data) == 0);
		}
	}
	buf_free(&hw.words);
	buf_free(&hc.words);
	reply_free(&whole);
	reply_free(&cut);
	free(body);
	return 0;
}
