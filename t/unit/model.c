/* t/unit/model.c: the model conversation's pieces. openai_parse_reply()
 * on chat-completions bodies a server may send (must-pass and must-fail
 * tables), REPLY_MAX_CALLS, a reply assembled from streamed pieces, the
 * request body built from a transcript (the {} rule), stored tool_calls
 * read back, and the offline path of model_complete(). Prints TAP. The
 * HTTP path is covered by the integration tests against t/mock_model.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "buf.h"
#include "config.h"
#include "model.h"
#include "openai.h"
#include "reply.h"
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
		text = openai_request(&t, "m", 1);
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
	text = openai_request(&t, "m", 0);
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
	size_t			 i, ngood, nbad;
	int			 pass;

	ngood = sizeof(good) / sizeof(good[0]);
	nbad = sizeof(bad) / sizeof(bad[0]);
	printf("1..%zu\n", ngood + nbad + 3 + 4 + 11 + 3 + 1);
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
	test_arguments();
	test_offline_path();
	ok(strstr(transcript_system_prompt(), "list_tasks") != NULL &&
	    strstr(transcript_system_prompt(), "update_task") != NULL,
	    "the system prompt names the tools");
	return 0;
}
