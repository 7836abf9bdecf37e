/* fuzz/offline.c: offline_complete() on a transcript, read from an OpenAI
 * messages array (JSON). */
/*
 * Input that is not a JSON array of messages is skipped: turn.c only
 * ever hands the offline model a transcript, which is what such an array
 * reads as. offline.h promises an answer to every input;
 * what it asks for must be one of the five tools with a JSON object of
 * arguments, and when the conversation was UTF-8 (request bodies are
 * checked, tool results come from PostgreSQL) so must its words be, or
 * storing them would fail.
 */
#include <cJSON.h>

#include "fuzz.h"
#include "offline.h"
#include "openai.h"
#include "text.h"
#include "transcript.h"

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
	return s != NULL && text_utf8_valid(s, strlen(s));
}

static void
check_reply(const struct model_reply *r, int utf8_in)
{
	cJSON	*args;
	size_t	 i;

	FUZZ_CHECK(reply_text(r) != NULL || r->ncalls > 0);
	FUZZ_CHECK(r->ncalls <= REPLY_MAX_CALLS);
	if (reply_text(r) != NULL && utf8_in)
		FUZZ_CHECK(text(reply_text(r)));
	for (i = 0; i < r->ncalls; i++) {
		FUZZ_CHECK(r->calls[i].id != NULL && r->calls[i].id[0] != '\0');
		FUZZ_CHECK(known_tool(r->calls[i].name));
		args = text_json_parses(r->calls[i].arguments.data);
		FUZZ_CHECK(cJSON_IsObject(args));
		cJSON_Delete(args);
		if (utf8_in)
			FUZZ_CHECK(text(r->calls[i].arguments.data));
	}
}

static const char *
str_item(const cJSON *o, const char *key)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The messages as a transcript; 0, or -1 for an array that is not one
 * (a role we do not know, tool_calls that are not OpenAI's). */
static int
read_messages(const cJSON *messages, struct transcript *t)
{
	static const char *const roles[] = { "system", "user", "assistant",
	    "tool" };
	const cJSON		*m, *calls;
	struct model_call	*c;
	const char		*role;
	char			*text;
	size_t			 i, n;

	memset(t, 0, sizeof(*t));
	cJSON_ArrayForEach(m, messages) {
		if ((role = str_item(m, "role")) == NULL)
			return -1;
		for (i = 0; i < 4 && strcmp(role, roles[i]) != 0; i++)
			continue;
		if (i == 4)
			return -1;
		calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
		if (i != ROLE_ASSISTANT || calls == NULL) {
			if (transcript_add(t, (enum chat_role)i,
			    str_item(m, "content"),
			    str_item(m, "tool_call_id")) == -1)
				return -1;
			continue;
		}
		if ((text = cJSON_PrintUnformatted(calls)) == NULL)
			return -1;
		if (openai_calls_parse(text, &c, &n) == -1) {
			cJSON_free(text);
			return -1;
		}
		cJSON_free(text);
		if (transcript_add_calls(t, str_item(m, "content"), c,
		    n) == -1)
			return -1;
	}
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct model_reply	 r;
	struct transcript	 t;
	cJSON			*messages;
	char			*json;

	memset(&t, 0, sizeof(t));
	json = fuzz_bytes(data, size);
	messages = cJSON_ParseWithLength(json, size);
	if (cJSON_IsArray(messages) && read_messages(messages, &t) == 0) {
		reply_init(&r);
		FUZZ_CHECK(offline_complete(&t, &r) == 0);
		check_reply(&r, text_utf8_valid(json, size));
		reply_free(&r);
	}
	transcript_free(&t);
	cJSON_Delete(messages);
	free(json);
	return 0;
}
