/* db.c: the worker's PostgreSQL connection, reconnecting, and every SQL
 * statement the service runs (see db.h for the round trips of a turn). */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "config.h"
#include "db.h"
#include "log.h"

/* The worker's one connection: NULL until first needed, and again after a
 * failure, so the next request reconnects instead of the worker dying. */
static PGconn	*conn;

/* SQLSTATEs we treat apart from "the database is unavailable". */
#define SQLSTATE_UNIQUE		"23505"	/* a turn's round stored twice */
#define SQLSTATE_FOREIGN_KEY	"23503"	/* conversation deleted mid-turn */
#define SQLSTATE_DEADLOCK	"40P01"
#define SQLSTATE_SERIALIZATION	"40001"

/* Every round trip starts with settings local to its transaction: they
 * cannot be a session SET (pgbouncer in transaction mode) nor startup
 * options (pgbouncer 1.18 refuses them).
 *
 * statement_timeout: a query stuck on a lock or a bad plan fails the
 * request with a 503 instead of holding the worker; 5 s is far above any
 * statement here.
 *
 * enable_bitmapscan off: the window is the newest 40 messages of one
 * conversation, read backwards from messages_conversation_id_idx. When
 * the statistics say conversations are short (or the id comes from a CTE
 * and the planner must guess), PostgreSQL prefers a bitmap scan of the
 * whole conversation and a sort, whose cost grows with the conversation:
 * exactly what ADR-003 asks us to avoid. Every statement here is an index
 * lookup of a few rows, so no plan is lost by taking bitmaps away. */
#define STATEMENT_TIMEOUT_MS	"5000"
static const char SQL_TRANSACTION_SETTINGS[] =
    "SELECT set_config('statement_timeout', '" STATEMENT_TIMEOUT_MS "', true),"
    " set_config('enable_bitmapscan', 'off', true)";

static const char SQL_PING[] = "SELECT 1";

/* Both first statements of a turn begin alike: with an Idempotency-Key
 * ($KEY, NULL without one), the turn that first used it is looked up, and
 * only when there is none is anything written, the turns row included. A
 * concurrent first attempt with the same key makes the turns insert fail
 * on its primary key, which rolls the whole statement back (409). */
#define PRIOR_TURN(KEY) \
    "WITH prior AS (" \
    " SELECT t.conversation_id, t.user_message_id, t.request_hash," \
    " t.lease_until > now() AS running, EXISTS (" \
    "  SELECT 1 FROM messages a WHERE a.reply_to = t.user_message_id" \
    "  AND a.role = 'assistant' AND a.tool_calls IS NULL) AS done" \
    " FROM turns t WHERE t.user_id = $1 AND t.idempotency_key = " KEY \
    ")"
#define STORE_TURN(KEY, HASH) \
    ", expired AS (" \
    " DELETE FROM turns WHERE user_id = $1 AND idempotency_key <> " KEY \
    " AND created_at < now() - interval '" KEY_LIFETIME "'" \
    " AND EXISTS (SELECT 1 FROM msg)" \
    ")" \
    ", turn AS (" \
    " INSERT INTO turns (user_id, idempotency_key, request_hash," \
    " conversation_id, user_message_id, lease_until)" \
    " SELECT $1, " KEY ", " HASH ", conversation_id, id," \
    " now() + interval '" LEASE "' FROM msg WHERE " KEY " IS NOT NULL" \
    ")"
#define PRIOR_ROW \
    " UNION ALL SELECT 'prior', conversation_id, user_message_id, NULL," \
    " NULL, NULL, NULL, NULL, request_hash, running, done FROM prior"

/* DESIGN.md: an attempt whose worker died counts as running for at most
 * 30 s; each stored round renews it. */
#define LEASE	"30 seconds"
/* A key guards retries, which come within minutes. A user's new keyed
 * turn (not a replay, which writes nothing) clears their other keys older
 * than a day, so the turns table holds
 * about a day of keys, not every key ever sent. (Its own key it keeps:
 * the insert would meet the row before the unreferenced DELETE, which
 * PostgreSQL runs last, removed it.) */
#define KEY_LIFETIME	"24 hours"

/* The pieces the four first statements share: the user message stored
 * in the conversation `conv` yields, and the reply's rows: the new message
 * with the window before it, newest first (LIMIT $n). */
#define STORE_MESSAGE(CONTENT) \
    ", msg AS (" \
    " INSERT INTO messages (conversation_id, user_id, role, content)" \
    " SELECT id, $1, 'user', " CONTENT " FROM conv" \
    " RETURNING id, conversation_id" \
    ")"
#define NEW_ROW \
    " (SELECT 'new', conversation_id, id, NULL, NULL, NULL, NULL, NULL," \
    " NULL, NULL, NULL FROM msg)"
#define NEW_ROWS_WITH_WINDOW(LIMIT) \
    " (SELECT 'new', msg.conversation_id, msg.id, h.id, h.role, h.content," \
    " h.tool_calls, h.tool_call_id, NULL, NULL, NULL" \
    " FROM msg LEFT JOIN LATERAL (" \
    "  SELECT id, role, content, tool_calls::text AS tool_calls," \
    "  tool_call_id FROM messages" \
    "  WHERE conversation_id = msg.conversation_id AND user_id = $1" \
    "  ORDER BY id DESC LIMIT " LIMIT \
    " ) h ON true" \
    " ORDER BY h.id DESC)"

/* A new conversation and its first message in one statement. */
static const char SQL_TURN_BEGIN_NEW[] =
    PRIOR_TURN("$4")
    ", conv AS ("
    " INSERT INTO conversations (user_id, title)"
    " SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM prior)"
    " RETURNING id"
    ")"
    STORE_MESSAGE("$3")
    STORE_TURN("$4", "$5")
    NEW_ROW
    PRIOR_ROW;

/* An existing conversation of the user: its row lock orders every write
 * to the conversation (messages of concurrent turns never interleave
 * inside a round), the message is stored, and the window is read
 * backwards from messages_conversation_id_idx. The read shares the
 * statement's snapshot, so it sees the history before the new message,
 * and it is empty when the conversation is not the user's. */
static const char SQL_TURN_BEGIN_EXISTING[] =
    PRIOR_TURN("$5")
    ", conv AS ("
    " SELECT id FROM conversations"
    " WHERE id = $3 AND user_id = $1 AND NOT EXISTS (SELECT 1 FROM prior)"
    " FOR NO KEY UPDATE"
    ")"
    STORE_MESSAGE("$2")
    STORE_TURN("$5", "$6")
    NEW_ROWS_WITH_WINDOW("$4")
    PRIOR_ROW;

/* Without an Idempotency-Key, the most common turn, the same statements
 * lose what only a key needs: no turns lookup, no turns row. */
static const char SQL_TURN_BEGIN_NEW_PLAIN[] =
    "WITH conv AS ("
    " INSERT INTO conversations (user_id, title) VALUES ($1, $2)"
    " RETURNING id"
    ")"
    STORE_MESSAGE("$3")
    NEW_ROW;

static const char SQL_TURN_BEGIN_EXISTING_PLAIN[] =
    "WITH conv AS ("
    " SELECT id FROM conversations WHERE id = $3 AND user_id = $1"
    " FOR NO KEY UPDATE"
    ")"
    STORE_MESSAGE("$2")
    NEW_ROWS_WITH_WINDOW("$4");

/* A stored turn: a 'turn' row (its user message id, its conversation in
 * the last column), its own messages (those answering its user message,
 * after it in the conversation) oldest first, then the window before it
 * newest first. No row at all: the turn is not there to take. */
#define TURN_ROWS \
    " SELECT 'own' AS kind, m.id, m.role, m.content," \
    " m.tool_calls::text, m.tool_call_id, m.id AS sort" \
    " FROM t, messages m WHERE m.conversation_id = t.conversation_id" \
    " AND m.id > t.user_message_id AND m.reply_to = t.user_message_id" \
    " UNION ALL SELECT 'hist', h.*, -h.id FROM t, LATERAL (" \
    "  SELECT id, role, content, tool_calls::text, tool_call_id" \
    "  FROM messages WHERE conversation_id = t.conversation_id" \
    "  AND id < t.user_message_id ORDER BY id DESC LIMIT $3) h" \
    " UNION ALL SELECT 'turn', user_message_id, NULL, NULL, NULL, NULL," \
    " conversation_id FROM t" \
    " ORDER BY kind DESC, sort"

/* A retry takes over a turn whose attempt died (its lease ran out). Two
 * retries at once: the row lock lets one in, the other finds the lease
 * taken and reads nothing (409). */
static const char SQL_TURN_RESUME[] =
    "WITH t AS ("
    " UPDATE turns SET lease_until = now() + interval '" LEASE "'"
    " WHERE user_id = $1 AND idempotency_key = $2 AND lease_until <= now()"
    " RETURNING conversation_id, user_message_id"
    ")" TURN_ROWS;

/* A finished turn read back for a retry: no lease, nothing written. */
static const char SQL_TURN_REPLAY[] =
    "WITH t AS ("
    " SELECT conversation_id, user_message_id FROM turns"
    " WHERE user_id = $1 AND idempotency_key = $2"
    ")" TURN_ROWS;

/* A failed attempt gives its turn up at once, so that the client's retry
 * resumes it instead of waiting out the lease. */
static const char SQL_TURN_RELEASE[] =
    "UPDATE turns SET lease_until = now()"
    " WHERE user_id = $1 AND idempotency_key = $2";
static const char SQL_ROUND_LEASE[] =
    "UPDATE turns SET lease_until = now() + interval '" LEASE "'"
    " WHERE user_id = $1 AND idempotency_key = $2";

/* The round's first statements: the conversation's row lock, then the
 * assistant message that asked for the tools. The lock is taken as an
 * UPDATE would take it, without writing a new row version: only the
 * turn's last statement bumps updated_at, so a turn leaves one dead
 * version of the row behind, not one per round trip. A deleted conversation
 * makes the insert fail on the foreign key and the round roll back. */
static const char SQL_ROUND_LOCK[] =
    "SELECT id FROM conversations WHERE id = $1 AND user_id = $2"
    " FOR NO KEY UPDATE";
static const char SQL_ROUND_ASSISTANT[] =
    "INSERT INTO messages (conversation_id, user_id, role, content,"
    " tool_calls, reply_to, round)"
    " VALUES ($1, $2, 'assistant', $3, $4::jsonb, $5, $6)";

/* One statement per tool call: the task change and its tool message
 * commit together, the result built by PostgreSQL from the rows touched.
 * Common parameters: $1 user_id, $2 conversation_id, $3 reply_to, $4 the
 * call id, $5 the result when no task matched; the tool's own follow. */
#define STORE_RESULT(result) \
    " INSERT INTO messages (conversation_id, user_id, role, content," \
    " tool_call_id, reply_to)" \
    " SELECT $2, $1, 'tool', COALESCE((" result "), $5), $4, $3" \
    " RETURNING content"

static const char SQL_TOOL_ADD[] =
    "WITH t AS ("
    " INSERT INTO tasks (user_id, title, description)"
    " VALUES ($1, $6, COALESCE($7, '')) RETURNING id, title"
    ")"
    STORE_RESULT("SELECT json_build_object('task_id', id, 'status',"
    " 'created', 'title', title)::text FROM t");

/* At most 100 tasks go to the model: the list must fit its context. */
static const char SQL_TOOL_LIST[] =
    "WITH t AS ("
    " SELECT id, title, description, completed FROM tasks"
    " WHERE user_id = $1 AND ($6 = 'all' OR completed = ($6 = 'completed'))"
    " ORDER BY id LIMIT 100"
    ")"
    STORE_RESULT("SELECT COALESCE(json_agg(json_build_object('id', id,"
    " 'title', title, 'description', description, 'completed', completed)"
    " ORDER BY id), '[]')::text FROM t");

static const char SQL_TOOL_COMPLETE[] =
    "WITH t AS ("
    " UPDATE tasks SET completed = true, updated_at = now()"
    " WHERE id = $6 AND user_id = $1 RETURNING id, title"
    ")"
    STORE_RESULT("SELECT json_build_object('task_id', id, 'status',"
    " 'completed', 'title', title)::text FROM t");

static const char SQL_TOOL_DELETE[] =
    "WITH t AS ("
    " DELETE FROM tasks WHERE id = $6 AND user_id = $1 RETURNING id, title"
    ")"
    STORE_RESULT("SELECT json_build_object('task_id', id, 'status',"
    " 'deleted', 'title', title)::text FROM t");

static const char SQL_TOOL_UPDATE[] =
    "WITH t AS ("
    " UPDATE tasks SET title = COALESCE($7, title),"
    " description = COALESCE($8, description), updated_at = now()"
    " WHERE id = $6 AND user_id = $1 RETURNING id, title"
    ")"
    STORE_RESULT("SELECT json_build_object('task_id', id, 'status',"
    " 'updated', 'title', title)::text FROM t");

/* A result known before any SQL: a bad call, an unknown tool. */
static const char SQL_TOOL_NONE[] =
    "INSERT INTO messages (conversation_id, user_id, role, content,"
    " tool_call_id, reply_to)"
    " VALUES ($2, $1, 'tool', $5, $4, $3) RETURNING content";

static const char SQL_TURN_FINISH[] =
    "WITH conv AS ("
    " UPDATE conversations SET updated_at = now()"
    " WHERE id = $2 AND user_id = $1 RETURNING id"
    ")"
    " INSERT INTO messages (conversation_id, user_id, role, content,"
    " reply_to)"
    " SELECT id, $1, 'assistant', $3, $4 FROM conv RETURNING id";

static const struct {
	const char	*sql;
	int		 nparams;	/* common five plus the tool's own */
} tool_sql[] = {
	[DB_TOOL_ADD] =		{ SQL_TOOL_ADD, 7 },
	[DB_TOOL_LIST] =	{ SQL_TOOL_LIST, 6 },
	[DB_TOOL_COMPLETE] =	{ SQL_TOOL_COMPLETE, 6 },
	[DB_TOOL_DELETE] =	{ SQL_TOOL_DELETE, 6 },
	[DB_TOOL_UPDATE] =	{ SQL_TOOL_UPDATE, 8 },
	[DB_TOOL_NONE] =	{ SQL_TOOL_NONE, 5 },
};

/* A connection that has something to read between requests is dead: the
 * server only talks unasked to say it is shutting down, or to close. */
static int
conn_alive(PGconn *c)
{
	struct pollfd	 pfd;

	if (PQstatus(c) != CONNECTION_OK)
		return 0;
	pfd.fd = PQsocket(c);
	pfd.events = POLLIN;
	pfd.revents = 0;
	if (poll(&pfd, 1, 0) <= 0)
		return 1;
	if (!PQconsumeInput(c) || PQstatus(c) != CONNECTION_OK)
		return 0;
	return 1;
}

static void
conn_drop(void)
{
	PQfinish(conn);
	conn = NULL;
}

/* The worker's connection, (re)opened as needed; NULL with err 503.
 * DATABASE_URL comes last so that its own settings win over ours. */
static PGconn *
db_conn(struct chat_err *err)
{
	static const char *const keys[] = { "connect_timeout",
	    "fallback_application_name", "keepalives_idle",
	    "keepalives_interval", "keepalives_count", "dbname", NULL };
	const char	*values[7] = { "5", "todo-chat", "30", "10", "3",
	    NULL, NULL };

	if (conn != NULL && conn_alive(conn))
		return conn;
	if (conn != NULL)
		conn_drop();
	values[5] = config()->database_url;
	conn = PQconnectdbParams(keys, values, 1);
	if (conn == NULL || PQstatus(conn) != CONNECTION_OK) {
		log_err("database connection failed: %s", conn != NULL ?
		    PQerrorMessage(conn) : "out of memory");
		conn_drop();
		err_set(err, 503, "database_unavailable",
		    "The database is unavailable; try again shortly.");
		return NULL;
	}
	return conn;
}

void
db_cleanup(void)
{
	conn_drop();
}

/* Turns a failed result into err: constraint outcomes a turn expects
 * keep their meaning, anything else is logged and the database called
 * unavailable. The connection is dropped when libpq says it broke. */
static int
db_fail(const PGresult *res, struct chat_err *err)
{
	const char	*state = res != NULL ?
	    PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	if (state != NULL && strcmp(state, SQLSTATE_UNIQUE) == 0)
		return err_set(err, 409, "turn_in_progress", "Another attempt "
		    "of this turn got there first; retry to see its answer.");
	if (state != NULL && strcmp(state, SQLSTATE_FOREIGN_KEY) == 0)
		return err_set(err, 404, "conversation_not_found",
		    "The conversation was deleted.");
	log_err("database error: %s", res != NULL ?
	    PQresultErrorMessage(res) : PQerrorMessage(conn));
	if (PQstatus(conn) != CONNECTION_OK)
		conn_drop();
	return err_set(err, 503, "database_unavailable",
	    "The database is unavailable; try again shortly.");
}

/* One statement of a pipeline: what to send, and its result once read. */
struct stmt {
	const char	*sql;
	int		 nparams;
	const char	*params[8];
	PGresult	*res;
};

static int	pipeline_run(PGconn *, struct stmt *, size_t, PGresult **);

/* Runs one statement in the same round trip as its time limit, and
 * returns its result, or the failing one (NULL when the connection
 * broke): PQresultStatus() of either says which. */
static PGresult *
exec_params(PGconn *c, const char *sql, int n, const char *const *params)
{
	struct stmt	 s[2];
	PGresult	*failed;

	memset(s, 0, sizeof(s));
	s[0].sql = SQL_TRANSACTION_SETTINGS;
	s[1].sql = sql;
	s[1].nparams = n;
	if (n > 0)
		memcpy(s[1].params, params, n * sizeof(*params));
	if (pipeline_run(c, s, 2, &failed) == 0) {
		PQclear(s[0].res);
		return s[1].res;
	}
	PQclear(s[0].res);
	PQclear(s[1].res);
	return failed;
}

/* Runs one statement on the worker's connection and checks its status.
 * 0 and *res the caller's to PQclear(); or -1, *res NULL and err set
 * (db_fail() has logged it and dropped a broken connection). */
static int
run(const char *sql, int n, const char *const *params, ExecStatusType want,
    PGresult **res, struct chat_err *err)
{
	PGconn	*c;

	*res = NULL;
	if ((c = db_conn(err)) == NULL)
		return -1;
	*res = exec_params(c, sql, n, params);
	if (PQresultStatus(*res) != want) {
		db_fail(*res, err);
		PQclear(*res);
		*res = NULL;
		return -1;
	}
	return 0;
}

int
db_ping(struct chat_err *err)
{
	PGresult	*res;

	if (run(SQL_PING, 0, NULL, PGRES_TUPLES_OK, &res, err) == -1)
		return -1;
	PQclear(res);
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

static void
hist_row(const PGresult *res, int row, int col, struct hist_msg *m)
{
	m->id = strtoll(PQgetvalue(res, row, col), NULL, 10);
	m->role = role_of(PQgetvalue(res, row, col + 1));
	m->content = value_or_null(res, row, col + 2);
	m->tool_calls = value_or_null(res, row, col + 3);
	m->tool_call_id = value_or_null(res, row, col + 4);
}

/* Reads a begin statement's rows: ('new', conversation, message, the
 * history columns...) or one ('prior', ..., hash, running, done). */
static int
begin_rows(PGresult *res, struct db_turn *out)
{
	int	 i, n = PQntuples(res);

	out->conversation_id = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	out->user_message_id = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
	if (strcmp(PQgetvalue(res, 0, 0), "prior") == 0) {
		out->prior = 1;
		out->request_hash = PQgetvalue(res, 0, 8);
		out->running = *PQgetvalue(res, 0, 9) == 't';
		out->done = *PQgetvalue(res, 0, 10) == 't';
		return 0;
	}
	if (n == 1 && PQgetisnull(res, 0, 3))
		return 0;
	if ((out->history = calloc(n, sizeof(*out->history))) == NULL)
		return -1;
	for (i = 0; i < n; i++)
		hist_row(res, i, 3, &out->history[i]);
	out->nhistory = n;
	return 0;
}

int
db_turn_begin(const char *user_id, long long conversation_id,
    const char *title, const char *message, size_t max_history,
    const char *idempotency_key, const char *request_hash,
    struct db_turn *out, struct chat_err *err)
{
	char		 conv[24], limit[24];
	const char	*fresh[5] = { user_id, title, message,
	    idempotency_key, request_hash };
	const char	*existing[6] = { user_id, message, conv, limit,
	    idempotency_key, request_hash };
	PGresult	*res;
	int		 rc;

	memset(out, 0, sizeof(*out));
	snprintf(conv, sizeof(conv), "%lld", conversation_id);
	snprintf(limit, sizeof(limit), "%zu", max_history);
	/* A plain statement without a key; the new-conversation ones take no
	 * window (their first parameters are a prefix of fresh). */
	if (conversation_id == 0)
		rc = idempotency_key == NULL ?
		    run(SQL_TURN_BEGIN_NEW_PLAIN, 3, fresh, PGRES_TUPLES_OK,
		    &res, err) :
		    run(SQL_TURN_BEGIN_NEW, 5, fresh, PGRES_TUPLES_OK, &res,
		    err);
	else
		rc = idempotency_key == NULL ?
		    run(SQL_TURN_BEGIN_EXISTING_PLAIN, 4, existing,
		    PGRES_TUPLES_OK, &res, err) :
		    run(SQL_TURN_BEGIN_EXISTING, 6, existing, PGRES_TUPLES_OK,
		    &res, err);
	if (rc == -1)
		return -1;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return err_set(err, 404, "conversation_not_found",
		    "No such conversation.");
	}
	out->res = res;
	if (begin_rows(res, out) == -1) {
		db_turn_free(out);
		return err_oom(err);
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
	int		 i, n, nown;

	memset(out, 0, sizeof(*out));
	snprintf(limit, sizeof(limit), "%zu", max_history);
	if (run(take_over ? SQL_TURN_RESUME : SQL_TURN_REPLAY, 3, params,
	    PGRES_TUPLES_OK, &res, err) == -1)
		return -1;
	out->res = res;
	if ((n = PQntuples(res)) == 0 ||
	    strcmp(PQgetvalue(res, 0, 0), "turn") != 0) {
		db_turn_free(out);
		return err_set(err, 409, "turn_in_progress", "This turn is "
		    "still being answered; retry in a few seconds.");
	}
	out->user_message_id = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	out->conversation_id = strtoll(PQgetvalue(res, 0, 6), NULL, 10);
	for (nown = 1; nown < n && strcmp(PQgetvalue(res, nown, 0), "own") ==
	    0; nown++)
		;
	nown--;
	if ((out->own = calloc(nown + 1, sizeof(*out->own))) == NULL ||
	    (out->history = calloc(n - nown, sizeof(*out->history))) ==
	    NULL) {
		db_turn_free(out);
		return err_oom(err);
	}
	for (i = 1; i < n; i++)
		hist_row(res, i, 1, i <= nown ? &out->own[i - 1] :
		    &out->history[i - 1 - nown]);
	out->nown = nown;
	out->nhistory = n - 1 - nown;
	return 0;
}

void
db_turn_release(const char *user_id, const char *idempotency_key)
{
	const char	*params[2] = { user_id, idempotency_key };
	struct chat_err	 err;
	PGresult	*res;

	if (run(SQL_TURN_RELEASE, 2, params, PGRES_COMMAND_OK, &res,
	    &err) == 0)
		PQclear(res);
}

void
db_turn_free(struct db_turn *t)
{
	free(t->history);
	free(t->own);
	PQclear(t->res);
	memset(t, 0, sizeof(*t));
}

/* Reads the results of n pipelined statements and the sync point. 0 when
 * every statement succeeded; else -1 and *failed is the first failing
 * result (the caller clears it), NULL when the connection broke. */
static int
pipeline_read(PGconn *c, struct stmt *s, size_t n, PGresult **failed)
{
	PGresult	*res;
	size_t		 i;
	int		 ok = 1;

	*failed = NULL;
	for (i = 0; i < n; i++) {
		if ((res = PQgetResult(c)) == NULL)
			return -1;
		switch (PQresultStatus(res)) {
		case PGRES_TUPLES_OK:
		case PGRES_COMMAND_OK:
			s[i].res = res;
			break;
		case PGRES_PIPELINE_ABORTED:
			PQclear(res);
			break;
		default:
			if (*failed == NULL)
				*failed = res;
			else
				PQclear(res);
			ok = 0;
			break;
		}
		/* Each statement's results end with a NULL. */
		while ((res = PQgetResult(c)) != NULL)
			PQclear(res);
	}
	res = PQgetResult(c);
	if (PQresultStatus(res) != PGRES_PIPELINE_SYNC)
		ok = 0;
	PQclear(res);
	return ok ? 0 : -1;
}

/* Sends the statements in one pipeline ending in one Sync: the server
 * runs them as one implicit transaction that commits at the Sync, or
 * rolls back whole when one fails. One round trip for the lot. */
static int
pipeline_run(PGconn *c, struct stmt *s, size_t n, PGresult **failed)
{
	size_t	 i;
	int	 rc;

	*failed = NULL;
	if (!PQenterPipelineMode(c))
		return -1;
	for (i = 0; i < n; i++)
		if (!PQsendQueryParams(c, s[i].sql, s[i].nparams, NULL,
		    s[i].params, NULL, NULL, 0))
			break;
	if (i < n || !PQpipelineSync(c)) {
		log_err("database error: %s", PQerrorMessage(c));
		conn_drop();
		return -1;
	}
	rc = pipeline_read(c, s, n, failed);
	if (!PQexitPipelineMode(c)) {
		log_err("database error: %s", PQerrorMessage(c));
		conn_drop();
		return -1;
	}
	return rc;
}

static void
stmts_clear(struct stmt *s, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++) {
		PQclear(s[i].res);
		s[i].res = NULL;
	}
}

/* Fills s[0..ncalls) with the tool statements of a round. ids holds the
 * text of each task_id, ROUND_ID_LEN bytes apiece. */
#define ROUND_ID_LEN	24
static void
tool_stmts(const char *user_id, const char *conv, const char *reply_to,
    const struct db_tool_call *calls, size_t ncalls, char *ids,
    struct stmt *s)
{
	size_t	 i;

	for (i = 0; i < ncalls; i++) {
		const struct db_tool_call	*tc = &calls[i];
		const char			**p = s[i].params;
		char				*id = ids + i * ROUND_ID_LEN;

		snprintf(id, ROUND_ID_LEN, "%lld", tc->task_id);
		s[i].sql = tool_sql[tc->op].sql;
		s[i].nparams = tool_sql[tc->op].nparams;
		p[0] = user_id;
		p[1] = conv;
		p[2] = reply_to;
		p[3] = tc->call_id;
		p[4] = tc->fallback;
		switch (tc->op) {
		case DB_TOOL_ADD:
			p[5] = tc->title;
			p[6] = tc->description;
			break;
		case DB_TOOL_LIST:
			p[5] = tc->status;
			break;
		case DB_TOOL_UPDATE:
			p[6] = tc->title;
			p[7] = tc->description;
			/* FALLTHROUGH */
		case DB_TOOL_COMPLETE:
		case DB_TOOL_DELETE:
			p[5] = id;
			break;
		case DB_TOOL_NONE:
			break;
		}
	}
}

/* Two transactions of one user that change the same tasks in another
 * order can deadlock; PostgreSQL aborts one, which simply runs again. */
#define ROUND_ATTEMPTS	3

int
db_round(const char *user_id, const char *idempotency_key,
    long long conversation_id, long long user_message_id, int round,
    const char *content, const char *tool_calls, struct db_tool_call *calls,
    size_t ncalls, struct chat_err *err)
{
	char		 conv[24], reply_to[24], nround[24], *ids;
	struct stmt	*s;
	PGconn		*c;
	PGresult	*failed;
	const char	*state;
	size_t		 i, n = ncalls + 3 + (idempotency_key != NULL);
	int		 attempt, rc = -1;

	snprintf(conv, sizeof(conv), "%lld", conversation_id);
	snprintf(reply_to, sizeof(reply_to), "%lld", user_message_id);
	snprintf(nround, sizeof(nround), "%d", round);
	s = calloc(n, sizeof(*s));
	ids = calloc(ncalls + 1, ROUND_ID_LEN);
	if (s == NULL || ids == NULL) {
		free(s);
		free(ids);
		return err_oom(err);
	}
	s[0] = (struct stmt){ SQL_TRANSACTION_SETTINGS, 0, { NULL }, NULL };
	s[1] = (struct stmt){ SQL_ROUND_LOCK, 2, { conv, user_id }, NULL };
	s[2] = (struct stmt){ SQL_ROUND_ASSISTANT, 6, { conv, user_id,
	    content, tool_calls, reply_to, nround }, NULL };
	tool_stmts(user_id, conv, reply_to, calls, ncalls, ids, s + 3);
	if (idempotency_key != NULL)
		s[n - 1] = (struct stmt){ SQL_ROUND_LEASE, 2, { user_id,
		    idempotency_key }, NULL };

	for (attempt = 1; attempt <= ROUND_ATTEMPTS; attempt++) {
		if ((c = db_conn(err)) == NULL)
			break;
		if (pipeline_run(c, s, n, &failed) == 0) {
			rc = 0;
			break;
		}
		stmts_clear(s, n);
		state = failed != NULL ?
		    PQresultErrorField(failed, PG_DIAG_SQLSTATE) : NULL;
		if (state != NULL && attempt < ROUND_ATTEMPTS &&
		    (strcmp(state, SQLSTATE_DEADLOCK) == 0 ||
		    strcmp(state, SQLSTATE_SERIALIZATION) == 0)) {
			PQclear(failed);
			continue;
		}
		if (failed != NULL || conn != NULL)
			db_fail(failed, err);
		else
			err_set(err, 503, "database_unavailable",
			    "The database is unavailable; try again shortly.");
		PQclear(failed);
		break;
	}
	for (i = 0; rc == 0 && i < ncalls; i++)
		if ((calls[i].result = strdup(PQgetvalue(s[i + 3].res, 0,
		    0))) == NULL)
			rc = err_oom(err);
	stmts_clear(s, n);
	free(s);
	free(ids);
	return rc;
}

int
db_turn_finish(const char *user_id, long long conversation_id,
    long long user_message_id, const char *answer, struct chat_err *err)
{
	char		 conv[24], reply_to[24];
	const char	*params[4] = { user_id, conv, answer, reply_to };
	PGresult	*res;
	int		 rc = 0;

	snprintf(conv, sizeof(conv), "%lld", conversation_id);
	snprintf(reply_to, sizeof(reply_to), "%lld", user_message_id);
	if (run(SQL_TURN_FINISH, 4, params, PGRES_TUPLES_OK, &res, err) == -1)
		return -1;
	if (PQntuples(res) == 0)
		rc = err_set(err, 404, "conversation_not_found",
		    "The conversation was deleted.");
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

static const char SQL_CONVERSATION_DELETE[] =
    "DELETE FROM conversations WHERE id = $2 AND user_id = $1";

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
	if (run(sql, n, params, PGRES_TUPLES_OK, &res, err) == -1)
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
		return err_set(err, 404, "conversation_not_found",
		    "No such conversation.");
	}
	if (out->n == 1 && PQgetisnull(out->res, 0, 0))
		out->n = 0;
	return 0;
}

int
db_conversation_delete(const char *user_id, long long conversation_id,
    struct chat_err *err)
{
	char		 conv[24];
	const char	*params[2] = { user_id, conv };
	PGresult	*res;
	int		 rc = 0;

	snprintf(conv, sizeof(conv), "%lld", conversation_id);
	if (run(SQL_CONVERSATION_DELETE, 2, params, PGRES_COMMAND_OK, &res,
	    err) == -1)
		return -1;
	if (strcmp(PQcmdTuples(res), "0") == 0)
		rc = err_set(err, 404, "conversation_not_found",
		    "No such conversation.");
	PQclear(res);
	return rc;
}
