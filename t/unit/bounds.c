/* t/unit/bounds.c: the bounds of a turn's model requests: a tool result
 * cut to its size (bounds_tool_result()), the history left out to fit a
 * request (bounds_history_drop()), and the request's size as openai.c
 * reckons it against the request it prints. Prints TAP. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "bounds.h"
#include "openai.h"
#include "transcript.h"

static int	 n_test;

static int	ok(int, const char *, ...)
		    __attribute__((format(printf, 2, 3)));

static int
ok(int cond, const char *fmt, ...)
{
	va_list	 ap;

	printf("%sok %d - ", cond ? "" : "not ", ++n_test);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	return cond;
}

/* A list_tasks result of n tasks, each with a description of desc bytes
 * (a quote among them, which JSON escapes). The caller frees it. */
static char *
task_list(int n, size_t desc)
{
	cJSON	*a, *t;
	char	*d, *text;
	int	 i;

	a = cJSON_CreateArray();
	d = malloc(desc + 1);
	memset(d, 'x', desc);
	if (desc > 0)
		d[0] = '"';
	d[desc] = '\0';
	for (i = 0; i < n; i++) {
		t = cJSON_CreateObject();
		cJSON_AddNumberToObject(t, "id", i + 1);
		cJSON_AddStringToObject(t, "title", "a task");
		cJSON_AddStringToObject(t, "description", d);
		cJSON_AddFalseToObject(t, "completed");
		cJSON_AddItemToArray(a, t);
	}
	text = cJSON_PrintUnformatted(a);
	cJSON_Delete(a);
	free(d);
	return text;
}

/* A result cut: {"tasks": [k items, the first ones], "note": "...k of
 * n..."} within max, or an {"error"}. */
static const struct {
	const char	*name;
	int		 tasks;
	size_t		 desc, max;
	int		 rc;		/* 0 as is, 1 cut */
	int		 kept;		/* tasks kept; -1: error */
} results[] = {
	{ "a short list goes as it is",		3,   10,   16384, 0, 3 },
	{ "an empty list goes as it is",	0,   0,    1024,  0, 0 },
	{ "100 long tasks are cut",		100, 4000, 16384, 1, 3 },
	{ "cut to what fits, in order",	100, 100,  4096,  1, 24 },
	{ "cut to none when one does not fit",	5,   4000, 1024,  1, 0 },
	{ "a limit so small the note fails",	5,   4000, 100,   1, -1 },
};

static void
test_results(void)
{
	char	*in, *out, name[160];
	cJSON	*j, *tasks, *first;
	size_t	 i;
	int	 rc;

	for (i = 0; i < sizeof(results) / sizeof(results[0]); i++) {
		in = task_list(results[i].tasks, results[i].desc);
		rc = bounds_tool_result(in, results[i].max, &out);
		ok(rc == results[i].rc, "%s: cut or not", results[i].name);
		if (rc != 1) {
			ok(out == NULL, "%s: nothing new", results[i].name);
			free(in);
			continue;
		}
		ok(strlen(out) <= results[i].max, "%s: within the bound",
		    results[i].name);
		j = cJSON_Parse(out);
		ok(cJSON_IsObject(j), "%s: one JSON object", results[i].name);
		tasks = cJSON_GetObjectItemCaseSensitive(j, "tasks");
		if (results[i].kept == -1) {
			ok(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j,
			    "error")), "%s: an error", results[i].name);
		} else {
			ok(cJSON_GetArraySize(tasks) == results[i].kept,
			    "%s: the tasks kept", results[i].name);
			first = cJSON_GetArrayItem(tasks, 0);
			ok(results[i].kept == 0 || cJSON_GetNumberValue(
			    cJSON_GetObjectItemCaseSensitive(first, "id")) == 1,
			    "%s: the first ones", results[i].name);
			snprintf(name, sizeof(name), "of %d tasks",
			    results[i].tasks);
			ok(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j,
			    "note")) && strstr(cJSON_GetObjectItemCaseSensitive(
			    j, "note")->valuestring, name) != NULL,
			    "%s: a note says how many of how many",
			    results[i].name);
		}
		cJSON_Delete(j);
		free(out);
		free(in);
	}
	rc = bounds_tool_result("{\"error\":\"" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}", 40, &out);
	ok(rc == 1 && out != NULL && strstr(out, "too large") != NULL,
	    "%s", "an object too long becomes an error");
	free(out);
}

/*
 * Requests written as one letter a message (s system, u user, a
 * assistant calling tools, t tool result, A answer), each of 10 bytes;
 * the history is the messages between the system prompt and the last
 * "u" (first 1). drop: how many of the oldest history messages go, -1
 * when even none fits.
 */
static const struct {
	const char	*name, *msgs;
	size_t		 base, max;
	long		 drop;
} drops[] = {
	{ "fits: nothing dropped",		"suAuAu",   0,  60, 0 },
	{ "one over: the oldest goes",		"suAuAu",   1,  60, 1 },
	{ "exactly fits",			"suAuAu",   10, 70, 0 },
	{ "never opens on a tool result",	"suattAu",  0,  40, 4 },
	{ "a call goes with its results",	"suattAuAu", 0, 70, 4 },
	{ "a call kept when its own fits",	"suattAuAu", 0, 80, 1 },
	{ "all history goes",			"suAuAu",   0,  20, 4 },
	{ "not even without history",		"suAuAu",   0,  19, -1 },
	{ "the turn's own rounds stay",		"suAuat",   0,  40, 2 },
	{ "no history at all",		"su",	    0,  20, 0 },
	{ "no history, too large",		"su",	    5,  20, -1 },
};

static void
test_drops(void)
{
	size_t		 bytes[32], i, k, n, last_user;
	unsigned char	 is_tool[32];

	for (i = 0; i < sizeof(drops) / sizeof(drops[0]); i++) {
		n = strlen(drops[i].msgs);
		last_user = 0;
		for (k = 0; k < n; k++) {
			bytes[k] = 10;
			is_tool[k] = drops[i].msgs[k] == 't';
			if (drops[i].msgs[k] == 'u' &&
			    (k + 1 == n || strchr(drops[i].msgs + k + 1,
			    'u') == NULL))
				last_user = k;
		}
		ok(bounds_history_drop(bytes, is_tool, n, 1, last_user - 1,
		    drops[i].base, drops[i].max) == drops[i].drop, "%s",
		    drops[i].name);
	}
}

/* openai.c's reckoning against what it prints: never under, a comma or
 * so over. */
static void
test_request_bytes(void)
{
	struct transcript	 t;
	struct model_call	*calls;
	char			*body;
	size_t			 i, est;
	int			 stream;

	transcript_init(&t);
	transcript_add(&t, ROLE_USER, "a \"quoted\"\nline\twith \x01 and "
	    "caf\xc3\xa9", NULL);
	calls = calloc(1, sizeof(*calls));
	calls[0].id = strdup("call_1");
	calls[0].name = strdup("add_task");
	calls[0].arguments = (struct buf)BUF_INIT(1024);
	buf_add(&calls[0].arguments, "{\"title\":\"x\"}", 13);
	transcript_add_calls(&t, NULL, calls, 1);
	transcript_add(&t, ROLE_TOOL, "{\"task_id\":1}", "call_1");
	transcript_add(&t, ROLE_ASSISTANT, "Added.", NULL);
	for (stream = 0; stream <= 1; stream++) {
		body = openai_request(&t, "gpt-4o-mini", 1, stream);
		est = openai_request_base_bytes("gpt-4o-mini", 1);
		for (i = 0; i < t.n; i++)
			est += openai_message_bytes(&t.msgs[i]);
		ok(body != NULL && est >= strlen(body) &&
		    est <= strlen(body) + t.n + 60, "%s", stream ?
		    "request size reckoned, streamed" :
		    "request size reckoned, whole");
		cJSON_free(body);
	}
	transcript_free(&t);
	openai_cleanup();
}

int
main(void)
{
	test_results();
	test_drops();
	test_request_bytes();
	printf("1..%d\n", n_test);
	return 0;
}
