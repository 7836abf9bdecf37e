/* tools.c: the five task tools: their JSON schemas for the model, and the
 * checks that turn a model's call into a database operation. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "http.h"
#include "tools.h"

/* Bounds on what a model may store: generous for a todo list, small
 * enough that one tool call cannot fill the database. */
#define TITLE_MAX_BYTES		500
#define DESCRIPTION_MAX_BYTES	4000

static int read_add(const cJSON *, struct db_tool_call *, char *, size_t);
static int read_list(const cJSON *, struct db_tool_call *, char *, size_t);
static int read_task_id(const cJSON *, struct db_tool_call *, char *,
	    size_t);
static int read_update(const cJSON *, struct db_tool_call *, char *,
	    size_t);

/* The table: name, what the model reads about it, its JSON schema (as
 * the original specification gives the arguments), and the reader that
 * checks a call's arguments. A reader returns 0, or -1 having written a
 * reason for the model into why. */
static const struct {
	const char	*name;
	enum db_tool_op	 op;
	const char	*description;
	const char	*parameters;
	int		(*read)(const cJSON *, struct db_tool_call *, char *,
			    size_t);
} tools[] = {
	{ "add_task", DB_TOOL_ADD,
	  "Create a new task on the user's todo list.",
	  "{\"type\":\"object\",\"properties\":{"
	  "\"title\":{\"type\":\"string\",\"description\":"
	  "\"Short title of the task\"},"
	  "\"description\":{\"type\":\"string\",\"description\":"
	  "\"Optional longer description\"}},"
	  "\"required\":[\"title\"]}",
	  read_add },
	{ "list_tasks", DB_TOOL_LIST,
	  "List the user's tasks, all of them or only pending or completed "
	  "ones.",
	  "{\"type\":\"object\",\"properties\":{"
	  "\"status\":{\"type\":\"string\","
	  "\"enum\":[\"all\",\"pending\",\"completed\"],"
	  "\"description\":\"Which tasks to list (default all)\"}}}",
	  read_list },
	{ "complete_task", DB_TOOL_COMPLETE,
	  "Mark one of the user's tasks as completed.",
	  "{\"type\":\"object\",\"properties\":{"
	  "\"task_id\":{\"type\":\"integer\",\"description\":"
	  "\"Id of the task\"}},\"required\":[\"task_id\"]}",
	  read_task_id },
	{ "delete_task", DB_TOOL_DELETE,
	  "Delete one of the user's tasks.",
	  "{\"type\":\"object\",\"properties\":{"
	  "\"task_id\":{\"type\":\"integer\",\"description\":"
	  "\"Id of the task\"}},\"required\":[\"task_id\"]}",
	  read_task_id },
	{ "update_task", DB_TOOL_UPDATE,
	  "Change the title and/or the description of one of the user's "
	  "tasks.",
	  "{\"type\":\"object\",\"properties\":{"
	  "\"task_id\":{\"type\":\"integer\",\"description\":"
	  "\"Id of the task\"},"
	  "\"title\":{\"type\":\"string\",\"description\":\"New title\"},"
	  "\"description\":{\"type\":\"string\",\"description\":"
	  "\"New description\"}},\"required\":[\"task_id\"]}",
	  read_update },
};

#define NTOOLS	(sizeof(tools) / sizeof(tools[0]))

/* The definitions, built once: the same five every turn sends. */
static cJSON	*definitions;

static cJSON *
build_definitions(void)
{
	cJSON	*array, *tool, *fn, *params;
	size_t	 i;

	if ((array = cJSON_CreateArray()) == NULL)
		return NULL;
	for (i = 0; i < NTOOLS; i++) {
		if ((tool = cJSON_CreateObject()) == NULL)
			goto fail;
		cJSON_AddItemToArray(array, tool);
		if (cJSON_AddStringToObject(tool, "type", "function") == NULL ||
		    (fn = cJSON_AddObjectToObject(tool, "function")) == NULL ||
		    cJSON_AddStringToObject(fn, "name", tools[i].name) ==
		    NULL || cJSON_AddStringToObject(fn, "description",
		    tools[i].description) == NULL ||
		    (params = cJSON_Parse(tools[i].parameters)) == NULL)
			goto fail;
		cJSON_AddItemToObject(fn, "parameters", params);
	}
	return array;
fail:
	cJSON_Delete(array);
	return NULL;
}

/* The worker threads share the definitions, read only once built; the
 * lock covers the building, which a failure (ENOMEM) lets a later turn
 * try again. */
static pthread_mutex_t	definitions_lock = PTHREAD_MUTEX_INITIALIZER;

const cJSON *
tools_definitions(void)
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
tools_cleanup(void)
{
	cJSON_Delete(definitions);
	definitions = NULL;
}

/* An optional string argument: absent (or null) leaves *out NULL. */
static int
string_arg(const cJSON *args, const char *name, size_t max_bytes,
    int required, const char **out, char *why, size_t whylen)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(args, name);
	const char	*s, *end;
	size_t		 len;

	*out = NULL;
	if (v == NULL || cJSON_IsNull(v)) {
		if (!required)
			return 0;
		snprintf(why, whylen, "missing required argument: %s", name);
		return -1;
	}
	if (!cJSON_IsString(v)) {
		snprintf(why, whylen, "%s must be a string", name);
		return -1;
	}
	s = v->valuestring;
	len = strlen(s);
	if (len > max_bytes || !http_utf8_valid(s, len)) {
		snprintf(why, whylen, "%s must be valid text of at most %zu "
		    "bytes", name, max_bytes);
		return -1;
	}
	for (end = s + len; s < end && strchr(" \t\r\n", *s) != NULL; s++)
		;
	if (required && s == end) {
		snprintf(why, whylen, "%s must not be empty", name);
		return -1;
	}
	*out = v->valuestring;
	return 0;
}

/* task_id: a positive integer; models now and then send "3" for 3. */
static int
read_task_id(const cJSON *args, struct db_tool_call *out, char *why,
    size_t whylen)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(args, "task_id");
	char		*end;
	double		 d;
	long long	 id = 0;

	if (cJSON_IsNumber(v)) {
		d = v->valuedouble;
		if (d >= 1 && d <= 9007199254740991.0 && floor(d) == d)
			id = (long long)d;
	} else if (cJSON_IsString(v) && v->valuestring[0] >= '1' &&
	    v->valuestring[0] <= '9') {
		errno = 0;
		id = strtoll(v->valuestring, &end, 10);
		if (errno != 0 || *end != '\0' || id > 9007199254740991LL)
			id = 0;
	}
	if (id == 0) {
		snprintf(why, whylen, "task_id must be a positive integer");
		return -1;
	}
	out->task_id = id;
	return 0;
}

static int
read_add(const cJSON *args, struct db_tool_call *out, char *why,
    size_t whylen)
{
	if (string_arg(args, "title", TITLE_MAX_BYTES, 1, &out->title, why,
	    whylen) == -1)
		return -1;
	return string_arg(args, "description", DESCRIPTION_MAX_BYTES, 0,
	    &out->description, why, whylen);
}

static int
read_list(const cJSON *args, struct db_tool_call *out, char *why,
    size_t whylen)
{
	static const char *const statuses[] = { "all", "pending",
	    "completed" };
	const char	*status;
	size_t		 i;

	if (string_arg(args, "status", 16, 0, &status, why, whylen) == -1)
		return -1;
	if (status == NULL) {
		out->status = "all";
		return 0;
	}
	for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
		if (strcmp(status, statuses[i]) == 0) {
			out->status = statuses[i];
			return 0;
		}
	snprintf(why, whylen, "status must be all, pending or completed");
	return -1;
}

static int
read_update(const cJSON *args, struct db_tool_call *out, char *why,
    size_t whylen)
{
	if (read_task_id(args, out, why, whylen) == -1 ||
	    string_arg(args, "title", TITLE_MAX_BYTES, 0, &out->title, why,
	    whylen) == -1 ||
	    string_arg(args, "description", DESCRIPTION_MAX_BYTES, 0,
	    &out->description, why, whylen) == -1)
		return -1;
	if (out->title == NULL && out->description == NULL) {
		snprintf(why, whylen, "give a new title or description");
		return -1;
	}
	if (out->title != NULL && strspn(out->title, " \t\r\n") ==
	    strlen(out->title)) {
		snprintf(why, whylen, "title must not be empty");
		return -1;
	}
	return 0;
}

/* How many bytes of s, at most max, end on a character boundary: a name
 * quoted back to the model is cut short, never in mid-character (the
 * database refuses invalid UTF-8, and the turn with it). */
static int
utf8_prefix(const char *s, size_t max)
{
	size_t	 n = strlen(s);

	if (n <= max)
		return (int)n;
	n = max;
	while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	return (int)n;
}

/* {"error": why} as text the caller frees. */
static char *
error_json(const char *why)
{
	cJSON	*o;
	char	*text = NULL;

	if ((o = cJSON_CreateObject()) != NULL &&
	    cJSON_AddStringToObject(o, "error", why) != NULL)
		text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return text;
}

int
tools_prepare(const struct model_call *call, cJSON **args, char **owned,
    struct db_tool_call *out)
{
	char	 why[160];
	size_t	 i;

	memset(out, 0, sizeof(*out));
	out->call_id = call->id;
	*owned = NULL;
	*args = cJSON_Parse(call->arguments);
	for (i = 0; i < NTOOLS; i++)
		if (strcmp(call->name, tools[i].name) == 0)
			break;
	if (i == NTOOLS)
		snprintf(why, sizeof(why), "unknown tool: %.*s",
		    utf8_prefix(call->name, 64), call->name);
	else if (!cJSON_IsObject(*args))
		snprintf(why, sizeof(why), "arguments must be a JSON object");
	else if (http_json_has_nul(call->arguments, strlen(call->arguments)))
		snprintf(why, sizeof(why), "arguments must not contain NUL "
		    "characters");
	else if (tools[i].read(*args, out, why, sizeof(why)) == 0) {
		out->op = tools[i].op;
		if (out->task_id > 0)
			snprintf(why, sizeof(why), "task %lld not found",
			    out->task_id);
		else
			snprintf(why, sizeof(why), "no result");
		if ((*owned = error_json(why)) == NULL)
			return -1;
		out->fallback = *owned;
		return 0;
	}
	memset(out, 0, sizeof(*out));
	out->call_id = call->id;
	out->op = DB_TOOL_NONE;
	if ((*owned = error_json(why)) == NULL)
		return -1;
	out->fallback = *owned;
	return 0;
}
