/* fuzz.h: what the harnesses share: copies of the input sized exactly, and
 * checks of the headers' promises that hold even under -DNDEBUG. */
#ifndef FUZZ_H
#define FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A broken promise is a crash, so libFuzzer keeps the input. */
#define FUZZ_CHECK(cond) do {						\
	if (!(cond)) {							\
		fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,	\
		    __LINE__, #cond);					\
		abort();						\
	}								\
} while (0)

/* The bytes in a heap block of exactly n bytes (one for n == 0), not
 * NUL-terminated: a read one past the end is an ASan report. The caller
 * frees. */
static inline char *
fuzz_bytes(const uint8_t *data, size_t n)
{
	char	*p;

	if ((p = malloc(n > 0 ? n : 1)) == NULL)
		abort();
	if (n > 0)
		memcpy(p, data, n);
	return p;
}

/* data[0..n) as a C string, as a FastCGI parameter arrives: an embedded
 * NUL ends it. The caller frees. */
static inline char *
fuzz_string(const uint8_t *data, size_t n)
{
	char	*p;

	if ((p = malloc(n + 1)) == NULL)
		abort();
	if (n > 0)
		memcpy(p, data, n);
	p[n] = '\0';
	return p;
}

#endif
