/* failover.h: what a failed statement says when the database may have
 * changed under the worker (its primary gone, promoted elsewhere, or
 * turned read-only), and whether the statement may run again on a new
 * connection. Pure: lib/db.c feeds it what libpq reported.
 *
 * A statement may run again only where that cannot apply it twice: when
 * the server said that nothing of it committed, or when running it twice
 * is running it once (a read; a write made once-only by a turn's
 * Idempotency-Key or by a unique index of schema.sql). A COMMIT whose
 * outcome is unknown (the connection went with the statement in flight)
 * is repeated only in the second case. */
#ifndef FAILOVER_H
#define FAILOVER_H

enum failover_kind {
	FAILOVER_NONE,		/* an error of the statement itself; the
				 * connection, if it is up, still serves */
	FAILOVER_ROLLED_BACK,	/* refused or aborted by a server going
				 * away, not accepting connections or
				 * read-only: nothing committed; the
				 * connection is no use any more */
	FAILOVER_UNKNOWN	/* the connection went with the statement
				 * sent (libpq's own error, or a pooler's
				 * class 08), or the server said it had
				 * committed locally when it was cut off:
				 * it may have committed */
};

/* How a statement may run again after a failover failure. */
enum failover_again {
	FAILOVER_AGAIN_IF_ROLLED_BACK,	/* only when nothing committed */
	FAILOVER_AGAIN_ALWAYS		/* twice is once (see above) */
};

/* The kind of a failed statement: sqlstate is the error's SQLSTATE
 * (NULL when libpq made the error itself, as it does for a connection
 * that broke), connection_ok whether libpq still calls the connection
 * up, committed_locally whether the server warned during the statement
 * that it had committed locally (failover_committed_locally()). */
enum failover_kind failover_kind(const char *sqlstate, int connection_ok,
	    int committed_locally);

/* 1 when a statement of that kind, run as `again` says, may run once
 * more on a new connection; else 0. */
int	 failover_may_retry(enum failover_kind kind,
	    enum failover_again again);

/* 1 when a notice (its non-localized severity and its SQLSTATE) is the
 * server's warning that a transaction committed locally while it waited
 * for its synchronous standby, and its connection is being terminated:
 * the error that follows is no proof of a rollback. */
int	 failover_committed_locally(const char *severity,
	    const char *sqlstate);

#endif
