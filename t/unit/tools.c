/* t/unit/tools.c: tools_prepare() turns a model's call into a database
 * operation or a tool error, as a table: name and arguments in; the
 * operation, its key fields, or the error text out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "http.h"
#include "tools.h"

static const struct {
	const char	*test, *name, *arguments;
	int		 op;		/* enum db_tool_op */
	long long	 task_id;
	const char	*title;		/* expected, or NULL */
	const char	*error;		/* a substring of the tool error */
} cases[] = {
	{ "add with title", "add_task", "{\"title\":\"Buy milk\"}",
	  DB_TOOL_ADD, 0, "Buy milk", NULL },
	{ "add with description", "add_task",
	  "{\"title\":\"T\",\"description\":\"D\"}", DB_TOOL_ADD, 0, "T",
	  NULL },
	{ "add without title", "add_task", "{}", DB_TOOL_NONE, 0, NULL,
	  "missing required argument: title" },
	{ "add with blank title", "add_task", "{\"title\":\"  \"}",
	  DB_TOOL_NONE, 0, NULL, "must not be empty" },
	{ "add with numeric title", "add_task", "{\"title\":5}", DB_TOOL_NONE,
	  0, NULL, "title must be a string" },
	{ "add with NUL in title", "add_task", "{\"title\":\"a\\u0000b\"}",
	  DB_TOOL_NONE, 0, NULL, "NUL" },
	{ "list default", "list_tasks", "{}", DB_TOOL_LIST, 0, NULL, NULL },
	{ "list bad status", "list_tasks", "{\"status\":\"done\"}",
	  DB_TOOL_NONE, 0, NULL, "status must be" },
	{ "complete by number", "complete_task", "{\"task_id\":3}",
	  DB_TOOL_COMPLETE, 3, NULL, NULL },
	{ "complete by string", "complete_task", "{\"task_id\":\"12\"}",
	  DB_TOOL_COMPLETE, 12, NULL, NULL },
	{ "task_id with a sign", "delete_task", "{\"task_id\":\"+3\"}",
	  DB_TOOL_NONE, 0, NULL, "positive integer" },
	{ "task_id with a space", "delete_task", "{\"task_id\":\" 3\"}",
	  DB_TOOL_NONE, 0, NULL, "positive integer" },
	{ "task_id out of range", "delete_task",
	  "{\"task_id\":\"99999999999999999999\"}", DB_TOOL_NONE, 0, NULL,
	  "positive integer" },
	{ "task_id fractional", "delete_task", "{\"task_id\":1.5}",
	  DB_TOOL_NONE, 0, NULL, "positive integer" },
	{ "task_id zero", "delete_task", "{\"task_id\":0}", DB_TOOL_NONE, 0,
	  NULL, "positive integer" },
	{ "update needs a change", "update_task", "{\"task_id\":1}",
	  DB_TOOL_NONE, 0, NULL, "new title or description" },
	{ "update title", "update_task", "{\"task_id\":1,\"title\":\"New\"}",
	  DB_TOOL_UPDATE, 1, "New", NULL },
	{ "arguments not JSON", "add_task", "{title: x}", DB_TOOL_NONE, 0,
	  NULL, "JSON object" },
	{ "arguments an array", "add_task", "[]", DB_TOOL_NONE, 0, NULL,
	  "JSON object" },
	{ "unknown tool", "send_email", "{}", DB_TOOL_NONE, 0, NULL,
	  "unknown tool: send_email" },
	/* Found by fuzz/tools.c: cut inside the "é", it made invalid UTF-8
	 * that PostgreSQL refused, failing the turn. */
	{ "unknown long name cut on a character boundary",
	  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	  "\xc3\xa9", "{}", DB_TOOL_NONE, 0, NULL, "unknown tool: xxx" },
};

static int
check(size_t i)
{
	struct model_call	 call;
	struct db_tool_call	 out;
	cJSON			*args = NULL;
	char			*owned = NULL;
	int			 ok;

	call.id = "call_1";
	call.name = (char *)cases[i].name;
	call.arguments = (char *)cases[i].arguments;
	if (tools_prepare(&call, &args, &owned, &out) == -1)
		return 0;
	ok = (int)out.op == cases[i].op && out.task_id == cases[i].task_id &&
	    strcmp(out.call_id, "call_1") == 0 && out.fallback != NULL &&
	    http_utf8_valid(out.fallback, strlen(out.fallback));
	if (cases[i].title != NULL)
		ok = ok && out.title != NULL &&
		    strcmp(out.title, cases[i].title) == 0;
	if (cases[i].error != NULL)
		ok = ok && strstr(out.fallback, cases[i].error) != NULL;
	cJSON_Delete(args);
	free(owned);
	return ok;
}

int
main(void)
{
	size_t	 i, n = sizeof(cases) / sizeof(cases[0]);

	printf("1..%zu\n", n + 1);
	for (i = 0; i < n; i++)
		printf("%sok %zu - %s\n", check(i) ? "" : "not ", i + 1,
		    cases[i].test);
	printf("%sok %zu - five definitions, built once\n",
	    cJSON_GetArraySize(tools_definitions()) == 5 &&
	    tools_definitions() == tools_definitions() ? "" : "not ", n + 1);
	tools_cleanup();
	return 0;
}
