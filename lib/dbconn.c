/* dbconn.c: the worker's PostgreSQL connection and how a statement runs
 * on it: (re)connecting, following the primary when it changes
 * (failover.h), pipelines, and turning failures into errors
 * (dbconn.h). */
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "clock.h"
#include "config.h"
#include "dbconn.h"
#include "err.h"
#include "failover.h"
#include "log.h"

const char SQL_TURN_RELEASE[] = "SELECT chat_turn_release($1, $2, $3)";

/* The worker's one connection: NULL until first needed, and again after a
 * failure, so the next request reconnects instead of the worker dying.
 * One per worker thread (CHAT_WORKER_THREADS). */
static _Thread_local PGconn	*conn;

/* When the database changes under a request (its primary gone, a node
 * now read-only), the request looks for the new primary until this
 * deadline on clock_ms(), set at its first such failure (0: none yet);
 * db_request_begin() clears it. And whether the server warned, during
 * the statement running now, that its commit was already local when it
 * was cut off (failover.h). */
static _Thread_local long long	 failover_deadline_ms;
static _Thread_local int	 committed_locally;

/* A keyed turn's lease that this thread could not give up because the
 * database was gone (db_turn_release() failed, or chat_turn_begin() may
 * have committed): given up on its next connection, so that the
 * client's retry, wherever it lands, need not wait out the lease once
 * that connection is made. One at a time: a thread serves one turn.
 * Strings the thread owns. */
static _Thread_local char	*owed_user, *owed_key;
static _Thread_local long long	 owed_message;

/* How long a request waits for a primary once its statement failed for
 * a failover: pg_auto_failover's promotion with the settings of
 * t/lib/Failover.pm takes about five seconds from the old primary's
 * death, most of it detection; an operator whose manager takes longer
 * lets clients retry the 503 with their Idempotency-Key. Long enough to
 * ride out a switchover, short enough that the worker is not held. */
#define FAILOVER_WAIT_MS	4000
#define FAILOVER_PAUSE_MS	50	/* first pause between tries, */
#define FAILOVER_PAUSE_MAX_MS	500	/* doubled up to this */

/* SQLSTATEs we treat apart from "the database is unavailable". */
#define SQLSTATE_UNIQUE		"23505"	/* a turn's round stored twice */
#define SQLSTATE_FOREIGN_KEY	"23503"	/* conversation deleted mid-turn */
#define SQLSTATE_DEADLOCK	"40P01"
#define SQLSTATE_SERIALIZATION	"40001"

/* The statements outside a turn (browsing, the retry of a keyed turn,
 * the health check) start their round trip with settings local to its
 * transaction: they cannot be a session SET (pgbouncer in transaction
 * mode) nor startup options (pgbouncer 1.18 refuses them). A turn's own
 * statements are schema.sql's functions, which carry their settings.
 *
 * statement_timeout: a query stuck on a lock or a bad plan fails the
 * request with a 503 instead of holding the worker; 5 s is far above any
 * statement here.
 *
 * enable_bitmapscan off: a page of messages is read along
 * messages_conversation_id_idx; when the statistics say conversations are
 * short, PostgreSQL prefers a bitmap scan of the whole conversation and a
 * sort, whose cost grows with the conversation, which a turn's must not.
 * Every statement here is an index lookup of a few rows, so
 * no plan is lost by taking bitmaps away. */
#define STATEMENT_TIMEOUT_MS	"5000"
static const char SQL_TRANSACTION_SETTINGS[] =
    "SELECT set_config('statement_timeout', '" STATEMENT_TIMEOUT_MS "', true),"
    " set_config('enable_bitmapscan', 'off', true)";

/* Statements prepared once a connection and then only bound and run:
 * PostgreSQL parses, analyses and plans an unnamed statement anew every
 * time, a sixth of what a turn's two statements cost it (about 190,000
 * of 1.2 million instructions, bench/instructions.pl), while a prepared
 * one keeps its parse tree and, after a few runs, one generic plan.
 * Every statement that runs alone and carries no settings goes this way
 * (the calls of schema.sql's functions); pipelines stay unnamed.
 *
 * The name is the statement's text hashed, so that a name always means
 * one text: a pooler's server connection may hold statements that other
 * workers, of this build or another, prepared on it.
 *
 * A pooler in transaction mode (pgbouncer before 1.21, or later without
 * max_prepared_statements) hands each transaction to whichever server
 * connection is free, where what this connection prepared may not
 * exist: the statement then fails at Bind (26000) before anything ran,
 * runs again unnamed, and from then on every thread of the process sends
 * its statements unnamed, as before (they all talk to that pooler). */
#define PREPARED_MAX		16	/* statements a connection; db.c has 7 */
#define SQLSTATE_NO_STATEMENT	"26000"	/* invalid_sql_statement_name */
#define SQLSTATE_DUPLICATE_STATEMENT "42P05"

struct prepared {
	const char	*sql;		/* db.c's static text: its address */
	char		 name[32];	/* "todo_chat_" and 16 hex digits */
};

/* What the thread's connection has prepared; emptied with the
 * connection (dbconn_drop()). */
static _Thread_local struct prepared	prepared[PREPARED_MAX];
static _Thread_local size_t		nprepared;

/* Set once a statement prepared on a connection was not found there:
 * the connections are pooled by transaction. For every thread. */
static atomic_int	prepare_off;

/* 64-bit FNV-1a of the statement's text, for its name. */
static uint64_t
sql_hash(const char *sql)
{
	uint64_t	 h = 0xcbf29ce484222325ULL;

	for (; *sql != '\0'; sql++)
		h = (h ^ (unsigned char)*sql) * 0x100000001b3ULL;
	return h;
}

/* Whether res (NULL: none came) failed with SQLSTATE state. */
static int
sqlstate_is(const PGresult *res, const char *state)
{
	const char	*s = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	return s != NULL && strcmp(s, state) == 0;
}

/* sql prepared on connection c (done already, or now); NULL with
 * *failed the result that says why not (NULL when the connection
 * broke, or when the table is full). */
static const struct prepared *
prepare(PGconn *c, const char *sql, int n, PGresult **failed)
{
	struct prepared	*p;
	PGresult	*res;
	size_t		 i;

	*failed = NULL;
	for (i = 0; i < nprepared; i++)
		if (prepared[i].sql == sql)
			return &prepared[i];
	if (nprepared == PREPARED_MAX)
		return NULL;
	p = &prepared[nprepared];
	snprintf(p->name, sizeof(p->name), "todo_chat_%016llx",
	    (unsigned long long)sql_hash(sql));
	res = PQprepare(c, p->name, sql, n, NULL);
	/* Already there under its name (a pooler's server connection that
	 * another worker prepared it on): the same text, by the name. */
	if (PQresultStatus(res) != PGRES_COMMAND_OK &&
	    !sqlstate_is(res, SQLSTATE_DUPLICATE_STATEMENT)) {
		*failed = res;
		return NULL;
	}
	PQclear(res);
	p->sql = sql;
	nprepared++;
	return p;
}

/* Runs sql as a prepared statement where the connections keep them, else
 * unnamed: its result, or the failing one (NULL when the connection
 * broke), as PQexecParams() gives them. */
static PGresult *
exec_prepared(PGconn *c, const char *sql, int n, const char *const *params)
{
	const struct prepared	*p;
	PGresult		*res;

	if (atomic_load_explicit(&prepare_off, memory_order_relaxed))
		return PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
	if ((p = prepare(c, sql, n, &res)) == NULL) {
		/* It failed (res says why; NULL: the connection broke), or
		 * the table is full and it runs unnamed. */
		if (res != NULL || PQstatus(c) != CONNECTION_OK)
			return res;
		return PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
	}
	res = PQexecPrepared(c, p->name, n, params, NULL, NULL, 0);
	if (!sqlstate_is(res, SQLSTATE_NO_STATEMENT))
		return res;
	/* Bind found no such statement: nothing ran. */
	PQclear(res);
	if (!atomic_exchange(&prepare_off, 1))
		log_err("database: a statement prepared on this connection was "
		    "gone in the next transaction (a pooler in transaction "
		    "mode?); sending statements unprepared from now on");
	return PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
}

/* Whether the connection still serves: up, on a node that takes writes,
 * and with nothing to read between requests (the server only talks
 * unasked to say it is shutting down, or to close). */
static int
conn_alive(PGconn *c)
{
	struct pollfd	 pfd;
	const char	*read_only, *standby;

	if (PQstatus(c) != CONNECTION_OK)
		return 0;
	/* PostgreSQL 14 on reports these as they change, at the end of a
	 * statement: a node made read-only (pg_auto_failover does that to
	 * the one it is promoting, until the old primary is surely gone)
	 * or a standby is no primary, and a new connection goes through
	 * DATABASE_URL's hosts. NULL (an older server, a pooler that keeps
	 * them to itself): the statement's 25006 tells instead. */
	read_only = PQparameterStatus(c, "default_transaction_read_only");
	standby = PQparameterStatus(c, "in_hot_standby");
	if ((read_only != NULL && strcmp(read_only, "on") == 0) ||
	    (standby != NULL && strcmp(standby, "on") == 0))
		return 0;
	pfd.fd = PQsocket(c);
	pfd.events = POLLIN;
	pfd.revents = 0;
	/* Readable: a FATAL message (the backend was terminated, the
	 * server is shutting down) or the end of the stream. libpq would
	 * read the message and call the connection fine until the next
	 * read finds it closed, failing a request that a new connection
	 * would serve. */
	return poll(&pfd, 1, 0) <= 0;
}

void
dbconn_drop(void)
{
	PQfinish(conn);
	conn = NULL;
	nprepared = 0;
}

/* libpq's notices: logged as its default receiver would print them, and
 * the one that says a commit was already local (failover.h) noted. */
static void
on_notice(void *arg, const PGresult *res)
{
	(void)arg;
	if (failover_committed_locally(PQresultErrorField(res,
	    PG_DIAG_SEVERITY_NONLOCALIZED), PQresultErrorField(res,
	    PG_DIAG_SQLSTATE)))
		committed_locally = 1;
	log_err("database notice: %s", PQresultErrorMessage(res));
}

/* Opens conn through DATABASE_URL (which comes last, so that its own
 * settings win over ours): 0, or -1 with conn holding libpq's error (or
 * NULL on ENOMEM).
 *
 * Keepalives and tcp_user_timeout: a primary that dies without a word
 * (its host gone, a partition) leaves a statement waiting on a silent
 * socket; these end the wait in about 11 s (5 s idle, then 3 probes 2 s
 * apart; 10 s for data sent but never acknowledged) instead of the
 * kernel's two hours, so that the request fails and the next one finds
 * the new primary. A busy server's kernel still answers the probes. */
static int
conn_open(const char *connect_timeout_s)
{
	static const char *const keys[] = { "connect_timeout",
	    "fallback_application_name", "keepalives_idle",
	    "keepalives_interval", "keepalives_count", "tcp_user_timeout",
	    "dbname", NULL };
	const char	*values[8] = { connect_timeout_s, "todo-chat", "5", "2",
	    "3", "10000", NULL, NULL };

	values[6] = config()->database_url;
	nprepared = 0;
	conn = PQconnectdbParams(keys, values, 1);
	if (conn == NULL || PQstatus(conn) != CONNECTION_OK)
		return -1;
	PQsetNoticeReceiver(conn, on_notice, NULL);
	return 0;
}

static void
owe_clear(void)
{
	free(owed_user);
	free(owed_key);
	owed_user = owed_key = NULL;
}

void
dbconn_owe_release(const char *user_id, const char *idempotency_key,
    long long user_message_id)
{
	owe_clear();
	if ((owed_user = strdup(user_id)) == NULL ||
	    (owed_key = strdup(idempotency_key)) == NULL) {
		owe_clear();
		return;
	}
	owed_message = user_message_id;
}

/* Gives up the owed lease on the new connection, if any is owed; it
 * stays owed when that fails too. */
static void
pay_release(void)
{
	char		 msg[24];
	const char	*params[3] = { owed_user, owed_key, msg };
	PGresult	*res;

	if (owed_key == NULL || conn == NULL)
		return;
	snprintf(msg, sizeof(msg), "%lld", owed_message);
	res = PQexecParams(conn, SQL_TURN_RELEASE, 3, NULL, params, NULL,
	    NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK) {
		log_err("database: gave up the lease of a turn the database "
		    "lost track of");
		owe_clear();
	}
	PQclear(res);
}

/* Logs why the last connection attempt failed; NULL with err 503. */
static PGconn *
conn_failed(struct chat_err *err)
{
	log_err("database connection failed: %s", conn != NULL ?
	    PQerrorMessage(conn) : "out of memory");
	dbconn_drop();
	err_set(err, 503, "database_unavailable",
	    "The database is unavailable; try again shortly.");
	return NULL;
}

/* A refusal that comes at once may pass in a moment: a pooler's listen
 * queue overflows when hundreds of workers connect together (a unix
 * socket then says EAGAIN), and a server that is starting refuses for a
 * while. Two quick retries ride that out; a database that stays down
 * still fails within a tenth of a second, and one that does not answer
 * fails once, after connect_timeout. */
#define CONNECT_TRIES		3
#define CONNECT_QUICK_MS	100
static const long	connect_pause_ms[CONNECT_TRIES - 1] = { 10, 50 };

/* The worker's connection, (re)opened as needed; NULL with err 503. */
PGconn *
dbconn_get(struct chat_err *err)
{
	long long	 start;
	int		 try;

	if (conn != NULL && conn_alive(conn))
		return conn;
	if (conn != NULL)
		dbconn_drop();
	for (try = 0; ; try++) {
		start = clock_ms();
		if (conn_open("5") == 0) {
			pay_release();
			return conn;
		}
		if (try == CONNECT_TRIES - 1 ||
		    clock_ms() - start > CONNECT_QUICK_MS)
			break;
		dbconn_drop();
		clock_sleep_ms(connect_pause_ms[try]);
	}
	return conn_failed(err);
}

/* A new connection after a statement failed for a failover: libpq goes
 * through DATABASE_URL's hosts (target_session_attrs=read-write skips
 * standbys and a promoted node not yet taking writes) until one is the
 * primary, and again, after a pause, while none is, up to the request's
 * FAILOVER_WAIT_MS. NULL with err 503 when that runs out. */
static PGconn *
db_reconnect(struct chat_err *err)
{
	long long	 start = clock_ms(), left;
	long		 pause_ms = FAILOVER_PAUSE_MS;
	char		 timeout_s[24];

	dbconn_drop();
	if (failover_deadline_ms == 0)
		failover_deadline_ms = start + FAILOVER_WAIT_MS;
	for (;;) {
		/* libpq's connect_timeout is per host, 2 s at least; a
		 * host that does not answer at all must not take the whole
		 * wait from the others. */
		left = (failover_deadline_ms - clock_ms()) / 1000;
		snprintf(timeout_s, sizeof(timeout_s), "%lld",
		    left < 2 ? 2 : left > 5 ? 5 : left);
		if (conn_open(timeout_s) == 0) {
			log_err("database: reconnected after %lld ms",
			    clock_ms() - start);
			pay_release();
			return conn;
		}
		if (failover_deadline_ms - clock_ms() <= pause_ms)
			break;
		dbconn_drop();
		clock_sleep_ms(pause_ms);
		if ((pause_ms *= 2) > FAILOVER_PAUSE_MAX_MS)
			pause_ms = FAILOVER_PAUSE_MAX_MS;
	}
	return conn_failed(err);
}

void
dbconn_request_begin(void)
{
	failover_deadline_ms = 0;
}

void
dbconn_cleanup(void)
{
	dbconn_drop();
	owe_clear();
}

/* What a failed result (NULL: none came) says about the database. */
static enum failover_kind
failure_kind(const PGresult *res)
{
	return failover_kind(res != NULL ?
	    PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL,
	    conn != NULL && PQstatus(conn) == CONNECTION_OK,
	    committed_locally);
}

/* Turns a failed result into err: constraint outcomes a turn expects
 * keep their meaning, anything else is logged and the database called
 * unavailable. The connection is dropped when libpq says it broke. */
static int
db_fail(const PGresult *res, struct chat_err *err)
{
	if (sqlstate_is(res, SQLSTATE_UNIQUE))
		return err_set(err, 409, "turn_in_progress", "Another attempt "
		    "of this turn got there first; retry to see its answer.");
	if (sqlstate_is(res, SQLSTATE_FOREIGN_KEY))
		return err_set(err, 404, "conversation_not_found",
		    "The conversation was deleted.");
	log_err("database error: %s", res != NULL ?
	    PQresultErrorMessage(res) : PQerrorMessage(conn));
	/* A connection to a node that no longer takes writes is up but
	 * of no use: the next statement connects through the list. */
	if (PQstatus(conn) != CONNECTION_OK ||
	    failure_kind(res) != FAILOVER_NONE)
		dbconn_drop();
	return err_set(err, 503, "database_unavailable",
	    "The database is unavailable; try again shortly.");
}


static int	pipeline_run(PGconn *, struct dbconn_stmt *, size_t, PGresult **);

/* Runs one statement as a transaction of its own and returns its result,
 * or the failing one (NULL when the connection broke): PQresultStatus()
 * of either says which. With settings, the statement travels behind
 * SQL_TRANSACTION_SETTINGS in one pipeline, still one round trip. */
static PGresult *
exec_params(PGconn *c, const char *sql, int settings, int n,
    const char *const *params)
{
	struct dbconn_stmt	 s[2];
	PGresult	*failed;

	if (!settings)
		return exec_prepared(c, sql, n, params);
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

/* Whether a statement that failed for a failover (kind) runs once more
 * on a new connection, as `again` allows and only once (*retried):
 * 1 with conn reopened (and *unsure set when the failed run may have
 * committed), 0 when it does not, -1 with err when no primary answered
 * in time. */
static int
run_again(const PGresult *failed, enum failover_kind kind,
    enum failover_again again, int *retried, int *unsure,
    struct chat_err *err)
{
	if (*retried || !failover_may_retry(kind, again))
		return 0;
	*retried = 1;
	if (kind == FAILOVER_UNKNOWN && unsure != NULL)
		*unsure = 1;
	log_err("database: %s%s; running the statement again on a new "
	    "connection", kind == FAILOVER_UNKNOWN ? "outcome unknown: " : "",
	    failed != NULL ? PQresultErrorMessage(failed) :
	    PQerrorMessage(conn));
	return db_reconnect(err) == NULL ? -1 : 1;
}

/* Runs one statement on the worker's connection and checks its status.
 * When it fails because the database changed under it, it runs once
 * more on a new connection where `again` allows (failover.h); *unsure
 * (unless unsure is NULL) then says whether the first run may have
 * committed. 0 and *res the caller's to PQclear(); or -1, *res NULL and
 * err set (db_fail() has logged it and dropped a useless connection). */
int
dbconn_execute(const char *sql, int settings, int n,
    const char *const *params, ExecStatusType want, enum failover_again again, PGresult **res,
    int *unsure, struct chat_err *err)
{
	PGconn	*c;
	int	 retried = 0, rc;

	*res = NULL;
	if (unsure != NULL)
		*unsure = 0;
	if ((c = dbconn_get(err)) == NULL)
		return -1;
	for (;;) {
		committed_locally = 0;
		*res = exec_params(c, sql, settings, n, params);
		if (PQresultStatus(*res) == want)
			return 0;
		rc = run_again(*res, failure_kind(*res), again, &retried,
		    unsure, err);
		if (rc == 0)
			db_fail(*res, err);
		PQclear(*res);
		*res = NULL;
		if (rc != 1)
			return -1;
		c = conn;
	}
}

/* Reads the results of n pipelined statements and the sync point. 0 when
 * every statement succeeded; else -1 and *failed is the first failing
 * result (the caller clears it), NULL when the connection broke. */
static int
pipeline_read(PGconn *c, struct dbconn_stmt *s, size_t n, PGresult **failed)
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
pipeline_run(PGconn *c, struct dbconn_stmt *s, size_t n, PGresult **failed)
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
		dbconn_drop();
		return -1;
	}
	rc = pipeline_read(c, s, n, failed);
	if (!PQexitPipelineMode(c)) {
		log_err("database error: %s", PQerrorMessage(c));
		dbconn_drop();
		return -1;
	}
	return rc;
}

void
dbconn_stmts_clear(struct dbconn_stmt *s, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++) {
		PQclear(s[i].res);
		s[i].res = NULL;
	}
}

/* Two transactions of one user that change the same tasks in another
 * order can deadlock; PostgreSQL aborts one, which simply runs again. */
#define ROUND_ATTEMPTS	3

/* Runs a round's pipeline: again where it runs after a deadlock or a
 * serialization failure (ROUND_ATTEMPTS runs in all), and once more on
 * a new connection after a failover, whatever its outcome was:
 * messages_round_once_idx stores a round once, so a second run after a
 * first that committed fails on it instead of running the tools again.
 * That 409 then means the round is stored but its results went with the
 * connection: a 503, after which a keyed retry resumes past the round. */
int
dbconn_pipeline(struct dbconn_stmt *s, size_t n, struct chat_err *err)
{
	PGconn		*c;
	PGresult	*failed;
	int		 attempt, retried = 0, unsure = 0, rc;

	if ((c = dbconn_get(err)) == NULL)
		return -1;
	for (attempt = 1; ; attempt++) {
		committed_locally = 0;
		if (pipeline_run(c, s, n, &failed) == 0)
			return 0;
		dbconn_stmts_clear(s, n);
		if (attempt < ROUND_ATTEMPTS &&
		    (sqlstate_is(failed, SQLSTATE_DEADLOCK) ||
		    sqlstate_is(failed, SQLSTATE_SERIALIZATION))) {
			PQclear(failed);
			continue;
		}
		rc = run_again(failed, failure_kind(failed), FAILOVER_AGAIN_ALWAYS, &retried,
		    &unsure, err);
		if (rc == 0 && (failed != NULL || conn != NULL))
			db_fail(failed, err);
		else if (rc == 0)
			err_set(err, 503, "database_unavailable",
			    "The database is unavailable; try again shortly.");
		if (rc == 0 && unsure && err->status == 409)
			err_set(err, 503, "database_unavailable", "The "
			    "database changed while the turn was stored; "
			    "retry with the same Idempotency-Key.");
		PQclear(failed);
		if (rc != 1)
			return -1;
		c = conn;
	}
}

