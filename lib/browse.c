/* browse.c: paging through a user's conversations, messages and tasks,
 * and deleting a conversation: query checks and reply JSON; SQL in db.c. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "browse.h"
#include "db.h"
#include "url.h"
#include "text.h"

int
browse_paging(const char *query, int default_limit, int *limit,
    long long *before, struct chat_err *err)
{
	char		 value[32];
	long long	 v;
	int		 found;

	*limit = default_limit;
	*before = 0;
	if ((found = url_query_get(query, "limit", value,
	    sizeof(value))) != 0) {
		if (found == -1 || text_id_parse(value, &v) == -1 ||
		    v > BROWSE_LIMIT_MAX)
			return err_set(err, 400, "invalid_limit", "limit must "
			    "be an integer from 1 to %d.", BROWSE_LIMIT_MAX);
		*limit = (int)v;
	}
	if ((found = url_query_get(query, "before", value,
	    sizeof(value))) != 0) {
		if (found == -1 || text_id_parse(value, &v) == -1)
			return err_set(err, 400, "invalid_before", "before must "
			    "be an id from a previous page's next_before.");
		*before = v;
	}
	return 0;
}

/* Adds a column as a JSON string, or null. */
static int
add_text(cJSON *o, const char *name, const char *value)
{
	return (value != NULL ? cJSON_AddStringToObject(o, name, value) :
	    cJSON_AddNullToObject(o, name)) != NULL ? 0 : -1;
}

static int
add_id(cJSON *o, const char *name, const char *value)
{
	return text_json_add_int(o, name, strtoll(value, NULL, 10)) != NULL ?
	    0 : -1;
}

/* The page and its cursor: rows holds up to limit + 1, the extra one
 * only saying that there is more. */
static cJSON *
page(const char *key, const struct db_rows *rows, int limit,
    int (*item)(cJSON *, const struct db_rows *, int))
{
	cJSON	*reply, *array, *o;
	int	 i, n = rows->n > limit ? limit : rows->n;

	if ((reply = cJSON_CreateObject()) == NULL ||
	    (array = cJSON_AddArrayToObject(reply, key)) == NULL)
		goto fail;
	for (i = 0; i < n; i++) {
		if ((o = cJSON_CreateObject()) == NULL)
			goto fail;
		cJSON_AddItemToArray(array, o);
		if (item(o, rows, i) == -1)
			goto fail;
	}
	if (rows->n > limit ? add_id(reply, "next_before",
	    db_rows_value(rows, n - 1, 0)) == -1 :
	    cJSON_AddNullToObject(reply, "next_before") == NULL)
		goto fail;
	return reply;
fail:
	cJSON_Delete(reply);
	return NULL;
}

static int
conversation_item(cJSON *o, const struct db_rows *rows, int i)
{
	if (add_id(o, "id", db_rows_value(rows, i, 0)) == -1 ||
	    add_text(o, "title", db_rows_value(rows, i, 1)) == -1 ||
	    add_text(o, "created_at", db_rows_value(rows, i, 2)) == -1 ||
	    add_text(o, "updated_at", db_rows_value(rows, i, 3)) == -1)
		return -1;
	return 0;
}

static int
message_item(cJSON *o, const struct db_rows *rows, int i)
{
	const char	*calls = db_rows_value(rows, i, 3);
	cJSON		*parsed;

	if (add_id(o, "id", db_rows_value(rows, i, 0)) == -1 ||
	    add_text(o, "role", db_rows_value(rows, i, 1)) == -1 ||
	    add_text(o, "content", db_rows_value(rows, i, 2)) == -1)
		return -1;
	if (calls == NULL) {
		if (cJSON_AddNullToObject(o, "tool_calls") == NULL)
			return -1;
	} else {
		if ((parsed = text_json_parses(calls)) == NULL)
			return -1;
		cJSON_AddItemToObject(o, "tool_calls", parsed);
	}
	if (add_text(o, "tool_call_id", db_rows_value(rows, i, 4)) == -1 ||
	    add_text(o, "created_at", db_rows_value(rows, i, 5)) == -1)
		return -1;
	return 0;
}

int
browse_conversations(const char *user_id, const char *query, cJSON **reply,
    struct chat_err *err)
{
	struct db_rows	 rows;
	long long	 before;
	int		 limit;

	if (browse_paging(query, BROWSE_CONVERSATIONS_DEFAULT, &limit,
	    &before, err) == -1 ||
	    db_conversations(user_id, limit + 1, before, &rows, err) == -1)
		return -1;
	*reply = page("conversations", &rows, limit, conversation_item);
	db_rows_free(&rows);
	return *reply != NULL ? 0 : err_oom(err);
}

int
browse_messages(const char *user_id, long long conversation_id,
    const char *query, cJSON **reply, struct chat_err *err)
{
	struct db_rows	 rows;
	long long	 before;
	int		 limit;

	if (browse_paging(query, BROWSE_MESSAGES_DEFAULT, &limit, &before,
	    err) == -1 ||
	    db_messages(user_id, conversation_id, limit + 1, before, &rows,
	    err) == -1)
		return -1;
	*reply = page("messages", &rows, limit, message_item);
	db_rows_free(&rows);
	return *reply != NULL ? 0 : err_oom(err);
}

static int
task_item(cJSON *o, const struct db_rows *rows, int i)
{
	const char	*completed = db_rows_value(rows, i, 3);

	if (add_id(o, "id", db_rows_value(rows, i, 0)) == -1 ||
	    add_text(o, "title", db_rows_value(rows, i, 1)) == -1 ||
	    add_text(o, "description", db_rows_value(rows, i, 2)) == -1 ||
	    cJSON_AddBoolToObject(o, "completed", completed != NULL &&
	    strcmp(completed, "t") == 0) == NULL)
		return -1;
	return 0;
}

/* The status filter's words, as list_tasks takes them. */
static const char *const task_statuses[] = { "all", "pending", "completed" };

static int
task_status(const char *query, const char **status, struct chat_err *err)
{
	char	 value[16];
	size_t	 i;
	int	 found;

	*status = task_statuses[0];
	if ((found = url_query_get(query, "status", value,
	    sizeof(value))) == 0)
		return 0;
	for (i = 0; found == 1 && i < sizeof(task_statuses) /
	    sizeof(task_statuses[0]); i++)
		if (strcmp(value, task_statuses[i]) == 0) {
			*status = task_statuses[i];
			return 0;
		}
	return err_set(err, 400, "invalid_status", "status must be all, "
	    "pending or completed.");
}

int
browse_tasks(const char *user_id, const char *query, cJSON **reply,
    struct chat_err *err)
{
	struct db_rows	 rows;
	const char	*status;
	long long	 before;
	int		 limit;

	if (task_status(query, &status, err) == -1 ||
	    browse_paging(query, BROWSE_TASKS_DEFAULT, &limit, &before,
	    err) == -1 ||
	    db_tasks(user_id, status, limit + 1, before, &rows, err) == -1)
		return -1;
	*reply = page("tasks", &rows, limit, task_item);
	db_rows_free(&rows);
	return *reply != NULL ? 0 : err_oom(err);
}

int
browse_delete(const char *user_id, long long conversation_id,
    struct chat_err *err)
{
	return db_conversation_delete(user_id, conversation_id, err);
}
