/* db.h: the worker's PostgreSQL connection and every SQL statement.
 *
 * One PGconn per worker, opened lazily and reopened after a failure; no
 * session state survives a statement or a pipeline (pgbouncer transaction
 * mode): no SET, no named prepared statements, no temporary tables. Every
 * statement on user data matches user_id. A database failure is logged to
 * stderr with its libpq text and reported as 503 "database_unavailable". */
#ifndef DB_H
#define DB_H

#include <stddef.h>

#include "err.h"
#include "history.h"

struct cJSON;

/* Closes the worker's connection at exit. */
void	 db_cleanup(void);

/* 0 if the database answers a trivial query, else -1 with err 503. */
int	 db_ping(struct chat_err *err);

/* What the first round trip of a turn returns. The history rows are
 * newest first; their strings belong to the struct (db_turn_free()). */
struct db_turn {
	long long	 conversation_id;
	long long	 user_message_id;
	struct hist_msg	*history;
	size_t		 nhistory;
	void		*res;		/* the PGresult the strings live in */
};

/* One round trip: creates the conversation (conversation_id 0, titled
 * from title) or checks that it is the user's, stores the user message
 * and reads at most max_history messages that came before it, newest
 * first. 0, or -1 with err: 404 conversation_not_found, 503. */
int	 db_turn_begin(const char *user_id, long long conversation_id,
	    const char *title, const char *message, size_t max_history,
	    struct db_turn *out, struct chat_err *err);
/* Releases what db_turn_begin() filled; harmless on a zeroed struct. */
void	 db_turn_free(struct db_turn *t);

/* The task operations a tool call becomes (tools.c decides which). */
enum db_tool_op {
	DB_TOOL_ADD,		/* title, description */
	DB_TOOL_LIST,		/* status: "all", "pending", "completed" */
	DB_TOOL_COMPLETE,	/* task_id */
	DB_TOOL_DELETE,		/* task_id */
	DB_TOOL_UPDATE,		/* task_id, title and/or description */
	DB_TOOL_NONE,		/* no SQL: the result is fallback as is */
};

struct db_tool_call {
	enum db_tool_op	 op;
	const char	*call_id;	/* the model's tool_call id */
	long long	 task_id;
	const char	*title;		/* NULL: unchanged (update) */
	const char	*description;	/* NULL: unchanged, "" on add */
	const char	*status;
	const char	*fallback;	/* JSON stored when no task matched */
	char		*result;	/* out: the stored result; caller frees */
};

/* One round trip, one transaction: locks the conversation, stores the
 * assistant message asking for tool_calls (OpenAI JSON text), runs each
 * call for user_id and stores its result as a tool message. On success
 * every calls[i].result is set (caller frees) and 0 is returned. -1 with
 * err: 409 turn_in_progress when another attempt already stored this
 * round of this turn, 404 when the conversation is gone, 503; nothing of
 * the round is kept then. */
int	 db_round(const char *user_id, long long conversation_id,
	    long long user_message_id, int round, const char *tool_calls,
	    struct db_tool_call *calls, size_t ncalls, struct chat_err *err);

/* One round trip: stores the final answer of the turn that answers
 * user_message_id and bumps the conversation's updated_at. 0, or -1 with
 * err (409 when the turn already has its answer, 404, 503). */
int	 db_turn_finish(const char *user_id, long long conversation_id,
	    long long user_message_id, const char *answer,
	    struct chat_err *err);

#endif
