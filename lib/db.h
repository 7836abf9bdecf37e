/* db.h: the worker's PostgreSQL connection and every SQL statement; a
 * turn's statements are calls of the PL/pgSQL functions in schema.sql.
 *
 * One PGconn per worker, opened lazily and reopened after a failure; no
 * session state survives a statement or a pipeline (pgbouncer transaction
 * mode): no SET, no named prepared statements, no temporary tables. Every
 * statement on user data matches user_id. A database failure is logged to
 * stderr with its libpq text and reported as 503 "database_unavailable".
 *
 * DATABASE_URL may list several hosts (a primary and its standbys, with
 * target_session_attrs=read-write): when the database changes under a
 * statement (the connection lost, the server going away, the node now
 * read-only), the connection is dropped and the statement runs once more
 * on a new one, through the list, where that cannot apply it twice
 * (failover.h): the request waits a few seconds at most for a primary,
 * then gets its 503. */
#ifndef DB_H
#define DB_H

#include <stddef.h>

#include "err.h"
#include "history.h"
#include "reply.h"

/* Closes the worker's connection at exit. */
void	 db_cleanup(void);

/* A request begins: the time it may spend looking for a new primary
 * (after a statement failed because the database changed under it) is
 * counted from zero again. */
void	 db_request_begin(void);

/* 0 if the database answers a trivial query, else -1 with err 503. */
int	 db_ping(struct chat_err *err);

/* What the first round trip of a turn returns: a new turn (the message
 * stored, the history before it), or the turn that first used the same
 * Idempotency-Key (nothing stored). Rows are newest first; strings
 * belong to the struct until db_turn_free(). */
struct db_turn {
	int		 prior;		/* 1: an earlier turn, as below */
	const char	*request_hash;	/* prior: what it was asked */
	int		 running;	/* prior: its lease still runs */
	int		 done;		/* prior: its answer is stored */
	long long	 conversation_id;
	long long	 user_message_id;
	struct hist_msg	*history;	/* before the user message */
	size_t		 nhistory;
	struct hist_msg	*own;		/* db_turn_load(): the turn's own */
	size_t		 nown;		/* messages, oldest first */
	struct model_usage own_usage;	/* what their model calls used */
	void		*res;		/* the PGresult the strings live in */
};

/* The per-user limits a turn starts under (0: none), checked in
 * db_turn_begin()'s one round trip. */
struct db_limits {
	long	 concurrent_turns;	/* running at once */
	long	 turns_per_minute;	/* started in any 60 s */
	long	 tokens_per_day;	/* prompt + completion, UTC day */
	long	 max_conversations;	/* stored, for a new one */
	long	 max_messages;		/* stored, all together */
	long	 lease_seconds;		/* a running turn counts this
					 * long after its last sign of
					 * life */
};

/* The limits of the configuration (config.h). */
void	 db_limits_of_config(struct db_limits *out);

/* One round trip. With idempotency_key NULL: checks the user's limits,
 * creates the conversation (conversation_id 0, titled from title) or
 * checks that it is the user's, stores the user message, counts the turn
 * as started and running, and reads at most max_history messages that
 * came before it. With a key: the same and the key recorded with
 * request_hash, unless the user already used the key; then nothing is
 * written and the earlier turn described (prior = 1), whatever the
 * limits say. stream: a streamed turn, whose live record (db_stream_put())
 * is made too, unless the turn is a prior one. 0, or -1 with err: 404
 * conversation_not_found, 409
 * turn_in_progress (a first attempt with the same key is storing its
 * message right now), 429 too_many_turns, rate_limited or
 * quota_exceeded with err->retry_after_s (nothing written), 503. */
int	 db_turn_begin(const char *user_id, long long conversation_id,
	    const char *title, const char *message, size_t max_history,
	    const char *idempotency_key, const char *request_hash,
	    const struct db_limits *limits, int stream, struct db_turn *out,
	    struct chat_err *err);

/* One round trip: reads back the turn of the user's key: its own stored
 * messages (assistant calls, tool results, the answer) and the window of
 * max_history messages before it. take_over 0 only reads (a replay of a
 * finished turn); 1 also takes the turn's lease, and fails with 409
 * turn_in_progress when its attempt still holds it. -1 with err. */
int	 db_turn_load(const char *user_id, const char *idempotency_key,
	    size_t max_history, int take_over, struct db_turn *out,
	    struct chat_err *err);

/* A failed attempt of the turn answering user_message_id stops counting
 * as running (0: no turn's entry goes) and, with its key
 * (idempotency_key not NULL), gives up its lease, so a retry need not
 * wait for it to run out. Best effort: a failure is only logged. */
void	 db_turn_release(const char *user_id, const char *idempotency_key,
	    long long user_message_id);

/* Releases what db_turn_begin() or db_turn_load() filled; harmless on a
 * zeroed struct. */
void	 db_turn_free(struct db_turn *t);

/* One tool call of a round, as tools_prepare() makes it. */
struct db_tool_call {
	const char	*call_id;	/* the model's tool_call id */
	const char	*function;	/* the tool's SQL function, static;
					 * NULL: none, the result is fallback */
	char		*args;		/* what it reads: a JSON object */
	char		*fallback;	/* JSON stored when it gives none */
	char		*result;	/* out: the stored result */
};

/* One round trip, one transaction: locks the conversation, stores the
 * assistant message (content, may be NULL) asking for tool_calls (the
 * OpenAI JSON array as text) as round `round` of the turn answering
 * user_message_id with what its model call used (usage, added to the
 * user's day), which keeps the turn counting as running for another
 * lease, runs each call for user_id and stores its result as a tool
 * message (and renews the lease of idempotency_key's turn, when not
 * NULL). On success every calls[i].result is set (freed with the call,
 * tools_call_free()) and 0 is returned. -1 with err: 409
 * turn_in_progress when another attempt already stored this round of
 * this turn, 404 when the conversation is gone, 503; nothing of the
 * round is kept then. */
int	 db_round(const char *user_id, const char *idempotency_key,
	    long long conversation_id, long long user_message_id, int round,
	    const char *content, const struct model_usage *usage,
	    const char *tool_calls, struct db_tool_call *calls, size_t ncalls,
	    struct chat_err *err);

/* One round trip, one transaction, outside any conversation (a tool
 * called over MCP): counts a turn start against the user's
 * CHAT_USER_TURNS_PER_MINUTE and runs the tool's SQL function (a tools.c
 * row's, with the arguments its check wrote) for user_id. 0 and
 * *result, the tool's result as JSON text (caller frees; NULL when no
 * task of the user's matched), or -1 with err 429 rate_limited (and
 * retry_after_s; nothing ran) or 503. */
int	 db_tool(const char *user_id, const char *function, const char *args,
	    char **result, struct chat_err *err);

/* One round trip: stores the final answer of the turn that answers
 * user_message_id with what its model call used (usage; all -1 when the
 * answer is not the model's), bumps the conversation's updated_at, ends
 * the turn's running count and adds the answered turn and usage to the
 * user's day. A streamed turn (stream) also ends its live record there
 * when no one follows it: *stream_open is then 0, and 1 when the record
 * is left for the caller to end with db_stream_put() (followed, so its
 * last events must be stored; or not known to be ended). 0, or -1 with
 * err (409 when the turn already has its answer, 404, 503). */
int	 db_turn_finish(const char *user_id, long long conversation_id,
	    long long user_message_id, const char *answer,
	    const struct model_usage *usage, int stream, int *stream_open,
	    struct chat_err *err);

/* Counts one turn start of user_id against turns_per_minute (0: none),
 * in one round trip: 0 when counted; -1 with err 429 rate_limited and
 * err->retry_after_s when the user is at the limit (nothing counted), or
 * 503. For what starts model-free work on the user's behalf outside a
 * turn: an MCP tools/call counts as one turn. The check is the SQL
 * function chat_rate_check(user, turns_per_minute) (0, or the seconds
 * to wait), which a statement that runs the work can call first, so
 * that check and work stay one round trip. */
int	 db_rate_check(const char *user_id, long turns_per_minute,
	    struct chat_err *err);

/* The err of a chat_rate_check() that answered retry_after_s > 0. */
int	 db_rate_limited(int retry_after_s, struct chat_err *err);

/* The user's use (GET /chat/usage): answered turns and the tokens their
 * model calls reported, today and this month (UTC). */
struct db_usage {
	long long	 day_turns, day_prompt_tokens, day_completion_tokens;
	long long	 month_turns, month_prompt_tokens,
			 month_completion_tokens;
};
/* One round trip; 0, or -1 with err 503. */
int	 db_usage(const char *user_id, struct db_usage *out,
	    struct chat_err *err);

/* Rows of a browsing query. Strings are borrowed from the result and
 * live until db_rows_free(); NULL where the column is NULL. */
struct db_rows {
	int		 n;		/* rows */
	void		*res;		/* the PGresult */
};
const char	*db_rows_value(const struct db_rows *rows, int row, int col);
void		 db_rows_free(struct db_rows *rows);

/* The user's conversations by latest activity, newest first: at most
 * limit of them, those after the conversation before (0: from the top).
 * Columns: id, title, created_at, updated_at (ISO 8601 UTC). 0, or -1
 * with err 503. */
int	 db_conversations(const char *user_id, int limit, long long before,
	    struct db_rows *out, struct chat_err *err);

/* A conversation's messages, newest first: at most limit, with ids below
 * before (0: from the newest). Columns: id, role, content, tool_calls
 * (JSON text), tool_call_id, created_at. -1 with err 404 when the
 * conversation is not the user's, 503. */
int	 db_messages(const char *user_id, long long conversation_id,
	    int limit, long long before, struct db_rows *out,
	    struct chat_err *err);

/* The user's tasks, newest first: at most limit, with ids below before
 * (0: from the newest); status is "all", "pending" or "completed".
 * Columns: id, title, description, completed ("t" or "f"). 0, or -1 with
 * err 503. */
int	 db_tasks(const char *user_id, const char *status, int limit,
	    long long before, struct db_rows *out, struct chat_err *err);

/* Deletes the user's conversation and, by cascade, its messages. 0, or
 * -1 with err 404 (none such of the user's) or 503. */
int	 db_conversation_delete(const char *user_id,
	    long long conversation_id, struct chat_err *err);

/* A streamed turn's live record, which other workers read to follow it
 * (schema.sql: turn_streams). db_stream_put() writes it: the first call
 * makes it; events (the stream's bytes not yet stored) are stored only
 * when *followed comes back 1 (someone follows the stream; until then
 * the caller keeps them, to write them all once it is); done ends it.
 * db_stream_check() only reads the flags. *stop is set when someone
 * asked the turn to stop. 0, or -1 with err 503. */
int	 db_stream_put(const char *user_id, long long conversation_id,
	    long long user_message_id, const char *events, int done,
	    int *stop, int *followed, struct chat_err *err);
int	 db_stream_check(const char *user_id, long long user_message_id,
	    int *stop, int *followed, struct chat_err *err);

/* The user message of the running streamed turn of the user's
 * conversation, 0 when none runs; the stream is marked followed, so that
 * its worker stores its events. 0, or -1 with err 404 (not the user's
 * conversation) or 503. */
int	 db_stream_follow(const char *user_id, long long conversation_id,
	    long long *user_message_id, struct chat_err *err);

/* What a watcher reads of a streamed turn: the events written after
 * batch `after` (0: from the start). Strings are borrowed from the
 * result until db_stream_free(). */
struct db_stream {
	int		 found;		/* 0: no such record (cleared) */
	const char	*events;	/* the new events ("" when none) */
	size_t		 len;
	int		 batches;	/* the last batch read: the next after */
	int		 done;		/* the stream has ended */
	int		 alive;		/* its worker still holds it */
	void		*res;
};
int	 db_stream_events(const char *user_id, long long user_message_id,
	    int after, struct db_stream *out, struct chat_err *err);
void	 db_stream_free(struct db_stream *s);

/* Asks the running streamed turns of the user's conversation to stop.
 * 0, or -1 with err 404 (not the user's conversation) or 503. */
int	 db_stream_stop(const char *user_id, long long conversation_id,
	    struct chat_err *err);

#endif
