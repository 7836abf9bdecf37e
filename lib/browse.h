/* browse.h: reading back conversations, messages and tasks a page at a
 * time (GET /chat/conversations, GET /chat/conversations/{id}/messages,
 * GET /chat/tasks) and deleting a conversation. Keyset paging: ?limit=N&before=ID, and the
 * reply's "next_before" is the ID to pass for the next page (null at the
 * end), so a page never skips or repeats rows as new ones arrive. */
#ifndef BROWSE_H
#define BROWSE_H

#include "err.h"

struct cJSON;

#define BROWSE_LIMIT_MAX		100
#define BROWSE_CONVERSATIONS_DEFAULT	20
#define BROWSE_MESSAGES_DEFAULT		50
#define BROWSE_TASKS_DEFAULT		50

/* Reads limit and before from a query string. Absent: the default and 0.
 * limit must be 1..BROWSE_LIMIT_MAX, before a positive integer; else -1
 * with err 400. Pure, for the handlers and the tests. */
int	 browse_paging(const char *query, int default_limit, int *limit,
	    long long *before, struct chat_err *err);

/* {"conversations": [...], "next_before": id or null}; the caller
 * cJSON_Delete()s *reply. 0, or -1 with err 400 or 503. */
int	 browse_conversations(const char *user_id, const char *query,
	    struct cJSON **reply, struct chat_err *err);

/* {"messages": [...], "next_before": id or null}. -1 with err 400, 404
 * (not the user's conversation, exactly as for one that does not exist)
 * or 503. */
int	 browse_messages(const char *user_id, long long conversation_id,
	    const char *query, struct cJSON **reply, struct chat_err *err);

/* {"tasks": [{"id", "title", "description", "completed"}], "next_before":
 * id or null}: the user's tasks, newest first, in list_tasks' item shape.
 * ?status=all (the default), pending or completed. -1 with err 400 (a bad
 * status, limit or before) or 503. */
int	 browse_tasks(const char *user_id, const char *query,
	    struct cJSON **reply, struct chat_err *err);

/* Deletes the conversation and its messages. -1 with err 404 or 503. */
int	 browse_delete(const char *user_id, long long conversation_id,
	    struct chat_err *err);

#endif
