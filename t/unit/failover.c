/* t/unit/failover.c: what a failed statement means when the primary may
 * have changed (failover.h): its kind from what libpq said, and whether
 * it may run again on a new connection. Prints TAP. */
#include <stdio.h>

#include "failover.h"

#define NONE	FAILOVER_NONE
#define ROLLED	FAILOVER_ROLLED_BACK
#define UNKNOWN	FAILOVER_UNKNOWN

static const struct {
	const char	*name;
	const char	*sqlstate;	/* NULL: libpq's own error */
	int		 connection_ok;
	int		 committed_locally;
	enum failover_kind kind;
	int		 again_if_rolled_back, again_always;
} cases[] = {
	{ "read-only node (demoted primary)", "25006", 1, 0, ROLLED, 1, 1 },
	{ "terminated: fast shutdown, demotion", "57P01", 0, 0, ROLLED, 1, 1 },
	{ "crash of another backend",	"57P02", 0, 0, ROLLED, 1, 1 },
	{ "server starting or stopping", "57P03", 0, 0, ROLLED, 1, 1 },
	{ "connection failure a pooler reports", "08006", 0, 0, UNKNOWN,
	    0, 1 },
	{ "pgbouncer: server conn crashed?", "08P01", 0, 0, UNKNOWN, 0, 1 },
	{ "connection lost mid-statement", NULL, 0, 0, UNKNOWN, 0, 1 },
	{ "terminated after a local commit (sync standby wait)", "57P01",
	    0, 1, UNKNOWN, 0, 1 },
	{ "libpq's own error, connection up (out of memory)", NULL, 1, 0,
	    NONE, 0, 0 },
	{ "unique violation: the statement's own", "23505", 1, 0, NONE,
	    0, 0 },
	{ "deadlock: retried where it runs", "40P01", 1, 0, NONE, 0, 0 },
	{ "statement timeout", "57014", 1, 0, NONE, 0, 0 },
	{ "lock timeout", "55P03", 1, 0, NONE, 0, 0 },
	{ "undefined function (schema not loaded)", "42883", 1, 0, NONE,
	    0, 0 },
	{ "a FATAL of another class, connection gone", "53200", 0, 0, NONE,
	    0, 0 },
};

static const struct {
	const char	*name, *severity, *sqlstate;
	int		 committed_locally;
} notices[] = {
	{ "sync standby wait cut by shutdown", "WARNING", "57P01", 1 },
	{ "sync standby wait cancelled by the user", "WARNING", "01000", 0 },
	{ "a plain notice", "NOTICE", "00000", 0 },
	{ "the FATAL itself is no notice", "FATAL", "57P01", 0 },
	{ "no severity", NULL, "57P01", 0 },
};

int
main(void)
{
	size_t	 i, n = sizeof(cases) / sizeof(cases[0]);
	size_t	 nn = sizeof(notices) / sizeof(notices[0]);
	size_t	 t = 0;
	enum failover_kind kind;

	printf("1..%zu\n", 3 * n + nn);
	for (i = 0; i < n; i++) {
		kind = failover_kind(cases[i].sqlstate, cases[i].connection_ok,
		    cases[i].committed_locally);
		printf("%sok %zu - %s: kind\n", kind == cases[i].kind ? "" :
		    "not ", ++t, cases[i].name);
		printf("%sok %zu - %s: again if rolled back\n",
		    failover_may_retry(kind, FAILOVER_AGAIN_IF_ROLLED_BACK) ==
		    cases[i].again_if_rolled_back ? "" : "not ", ++t,
		    cases[i].name);
		printf("%sok %zu - %s: again always\n",
		    failover_may_retry(kind, FAILOVER_AGAIN_ALWAYS) ==
		    cases[i].again_always ? "" : "not ", ++t, cases[i].name);
	}
	for (i = 0; i < nn; i++)
		printf("%sok %zu - notice: %s\n", failover_committed_locally(
		    notices[i].severity, notices[i].sqlstate) ==
		    notices[i].committed_locally ? "" : "not ", ++t,
		    notices[i].name);
	return 0;
}
