/* fuzz/tools.c: tools_prepare() on a tool call: name and arguments JSON. */
/*
 * Input: the name, a newline, the arguments text (model.h: both arrive
 * as NUL-terminated strings, as model_parse_reply() copies them). Checks
 * tools.h's promise: a call is never a failure, only an operation with
 * checked arguments or DB_TOOL_NONE with an {"error": ...} fallback.
 */
#include <cJSON.h>

#include "fuzz.h"
#include "http.h"
#include "tools.h"

/* Bounds tools.c states for what the model may store. */
#define TITLE_MAX_BYTES		500
#define DESCRIPTION_MAX_BYTES	4000

static int
text(const char *s, size_t max_bytes)
{
	return s != NULL && strlen(s) <= max_bytes &&
	    http_utf8_valid(s, strlen(s));
}

static int
blank(const char *s)
{
	return strspn(s, " \t\r\n") == strlen(s);
}

static void
check_op(const struct db_tool_call *c)
{
	switch (c->op) {
	case DB_TOOL_ADD:
		FUZZ_CHECK(text(c->title, TITLE_MAX_BYTES) && !blank(c->title));
		FUZZ_CHECK(c->description == NULL ||
		    text(c->description, DESCRIPTION_MAX_BYTES));
		break;
	case DB_TOOL_LIST:
		FUZZ_CHECK(c->status != NULL &&
		    (strcmp(c->status, "all") == 0 ||
		    strcmp(c->status, "pending") == 0 ||
		    strcmp(c->status, "completed") == 0));
		break;
	case DB_TOOL_COMPLETE:
	case DB_TOOL_DELETE:
		FUZZ_CHECK(c->task_id >= 1);
		break;
	case DB_TOOL_UPDATE:
		FUZZ_CHECK(c->task_id >= 1);
		FUZZ_CHECK(c->title != NULL || c->description != NULL);
		FUZZ_CHECK(c->title == NULL ||
		    (text(c->title, TITLE_MAX_BYTES) && !blank(c->title)));
		FUZZ_CHECK(c->description == NULL ||
		    text(c->description, DESCRIPTION_MAX_BYTES));
		break;
	case DB_TOOL_NONE:
		break;
	default:
		FUZZ_CHECK(!"op out of range");
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct model_call	 call;
	struct db_tool_call	 out;
	const uint8_t		*nl;
	cJSON			*args = NULL, *fallback;
	char			*owned = NULL, *name, *arguments;
	size_t			 name_len = size;

	if ((nl = memchr(data, '\n', size)) != NULL)
		name_len = (size_t)(nl - data);
	name = fuzz_string(data, name_len);
	arguments = nl != NULL ? fuzz_string(nl + 1, size - name_len - 1) :
	    fuzz_string(data, 0);
	call.id = "call_fuzz";
	call.name = name;
	call.arguments = arguments;
	FUZZ_CHECK(tools_prepare(&call, &args, &owned, &out) == 0);
	FUZZ_CHECK(out.call_id == call.id && out.result == NULL);
	FUZZ_CHECK(owned != NULL && out.fallback == owned);
	/* model_parse_reply() lets only UTF-8 through, and the fallback is
	 * stored as a tool message: PostgreSQL refuses anything else. */
	if (text(name, SIZE_MAX) && text(arguments, SIZE_MAX))
		FUZZ_CHECK(text(out.fallback, SIZE_MAX));
	fallback = cJSON_Parse(out.fallback);
	FUZZ_CHECK(cJSON_IsObject(fallback) &&
	    cJSON_IsString(cJSON_GetObjectItemCaseSensitive(fallback,
	    "error")));
	cJSON_Delete(fallback);
	check_op(&out);
	cJSON_Delete(args);
	free(owned);
	free(arguments);
	free(name);
	return 0;
}
