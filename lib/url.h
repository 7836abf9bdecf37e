/* url.h: the parts of a request URI as the routes and handlers read them.
 * Pure: no I/O, for chat.fcgi.c, the browsing endpoints and their tests. */
#ifndef URL_H
#define URL_H

#include <stddef.h>

/* Finds name=value in a query string and copies the percent-decoded
 * value into out (size outlen). 1 found, 0 absent, -1 malformed or too
 * long. Pure, for the browsing endpoints and their tests. */
int	 url_query_get(const char *query, const char *name, char *out,
	    size_t outlen);

/* Percent-decodes the path segment s[0..len) into out (size outlen):
 * clients encode '@' and '+' in a user id as %40 and %2B. 0, or -1 when
 * malformed, too long, or decoding to a NUL or a '/'. Pure. */
int	 url_segment_decode(const char *s, size_t len, char *out,
	    size_t outlen);

#endif
