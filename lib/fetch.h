/* fetch.h: one bounded HTTP(S) GET, for documents the service reads
 * from elsewhere now and then (a JWKS). Not for the model: remote.c has
 * its own kept connection and retries. */
#ifndef FETCH_H
#define FETCH_H

#include <stddef.h>

#include "buf.h"

/* Once per process, before threads start (libcurl's global set-up). 0 or
 * -1. fetch_cleanup() undoes it at exit. */
int	 fetch_init(void);
void	 fetch_cleanup(void);

/* GETs url (http or https, certificates verified, no redirect followed)
 * into out (emptied first; out->max bounds the body), within timeout_ms.
 * 0 on a 2xx answer; -1 otherwise, with why saying what went wrong for
 * the operator's log (never the body). */
int	 fetch_get(const char *url, long timeout_ms, struct buf *out,
	    char *why, size_t whylen);

#endif
