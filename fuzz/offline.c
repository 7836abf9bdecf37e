/* fuzz/offline.c: offline_complete() on an OpenAI messages array (JSON). */
/*
 * Input that is not a JSON array is skipped: turn.c only ever hands the
 * offline model an array. offline.h promises an answer to every input;
 * what it asks for must be one of the five tools with a JSON object of
 * arguments, and when the conversation was UTF-8 (request bodies are
 * checked, tool results come from PostgreSQL) so must its words be, or
 * storing them would fail.
 */
#include <cJSON.h>

#include "fuzz.h"
#include "http.h"
#include "offline.h"

static const char *const tools[] = { "add_task", "list_tasks",
	"complete_task", "delete_task", "update_task" };

static int
known_tool(const char *name)
{
	size_t	 i;

	for (i = 0; i < sizeof(tools) / sizeof(tools[0]); i++)
		if (strcmp(name, tools[i]) == 0)
			return 1;
	return 0;
}

static int
text(const char *s)
{
	return s != NULL && http_utf8_valid(s, strlen(s));
}

static void
check_reply(const struct model_reply *r, int utf8_in)
{
	cJSON	*args;
	size_t	 i;

	FUZZ_CHECK(r->content != NULL || r->ncalls > 0);
	FUZZ_CHECK(r->ncalls <= MODEL_MAX_CALLS);
	if (r->content != NULL && utf8_in)
		FUZZ_CHECK(text(r->content));
	for (i = 0; i < r->ncalls; i++) {
		FUZZ_CHECK(r->calls[i].id != NULL && r->calls[i].id[0] != '\0');
		FUZZ_CHECK(known_tool(r->calls[i].name));
		args = cJSON_Parse(r->calls[i].arguments);
		FUZZ_CHECK(cJSON_IsObject(args));
		cJSON_Delete(args);
		if (utf8_in)
			FUZZ_CHECK(text(r->calls[i].arguments));
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct model_reply	 r;
	cJSON			*messages;
	char			*json;

	json = fuzz_bytes(data, size);
	messages = cJSON_ParseWithLength(json, size);
	if (cJSON_IsArray(messages)) {
		FUZZ_CHECK(offline_complete(messages, &r) == 0);
		check_reply(&r, http_utf8_valid(json, size));
		model_reply_free(&r);
	}
	cJSON_Delete(messages);
	free(json);
	return 0;
}
