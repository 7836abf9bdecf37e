/* keyring.h: the process's public keys for tokens: the JWKS that
 * CHAT_JWT_JWKS names (a file or an http(s) URL), read at start and again
 * when a token names a kid the set does not hold, at most once every
 * KEYRING_REFRESH_MS, so that made-up kids cannot become a flood of
 * fetches. The worker threads share the set; a lookup takes a lock no
 * other thread holds for long and makes no system call. */
#ifndef KEYRING_H
#define KEYRING_H

#include <openssl/types.h>

#include "err.h"

#define KEYRING_REFRESH_MS	5000L
/* A fetch happens inside the request that needed it: it must not hold
 * that request (and its worker) long. */
#define KEYRING_FETCH_TIMEOUT_MS 3000L
/* Identity providers publish a few keys, a few KiB. */
#define KEYRING_MAX_BYTES	(1024 * 1024)

/* Once per process, before the worker threads start. A file must hold a
 * set with a usable key; so must a URL that answers. A URL that does not
 * answer is no reason not to start: its tokens get 503 until it does. 0,
 * or -1 with a line logged (the caller exits). */
int	 keyring_init(const char *source);
/* Frees the keys at exit, once the other threads are gone. */
void	 keyring_cleanup(void);

/* The key for a token signed with alg (EdDSA, ES256, RS256, PS256) that
 * names kid (NULL: none, then only a set of exactly one usable key
 * answers). 0 and *pkey (the caller EVP_PKEY_free()s it), or -1 with err:
 * 401 invalid_token when no key of the set, even fetched again, fits;
 * 503 auth_unavailable when no set has ever been read. */
int	 keyring_key(const char *alg, const char *kid, EVP_PKEY **pkey,
	    struct chat_err *err);

#endif
