/* tools.h: the five task tools, one row each: the name and description
 * the model reads, the JSON schemas of its arguments and its result, the
 * check of a call's arguments, and the function in schema.sql that runs
 * it. The model request (openai.c), the argument checks (here) and, later,
 * any other front that offers the tools read the same rows. Which user a
 * tool acts for is never the model's choice: the caller passes the
 * authenticated one to db.c.
 *
 * A sixth tool is one more row here, one more tool_<name>() function in
 * schema.sql, and its phrases in the offline model (offline.c). */
#ifndef TOOLS_H
#define TOOLS_H

#include <stddef.h>

#include "db.h"
#include "reply.h"

struct cJSON;

struct tool {
	const char	*name;
	const char	*description;
	const char	*input_schema;	/* JSON Schema text of the arguments */
	const char	*output_schema;	/* JSON Schema text of the result */
	const char	*wrap_key;	/* a result that is not an object (a
					 * list): the key a front that needs
					 * an object (MCP's structuredContent)
					 * puts it under; NULL for objects */
	const char	*sql_function;	/* in schema.sql: (user, args jsonb)
					 * returns the result text, or NULL
					 * when no task matched */
	/* Checks the call's arguments (in, a JSON object) and puts what
	 * the SQL function reads into out (an empty object): 0, or -1
	 * with a reason for the model written into why. */
	int		(*check)(const struct cJSON *in, struct cJSON *out,
			    char *why, size_t whylen);
};

extern const struct tool	 tools[];
extern const size_t		 ntools;

/* The row named name, or NULL. */
const struct tool	*tools_find(const char *name);

/* Checks the arguments of a call of tool (args, any JSON value; NULL
 * when none were given, which reads as {}): 0 with *args_text, what the
 * SQL function reads (caller frees), and *task_id (0 when the tool takes
 * none); 1 when they are refused, with a reason for the caller of the
 * tool written into why; -1 on ENOMEM. Arguments the tool does not know
 * (a "user_id" among them) are dropped: the user is never the caller's
 * choice. */
int	 tools_check(const struct tool *tool, const struct cJSON *args,
	    char **args_text, long long *task_id, char *why, size_t whylen);

/* What to say when a tool's SQL function gives no result: no task of
 * the user's had task_id (0: the tool takes none). */
void	 tools_no_result(long long task_id, char *why, size_t whylen);

/* Turns the model's call into what db_round() runs: the tool's function
 * with checked arguments, or, for a bad or unknown call, no function and
 * an {"error": ...} fallback; never a failure. out->call_id is borrowed
 * from call; release out with tools_call_free(). 0, or -1 on ENOMEM. */
int	 tools_prepare(const struct model_call *call,
	    struct db_tool_call *out);

/* Makes a prepared call one that is not run: its result is {"error":
 * why} (a call past the round's CHAT_MAX_TOOL_CALLS). 0, or -1 on
 * ENOMEM (c unchanged). */
int	 tools_refuse(struct db_tool_call *c, const char *why);

/* Frees what tools_prepare() and db_round() put in c. */
void	 tools_call_free(struct db_tool_call *c);

#endif
