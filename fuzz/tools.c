/* fuzz/tools.c: tools_prepare() on a tool call: name and arguments JSON. */
/*
 * Input: the name, a newline, the arguments text (both arrive as
 * NUL-terminated strings, as openai_parse_reply() copies them). Checks
 * tools.h's promise: a call is never a failure, only a tool's function
 * with checked arguments, or none, always with an {"error": ...}
 * fallback.
 */
#include <cJSON.h>

#include "fuzz.h"
#include "reply.h"
#include "text.h"
#include "tools.h"

/* Bounds tools.c states for what the model may store. */
#define TITLE_MAX_BYTES		500
#define DESCRIPTION_MAX_BYTES	4000

static int
text(const char *s, size_t max_bytes)
{
	return s != NULL && strlen(s) <= max_bytes &&
	    text_utf8_valid(s, strlen(s));
}

static int
blank(const char *s)
{
	return strspn(s, " \t\r\n") == strlen(s);
}

static const char *
str_item(const cJSON *o, const char *key)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int
has_task_id(const cJSON *args)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(args, "task_id");

	return cJSON_IsNumber(v) && v->valuedouble >= 1;
}

/* What each function reads is there and checked. */
static void
check_args(const struct db_tool_call *c)
{
	const char	*title, *description, *status;
	cJSON		*args;

	if (c->function == NULL) {
		FUZZ_CHECK(c->args == NULL);
		return;
	}
	args = text_json_parses(c->args);
	FUZZ_CHECK(cJSON_IsObject(args));
	title = str_item(args, "title");
	description = str_item(args, "description");
	status = str_item(args, "status");
	FUZZ_CHECK(title == NULL || (text(title, TITLE_MAX_BYTES) &&
	    !blank(title)));
	FUZZ_CHECK(description == NULL ||
	    text(description, DESCRIPTION_MAX_BYTES));
	if (strcmp(c->function, "tool_add_task") == 0)
		FUZZ_CHECK(title != NULL);
	else if (strcmp(c->function, "tool_list_tasks") == 0)
		FUZZ_CHECK(status != NULL && (strcmp(status, "all") == 0 ||
		    strcmp(status, "pending") == 0 ||
		    strcmp(status, "completed") == 0));
	else if (strcmp(c->function, "tool_update_task") == 0)
		FUZZ_CHECK(has_task_id(args) &&
		    (title != NULL || description != NULL));
	else if (strcmp(c->function, "tool_complete_task") == 0 ||
	    strcmp(c->function, "tool_delete_task") == 0)
		FUZZ_CHECK(has_task_id(args));
	else
		FUZZ_CHECK(!"function out of the table");
	cJSON_Delete(args);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct model_reply	 r;
	struct db_tool_call	 out;
	const uint8_t		*nl;
	cJSON			*fallback;
	char			*name, *arguments;
	size_t			 name_len = size;

	if ((nl = memchr(data, '\n', size)) != NULL)
		name_len = (size_t)(nl - data);
	name = fuzz_string(data, name_len);
	arguments = nl != NULL ? fuzz_string(nl + 1, size - name_len - 1) :
	    fuzz_string(data, 0);
	reply_init(&r);
	if (reply_add_call(&r, 0, "call_fuzz", name, arguments,
	    strlen(arguments)) == -1)
		abort();
	FUZZ_CHECK(tools_prepare(&r.calls[0], &out) == 0);
	FUZZ_CHECK(out.call_id == r.calls[0].id && out.result == NULL);
	FUZZ_CHECK(out.fallback != NULL);
	/* openai_parse_reply() lets only UTF-8 through, and the fallback is
	 * stored as a tool message: PostgreSQL refuses anything else. */
	if (text(name, SIZE_MAX) && text(arguments, SIZE_MAX))
		FUZZ_CHECK(text(out.fallback, SIZE_MAX));
	fallback = text_json_parses(out.fallback);
	FUZZ_CHECK(cJSON_IsObject(fallback) &&
	    cJSON_IsString(cJSON_GetObjectItemCaseSensitive(fallback,
	    "error")));
	cJSON_Delete(fallback);
	check_args(&out);
	tools_call_free(&out);
	reply_free(&r);
	free(arguments);
	free(name);
	return 0;
}
