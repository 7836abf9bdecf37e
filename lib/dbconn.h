/* dbconn.h: the worker's PostgreSQL connection, for db.c's statements
 * only (the rest of the worker goes through db.h). One connection per
 * worker thread, opened when first needed and again after a failure;
 * when the database changes under a statement (a failover), a statement
 * runs once more on a new connection where failover.h says that cannot
 * store anything twice. A statement that runs alone without settings
 * (db.c's calls of schema.sql's functions; db.c's static text, known by
 * its address) is prepared once a connection, unless a pooler in
 * transaction mode has shown that connections do not keep them.
 *
 * Results handed out are the caller's to PQclear(); errors are set in
 * err as db.h's are (503 database_unavailable, or the meaning a
 * constraint failure has for a turn: 409, 404). */
#ifndef DBCONN_H
#define DBCONN_H

#include <stddef.h>

#include <libpq-fe.h>

#include "failover.h"

struct chat_err;

/* Gives up a keyed turn's lease (schema.sql: chat_turn_release()): a
 * turn's own release and the one owed across connections. */
extern const char SQL_TURN_RELEASE[];

/* One statement of a pipeline: what to send, and its result once read. */
struct dbconn_stmt {
	const char	*sql;
	int		 nparams;
	const char	*params[9];
	PGresult	*res;
};

/* The thread's connection, (re)opened as needed; NULL with err 503. */
PGconn	*dbconn_get(struct chat_err *err);

/* Closes the thread's connection: the next statement opens another. */
void	 dbconn_drop(void);

/* A new request: its wait for a primary starts afresh (db_request_begin). */
void	 dbconn_request_begin(void);

/* The thread ends: its connection closed, and what it owed forgotten
 * (db_cleanup). */
void	 dbconn_cleanup(void);

/* Runs one statement as a transaction of its own and checks its status
 * against want; with settings, behind the settings of a statement
 * outside a turn (statement_timeout, no bitmap scans), in the same round
 * trip. Without settings, sql must be a static string: it is prepared
 * once a connection and known by its address. Where it fails because the database changed under it, it runs
 * once more on a new connection as again allows; *unsure (unless NULL)
 * then says whether the first run may have committed. 0 with *res set,
 * or -1 with *res NULL and err set. */
int	 dbconn_execute(const char *sql, int settings, int n,
	    const char *const *params, ExecStatusType want,
	    enum failover_again again, PGresult **res, int *unsure,
	    struct chat_err *err);

/* Runs s[0..n) in one pipeline, one implicit transaction: again after a
 * deadlock or a serialization failure, and once more on a new
 * connection after a failover, whatever the first run's outcome (the
 * statements must store what they store once: a second run after a
 * commit fails on a unique index, answered 503 so that a keyed retry
 * resumes). 0 with each s[i].res set, or -1 with err. */
int	 dbconn_pipeline(struct dbconn_stmt *s, size_t n,
	    struct chat_err *err);

/* PQclear()s s[0..n)'s results. */
void	 dbconn_stmts_clear(struct dbconn_stmt *s, size_t n);

/* Notes a keyed turn's lease that could not be given up (the database
 * was gone): given up on the thread's next connection. */
void	 dbconn_owe_release(const char *user_id, const char *idempotency_key,
	    long long user_message_id);

#endif
