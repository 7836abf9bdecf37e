/* tools.c: the five task tools as a table (tools.h), and the checks that
 * turn a model's call into a call of the tool's SQL function. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "config.h"
#include "text.h"
#include "tools.h"

/* Bounds on what a model may store: generous for a todo list, small
 * enough that one tool call cannot fill the database. */
#define TITLE_MAX_BYTES		500
#define DESCRIPTION_MAX_BYTES	4000

static int check_add(const cJSON *, cJSON *, char *, size_t);
static int check_list(const cJSON *, cJSON *, char *, size_t);
static int check_task_id(const cJSON *, cJSON *, char *, size_t);
static int check_update(const cJSON *, cJSON *, char *, size_t);

#define TASK_ID_SCHEMA \
	"\"task_id\":{\"type\":\"integer\",\"description\":\"Id of the task\"}"
/* What add, complete, delete and update answer. */
#define CHANGE_SCHEMA \
	"{\"type\":\"object\",\"properties\":{" \
	"\"task_id\":{\"type\":\"integer\"}," \
	"\"status\":{\"type\":\"string\"}," \
	"\"title\":{\"type\":\"string\"}}," \
	"\"required\":[\"task_id\",\"status\",\"title\"]}"

/* The arguments as the original specification gives them; the SQL
 * functions are in schema.sql, under "The task tools". */
const struct tool tools[] = {
	{ "add_task",
	  "Create a new task on the user's todo list.",
	  "{\"type\":\"object\",\"properties\":{"
	  "\"title\":{\"type\":\"string\",\"description\":"
	  "\"Short title of the task\"},"
	  "\"description\":{\"type\":\"string\",\"description\":"
	  "\"Optional longer description\"}},"
	  "\"required\":[\"title\"]}",
	  CHANGE_SCHEMA, NULL, "tool_add_task", check_add },
	{ "list_tasks",
	  "List the user's tasks, all of them or only pending or completed "
	  "ones.",
	  "{\"type\":\"object\",\"properties\":{"
	  "\"status\":{\"type\":\"string\","
	  "\"enum\":[\"all\",\"pending\",\"completed\"],"
	  "\"description\":\"Which tasks to list (default all)\"}}}",
	  "{\"type\":\"array\",\"items\":{\"type\":\"object\","
	  "\"properties\":{\"id\":{\"type\":\"integer\"},"
	  "\"title\":{\"type\":\"string\"},"
	  "\"description\":{\"type\":\"string\"},"
	  "\"completed\":{\"type\":\"boolean\"}},"
	  "\"required\":[\"id\",\"title\",\"description\",\"completed\"]}}",
	  "tasks", "tool_list_tasks", check_list },
	{ "complete_task",
	  "Mark one of the user's tasks as completed.",
	  "{\"type\":\"object\",\"properties\":{" TASK_ID_SCHEMA "},"
	  "\"required\":[\"task_id\"]}",
	  CHANGE_SCHEMA, NULL, "tool_complete_task", check_task_id },
	{ "delete_task",
	  "Delete one of the user's tasks.",
	  "{\"type\":\"object\",\"properties\":{" TASK_ID_SCHEMA "},"
	  "\"required\":[\"task_id\"]}",
	  CHANGE_SCHEMA, NULL, "tool_delete_task", check_task_id },
	{ "update_task",
	  "Change the title and/or the description of one of the user's "
	  "tasks.",
	  "{\"type\":\"object\",\"properties\":{" TASK_ID_SCHEMA ","
	  "\"title\":{\"type\":\"string\",\"description\":\"New title\"},"
	  "\"description\":{\"type\":\"string\",\"description\":"
	  "\"New description\"}},\"required\":[\"task_id\"]}",
	  CHANGE_SCHEMA, NULL, "tool_update_task", check_update },
};

const size_t ntools = sizeof(tools) / sizeof(tools[0]);

const struct tool *
tools_find(const char *name)
{
	size_t	 i;

	for (i = 0; i < ntools; i++)
		if (strcmp(name, tools[i].name) == 0)
			return &tools[i];
	return NULL;
}

/* A string argument: absent (or null) is an error when required, else
 * leaves out without it. */
static int
string_arg(const cJSON *in, const char *name, size_t max_bytes,
    int required, cJSON *out, char *why, size_t whylen)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(in, name);
	size_t		 len;

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
	len = strlen(v->valuestring);
	if (len > max_bytes || !text_utf8_valid(v->valuestring, len)) {
		snprintf(why, whylen, "%s must be valid text of at most %zu "
		    "bytes", name, max_bytes);
		return -1;
	}
	if (required && strspn(v->valuestring, " \t\r\n") == len) {
		snprintf(why, whylen, "%s must not be empty", name);
		return -1;
	}
	return cJSON_AddStringToObject(out, name, v->valuestring) != NULL ?
	    0 : -1;
}

/* task_id: a positive integer; models now and then send "3" for 3. */
static int
check_task_id(const cJSON *in, cJSON *out, char *why, size_t whylen)
{
	long long	 id;

	if (text_id_json(cJSON_GetObjectItemCaseSensitive(in, "task_id"), 1,
	    &id) == -1) {
		snprintf(why, whylen, "task_id must be a positive integer");
		return -1;
	}
	return cJSON_AddNumberToObject(out, "task_id", (double)id) != NULL ?
	    0 : -1;
}

static int
check_add(const cJSON *in, cJSON *out, char *why, size_t whylen)
{
	long	 max_tasks = config()->user_max_tasks;

	if (string_arg(in, "title", TITLE_MAX_BYTES, 1, out, why,
	    whylen) == -1 || string_arg(in, "description",
	    DESCRIPTION_MAX_BYTES, 0, out, why, whylen) == -1)
		return -1;
	/* CHAT_USER_MAX_TASKS, which tool_add_task() enforces under the
	 * user's row lock. */
	if (max_tasks > 0 && cJSON_AddNumberToObject(out, "max_tasks",
	    (double)max_tasks) == NULL) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	return 0;
}

static int
check_list(const cJSON *in, cJSON *out, char *why, size_t whylen)
{
	static const char *const statuses[] = { "all", "pending",
	    "completed" };
	const cJSON	*status;
	size_t		 i;

	if (string_arg(in, "status", 16, 0, out, why, whylen) == -1)
		return -1;
	if ((status = cJSON_GetObjectItemCaseSensitive(out, "status")) ==
	    NULL)
		return cJSON_AddStringToObject(out, "status", "all") != NULL ?
		    0 : -1;
	for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
		if (strcmp(status->valuestring, statuses[i]) == 0)
			return 0;
	snprintf(why, whylen, "status must be all, pending or completed");
	return -1;
}

static int
check_update(const cJSON *in, cJSON *out, char *why, size_t whylen)
{
	const cJSON	*title;

	if (check_task_id(in, out, why, whylen) == -1 ||
	    string_arg(in, "title", TITLE_MAX_BYTES, 0, out, why,
	    whylen) == -1 ||
	    string_arg(in, "description", DESCRIPTION_MAX_BYTES, 0, out, why,
	    whylen) == -1)
		return -1;
	title = cJSON_GetObjectItemCaseSensitive(out, "title");
	if (title == NULL &&
	    cJSON_GetObjectItemCaseSensitive(out, "description") == NULL) {
		snprintf(why, whylen, "give a new title or description");
		return -1;
	}
	if (title != NULL && strspn(title->valuestring, " \t\r\n") ==
	    strlen(title->valuestring)) {
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
tools_check(const struct tool *tool, const cJSON *args, char **args_text,
    long long *task_id, char *why, size_t whylen)
{
	cJSON		*none = NULL, *out;
	const cJSON	*id;
	int		 rc = 1;

	*args_text = NULL;
	*task_id = 0;
	why[0] = '\0';
	if (args == NULL && (args = none = cJSON_CreateObject()) == NULL)
		return -1;
	if (!cJSON_IsObject(args)) {
		snprintf(why, whylen, "arguments must be a JSON object");
		cJSON_Delete(none);
		return 1;
	}
	if ((out = cJSON_CreateObject()) == NULL)
		rc = -1;
	else if (tool->check(args, out, why, whylen) == 0) {
		id = cJSON_GetObjectItemCaseSensitive(out, "task_id");
		*task_id = cJSON_IsNumber(id) ? (long long)id->valuedouble : 0;
		rc = (*args_text = cJSON_PrintUnformatted(out)) != NULL ?
		    0 : -1;
	} else if (why[0] == '\0')	/* a check ran out of memory */
		rc = -1;
	cJSON_Delete(out);
	cJSON_Delete(none);
	return rc;
}

void
tools_no_result(long long task_id, char *why, size_t whylen)
{
	if (task_id > 0)
		snprintf(why, whylen, "task %lld not found", task_id);
	else
		snprintf(why, whylen, "no result");
}

/* Checks a known tool's arguments, as the model wrote them, into
 * *args_text: tools_check()'s answer. */
static int
check_call(const struct tool *tool, const char *arguments, char **args_text,
    long long *task_id, char *why, size_t whylen)
{
	cJSON	*in;
	int	 rc;

	in = text_json_parses(arguments);
	if (!cJSON_IsObject(in)) {
		snprintf(why, whylen, "arguments must be a JSON object");
		rc = 1;
	} else if (text_json_has_nul(arguments, strlen(arguments))) {
		snprintf(why, whylen, "arguments must not contain NUL "
		    "characters");
		rc = 1;
	} else
		rc = tools_check(tool, in, args_text, task_id, why, whylen);
	cJSON_Delete(in);
	return rc;
}

int
tools_prepare(const struct model_call *call, struct db_tool_call *out)
{
	const struct tool	*tool;
	long long		 task_id = 0;
	char			 why[160];
	int			 rc = 1;

	memset(out, 0, sizeof(*out));
	out->call_id = call->id;
	why[0] = '\0';
	if ((tool = tools_find(call->name)) == NULL)
		snprintf(why, sizeof(why), "unknown tool: %.*s",
		    utf8_prefix(call->name, 64), call->name);
	else if ((rc = check_call(tool, call->arguments.data, &out->args,
	    &task_id, why, sizeof(why))) == -1)
		return -1;
	if (rc == 0) {
		/* What the model hears when the function finds no task. */
		out->function = tool->sql_function;
		tools_no_result(task_id, why, sizeof(why));
	}
	if ((out->fallback = error_json(why)) == NULL) {
		tools_call_free(out);
		return -1;
	}
	return 0;
}

int
tools_refuse(struct db_tool_call *c, const char *why)
{
	char	*fallback;

	if ((fallback = error_json(why)) == NULL)
		return -1;
	free(c->fallback);
	c->fallback = fallback;
	c->function = NULL;
	return 0;
}

void
tools_call_free(struct db_tool_call *c)
{
	free(c->args);
	free(c->fallback);
	free(c->result);
	c->args = c->fallback = c->result = NULL;
}
