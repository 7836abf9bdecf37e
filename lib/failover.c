/* failover.c: what a failed statement says when the database may have
 * changed under the worker, and whether it may run again (failover.h). */
#include <string.h>

#include "failover.h"

/* The SQLSTATEs of a server that is going away, not taking connections
 * or not taking writes (PostgreSQL's Appendix A), which it sends as the
 * statement's error: the statement failed as a whole and its
 * transaction was rolled back, but a connection to the new primary
 * would run it. */
static const char *const failover_states[] = {
	"25006",	/* read_only_sql_transaction: a demoted primary, or
			 * one made read-only while it is promoted */
	"57P01",	/* admin_shutdown: fast shutdown, demotion, or
			 * pg_terminate_backend() */
	"57P02",	/* crash_shutdown: another backend crashed */
	"57P03",	/* cannot_connect_now: starting up or shutting down */
};

enum failover_kind
failover_kind(const char *sqlstate, int connection_ok, int committed_locally)
{
	size_t	 i;

	if (committed_locally)
		return FAILOVER_UNKNOWN;
	if (sqlstate == NULL)
		return connection_ok ? FAILOVER_NONE : FAILOVER_UNKNOWN;
	/* Class 08, connection exception: what a pooler (pgbouncer's
	 * "server conn crashed?", 08P01) says when its server connection
	 * broke under the statement, which may have committed first. */
	if (strncmp(sqlstate, "08", 2) == 0)
		return FAILOVER_UNKNOWN;
	for (i = 0; i < sizeof(failover_states) / sizeof(failover_states[0]);
	    i++)
		if (strcmp(sqlstate, failover_states[i]) == 0)
			return FAILOVER_ROLLED_BACK;
	return FAILOVER_NONE;
}

int
failover_may_retry(enum failover_kind kind, enum failover_again again)
{
	switch (kind) {
	case FAILOVER_ROLLED_BACK:
		return 1;
	case FAILOVER_UNKNOWN:
		return again == FAILOVER_AGAIN_ALWAYS;
	default:
		return 0;
	}
}

/* syncrep.c: a backend terminated while it waits for the standby to
 * confirm a commit first warns, with admin_shutdown's SQLSTATE, that
 * "the transaction has already committed locally, but might not have
 * been replicated to the standby", then ends with a FATAL 57P01. */
int
failover_committed_locally(const char *severity, const char *sqlstate)
{
	return severity != NULL && sqlstate != NULL &&
	    strcmp(severity, "WARNING") == 0 && strcmp(sqlstate, "57P01") == 0;
}
