/* t/unit/model.c: model_parse_reply() on chat-completions bodies a server
 * may send (must-pass and must-fail tables), MODEL_MAX_CALLS, and the
 * offline path of model_complete(). Prints TAP. The HTTP path is covered
 * by the integration tests against t/mock_model.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "buf.h"
#include "config.h"
#include "model.h"

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

	body = n_calls(MODEL_MAX_CALLS);
	rc = model_parse_reply(body, strlen(body), &r);
	ok(rc == 0 && r.ncalls == MODEL_MAX_CALLS, "32 calls pass");
	model_reply_free(&r);
	free(body);
	body = n_calls(MODEL_MAX_CALLS + 1);
	rc = model_parse_reply(body, strlen(body), &r);
	ok(rc == -1 && r.ncalls == 0 && r.calls == NULL, "33 calls fail");
	free(body);
	body = MSG("{\"content\":\"abc\"}");
	ok(model_parse_reply(body, strlen(body) - 3, &r) == -1,
	    "length is honoured, not the NUL");
}

/* Without a URL, model_complete() is the offline model, and a model
 * offered no tools answers in words. */
static void
test_offline_path(void)
{
	struct config		 cfg;
	struct chat_err		 err;
	struct model_reply	 r;
	cJSON			*messages, *tools;

	memset(&cfg, 0, sizeof(cfg));
	cfg.model = "gpt-4o-mini";
	cfg.model_timeout_ms = 1000;
	ok(model_init(&cfg) == 0, "model_init without a URL");
	messages = cJSON_Parse("[{\"role\":\"user\",\"content\":"
	    "\"list tasks\"}]");
	tools = cJSON_Parse("[{\"type\":\"function\",\"function\":"
	    "{\"name\":\"list_tasks\",\"parameters\":{}}}]");
	memset(&err, 0, sizeof(err));
	ok(model_complete(messages, tools, &r, &err) == 0 && r.ncalls == 1 &&
	    strcmp(r.calls[0].name, "list_tasks") == 0,
	    "offline model answers with a call");
	model_reply_free(&r);
	ok(model_complete(messages, NULL, &r, &err) == 0 && r.ncalls == 0 &&
	    r.content != NULL, "offered no tools, it answers in words");
	model_reply_free(&r);
	cJSON_Delete(messages);
	cJSON_Delete(tools);
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
	printf("1..%zu\n", ngood + nbad + 3 + 3 + 1);
	for (i = 0; i < ngood; i++) {
		pass = model_parse_reply(good[i].body, strlen(good[i].body),
		    &r) == 0 && same(r.content, good[i].content) &&
		    r.ncalls == good[i].ncalls;
		if (pass && r.ncalls > 0)
			pass = strcmp(r.calls[0].name, good[i].call) == 0 &&
			    strcmp(r.calls[0].arguments, good[i].args) == 0 &&
			    r.calls[0].id[0] != '\0';
		ok(pass, good[i].name);
		model_reply_free(&r);
	}
	for (i = 0; i < nbad; i++) {
		pass = model_parse_reply(bad[i].body, strlen(bad[i].body),
		    &r) == -1 && r.content == NULL && r.ncalls == 0;
		ok(pass, bad[i].name);
		model_reply_free(&r);
	}
	test_limits();
	test_offline_path();
	ok(strstr(model_system_prompt(), "list_tasks") != NULL &&
	    strstr(model_system_prompt(), "update_task") != NULL,
	    "the system prompt names the tools");
	return 0;
}
