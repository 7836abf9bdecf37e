/* url.c: reading the parts of a request URI: percent-decoding a path
 * segment and finding a query parameter (url.h). */
#include <string.h>

#include "url.h"

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decodes s[0..len) into out (NUL-terminated); in a query
 * (plus_is_space) '+' is a space. 0, or -1 when malformed or too long. */
static int
percent_decode(const char *s, size_t len, int plus_is_space, char *out,
    size_t outlen)
{
	size_t	 i, o = 0;
	int	 hi, lo;

	/* No room even for the NUL: the loop's check would not run for an
	 * empty value, and out[0] would be written past the end. */
	if (outlen == 0)
		return -1;
	for (i = 0; i < len; i++) {
		if (o + 1 >= outlen)
			return -1;
		if (s[i] == '%') {
			/* "%4" at the end, a non-hex digit, or %00, which
			 * would cut the value short: malformed. */
			if (i + 2 >= len ||
			    (hi = hexval((unsigned char)s[i + 1])) < 0 ||
			    (lo = hexval((unsigned char)s[i + 2])) < 0 ||
			    (hi == 0 && lo == 0))
				return -1;
			out[o++] = (char)(hi * 16 + lo);
			i += 2;
		} else
			out[o++] = s[i] == '+' && plus_is_space ? ' ' : s[i];
	}
	out[o] = '\0';
	return 0;
}

static int
query_decode(const char *s, size_t len, char *out, size_t outlen)
{
	return percent_decode(s, len, 1, out, outlen);
}

int
url_segment_decode(const char *s, size_t len, char *out, size_t outlen)
{
	if (percent_decode(s, len, 0, out, outlen) == -1)
		return -1;
	/* "%2F" would make one segment look like two to whoever reads
	 * the decoded value as a path. */
	return strchr(out, '/') != NULL ? -1 : 0;
}

int
url_query_get(const char *query, const char *name, char *out,
    size_t outlen)
{
	size_t		 namelen = strlen(name), pairlen;
	const char	*p = query, *amp, *eq;

	while (p != NULL && *p != '\0') {
		amp = strchr(p, '&');
		pairlen = amp != NULL ? (size_t)(amp - p) : strlen(p);
		eq = memchr(p, '=', pairlen);
		if ((eq != NULL ? (size_t)(eq - p) : pairlen) == namelen &&
		    strncmp(p, name, namelen) == 0) {
			if (eq == NULL)
				return query_decode("", 0, out, outlen) == 0 ?
				    1 : -1;
			return query_decode(eq + 1, pairlen - namelen - 1,
			    out, outlen) == 0 ? 1 : -1;
		}
		p = amp != NULL ? amp + 1 : NULL;
	}
	return 0;
}
