/* db.c: every SQL statement the service runs (see db.h for the round
 * trips of a turn), on the connection dbconn.c keeps. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "config.h"
#include "db.h"
#include "dbconn.h"
#include "failover.h"
#include "log.h"

/* The health check: the database answers and takes writes. A node that
 * does not (a standby, a demoted primary, a promoted one not yet
 * released by its manager: pg_auto_failover's stop_replication sets
 * default_transaction_read_only) is no primary, whatever a connection
 * kept from before the change says. */
static const char SQL_PING[] =
    "SELECT NOT pg_is_in_recovery()"
    " AND current_setting('transaction_read_only') = 'off'";

/* The one answer for a conversation that is not there or not the
 * caller's: the two must look the same. */
static int
no_conversation(struct chat_err *err)
{
	return err_set(err, 404, "conversation_not_found",
	    "No such conversation.");
}

/* The statements of a turn are functions in schema.sql, whose plans
 * PostgreSQL keeps per connection (see there); each carries its own
 * settings. The three that start or take up a turn return rows of one
 * shape, chat_turn_row, read by turn_rows() below. */
static const char SQL_TURN_BEGIN[] =
    "SELECT * FROM chat_turn_begin($1, $2, $3, $4, $5, $6, $7, $8, $9)";
static const char SQL_ROUND[] =
    "SELECT chat_round($1, $2, $3, $4, $5, $6, $7, $8)";
static const char SQL_TOOL[] =
    "SELECT chat_tool($1, $2, $3, $4, $5, $6, $7)";
/* A tool called over MCP, through the same task_tool() as chat_tool(). */
static const char SQL_MCP_TOOL[] =
    "SELECT result, retry_after FROM mcp_tool($1, $2, $3, $4)";
static const char SQL_TURN_FINISH[] =
    "SELECT chat_turn_finish($1, $2, $3, $4, $5, $6)";
static const char SQL_TURN_RESUME[] =
    "SELECT * FROM chat_turn_resume($1, $2, $3)";
static const char SQL_TURN_REPLAY[] =
    "SELECT * FROM chat_turn_replay($1, $2, $3)";
static const char SQL_RATE_CHECK[] =
    "SELECT chat_rate_check($1, $2)";
static const char SQL_USAGE[] =
    "SELECT day_turns, day_prompt, day_completion, month_turns,"
    " month_prompt, month_completion FROM chat_usage($1)";
/* A streamed turn's live record (schema.sql: turn_streams). */
static const char SQL_STREAM_PUT[] =
    "SELECT stop, followed FROM chat_stream_put($1, $2, $3, $4, $5)";
static const char SQL_STREAM_CHECK[] =
    "SELECT stop, followed FROM chat_stream_check($1, $2)";
static const char SQL_STREAM_FOLLOW[] =
    "SELECT user_message_id FROM chat_stream_follow($1, $2)";
static const char SQL_STREAM_EVENTS[] =
    "SELECT events, batches, done, alive FROM chat_stream_events($1, $2, $3)";
static const char SQL_STREAM_STOP[] =
    "SELECT chat_stream_stop($1, $2)";

/* A plain statement, with SQL_TRANSACTION_SETTINGS. */
static int
run(const char *sql, int n, const char *const *params, ExecStatusType want,
    enum failover_again again, PGresult **res, struct chat_err *err)
{
	return dbconn_execute(sql, 1, n, params, want, again, res, NULL, err);
}

/* A call of one of schema.sql's functions, which carry their settings. */
static int
call(const char *sql, int n, const char *const *params,
    enum failover_again again, PGresult **res, struct chat_err *err)
{
	return dbconn_execute(sql, 0, n, params, PGRES_TUPLES_OK, again, res, NULL,
	    err);
}

void
db_request_begin(void)
{
	dbconn_request_begin();
}

void
db_cleanup(void)
{
	dbconn_cleanup();
}

#define ALWAYS		FAILOVER_AGAIN_ALWAYS
#define IF_ROLLED_BACK	FAILOVER_AGAIN_IF_ROLLED_BACK

int
db_ping(struct chat_err *err)
{
	PGresult	*res;
	int		 try, writable = 0;

	/* A read-only node is a failover's 25006 without the error: the
	 * connection goes, and a new one through the list tries once more. */
	for (try = 0; try < 2 && !writable; try++) {
		if (run(SQL_PING, 0, NULL, PGRES_TUPLES_OK, ALWAYS, &res,
		    err) == -1)
			return -1;
		writable = PQntuples(res) == 1 && *PQgetvalue(res, 0, 0) == 't';
		PQclear(res);
		if (!writable)
			dbconn_drop();
	}
	if (!writable) {
		log_err("database: connected to a node that takes no writes");
		return err_set(err, 503, "database_unavailable",
		    "The database is unavailable; try again shortly.");
	}
	return 0;
}

static enum hist_role
role_of(const char *s)
{
	if (strcmp(s, "user") == 0)
		return HIST_USER;
	if (strcmp(s, "tool") == 0)
		return HIST_TOOL;
	return HIST_ASSISTANT;
}

static const char *
value_or_null(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

/* The columns of schema.sql's chat_turn_row, found by name in each
 * result: a column added or moved there cannot be misread here. */
struct turn_cols {
	int	 kind, conversation_id, message_id, role, content, tool_calls,
		 tool_call_id, request_hash, running, done, refusal,
		 retry_after, prompt_tokens, completion_tokens;
};

static int
turn_cols(const PGresult *res, struct turn_cols *c)
{
	c->kind = PQfnumber(res, "kind");
	c->conversation_id = PQfnumber(res, "conversation_id");
	c->message_id = PQfnumber(res, "message_id");
	c->role = PQfnumber(res, "role");
	c->content = PQfnumber(res, "content");
	c->tool_calls = PQfnumber(res, "tool_calls");
	c->tool_call_id = PQfnumber(res, "tool_call_id");
	c->request_hash = PQfnumber(res, "request_hash");
	c->running = PQfnumber(res, "running");
	c->done = PQfnumber(res, "done");
	c->refusal = PQfnumber(res, "refusal");
	c->retry_after = PQfnumber(res, "retry_after");
	c->prompt_tokens = PQfnumber(res, "prompt_tokens");
	c->completion_tokens = PQfnumber(res, "completion_tokens");
	return c->kind < 0 || c->conversation_id < 0 || c->message_id < 0 ||
	    c->role < 0 || c->content < 0 || c->tool_calls < 0 ||
	    c->tool_call_id < 0 || c->request_hash < 0 || c->running < 0 ||
	    c->done < 0 || c->refusal < 0 || c->retry_after < 0 ||
	    c->prompt_tokens < 0 || c->completion_tokens < 0 ? -1 : 0;
}

static long long
id_at(const PGresult *res, int row, int col)
{
	return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

/* Adds an 'own' row's usage (NULL: not reported) to sum. */
static void
own_usage_add(const PGresult *res, int row, const struct turn_cols *c,
    struct model_usage *sum)
{
	struct model_usage	 u;

	usage_init(&u);
	if (!PQgetisnull(res, row, c->prompt_tokens))
		u.prompt_tokens = id_at(res, row, c->prompt_tokens);
	if (!PQgetisnull(res, row, c->completion_tokens))
		u.completion_tokens = id_at(res, row, c->completion_tokens);
	usage_add(sum, &u);
}

static void
message_at(const PGresult *res, int row, const struct turn_cols *c,
    struct hist_msg *m)
{
	m->id = id_at(res, row, c->message_id);
	m->role = role_of(PQgetvalue(res, row, c->role));
	m->content = value_or_null(res, row, c->content);
	m->tool_calls = value_or_null(res, row, c->tool_calls);
	m->tool_call_id = value_or_null(res, row, c->tool_call_id);
}

static int	refused(const char *, const char *, struct chat_err *);

/* Reads chat_turn_row rows into out, which takes res over: the first
 * row describes the turn, then come its own messages ('own', oldest
 * first) and the window before it ('hist', newest first). 0, or -1
 * with err (out freed): 503 for a result of another shape or ENOMEM. */
static int
turn_rows(PGresult *res, struct db_turn *out, struct chat_err *err)
{
	struct turn_cols	 c;
	const char		*kind;
	int			 i, n = PQntuples(res);

	out->res = res;
	if (turn_cols(res, &c) == -1) {
		log_err("database: a turn's rows lack a column of "
		    "chat_turn_row: is schema.sql loaded?");
		db_turn_free(out);
		return err_set(err, 503, "database_unavailable",
		    "The database is unavailable; try again shortly.");
	}
	if (strcmp(PQgetvalue(res, 0, c.kind), "refused") == 0) {
		refused(PQgetvalue(res, 0, c.refusal),
		    PQgetvalue(res, 0, c.retry_after), err);
		db_turn_free(out);
		return -1;
	}
	out->conversation_id = id_at(res, 0, c.conversation_id);
	out->user_message_id = id_at(res, 0, c.message_id);
	if (strcmp(PQgetvalue(res, 0, c.kind), "prior") == 0) {
		out->prior = 1;
		out->request_hash = PQgetvalue(res, 0, c.request_hash);
		out->running = *PQgetvalue(res, 0, c.running) == 't';
		out->done = *PQgetvalue(res, 0, c.done) == 't';
		return 0;
	}
	if ((out->own = calloc(n, sizeof(*out->own))) == NULL ||
	    (out->history = calloc(n, sizeof(*out->history))) == NULL) {
		db_turn_free(out);
		return err_oom(err);
	}
	usage_init(&out->own_usage);
	for (i = 1; i < n; i++) {
		kind = PQgetvalue(res, i, c.kind);
		if (strcmp(kind, "own") == 0) {
			message_at(res, i, &c, &out->own[out->nown++]);
			own_usage_add(res, i, &c, &out->own_usage);
		} else
			message_at(res, i, &c, &out->history[out->nhistory++]);
	}
	return 0;
}

/* The 429 of a turn refused by a per-user limit: the code the database
 * gave, as one of ours (err keeps a literal). */
static int
refused(const char *code, const char *retry_after, struct chat_err *err)
{
	static const struct {
		const char	*code;
		const char	*message;
	} refusals[] = {
		{ "too_many_turns", "Too many of your turns are running at "
		    "once; wait for one to finish." },
		{ "rate_limited", "You started too many turns in the last "
		    "minute; wait a little." },
		{ "quota_exceeded", "You have used your quota: today's "
		    "tokens, or the conversations or messages you may keep "
		    "(delete old conversations to free some)." },
	};
	size_t	 i;
	long	 wait = strtol(retry_after, NULL, 10);

	for (i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++)
		if (strcmp(code, refusals[i].code) == 0)
			break;
	if (i == sizeof(refusals) / sizeof(refusals[0]))
		i = 0;
	err_set(err, 429, refusals[i].code, "%s", refusals[i].message);
	err->retry_after_s = wait > 0 && wait < 1000000 ? (int)wait : 1;
	return -1;
}

void
db_limits_of_config(struct db_limits *out)
{
	const struct config	*cfg = config();

	out->concurrent_turns = cfg->user_concurrent_turns;
	out->turns_per_minute = cfg->user_turns_per_minute;
	out->tokens_per_day = cfg->user_tokens_per_day;
	out->max_conversations = cfg->user_max_conversations;
	out->max_messages = cfg->user_max_messages;
	/* A turn shows it lives between its model calls, each of which may
	 * take the whole timeout (a streamed one longer, as long as chunks
	 * come, but it renews its stream record's lease meanwhile); a
	 * margin for the database around it. */
	out->lease_seconds = cfg->model_timeout_ms / 1000 + 30;
}

int
db_turn_begin(const char *user_id, long long conversation_id,
    const char *title, const char *message, size_t max_history,
    const char *idempotency_key, const char *request_hash,
    const struct db_limits *limits, int stream, struct db_turn *out,
    struct chat_err *err)
{
	char		 conv[24], limit[24], lim[160];
	const char	*params[9] = { user_id, conversation_id != 0 ? conv :
	    NULL, title, message, limit, idempotency_key, request_hash, lim,
	    stream ? "t" : "f" };
	PGresult	*res;
	int		 unsure;

	memset(out, 0, sizeof(*out));
	snprintf(conv, sizeof(conv), "%lld", conversation_id);
	snprintf(limit, sizeof(limit), "%zu", max_history);
	/* The order chat_turn_begin() reads them in. */
	snprintf(lim, sizeof(lim), "{%ld,%ld,%ld,%ld,%ld,%ld}",
	    limits->concurrent_turns, limits->turns_per_minute,
	    limits->tokens_per_day, limits->max_conversations,
	    limits->max_messages, limits->lease_seconds);
	/* With a key, the turn is stored once however often this runs:
	 * a second run finds the first one's turn. Without, only a run
	 * that certainly did not commit may be repeated. */
	if (dbconn_execute(SQL_TURN_BEGIN, 0, 9, params, PGRES_TUPLES_OK,
	    idempotency_key != NULL ? ALWAYS : IF_ROLLED_BACK, &res, &unsure,
	    err) == -1) {
		/* It may have stored the turn, lease and all, with no
		 * primary to be found since: message 0 leaves the running
		 * counts as they are. */
		if (unsure && idempotency_key != NULL)
			dbconn_owe_release(user_id, idempotency_key, 0);
		return -1;
	}
	if (PQntuples(res) == 0) {
		PQclear(res);
		return no_conversation(err);
	}
	if (turn_rows(res, out, err) == -1)
		return -1;
	/* The first run committed after all: the turn found is this
	 * attempt's own, whose lease would keep it "in progress" for
	 * chat_turn_lease(). Given up (the running count kept:
	 * message 0), the caller resumes it as a retry would. */
	if (unsure && out->prior && out->running && !out->done &&
	    strcmp(out->request_hash, request_hash) == 0) {
		db_turn_release(user_id, idempotency_key, 0);
		out->running = 0;
	}
	return 0;
}

int
db_turn_load(const char *user_id, const char *idempotency_key,
    size_t max_history, int take_over, struct db_turn *out,
    struct chat_err *err)
{
	char		 limit[24];
	const char	*params[3] = { user_id, idempotency_key, limit };
	PGresult	*res;
	int		 unsure;

	memset(out, 0, sizeof(*out));
	snprintf(limit, sizeof(limit), "%zu", max_history);
	/* A replay only reads; a take-over only renews the lease, which a
	 * second run finds taken, by this attempt, if the first committed. */
	if (dbconn_execute(take_over ? SQL_TURN_RESUME : SQL_TURN_REPLAY, 1, 3,
	    params, PGRES_TUPLES_OK, ALWAYS, &res, &unsure, err) == -1) {
		/* A take-over that may have renewed the lease, with no
		 * primary found since: given up on the next connection. */
		if (unsure && take_over)
			dbconn_owe_release(user_id, idempotency_key, 0);
		return -1;
	}
	/* No row: another attempt holds the lease (or, replaying, the key
	 * is gone with its conversation). */
	if (PQntuples(res) == 0 && unsure && take_over) {
		/* Ours, perhaps: given up, so that the client's retry
		 * resumes the turn at once. */
		PQclear(res);
		db_turn_release(user_id, idempotency_key, 0);
		return err_set(err, 503, "database_unavailable",
		    "The database is unavailable; try again shortly.");
	}
	if (PQntuples(res) == 0) {
		PQclear(res);
		return err_set(err, 409, "turn_in_progress", "This turn is "
		    "still being answered; retry in a few seconds.");
	}
	return turn_rows(res, out, err);
}

void
db_turn_release(const char *user_id, const char *idempotency_key,
    long long user_message_id)
{
	char		 msg[24];
	const char	*params[3] = { user_id, idempotency_key, msg };
	struct chat_err	 err;
	PGresult	*res;

	snprintf(msg, sizeof(msg), "%lld", user_message_id);
	/* Twice is once: the entry and the lease are the turn's own. */
	if (run(SQL_TURN_RELEASE, 3, params, PGRES_TUPLES_OK, ALWAYS, &res,
	    &err) == 0)
		PQclear(res);
	else if (idempotency_key != NULL)
		dbconn_owe_release(user_id, idempotency_key, user_message_id);
}

/* A model call's usage as chat_turn_finish() and chat_round() read it:
 * an integer array {prompt,completion,cached}, NULL where not reported. */
static void
usage_param(const struct model_usage *u, char *out, size_t size)
{
	const long long	 v[3] = { u->prompt_tokens, u->completion_tokens,
	    u->cached_tokens };
	size_t		 i, o = 0;

	for (i = 0; i < 3 && o < size; i++) {
		if (v[i] >= 0 && v[i] <= 2000000000LL)
			o += snprintf(out + o, size - o, "%s%lld",
			    i == 0 ? "{" : ",", v[i]);
		else
			o += snprintf(out + o, size - o, "%sNULL",
			    i == 0 ? "{" : ",");
	}
	if (o < size)
		snprintf(out + o, size - o, "}");
}

void
db_turn_free(struct db_turn *t)
{
	free(t->history);
	free(t->own);
	PQclear(t->res);
	memset(t, 0, sizeof(*t));
}

/* Fills s[0..ncalls) with the chat_tool() calls of a round. */
static void
tool_stmts(const char *user_id, const char *conv, const char *reply_to,
    const struct db_tool_call *calls, size_t ncalls, struct dbconn_stmt *s)
{
	size_t	 i;

	for (i = 0; i < ncalls; i++)
		s[i] = (struct dbconn_stmt){ SQL_TOOL, 7, { user_id, conv, reply_to,
		    calls[i].call_id, calls[i].fallback, calls[i].function,
		    calls[i].args }, NULL };
}

int
db_round(const char *user_id, const char *idempotency_key,
    long long conversation_id, long long user_message_id, int round,
    const char *content, const struct model_usage *usage,
    const char *tool_calls, struct db_tool_call *calls, size_t ncalls,
    struct chat_err *err)
{
	char		 conv[24], reply_to[24], nround[24], used[80];
	struct dbconn_stmt	*s;
	size_t		 i, n = ncalls + 1;
	int		 rc;

	snprintf(conv, sizeof(conv), "%lld", conversation_id);
	snprintf(reply_to, sizeof(reply_to), "%lld", user_message_id);
	snprintf(nround, sizeof(nround), "%d", round);
	usage_param(usage, used, sizeof(used));
	if ((s = calloc(n, sizeof(*s))) == NULL)
		return err_oom(err);
	s[0] = (struct dbconn_stmt){ SQL_ROUND, 8, { user_id, conv, reply_to,
	    nround, content, tool_calls, idempotency_key, used }, NULL };
	tool_stmts(user_id, conv, reply_to, calls, ncalls, s + 1);

	rc = dbconn_pipeline(s, n, err);
	for (i = 0; rc == 0 && i < ncalls; i++)
		if ((calls[i].result = strdup(PQgetvalue(s[i + 1].res, 0,
		    0))) == NULL)
			rc = err_oom(err);
	dbconn_stmts_clear(s, n);
	free(s);
	return rc;
}

int
db_tool(const char *user_id, const char *function, const char *args,
    char **result, struct chat_err *err)
{
	char		 limit[24];
	const char	*params[4] = { user_id, function, args, limit };
	PGresult	*res;
	int		 wait;

	*result = NULL;
	snprintf(limit, sizeof(limit), "%d", config()->user_turns_per_minute);
	if (call(SQL_MCP_TOOL, 4, params, IF_ROLLED_BACK, &res, err) == -1)
		return -1;
	if ((wait = atoi(PQgetvalue(res, 0, 1))) > 0) {
		PQclear(res);
		return db_rate_limited(wait, err);
	}
	if (!PQgetisnull(res, 0, 0) &&
	    (*result = strdup(PQgetvalue(res, 0, 0))) == NULL) {
		PQclear(res);
		return err_oom(err);
	}
	PQclear(res);
	return 0;
}

int
db_turn_finish(const char *user_id, long long conversation_id,
    long long user_message_id, const char *answer,
    const struct model_usage *usage, int stream, int *stream_open,
    struct chat_err *err)
{
	char		 conv[24], reply_to[24], used[80];
	const char	*params[6] = { user_id, conv, answer, reply_to,
	    used, stream ? "t" : "f" };
	PGresult	*res;
	int		 rc = 0, unsure;

	snprintf(conv, sizeof(conv), "%lld", conversation_id);
	snprintf(reply_to, sizeof(reply_to), "%lld", user_message_id);
	usage_param(usage, used, sizeof(used));
	/* messages_answer_once_idx stores one answer: a second run after
	 * a first that committed fails on it (409). Only the attempt
	 * holding the turn's lease gets this far, so that answer is this
	 * one, stored: the turn is done, its live record (if any) left
	 * for the caller to end, as the first run's outcome is unknown. */
	*stream_open = stream;
	if (dbconn_execute(SQL_TURN_FINISH, 0, 6, params, PGRES_TUPLES_OK, ALWAYS,
	    &res, &unsure, err) == -1)
		return unsure && err->status == 409 ? 0 : -1;
	if (PQgetisnull(res, 0, 0))
		rc = err_set(err, 404, "conversation_not_found",
		    "The conversation was deleted.");
	else
		*stream_open = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return rc;
}

#define ISO_UTC(col) \
    "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

/* Keyset paging: the cursor is the last conversation seen, and the page
 * continues below its (updated_at, id) along conversations_user_recent_
 * idx; a cursor that is not the user's reads as the end. */
static const char SQL_CONVERSATIONS[] =
    "SELECT id, title, " ISO_UTC("created_at") ", " ISO_UTC("updated_at")
    " FROM conversations"
    " WHERE user_id = $1 AND ($2::bigint = 0 OR (updated_at, id) <"
    "  (SELECT updated_at, id FROM conversations"
    "   WHERE id = $2::bigint AND user_id = $1))"
    " ORDER BY updated_at DESC, id DESC LIMIT $3";

/* One row with NULL columns when the conversation is the user's but the
 * page is empty; no row when it is not the user's. */
static const char SQL_MESSAGES[] =
    "SELECT m.id, m.role, m.content, m.tool_calls, m.tool_call_id,"
    " m.created_at"
    " FROM conversations c LEFT JOIN LATERAL ("
    "  SELECT id, role, content, tool_calls::text AS tool_calls,"
    "  tool_call_id, " ISO_UTC("created_at") " AS created_at"
    "  FROM messages"
    "  WHERE conversation_id = c.id AND ($3::bigint = 0 OR id < $3::bigint)"
    "  ORDER BY id DESC LIMIT $4"
    " ) m ON true"
    " WHERE c.id = $2 AND c.user_id = $1"
    " ORDER BY m.id DESC";

/* By id, the order tasks were made in; the cursor is the last id seen,
 * so a task added while a client pages lands above it, never twice. A
 * status of "all" folds away when the statement is planned with its
 * values (an unnamed statement is), leaving a walk of tasks_user_id_idx
 * or tasks_user_status_idx. */
static const char SQL_TASKS[] =
    "SELECT id, title, description, completed FROM tasks"
    " WHERE user_id = $1"
    " AND ($2::text = 'all' OR completed = ($2::text = 'completed'))"
    " AND ($3::bigint = 0 OR id < $3::bigint)"
    " ORDER BY id DESC LIMIT $4";

/* Takes the conversation and its messages off the user's counts too. */
static const char SQL_CONVERSATION_DELETE[] =
    "SELECT chat_conversation_delete($1, $2)";

const char *
db_rows_value(const struct db_rows *rows, int row, int col)
{
	return value_or_null(rows->res, row, col);
}

void
db_rows_free(struct db_rows *rows)
{
	PQclear(rows->res);
	rows->res = NULL;
	rows->n = 0;
}

/* Runs a read; rows->res owns the result on success. */
static int
read_rows(const char *sql, int n, const char *const *params,
    struct db_rows *out, struct chat_err *err)
{
	PGresult	*res;

	memset(out, 0, sizeof(*out));
	if (run(sql, n, params, PGRES_TUPLES_OK, ALWAYS, &res, err) == -1)
		return -1;
	out->res = res;
	out->n = PQntuples(res);
	return 0;
}

int
db_conversations(const char *user_id, int limit, long long before,
    struct db_rows *out, struct chat_err *err)
{
	char		 cursor[24], nlimit[24];
	const char	*params[3] = { user_id, cursor, nlimit };

	snprintf(cursor, sizeof(cursor), "%lld", before);
	snprintf(nlimit, sizeof(nlimit), "%d", limit);
	return read_rows(SQL_CONVERSATIONS, 3, params, out, err);
}

int
db_messages(const char *user_id, long long conversation_id, int limit,
    long long before, struct db_rows *out, struct chat_err *err)
{
	char		 conv[24], cursor[24], nlimit[24];
	const char	*params[4] = { user_id, conv, cursor, nlimit };

	snprintf(conv, sizeof(conv), "%lld", conversation_id);
	snprintf(cursor, sizeof(cursor), "%lld", before);
	snprintf(nlimit, sizeof(nlimit), "%d", limit);
	if (read_rows(SQL_MESSAGES, 4, params, out, err) == -1)
		return -1;
	if (out->n == 0) {
		db_rows_free(out);
		return no_conversation(err);
	}
	if (out->n == 1 && PQgetisnull(out->res, 0, 0))
		out->n = 0;
	return 0;
}

int
db_tasks(const char *user_id, const char *status, int limit,
    long long before, struct db_rows *out, struct chat_err *err)
{
	char		 cursor[24], nlimit[24];
	const char	*params[4] = { user_id, status, cursor, nlimit };

	snprintf(cursor, sizeof(cursor), "%lld", before);
	snprintf(nlimit, sizeof(nlimit), "%d", limit);
	return read_rows(SQL_TASKS, 4, params, out, err);
}

/* A statement of (user_id, conversation_id) answering true, or false
 * when the conversation is not the user's: 0, or -1 with err 404 or 503. */
static int
on_conversation(const char *sql, enum failover_again again,
    const char *user_id, long long conversation_id, struct chat_err *err)
{
	char		 conv[24];
	const char	*params[2] = { user_id, conv };
	PGresult	*res;
	int		 rc = 0;

	snprintf(conv, sizeof(conv), "%lld", conversation_id);
	if (run(sql, 2, params, PGRES_TUPLES_OK, again, &res, err) == -1)
		return -1;
	if (*PQgetvalue(res, 0, 0) != 't')
		rc = no_conversation(err);
	PQclear(res);
	return rc;
}

int
db_conversation_delete(const char *user_id, long long conversation_id,
    struct chat_err *err)
{
	/* A second run after a first that committed would find nothing
	 * to delete and call it a 404. */
	return on_conversation(SQL_CONVERSATION_DELETE, IF_ROLLED_BACK,
	    user_id, conversation_id, err);
}

/* The row of chat_stream_put() or chat_stream_check(): stop, followed. */
static void
stream_flags(PGresult *res, int *stop, int *followed)
{
	*stop = *followed = 0;
	if (PQntuples(res) == 1) {
		*stop = *PQgetvalue(res, 0, 0) == 't';
		*followed = *PQgetvalue(res, 0, 1) == 't';
	}
	PQclear(res);
}

int
db_stream_put(const char *user_id, long long conversation_id,
    long long user_message_id, const char *events, int done, int *stop,
    int *followed, struct chat_err *err)
{
	char		 conv[24], msg[24];
	const char	*params[5] = { user_id, conv, msg, events,
	    done ? "true" : "false" };
	PGresult	*res;

	snprintf(conv, sizeof(conv), "%lld", conversation_id);
	snprintf(msg, sizeof(msg), "%lld", user_message_id);
	/* Twice would store the events twice. */
	if (call(SQL_STREAM_PUT, 5, params, IF_ROLLED_BACK, &res, err) == -1)
		return -1;
	stream_flags(res, stop, followed);
	return 0;
}

int
db_stream_check(const char *user_id, long long user_message_id, int *stop,
    int *followed, struct chat_err *err)
{
	char		 msg[24];
	const char	*params[2] = { user_id, msg };
	PGresult	*res;

	snprintf(msg, sizeof(msg), "%lld", user_message_id);
	if (call(SQL_STREAM_CHECK, 2, params, ALWAYS, &res, err) == -1)
		return -1;
	stream_flags(res, stop, followed);
	return 0;
}

int
db_stream_follow(const char *user_id, long long conversation_id,
    long long *user_message_id, struct chat_err *err)
{
	char		 conv[24];
	const char	*params[2] = { user_id, conv };
	PGresult	*res;

	*user_message_id = 0;
	snprintf(conv, sizeof(conv), "%lld", conversation_id);
	if (call(SQL_STREAM_FOLLOW, 2, params, ALWAYS, &res, err) == -1)
		return -1;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return no_conversation(err);
	}
	if (!PQgetisnull(res, 0, 0))
		*user_message_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return 0;
}

int
db_stream_events(const char *user_id, long long user_message_id,
    int after, struct db_stream *out, struct chat_err *err)
{
	char		 msg[24], batch[16];
	const char	*params[3] = { user_id, msg, batch };
	PGresult	*res;

	memset(out, 0, sizeof(*out));
	out->batches = after;
	snprintf(msg, sizeof(msg), "%lld", user_message_id);
	snprintf(batch, sizeof(batch), "%d", after);
	if (run(SQL_STREAM_EVENTS, 3, params, PGRES_TUPLES_OK, ALWAYS, &res,
	    err) == -1)
		return -1;
	out->res = res;
	if (PQntuples(res) == 1) {
		out->found = 1;
		out->events = PQgetvalue(res, 0, 0);
		out->len = (size_t)PQgetlength(res, 0, 0);
		out->batches = atoi(PQgetvalue(res, 0, 1));
		out->done = *PQgetvalue(res, 0, 2) == 't';
		out->alive = *PQgetvalue(res, 0, 3) == 't';
	}
	return 0;
}

void
db_stream_free(struct db_stream *s)
{
	PQclear(s->res);
	memset(s, 0, sizeof(*s));
}

int
db_stream_stop(const char *user_id, long long conversation_id,
    struct chat_err *err)
{
	return on_conversation(SQL_STREAM_STOP, ALWAYS, user_id,
	    conversation_id, err);
}

int
db_rate_limited(int retry_after_s, struct chat_err *err)
{
	err_set(err, 429, "rate_limited", "You started too many turns in "
	    "the last minute; wait a little.");
	err->retry_after_s = retry_after_s > 0 ? retry_after_s : 1;
	return -1;
}

int
db_rate_check(const char *user_id, long turns_per_minute,
    struct chat_err *err)
{
	char		 limit[24];
	const char	*params[2] = { user_id, limit };
	PGresult	*res;
	long		 wait;

	snprintf(limit, sizeof(limit), "%ld", turns_per_minute);
	/* Twice would count the start twice. */
	if (call(SQL_RATE_CHECK, 2, params, IF_ROLLED_BACK, &res, err) == -1)
		return -1;
	wait = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return wait > 0 ? db_rate_limited((int)wait, err) : 0;
}

int
db_usage(const char *user_id, struct db_usage *out, struct chat_err *err)
{
	const char	*params[1] = { user_id };
	PGresult	*res;

	memset(out, 0, sizeof(*out));
	if (run(SQL_USAGE, 1, params, PGRES_TUPLES_OK, ALWAYS, &res,
	    err) == -1)
		return -1;
	if (PQntuples(res) == 1) {
		out->day_turns = id_at(res, 0, 0);
		out->day_prompt_tokens = id_at(res, 0, 1);
		out->day_completion_tokens = id_at(res, 0, 2);
		out->month_turns = id_at(res, 0, 3);
		out->month_prompt_tokens = id_at(res, 0, 4);
		out->month_completion_tokens = id_at(res, 0, 5);
	}
	PQclear(res);
	return 0;
}
