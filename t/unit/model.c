/* t/unit/model.c: the model conversation's pieces. openai_parse_reply()
 * on chat-completions bodies a server may send (must-pass and must-fail
 * tables), REPLY_MAX_CALLS, a reply assembled from streamed pieces, a
 * streamed reply read from server-sent events cut at every byte (each
 * the same as the reply sent whole) and streams that must fail, the
 * request body built from a transcript (the {} rule, "stream"), stored
 * tool_calls read back, and the offline path of model_complete().
 * Prints TAP. The HTTP path is covered by the integration tests against
 * t/mock_model.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "buf.h"
#include "config.h"
#include "model.h"
#include "openai.h"
#include "reply.h"
#include "text.h"
#include "transcript.h"

#define MSG(m)	"{\"choices\":[{\"index\":0,\"message\":" m "}]}"
#define CALL(id, name, args) "{\"id\":\"" id "\",\"type\":\"function\"," \
	"\"function\":{\"name\":\"" name "\",\"arguments\":\"" args "\"}}"

/* Replies we must read. content: NULL for none. call, args: the first
 * call's name and arguments, when ncalls > 0. */
static const struct {
	const char	*name, *body;
	const char	*content;
	size_t		 ncalls;
	const char	*call, *args;
} good[] = {
	{ "content only", MSG("{\"role\":\"assistant\",\"content\":\"Hi!\"}"),
	  "Hi!", 0, NULL, NULL },
	{ "empty content is an empty answer",
	  MSG("{\"role\":\"assistant\",\"content\":\"\"}"), "", 0, NULL,
	  NULL },
	{ "one tool call, content null",
	  MSG("{\"role\":\"assistant\",\"content\":null,\"tool_calls\":["
	  CALL("call_1", "add_task", "{\\\"title\\\":\\\"Milk\\\"}") "]}"),
	  NULL, 1, "add_task", "{\"title\":\"Milk\"}" },
	{ "two calls",
	  MSG("{\"role\":\"assistant\",\"tool_calls\":["
	  CALL("a", "list_tasks", "{}") "," CALL("b", "delete_task",
	  "{\\\"task_id\\\":2}") "]}"), NULL, 2, "list_tasks", "{}" },
	{ "content and calls",
	  MSG("{\"role\":\"assistant\",\"content\":\"On it.\","
	  "\"tool_calls\":[" CALL("a", "list_tasks", "{}") "]}"),
	  "On it.", 1, "list_tasks", "{}" },
	{ "bad arguments are tools.c's concern",
	  MSG("{\"tool_calls\":[" CALL("a", "add_task", "{oops") "]}"),
	  NULL, 1, "add_task", "{oops" },
	{ "unknown tool name is kept",
	  MSG("{\"tool_calls\":[" CALL("a", "rm_rf", "{}") "]}"),
	  NULL, 1, "rm_rf", "{}" },
	{ "call without type", MSG("{\"tool_calls\":[{\"id\":\"a\","
	  "\"function\":{\"name\":\"list_tasks\",\"arguments\":\"{}\"}}]}"),
	  NULL, 1, "list_tasks", "{}" },
	{ "empty tool_calls with content",
	  MSG("{\"content\":\"ok\",\"tool_calls\":[]}"), "ok", 0, NULL,
	  NULL },
	{ "tool_calls null", MSG("{\"content\":\"ok\",\"tool_calls\":null}"),
	  "ok", 0, NULL, NULL },
	{ "refusal stands in for content",
	  MSG("{\"content\":null,\"refusal\":\"I can't.\"}"), "I can't.", 0,
	  NULL, NULL },
	{ "full OpenAI object", "{\"id\":\"chatcmpl-1\",\"object\":"
	  "\"chat.completion\",\"created\":1,\"model\":\"gpt-4o-mini\","
	  "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
	  "\"content\":\"Done.\"},\"finish_reason\":\"stop\"}],\"usage\":"
	  "{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}",
	  "Done.", 0, NULL, NULL },
	{ "trailing whitespace", MSG("{\"content\":\"x\"}") " \n", "x", 0,
	  NULL, NULL },
	{ "UTF-8 content", MSG("{\"content\":\"caf\xc3\xa9 \\u2713\"}"),
	  "caf\xc3\xa9 \xe2\x9c\x93", 0, NULL, NULL },
};

/* Replies that are a 502. */
static const struct {
	const char	*name, *body;
} bad[] = {
	{ "not JSON", "<html>Bad Gateway</html>" },
	{ "empty body", "" },
	{ "truncated JSON", "{\"choices\":[{\"message\":{\"content\":\"Hi" },
	{ "trailing garbage", MSG("{\"content\":\"x\"}") "}" },
	{ "not an object", "[1,2]" },
	{ "missing choices", "{\"id\":\"x\"}" },
	{ "error object", "{\"error\":{\"message\":\"quota\"}}" },
	{ "choices empty", "{\"choices\":[]}" },
	{ "choices not an array", "{\"choices\":{\"message\":{}}}" },
	{ "missing message", "{\"choices\":[{\"index\":0}]}" },
	{ "message not an object", "{\"choices\":[{\"message\":\"hi\"}]}" },
	{ "null content, no calls", MSG("{\"content\":null}") },
	{ "no content, no calls", MSG("{\"role\":\"assistant\"}") },
	{ "content a number", MSG("{\"content\":42}") },
	{ "content invalid UTF-8", MSG("{\"content\":\"\xff\xfe\"}") },
	{ "tool_calls not an array", MSG("{\"tool_calls\":{\"id\":\"a\"}}") },
	{ "call not an object", MSG("{\"tool_calls\":[\"a\"]}") },
	{ "call without id", MSG("{\"tool_calls\":[{\"type\":\"function\","
	  "\"function\":{\"name\":\"x\",\"arguments\":\"{}\"}}]}") },
	{ "call with empty id", MSG("{\"tool_calls\":[" CALL("", "x", "{}")
	  "]}") },
	{ "call without function", MSG("{\"tool_calls\":[{\"id\":\"a\","
	  "\"type\":\"function\"}]}") },
	{ "call without name", MSG("{\"tool_calls\":[{\"id\":\"a\","
	  "\"function\":{\"arguments\":\"{}\"}}]}") },
	{ "arguments not a string", MSG("{\"tool_calls\":[{\"id\":\"a\","
	  "\"function\":{\"name\":\"x\",\"arguments\":{}}}]}") },
	{ "arguments missing", MSG("{\"tool_calls\":[{\"id\":\"a\","
	  "\"function\":{\"name\":\"x\"}}]}") },
	{ "type not function", MSG("{\"tool_calls\":[{\"id\":\"a\","
	  "\"type\":\"custom\",\"function\":{\"name\":\"x\","
	  "\"arguments\":\"{}\"}}]}") },
	{ "one bad call among good ones", MSG("{\"tool_calls\":["
	  CALL("a", "x", "{}") ",{\"id\":\"b\"}]}") },
};

/* Streams: server-sent events of chat.completion.chunk objects, as
 * OpenAI sends them, and the same answer sent whole. */
#define CHUNK(choice)	"data: {\"id\":\"chatcmpl-1\",\"object\":" \
	"\"chat.completion.chunk\",\"created\":1,\"model\":\"m\"," \
	"\"choices\":[" choice "]}\n\n"
#define DELTA(d, reason) CHUNK("{\"index\":0,\"delta\":" d \
	",\"finish_reason\":" reason "}")
#define FIRST		DELTA("{\"role\":\"assistant\",\"content\":\"\"}", \
	"null")
#define WORDS(w)	DELTA("{\"content\":\"" w "\"}", "null")
#define STOP		DELTA("{}", "\"stop\"")
#define USAGE		"data: {\"id\":\"chatcmpl-1\",\"choices\":[]," \
	"\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1," \
	"\"total_tokens\":2}}\n\n"
#define DONE		"data: [DONE]\n\n"
#define CALL0(index, id, name) DELTA("{\"tool_calls\":[{\"index\":" \
	#index ",\"id\":\"" id "\",\"type\":\"function\",\"function\":" \
	"{\"name\":\"" name "\",\"arguments\":\"\"}}]}", "null")
#define ARGS(index, a)	DELTA("{\"tool_calls\":[{\"index\":" #index \
	",\"function\":{\"arguments\":\"" a "\"}}]}", "null")

static const struct {
	const char	*name, *events, *whole;
} streams[] = {
	{ "words in pieces, UTF-8 among them",
	  FIRST WORDS("Hel") WORDS("lo, ") WORDS("caf\xc3\xa9 \\u2713")
	  STOP USAGE DONE,
	  MSG("{\"content\":\"Hello, caf\xc3\xa9 \\u2713\"}") },
	{ "two calls, arguments in fragments",
	  DELTA("{\"role\":\"assistant\",\"content\":null}", "null")
	  CALL0(0, "call_a", "add_task") ARGS(0, "{\\\"ti") ARGS(0,
	  "tle\\\":\\\"Milk\\\"}") CALL0(1, "call_b", "list_tasks")
	  ARGS(1, "{}") DELTA("{}", "\"tool_calls\"") USAGE DONE,
	  MSG("{\"content\":null,\"tool_calls\":[" CALL("call_a", "add_task",
	  "{\\\"title\\\":\\\"Milk\\\"}") "," CALL("call_b", "list_tasks",
	  "{}") "]}") },
	{ "words, then a call",
	  FIRST WORDS("On it.") CALL0(0, "c", "list_tasks") ARGS(0, "{}")
	  DELTA("{}", "\"tool_calls\"") DONE,
	  MSG("{\"content\":\"On it.\",\"tool_calls\":["
	  CALL("c", "list_tasks", "{}") "]}") },
	{ "a call that never gets arguments has \"\"",
	  DELTA("{\"tool_calls\":[{\"index\":0,\"id\":\"c\",\"function\":"
	  "{\"name\":\"list_tasks\"}}]}", "null") STOP DONE,
	  MSG("{\"tool_calls\":[" CALL("c", "list_tasks", "") "]}") },
	{ "a refusal in pieces stands in for content",
	  DELTA("{\"role\":\"assistant\",\"content\":null,\"refusal\":"
	  "\"I can\"}", "null") DELTA("{\"refusal\":\"'t.\"}", "null") STOP
	  DONE, MSG("{\"content\":null,\"refusal\":\"I can't.\"}") },
	{ "an empty answer", FIRST STOP USAGE DONE, MSG("{\"content\":\"\"}") },
	{ "the whole answer in the finishing chunk",
	  DELTA("{\"content\":\"Done.\"}", "\"stop\"") DONE,
	  MSG("{\"content\":\"Done.\"}") },
	{ "comments, other fields, data: without its space",
	  ": keep-alive\n\nevent: message\nid: 7\nretry: 100\n" FIRST
	  ": OPENROUTER PROCESSING\n\n" "data:{\"choices\":[{\"delta\":"
	  "{\"content\":\"x\"},\"finish_reason\":\"stop\"}]}\n\n" DONE,
	  MSG("{\"content\":\"x\"}") },
	{ "an empty first chunk (Azure's filter results), no usage",
	  "data: {\"choices\":[],\"prompt_filter_results\":[]}\n\n"
	  FIRST WORDS("y") STOP DONE, MSG("{\"content\":\"y\"}") },
	{ "an empty choice after the finish_reason",
	  FIRST WORDS("z") STOP DELTA("{}", "null") DONE,
	  MSG("{\"content\":\"z\"}") },
	{ "[DONE] with no blank line after it",
	  FIRST WORDS("w") STOP "data: [DONE]\n", MSG("{\"content\":\"w\"}") },
	{ "a later piece repeating the id and name",
	  CALL0(0, "c", "list_tasks") DELTA("{\"tool_calls\":[{\"index\":0,"
	  "\"id\":\"c\",\"function\":{\"name\":\"list_tasks\",\"arguments\":"
	  "\"{}\"}}]}", "null") STOP DONE,
	  MSG("{\"tool_calls\":[" CALL("c", "list_tasks", "{}") "]}") },
};

/* Streams that are a 502. */
static const struct {
	const char	*name, *events;
} bad_streams[] = {
	{ "a chunk that is not JSON", FIRST "data: {\"choices\":[\n\n" STOP
	  DONE },
	{ "a chunk with trailing garbage", FIRST
	  "data: {\"choices\":[]}}\n\n" STOP DONE },
	{ "no [DONE]", FIRST WORDS("a") STOP USAGE },
	{ "cut inside a chunk", FIRST WORDS("a") "data: {\"choi" },
	{ "no finish_reason", FIRST WORDS("a") DONE },
	{ "[DONE] alone", DONE },
	{ "nothing at all", "" },
	{ "an event after [DONE]", FIRST STOP DONE WORDS("a") },
	{ "words after the finish_reason", FIRST STOP WORDS("a") DONE },
	{ "an error object mid-stream", FIRST WORDS("a")
	  "data: {\"error\":{\"message\":\"overloaded\"}}\n\n" DONE },
	{ "invalid UTF-8 in the words", FIRST WORDS("\xc3\x28") STOP DONE },
	{ "a UTF-8 sequence cut between chunks", FIRST WORDS("\xc3")
	  WORDS("\xa9") STOP DONE },
	{ "invalid UTF-8 in arguments", CALL0(0, "c", "x") ARGS(0, "\xff")
	  STOP DONE },
	{ "a tool call index that skips one", CALL0(1, "c", "x") STOP DONE },
	{ "arguments before id and name", ARGS(0, "{}") CALL0(0, "c", "x")
	  STOP DONE },
	{ "a first piece without a name", DELTA("{\"tool_calls\":[{\"index\":"
	  "0,\"id\":\"c\",\"function\":{\"arguments\":\"\"}}]}", "null")
	  STOP DONE },
	{ "a first piece with an empty id", CALL0(0, "", "x") STOP DONE },
	{ "a call index that is a string", DELTA("{\"tool_calls\":[{\"index\":"
	  "\"0\",\"id\":\"c\",\"function\":{\"name\":\"x\"}}]}", "null")
	  STOP DONE },
	{ "a call index that is a fraction", DELTA("{\"tool_calls\":[{"
	  "\"index\":0.5,\"id\":\"c\",\"function\":{\"name\":\"x\"}}]}",
	  "null") STOP DONE },
	{ "a negative call index", DELTA("{\"tool_calls\":[{\"index\":-1,"
	  "\"id\":\"c\",\"function\":{\"name\":\"x\"}}]}", "null") STOP
	  DONE },
	{ "type not function", DELTA("{\"tool_calls\":[{\"index\":0,\"id\":"
	  "\"c\",\"type\":\"custom\",\"function\":{\"name\":\"x\"}}]}",
	  "null") STOP DONE },
	{ "arguments not a string", DELTA("{\"tool_calls\":[{\"index\":0,"
	  "\"id\":\"c\",\"function\":{\"name\":\"x\",\"arguments\":{}}}]}",
	  "null") STOP DONE },
	{ "tool_calls not an array", DELTA("{\"tool_calls\":{}}", "null") STOP
	  DONE },
	{ "two choices", CHUNK("{\"index\":0,\"delta\":{\"content\":\"a\"}},"
	  "{\"index\":1,\"delta\":{\"content\":\"b\"}}") STOP DONE },
	{ "a choice with index 1", CHUNK("{\"index\":1,\"delta\":{\"content\":"
	  "\"a\"},\"finish_reason\":\"stop\"}") DONE },
	{ "a choice without a delta", FIRST CHUNK("{\"index\":0,"
	  "\"finish_reason\":\"stop\"}") DONE },
	{ "content a number", FIRST DELTA("{\"content\":1}", "null") STOP DONE },
	{ "finish_reason a number", FIRST DELTA("{}", "1") DONE },
	{ "usage not an object", FIRST STOP "data: {\"choices\":[],\"usage\":"
	  "1}\n\n" DONE },
	{ "choices missing", FIRST STOP "data: {\"usage\":{}}\n\n" DONE },
	{ "a chunk that is an array", FIRST "data: [1]\n\n" STOP DONE },
	{ "an empty data line", FIRST "data:\n\n" STOP DONE },
	{ "two data lines making no JSON", FIRST "data: {\"choices\":\n"
	  "data: []}}\n\n" STOP DONE },
};

static int	 test_num;

static void
ok(int pass, const char *name)
{
	printf("%sok %d - %s\n", pass ? "" : "not ", ++test_num, name);
}

static int
same(const char *a, const char *b)
{
	return (a == NULL && b == NULL) ||
	    (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* A reply carrying n calls. */
static char *
n_calls(size_t n)
{
	struct buf	 b = BUF_INIT(1 << 20);
	size_t		 i;

	buf_adds(&b, "{\"choices\":[{\"message\":{\"tool_calls\":[");
	for (i = 0; i < n; i++)
		buf_adds(&b, i == 0 ? CALL("c", "list_tasks", "{}") :
		    "," CALL("c", "list_tasks", "{}"));
	buf_adds(&b, "]}}]}");
	return buf_detach(&b, NULL);
}

static void
test_limits(void)
{
	struct model_reply	 r;
	char			*body;
	int			 rc;

	body = n_calls(REPLY_MAX_CALLS);
	rc = openai_parse_reply(body, strlen(body), &r);
	ok(rc == 0 && r.ncalls == REPLY_MAX_CALLS, "32 calls pass");
	reply_free(&r);
	free(body);
	body = n_calls(REPLY_MAX_CALLS + 1);
	rc = openai_parse_reply(body, strlen(body), &r);
	ok(rc == -1 && r.ncalls == 0 && r.calls == NULL, "33 calls fail");
	free(body);
	body = MSG("{\"content\":\"abc\"}");
	ok(openai_parse_reply(body, strlen(body) - 3, &r) == -1,
	    "length is honoured, not the NUL");
}

/* A streamed reply comes in pieces: text deltas, and each call's id and
 * name first, its arguments in fragments. */
static void
test_pieces(void)
{
	struct model_reply	 r;
	int			 rc;

	reply_init(&r);
	rc = reply_add_text(&r, "On ", 3) == 0 &&
	    reply_add_text(&r, "it.", 3) == 0 &&
	    reply_add_call(&r, 0, "call_a", "add_task", "{\"ti", 4) == 0 &&
	    reply_add_call(&r, 1, "call_b", "list_tasks", NULL, 0) == 0 &&
	    reply_add_call(&r, 0, NULL, NULL, "tle\":\"Milk\"}", 12) == 0 &&
	    reply_check(&r) == 0;
	ok(rc && strcmp(reply_text(&r), "On it.") == 0 && r.ncalls == 2 &&
	    strcmp(r.calls[0].arguments.data, "{\"title\":\"Milk\"}") == 0 &&
	    strcmp(r.calls[1].arguments.data, "") == 0 &&
	    strcmp(r.calls[1].name, "list_tasks") == 0,
	    "a reply assembled from pieces");
	ok(reply_add_call(&r, 3, "call_d", "x", NULL, 0) == -1,
	    "a call index that skips one is refused");
	reply_free(&r);
	reply_init(&r);
	ok(reply_add_call(&r, 0, NULL, NULL, "{}", 2) == 0 &&
	    reply_check(&r) == -1, "a call that never got its id fails");
	reply_free(&r);
	reply_init(&r);
	ok(reply_add_text(&r, "", 0) == 0 && reply_text(&r) != NULL &&
	    *reply_text(&r) == '\0', "an empty answer is not no answer");
	reply_free(&r);
}

/* Room for anything a test builds (buf.h's max is a ceiling we mean). */
#define BIG	(64UL * 1024 * 1024)

/* What a stream's text callback saw. */
struct heard {
	struct buf	 text;
	size_t		 pieces, stop_at;	/* stop_at 0: never stop */
	int		 bad;	/* an empty piece, or one not UTF-8 */
};

static int
hear(void *arg, const char *p, size_t n)
{
	struct heard	*h = arg;

	if (n == 0 || !text_utf8_valid(p, n) || buf_add(&h->text, p, n) == -1)
		h->bad = 1;
	return ++h->pieces == h->stop_at;
}

/* events with each LF made end (LF, CRLF or CR). The caller frees. */
static char *
line_ends(const char *events, const char *end)
{
	struct buf	 b = BUF_INIT(BIG);
	const char	*p;

	buf_add(&b, "", 0);
	for (p = events; *p != '\0'; p++)
		if (*p == '\n' ? buf_adds(&b, end) : buf_add(&b, p, 1))
			abort();
	return buf_detach(&b, NULL);
}

/* Reads events[0..len) fed step bytes at a time, the first feed cut
 * at first (0: step). 0, 1 (stopped), or -1; what was heard in *h. */
static int
read_stream(const char *events, size_t len, size_t first, size_t step,
    struct model_reply *r, struct heard *h)
{
	struct openai_stream	 s;
	size_t			 at, n;
	int			 rc = 0;

	openai_stream_init(&s, r);
	for (at = 0; rc == 0 && at < len; at += n) {
		n = at == 0 && first > 0 ? first : step;
		if (n > len - at)
			n = len - at;
		rc = openai_stream_feed(&s, events + at, n, hear, h);
	}
	if (rc == 0)
		rc = openai_stream_end(&s);
	openai_stream_free(&s);
	return rc;
}

/* r is what openai_parse_reply() makes of whole, and h heard its words. */
static int
same_reply(struct model_reply *r, const char *whole, const struct heard *h)
{
	struct model_reply	 w;
	size_t			 i;
	int			 pass;

	if (openai_parse_reply(whole, strlen(whole), &w) == -1)
		return 0;
	pass = same(reply_text(r), reply_text(&w)) && r->ncalls == w.ncalls &&
	    !h->bad && h->text.len == r->text.len && (h->text.len == 0 ||
	    memcmp(h->text.data, r->text.data, h->text.len) == 0);
	for (i = 0; pass && i < r->ncalls; i++)
		pass = strcmp(r->calls[i].id, w.calls[i].id) == 0 &&
		    strcmp(r->calls[i].name, w.calls[i].name) == 0 &&
		    same(r->calls[i].arguments.data, w.calls[i].arguments.data);
	reply_free(&w);
	return pass;
}

/* One stream, cut every way: whole; a byte at a time (a cut inside
 * every line, UTF-8 sequence and CRLF); in two at every byte. */
static int
stream_reads_as(const char *events, const char *whole)
{
	struct model_reply	 r;
	struct heard		 h;
	size_t			 len = strlen(events), k;
	int			 pass = 1;

	for (k = 0; pass && k <= len + 1; k++) {
		memset(&h, 0, sizeof(h));
		h.text = (struct buf)BUF_INIT(BIG);
		pass = read_stream(events, len, k, k == len + 1 ? 1 : len, &r,
		    &h) == 0 && same_reply(&r, whole, &h);
		reply_free(&r);
		buf_free(&h.text);
	}
	return pass;
}

static int
stream_fails(const char *events)
{
	struct model_reply	 r;
	struct heard		 h;
	size_t			 len = strlen(events), steps[2], i;
	int			 pass = 1;

	steps[0] = 1;			/* a byte at a time */
	steps[1] = len > 0 ? len : 1;	/* whole */
	for (i = 0; pass && i < 2; i++) {
		memset(&h, 0, sizeof(h));
		h.text = (struct buf)BUF_INIT(BIG);
		pass = read_stream(events, len, 0, steps[i], &r, &h) == -1;
		reply_free(&r);
		buf_free(&h.text);
	}
	return pass;
}

static void
test_streams(void)
{
	static const char *const ends[] = { "\n", "\r\n", "\r" };
	static const char *const end_names[] = { "LF", "CRLF", "CR" };
	char			 name[200], *events;
	size_t			 i, e;

	for (i = 0; i < sizeof(streams) / sizeof(streams[0]); i++)
		for (e = 0; e < 3; e++) {
			events = line_ends(streams[i].events, ends[e]);
			snprintf(name, sizeof(name), "stream, %s: %s",
			    end_names[e], streams[i].name);
			ok(stream_reads_as(events, streams[i].whole), name);
			free(events);
		}
	for (i = 0; i < sizeof(bad_streams) / sizeof(bad_streams[0]); i++) {
		snprintf(name, sizeof(name), "stream fails: %s",
		    bad_streams[i].name);
		ok(stream_fails(bad_streams[i].events), name);
	}
}

/* n calls in a stream, a first piece each. The caller frees. */
static char *
n_streamed_calls(size_t n)
{
	struct buf	 b = BUF_INIT(BIG);
	char		 piece[200];
	size_t		 i;

	for (i = 0; i < n; i++) {
		snprintf(piece, sizeof(piece), "data: {\"choices\":[{\"delta\":"
		    "{\"tool_calls\":[{\"index\":%zu,\"id\":\"c%zu\",\"function\":"
		    "{\"name\":\"list_tasks\",\"arguments\":\"{}\"}}]}}]}\n\n",
		    i, i);
		buf_adds(&b, piece);
	}
	buf_adds(&b, STOP DONE);
	return buf_detach(&b, NULL);
}

/* Words of total bytes, in chunks of 64 KiB. The caller frees. */
static char *
long_words(size_t total)
{
	struct buf	 b = BUF_INIT(BIG);
	char		*piece;
	size_t		 n, chunk = 64 * 1024;

	if ((piece = malloc(chunk + 1)) == NULL)
		abort();
	memset(piece, 'a', chunk);
	for (; total > 0; total -= n) {
		n = total < chunk ? total : chunk;
		piece[n] = '\0';
		buf_adds(&b, "data: {\"choices\":[{\"delta\":{\"content\":\"");
		buf_adds(&b, piece);
		buf_adds(&b, "\"}}]}\n\n");
	}
	buf_adds(&b, STOP DONE);
	free(piece);
	return buf_detach(&b, NULL);
}

static int
stream_ok(const char *events, size_t *ncalls, size_t *text_len)
{
	struct model_reply	 r;
	struct heard		 h;
	int			 rc;

	memset(&h, 0, sizeof(h));
	h.text = (struct buf)BUF_INIT(BIG);
	rc = read_stream(events, strlen(events), 0, 16384, &r, &h);
	*ncalls = r.ncalls;
	*text_len = r.text.len;
	reply_free(&r);
	buf_free(&h.text);
	return rc == 0;
}

/* REPLY_MAX_CALLS, REPLY_TEXT_MAX and OPENAI_EVENT_MAX hold streamed. */
static void
test_stream_limits(void)
{
	char	*events;
	size_t	 n, len;

	events = n_streamed_calls(REPLY_MAX_CALLS);
	ok(stream_ok(events, &n, &len) && n == REPLY_MAX_CALLS,
	    "streamed: 32 calls pass");
	free(events);
	events = n_streamed_calls(REPLY_MAX_CALLS + 1);
	ok(!stream_ok(events, &n, &len), "streamed: 33 calls fail");
	free(events);
	events = long_words(REPLY_TEXT_MAX);
	ok(stream_ok(events, &n, &len) && len == REPLY_TEXT_MAX,
	    "streamed: words of REPLY_TEXT_MAX bytes pass");
	free(events);
	events = long_words(REPLY_TEXT_MAX + 1);
	ok(!stream_ok(events, &n, &len),
	    "streamed: words past REPLY_TEXT_MAX fail");
	free(events);
	if ((events = malloc(OPENAI_EVENT_MAX + 16)) == NULL)
		abort();
	memcpy(events, "data: ", 6);
	memset(events + 6, ' ', OPENAI_EVENT_MAX);
	memcpy(events + 6 + OPENAI_EVENT_MAX, "\n\n", 3);
	ok(!stream_ok(events, &n, &len), "streamed: a line past "
	    "OPENAI_EVENT_MAX fails");
	free(events);
}

/* A text callback that returns 1 stops the feed at once; the reply
 * holds the words passed until then, the pieces each a chunk's words. */
static void
test_stream_stop(void)
{
	static const char	 events[] = FIRST WORDS("One ") WORDS("two ")
	    WORDS("three") STOP DONE;
	struct model_reply	 r;
	struct heard		 h;
	int			 rc;

	memset(&h, 0, sizeof(h));
	h.text = (struct buf)BUF_INIT(BIG);
	h.stop_at = 2;
	rc = read_stream(events, strlen(events), 0, 5, &r, &h);
	ok(rc == 1 && h.pieces == 2 && same(reply_text(&r), "One two ") &&
	    h.text.len == 8, "a text callback's 1 stops the stream there");
	reply_free(&r);
	buf_free(&h.text);
}

/* "stream" asks for events; without it the body is what it was. */
static void
test_stream_request(void)
{
	struct transcript	 t;
	cJSON			*body;
	char			*plain, *streamed, *stripped;

	if (transcript_init(&t) == -1 ||
	    transcript_add(&t, ROLE_USER, "hi", NULL) == -1)
		abort();
	plain = openai_request(&t, "m", 1, 0);
	streamed = openai_request(&t, "m", 1, 1);
	body = cJSON_Parse(streamed);
	ok(plain != NULL && strstr(plain, "stream") == NULL &&
	    cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "stream")) &&
	    cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(body, "stream_options"),
	    "include_usage")), "streamed, the request asks for events and "
	    "usage");
	cJSON_DeleteItemFromObjectCaseSensitive(body, "stream");
	cJSON_DeleteItemFromObjectCaseSensitive(body, "stream_options");
	stripped = cJSON_PrintUnformatted(body);
	ok(stripped != NULL && strcmp(stripped, plain) == 0,
	    "...and is otherwise the request sent for a whole reply");
	cJSON_free(stripped);
	cJSON_Delete(body);
	cJSON_free(plain);
	cJSON_free(streamed);
	transcript_free(&t);
}

/* The arguments that go back to the model: a JSON object as sent, else
 * "{}", whatever follows the object. */
static void
test_arguments(void)
{
	static const struct {
		const char	*name, *sent, *back;
	} cases[] = {
		{ "an object goes back as sent", "{\"title\":\"x\"}",
		  "{\"title\":\"x\"}" },
		{ "bytes after the object: {}", "{\"title\":\"x\"}}", "{}" },
		{ "cut short: {}", "{\"title\":", "{}" },
		{ "an array: {}", "[1]", "{}" },
		{ "empty: {}", "", "{}" },
	};
	struct model_reply	 r;
	struct transcript	 t;
	cJSON			*body, *calls, *args;
	char			*text, *stored;
	struct model_call	*back;
	size_t			 i, n;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		reply_init(&r);
		if (transcript_init(&t) == -1 || reply_add_call(&r, 0, "c1",
		    "add_task", cases[i].sent, strlen(cases[i].sent)) == -1 ||
		    reply_check(&r) == -1)
			abort();
		stored = openai_calls_text(r.calls, r.ncalls);
		if (transcript_add_calls(&t, NULL, r.calls, r.ncalls) == -1)
			abort();
		r.calls = NULL;
		r.ncalls = 0;
		text = openai_request(&t, "m", 1, 0);
		body = cJSON_Parse(text);
		calls = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(
		    cJSON_GetObjectItemCaseSensitive(body, "messages"), 1),
		    "tool_calls");
		args = cJSON_GetObjectItemCaseSensitive(
		    cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(calls,
		    0), "function"), "arguments");
		ok(cJSON_IsString(args) &&
		    strcmp(args->valuestring, cases[i].back) == 0 &&
		    cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(body,
		    "tools")) == 5, cases[i].name);
		/* What is stored is what the model sent. */
		ok(openai_calls_parse(stored, &back, &n) == 0 && n == 1 &&
		    strcmp(back[0].arguments.data, cases[i].sent) == 0 &&
		    strcmp(back[0].id, "c1") == 0,
		    "...and is stored as the model sent it");
		calls_free(back, n);
		cJSON_Delete(body);
		cJSON_free(text);
		cJSON_free(stored);
		transcript_free(&t);
		reply_free(&r);
	}
	if (transcript_init(&t) == -1)
		abort();
	text = openai_request(&t, "m", 0, 0);
	ok(text != NULL && strstr(text, "\"tools\"") == NULL,
	    "offered no tools, the request has no \"tools\" key");
	cJSON_free(text);
	transcript_free(&t);
	openai_cleanup();
}

/* Without a URL, model_complete() is the offline model, and a model
 * offered no tools answers in words. */
static void
test_offline_path(void)
{
	struct config		 cfg;
	struct chat_err		 err;
	struct model_reply	 r;
	struct transcript	 t;

	memset(&cfg, 0, sizeof(cfg));
	cfg.model = "gpt-4o-mini";
	cfg.model_timeout_ms = 1000;
	ok(model_init(&cfg) == 0, "model_init without a URL");
	if (transcript_init(&t) == -1 ||
	    transcript_add(&t, ROLE_USER, "list tasks", NULL) == -1)
		abort();
	memset(&err, 0, sizeof(err));
	ok(model_complete(&t, 1, NULL, &r, &err) == 0 && r.ncalls == 1 &&
	    strcmp(r.calls[0].name, "list_tasks") == 0,
	    "offline model answers with a call");
	reply_free(&r);
	ok(model_complete(&t, 0, NULL, &r, &err) == 0 && r.ncalls == 0 &&
	    reply_text(&r) != NULL, "offered no tools, it answers in words");
	reply_free(&r);
	transcript_free(&t);
	model_cleanup();
}

int
main(void)
{
	struct model_reply	 r;
	size_t			 i, ngood, nbad, nstreams, nbad_streams;
	int			 pass;

	ngood = sizeof(good) / sizeof(good[0]);
	nbad = sizeof(bad) / sizeof(bad[0]);
	nstreams = sizeof(streams) / sizeof(streams[0]);
	nbad_streams = sizeof(bad_streams) / sizeof(bad_streams[0]);
	printf("1..%zu\n", ngood + nbad + 3 + 4 + nstreams * 3 + nbad_streams +
	    5 + 1 + 2 + 11 + 3 + 1);
	for (i = 0; i < ngood; i++) {
		pass = openai_parse_reply(good[i].body, strlen(good[i].body),
		    &r) == 0 && same(reply_text(&r), good[i].content) &&
		    r.ncalls == good[i].ncalls;
		if (pass && r.ncalls > 0)
			pass = strcmp(r.calls[0].name, good[i].call) == 0 &&
			    strcmp(r.calls[0].arguments.data,
			    good[i].args) == 0 && r.calls[0].id[0] != '\0';
		ok(pass, good[i].name);
		reply_free(&r);
	}
	for (i = 0; i < nbad; i++) {
		pass = openai_parse_reply(bad[i].body, strlen(bad[i].body),
		    &r) == -1 && reply_text(&r) == NULL && r.ncalls == 0;
		ok(pass, bad[i].name);
		reply_free(&r);
	}
	test_limits();
	test_pieces();
	test_streams();
	test_stream_limits();
	test_stream_stop();
	test_stream_request();
	test_arguments();
	test_offline_path();
	ok(strstr(transcript_system_prompt(), "list_tasks") != NULL &&
	    strstr(transcript_system_prompt(), "update_task") != NULL,
	    "the system prompt names the tools");
	return 0;
}
