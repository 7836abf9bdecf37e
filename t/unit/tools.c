/* t/unit/tools.c: tools_prepare() turns a model's call into a call of a
 * tool's SQL function or a tool error, as a table: name and arguments in;
 * the function, its checked arguments, or the error text out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "reply.h"
#include "text.h"
#include "tools.h"

static const struct {
	const char	*test, *name, *arguments;
	const char	*function;	/* NULL: refused */
	long long	 task_id;
	const char	*title;		/* expected, or NULL */
	const char	*error;		/* a substring of the tool error */
} cases[] = {
	{ "add with title", "add_task", "{\"title\":\"Buy milk\"}",
	  "tool_add_task", 0, "Buy milk", NULL },
	{ "add with description", "add_task",
	  "{\"title\":\"T\",\"description\":\"D\"}", "tool_add_task", 0, "T",
	  NULL },
	{ "add without title", "add_task", "{}", NULL, 0, NULL,
	  "missing required argument: title" },
	{ "add with blank title", "add_task", "{\"title\":\"  \"}",
	  NULL, 0, NULL, "must not be empty" },
	{ "add with numeric title", "add_task", "{\"title\":5}", NULL,
	  0, NULL, "title must be a string" },
	{ "add with NUL in title", "add_task", "{\"title\":\"a\\u0000b\"}",
	  NULL, 0, NULL, "NUL" },
	{ "list default", "list_tasks", "{}", "tool_list_tasks", 0, NULL, NULL },
	{ "list bad status", "list_tasks", "{\"status\":\"done\"}",
	  NULL, 0, NULL, "status must be" },
	{ "complete by number", "complete_task", "{\"task_id\":3}",
	  "tool_complete_task", 3, NULL, NULL },
	{ "complete by string", "complete_task", "{\"task_id\":\"12\"}",
	  "tool_complete_task", 12, NULL, NULL },
	{ "task_id with a sign", "delete_task", "{\"task_id\":\"+3\"}",
	  NULL, 0, NULL, "positive integer" },
	{ "task_id with a space", "delete_task", "{\"task_id\":\" 3\"}",
	  NULL, 0, NULL, "positive integer" },
	{ "task_id out of range", "delete_task",
	  "{\"task_id\":\"99999999999999999999\"}", NULL, 0, NULL,
	  "positive integer" },
	{ "task_id fractional", "delete_task", "{\"task_id\":1.5}",
	  NULL, 0, NULL, "positive integer" },
	{ "task_id zero", "delete_task", "{\"task_id\":0}", NULL, 0,
	  NULL, "positive integer" },
	{ "update needs a change", "update_task", "{\"task_id\":1}",
	  NULL, 0, NULL, "new title or description" },
	{ "update title", "update_task", "{\"task_id\":1,\"title\":\"New\"}",
	  "tool_update_task", 1, "New", NULL },
	{ "arguments not JSON", "add_task", "{title: x}", NULL, 0,
	  NULL, "JSON object" },
	{ "arguments an array", "add_task", "[]", NULL, 0, NULL,
	  "JSON object" },
	{ "arguments with bytes after the object", "add_task",
	  "{\"title\":\"x\"}}", NULL, 0, NULL, "JSON object" },
	{ "arguments followed by a second object", "complete_task",
	  "{\"task_id\":1} {\"task_id\":2}", NULL, 0, NULL, "JSON object" },
	{ "unknown tool", "send_email", "{}", NULL, 0, NULL,
	  "unknown tool: send_email" },
	/* Found by fuzz/tools.c: cut inside the "é", it made invalid UTF-8
	 * that PostgreSQL refused, failing the turn. */
	{ "unknown long name cut on a character boundary",
	  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	  "\xc3\xa9", "{}", NULL, 0, NULL, "unknown tool: xxx" },
};

static int
same(const char *a, const char *b)
{
	return (a == NULL && b == NULL) ||
	    (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static int
check(size_t i)
{
	struct model_reply	 r;
	struct db_tool_call	 out;
	const cJSON		*v;
	cJSON			*args;
	long long		 task_id = 0;
	int			 ok;

	reply_init(&r);
	if (reply_add_call(&r, 0, "call_1", cases[i].name,
	    cases[i].arguments, strlen(cases[i].arguments)) == -1 ||
	    tools_prepare(&r.calls[0], &out) == -1)
		abort();
	args = text_json_parses(out.args);
	v = cJSON_GetObjectItemCaseSensitive(args, "task_id");
	if (cJSON_IsNumber(v))
		task_id = (long long)v->valuedouble;
	v = cJSON_GetObjectItemCaseSensitive(args, "title");
	ok = same(out.function, cases[i].function) &&
	    task_id == cases[i].task_id &&
	    (out.function == NULL) == (out.args == NULL) &&
	    (out.args == NULL || cJSON_IsObject(args)) &&
	    strcmp(out.call_id, "call_1") == 0 && out.fallback != NULL &&
	    text_utf8_valid(out.fallback, strlen(out.fallback));
	if (cases[i].title != NULL)
		ok = ok && cJSON_IsString(v) &&
		    strcmp(v->valuestring, cases[i].title) == 0;
	if (cases[i].error != NULL)
		ok = ok && strstr(out.fallback, cases[i].error) != NULL;
	cJSON_Delete(args);
	tools_call_free(&out);
	reply_free(&r);
	return ok;
}

int
main(void)
{
	size_t	 i, n = sizeof(cases) / sizeof(cases[0]);

	printf("1..%zu\n", n + 2);
	for (i = 0; i < n; i++)
		printf("%sok %zu - %s\n", check(i) ? "" : "not ", i + 1,
		    cases[i].test);
	printf("%sok %zu - five tools, each with its function\n",
	    ntools == 5 && tools_find("add_task") == &tools[0] &&
	    tools_find("update_task") != NULL &&
	    tools_find("send_email") == NULL ? "" : "not ", n + 1);
	for (i = 0; i < ntools; i++)
		if (strncmp(tools[i].sql_function, "tool_", 5) != 0 ||
		    strcmp(tools[i].sql_function + 5, tools[i].name) != 0)
			break;
	printf("%sok %zu - each function is tool_<name>\n",
	    i == ntools ? "" : "not ", n + 2);
	return 0;
}
