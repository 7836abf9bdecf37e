/* tools.h: the five task tools the model may call, as a table of name,
 * JSON schema and argument reader. Which user a tool acts for is never
 * the model's choice: the caller passes the authenticated one to db.c. */
#ifndef TOOLS_H
#define TOOLS_H

#include "db.h"
#include "model.h"

struct cJSON;

/* The OpenAI "tools" array: five function definitions with JSON schemas.
 * Built on the first call and kept for the worker's life, since it never
 * changes: borrowed, NULL on ENOMEM. tools_cleanup() frees it at exit. */
const struct cJSON	*tools_definitions(void);
void			 tools_cleanup(void);

/* Turns the model's call into a database operation in *out (whose
 * strings are borrowed from *args and call, or static). A bad or unknown
 * call becomes DB_TOOL_NONE with an {"error": ...} fallback, never a
 * failure. *args receives the parsed arguments (caller frees with
 * cJSON_Delete, may be NULL) and *owned a string the caller free()s
 * after the round (the error JSON). 0, or -1 on ENOMEM. */
int	 tools_prepare(const struct model_call *call, struct cJSON **args,
	    char **owned, struct db_tool_call *out);

#endif
