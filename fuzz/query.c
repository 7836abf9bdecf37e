/* fuzz/query.c: url_query_get() and browse_paging() on a query string,
 * url_segment_decode() on the same bytes as a path segment. */
/*
 * The query arrives as a FastCGI parameter, a C string. Each lookup
 * writes into a block of exactly outlen bytes, so a byte past it is an
 * ASan report; the names are those the handlers ask for.
 */
#include "browse.h"
#include "fuzz.h"
#include "url.h"

static const char *const names[] = { "limit", "before", "q" };
static const size_t outlens[] = { 0, 1, 2, 4, 32 };

static void
lookup(const char *query, const char *name, size_t outlen)
{
	char	*out;
	int	 rc;

	if ((out = malloc(outlen > 0 ? outlen : 1)) == NULL)
		abort();
	rc = url_query_get(query, name, out, outlen);
	FUZZ_CHECK(rc >= -1 && rc <= 1);
	if (rc == 1)
		FUZZ_CHECK(strlen(out) < outlen);
	free(out);
}

/* The segment is not NUL-terminated (the router hands over a length),
 * and out is exactly outlen bytes. */
static void
segment(const uint8_t *data, size_t size, size_t outlen)
{
	char	*in, *out;

	if ((in = malloc(size > 0 ? size : 1)) == NULL ||
	    (out = malloc(outlen > 0 ? outlen : 1)) == NULL)
		abort();
	memcpy(in, data, size);
	if (url_segment_decode(in, size, out, outlen) == 0) {
		FUZZ_CHECK(strlen(out) < outlen);
		FUZZ_CHECK(strchr(out, '/') == NULL);
	}
	free(in);
	free(out);
}

static void
paging(const char *query, int default_limit)
{
	struct chat_err	 err;
	long long	 before;
	int		 limit;

	memset(&err, 0, sizeof(err));
	if (browse_paging(query, default_limit, &limit, &before, &err) == 0) {
		FUZZ_CHECK(limit >= 1 && limit <= BROWSE_LIMIT_MAX);
		FUZZ_CHECK(before >= 0 && before <= 9007199254740991LL);
	} else
		FUZZ_CHECK(err.status == 400 && err.code != NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	*query;
	size_t	 i, j;

	query = fuzz_string(data, size);
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		for (j = 0; j < sizeof(outlens) / sizeof(outlens[0]); j++)
			lookup(query, names[i], outlens[j]);
	for (j = 0; j < sizeof(outlens) / sizeof(outlens[0]); j++)
		segment(data, size, outlens[j]);
	paging(query, BROWSE_CONVERSATIONS_DEFAULT);
	paging(query, BROWSE_MESSAGES_DEFAULT);
	free(query);
	return 0;
}
