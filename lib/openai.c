/* openai.c: OpenAI's chat-completions format (openai.h): requests from
 * transcripts, replies into struct model_reply, the tools array, and
 * stored tool_calls. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "openai.h"
#include "text.h"
#include "tools.h"

/* The tool definitions, built once from tools.h's table and shared, read
 * only, by the worker threads; the lock covers the building, which a
 * failure (ENOMEM) lets a later call try again. */
static cJSON		*definitions;
static pthread_mutex_t	 definitions_lock = PTHREAD_MUTEX_INITIALIZER;

static cJSON *
build_definitions(void)
{
	cJSON	*array, *tool, *fn, *params;
	size_t	 i;

	if ((array = cJSON_CreateArray()) == NULL)
		return NULL;
	for (i = 0; i < ntools; i++) {
		if ((tool = cJSON_CreateObject()) == NULL)
			goto fail;
		cJSON_AddItemToArray(array, tool);
		if (cJSON_AddStringToObject(tool, "type", "function") == NULL ||
		    (fn = cJSON_AddObjectToObject(tool, "function")) == NULL ||
		    cJSON_AddStringToObject(fn, "name", tools[i].name) ==
		    NULL || cJSON_AddStringToObject(fn, "description",
		    tools[i].description) == NULL ||
		    (params = cJSON_Parse(tools[i].input_schema)) == NULL)
			goto fail;
		cJSON_AddItemToObject(fn, "parameters", params);
	}
	return array;
fail:
	cJSON_Delete(array);
	return NULL;
}

static const cJSON *
tool_definitions(void)
{
	const cJSON	*d;

	pthread_mutex_lock(&definitions_lock);
	if (definitions == NULL)
		definitions = build_definitions();
	d = definitions;
	pthread_mutex_unlock(&definitions_lock);
	return d;
}

void
openai_cleanup(void)
{
	cJSON_Delete(definitions);
	definitions = NULL;
}

/* A string member pointing into memory that outlives the request body
 * (the transcript, a static): nothing copied before it is printed. */
static int
add_ref(cJSON *o, const char *name, const char *s)
{
	cJSON	*v;

	v = s != NULL ? cJSON_CreateStringReference(s) : cJSON_CreateNull();
	if (v == NULL)
		return -1;
	cJSON_AddItemToObject(o, name, v);
	return 0;
}

/* calls as a "tool_calls" array; arguments(call) picks their text. */
static cJSON *
calls_array(const struct model_call *calls, size_t n,
    const char *(*arguments)(const struct model_call *))
{
	cJSON	*array, *call, *fn;
	size_t	 i;

	if ((array = cJSON_CreateArray()) == NULL)
		return NULL;
	for (i = 0; i < n; i++) {
		if ((call = cJSON_CreateObject()) == NULL)
			goto fail;
		cJSON_AddItemToArray(array, call);
		if (add_ref(call, "id", calls[i].id) == -1 ||
		    add_ref(call, "type", "function") == -1 ||
		    (fn = cJSON_AddObjectToObject(call, "function")) == NULL ||
		    add_ref(fn, "name", calls[i].name) == -1 ||
		    add_ref(fn, "arguments", arguments(&calls[i])) == -1)
			goto fail;
	}
	return array;
fail:
	cJSON_Delete(array);
	return NULL;
}

static const char *
sent_arguments(const struct model_call *c)
{
	return c->arguments.data != NULL ? c->arguments.data : "";
}

static cJSON *
message_json(const struct transcript_msg *m)
{
	cJSON	*o, *calls;

	if ((o = cJSON_CreateObject()) == NULL)
		return NULL;
	if (add_ref(o, "role", transcript_role_name(m->role)) == -1 ||
	    add_ref(o, "content", m->content) == -1)
		goto fail;
	if (m->ncalls > 0) {
		if ((calls = calls_array(m->calls, m->ncalls,
		    call_arguments)) == NULL)
			goto fail;
		cJSON_AddItemToObject(o, "tool_calls", calls);
	}
	if (m->tool_call_id != NULL &&
	    add_ref(o, "tool_call_id", m->tool_call_id) == -1)
		goto fail;
	return o;
fail:
	cJSON_Delete(o);
	return NULL;
}

char *
openai_request(const struct transcript *t, const char *model,
    int offer_tools)
{
	const cJSON	*defs = NULL;
	cJSON		*body, *messages, *m, *ref;
	char		*text = NULL;
	size_t		 i;

	if (offer_tools && ntools > 0 && (defs = tool_definitions()) == NULL)
		return NULL;
	if ((body = cJSON_CreateObject()) == NULL)
		return NULL;
	if (add_ref(body, "model", model) == -1 ||
	    (messages = cJSON_AddArrayToObject(body, "messages")) == NULL)
		goto out;
	for (i = 0; i < t->n; i++) {
		if ((m = message_json(&t->msgs[i])) == NULL)
			goto out;
		cJSON_AddItemToArray(messages, m);
	}
	if (defs != NULL) {
		/* Printed in place: deleting the body leaves them alone. */
		if ((ref = cJSON_CreateArrayReference(defs->child)) == NULL)
			goto out;
		cJSON_AddItemToObject(body, "tools", ref);
	}
	text = cJSON_PrintUnformatted(body);
out:
	cJSON_Delete(body);
	return text;
}

char *
openai_calls_text(const struct model_call *calls, size_t n)
{
	cJSON	*array;
	char	*text;

	if ((array = calls_array(calls, n, sent_arguments)) == NULL)
		return NULL;
	text = cJSON_PrintUnformatted(array);
	cJSON_Delete(array);
	return text;
}

/* A string the database and the client can take: PostgreSQL refuses
 * text that is not UTF-8, and a bad byte would turn the turn into a 503. */
static int
text_ok(const cJSON *s)
{
	return cJSON_IsString(s) && text_utf8_valid(s->valuestring,
	    strlen(s->valuestring));
}

/* One call: {id, type: "function", function: {name, arguments}}, where
 * arguments is JSON text; whether it parses is tools.c's concern, since
 * a model that sends bad arguments is told so and may recover. */
static int
parse_call(const cJSON *call, size_t index, struct model_reply *out)
{
	const cJSON	*id, *type, *fn, *name, *args;

	id = cJSON_GetObjectItemCaseSensitive(call, "id");
	type = cJSON_GetObjectItemCaseSensitive(call, "type");
	fn = cJSON_GetObjectItemCaseSensitive(call, "function");
	name = cJSON_GetObjectItemCaseSensitive(fn, "name");
	args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
	if (!cJSON_IsObject(call) || !cJSON_IsObject(fn) || !text_ok(id) ||
	    !text_ok(name) || !text_ok(args))
		return -1;
	if (type != NULL && (!cJSON_IsString(type) ||
	    strcmp(type->valuestring, "function") != 0))
		return -1;
	return reply_add_call(out, index, id->valuestring, name->valuestring,
	    args->valuestring, strlen(args->valuestring));
}

static int
parse_calls(const cJSON *calls, struct model_reply *out)
{
	const cJSON	*call;
	size_t		 i = 0;

	if (calls == NULL || cJSON_IsNull(calls))
		return 0;
	if (!cJSON_IsArray(calls) || cJSON_GetArraySize(calls) >
	    REPLY_MAX_CALLS)
		return -1;
	cJSON_ArrayForEach(call, calls)
		if (parse_call(call, i++, out) == -1)
			return -1;
	return reply_check(out);
}

/* content: a string, or null/absent (a reply made of tool calls). A
 * refusal stands in for the content it replaces. */
static int
parse_content(const cJSON *message, struct model_reply *out)
{
	const cJSON	*content, *refusal;

	content = cJSON_GetObjectItemCaseSensitive(message, "content");
	refusal = cJSON_GetObjectItemCaseSensitive(message, "refusal");
	if ((content == NULL || cJSON_IsNull(content)) && text_ok(refusal))
		content = refusal;
	if (content == NULL || cJSON_IsNull(content))
		return 0;
	if (!text_ok(content))
		return -1;
	return reply_add_text(out, content->valuestring,
	    strlen(content->valuestring));
}

int
openai_parse_reply(const char *body, size_t len, struct model_reply *out)
{
	cJSON		*root;
	const cJSON	*message;
	int		 rc = -1;

	reply_init(out);
	if ((root = text_json_parse(body, len)) == NULL)
		return -1;
	message = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(
	    cJSON_GetObjectItemCaseSensitive(root, "choices"), 0), "message");
	if (cJSON_IsObject(root) && cJSON_IsObject(message) &&
	    parse_content(message, out) == 0 &&
	    parse_calls(cJSON_GetObjectItemCaseSensitive(message,
	    "tool_calls"), out) == 0 &&
	    (reply_text(out) != NULL || out->ncalls > 0))
		rc = 0;
	if (rc == -1)
		reply_free(out);
	cJSON_Delete(root);
	return rc;
}

int
openai_calls_parse(const char *text, struct model_call **calls, size_t *n)
{
	struct model_reply	 r;
	cJSON			*array;
	int			 rc = -1;

	reply_init(&r);
	*calls = NULL;
	*n = 0;
	if ((array = text_json_parses(text)) == NULL)
		return -1;
	if (cJSON_IsArray(array) && parse_calls(array, &r) == 0) {
		*calls = r.calls;
		*n = r.ncalls;
		r.calls = NULL;
		r.ncalls = 0;
		rc = 0;
	}
	reply_free(&r);
	cJSON_Delete(array);
	return rc;
}

void
openai_error_code(const char *body, size_t len, char *code, size_t size)
{
	const cJSON	*c;
	cJSON		*root;
	size_t		 n;

	code[0] = '\0';
	root = text_json_parse(body, len);
	c = cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(root, "error"), "code");
	if (cJSON_IsString(c) && (n = strlen(c->valuestring)) <= 64 &&
	    n < size && strspn(c->valuestring, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n)
		memcpy(code, c->valuestring, n + 1);
	cJSON_Delete(root);
}
