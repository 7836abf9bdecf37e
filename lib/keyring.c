/* keyring.c: the JWKS of CHAT_JWT_JWKS, read, kept and read again
 * (keyring.h). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "buf.h"
#include "clock.h"
#include "fetch.h"
#include "jwk.h"
#include "keyring.h"
#include "log.h"

/* What a read of the source came to. */
enum load {
	LOAD_OK,
	LOAD_UNREACHABLE,	/* no answer: down, refused, timed out */
	LOAD_INVALID,		/* an answer, but no set with a usable key */
};

/* Set by keyring_init() before the threads start, then read only. */
static const char	*source;
static int		 source_is_url;
static int		 fetch_ready;

/* The lock covers the set and the fetch bookkeeping; a fetch itself
 * runs outside it, so that lookups of known keys never wait for one. */
static pthread_mutex_t	 lock = PTHREAD_MUTEX_INITIALIZER;
static struct jwks	*current;	/* NULL: no set read yet */
static long long	 last_try_ms;	/* the last read begun */
static int		 fetching;	/* a thread is reading now */

static enum load
read_file(const char *path, struct buf *b, char *why, size_t whylen)
{
	char	 chunk[8192];
	ssize_t	 n;
	int	 fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		snprintf(why, whylen, "%s", strerror(errno));
		return LOAD_INVALID;
	}
	while ((n = read(fd, chunk, sizeof(chunk))) > 0)
		if (buf_add(b, chunk, (size_t)n) == -1) {
			snprintf(why, whylen, "over %d bytes",
			    KEYRING_MAX_BYTES);
			close(fd);
			return LOAD_INVALID;
		}
	if (n == -1)
		snprintf(why, whylen, "%s", strerror(errno));
	close(fd);
	return n == -1 ? LOAD_INVALID : LOAD_OK;
}

/* Reads the source into *set (which the caller frees). */
static enum load
load(struct jwks *set, char *why, size_t whylen)
{
	struct buf	 b = BUF_INIT(KEYRING_MAX_BYTES);
	enum load	 rc;

	memset(set, 0, sizeof(*set));
	if (source_is_url)
		rc = fetch_get(source, KEYRING_FETCH_TIMEOUT_MS, &b, why,
		    whylen) == 0 ? LOAD_OK : LOAD_UNREACHABLE;
	else
		rc = read_file(source, &b, why, whylen);
	if (rc == LOAD_OK && jwks_parse(b.data, b.len, set, why,
	    whylen) == -1)
		rc = LOAD_INVALID;
	if (rc == LOAD_OK && set->n == 0) {
		snprintf(why, whylen, "no usable key (Ed25519, P-256, or RSA "
		    "of %d bits or more, for signatures) among %zu",
		    JWK_RSA_MIN_BITS, set->skipped);
		jwks_free(set);
		rc = LOAD_INVALID;
	}
	buf_free(&b);
	return rc;
}

/* Makes set the current one; the old set is freed (keys handed out
 * hold references of their own). */
static void
install(struct jwks *set)
{
	struct jwks	*old, *copy;

	if ((copy = malloc(sizeof(*copy))) == NULL) {
		jwks_free(set);
		return;
	}
	*copy = *set;
	pthread_mutex_lock(&lock);
	old = current;
	current = copy;
	pthread_mutex_unlock(&lock);
	if (old != NULL) {
		jwks_free(old);
		free(old);
	}
}

int
keyring_init(const char *src)
{
	struct jwks	 set;
	char		 why[256];

	source = src;
	source_is_url = strncasecmp(src, "http://", 7) == 0 ||
	    strncasecmp(src, "https://", 8) == 0;
	if (source_is_url) {
		if (fetch_init() == -1) {
			log_err("CHAT_JWT_JWKS: libcurl did not start");
			return -1;
		}
		fetch_ready = 1;
	}
	last_try_ms = clock_ms();
	switch (load(&set, why, sizeof(why))) {
	case LOAD_OK:
		if (set.skipped > 0)
			log_err("CHAT_JWT_JWKS: %zu keys used, %zu of other "
			    "kinds skipped", set.n, set.skipped);
		install(&set);
		return 0;
	case LOAD_UNREACHABLE:
		log_err("CHAT_JWT_JWKS: %s: %s; tokens signed with its keys "
		    "get 503 until it answers", source, why);
		return 0;
	case LOAD_INVALID:
		break;
	}
	log_err("CHAT_JWT_JWKS=%s: %s: refusing to start", source, why);
	return -1;
}

void
keyring_cleanup(void)
{
	if (current != NULL) {
		jwks_free(current);
		free(current);
		current = NULL;
	}
	if (fetch_ready)
		fetch_cleanup();
	fetch_ready = 0;
}

/* What the current set says of a token. */
enum found {
	FOUND,
	NOT_HELD,	/* no key with its kid: a new one may have come */
	REFUSED,	/* a key the set holds does not fit, or no kid */
	NO_SET,
};

/* Under the lock: the key for alg and kid, up-referenced into *pkey. */
static enum found
find(const char *alg, const char *kid, EVP_PKEY **pkey)
{
	const struct jwk	*k = NULL;
	size_t			 i;

	if (current == NULL)
		return NO_SET;
	if (kid == NULL) {
		/* Without a kid, a token says nothing of its key: only a
		 * set of one leaves no choice to be made. */
		if (current->n != 1)
			return REFUSED;
		k = &current->keys[0];
	} else {
		for (i = 0; i < current->n && k == NULL; i++)
			if (current->keys[i].kid != NULL &&
			    strcmp(current->keys[i].kid, kid) == 0)
				k = &current->keys[i];
		if (k == NULL)
			return NOT_HELD;
	}
	if (!jwk_fits(k, alg) || EVP_PKEY_up_ref(k->pkey) != 1)
		return REFUSED;
	*pkey = k->pkey;
	return FOUND;
}

/* Reads the source again for a token the set cannot answer. */
static void
refresh(void)
{
	struct jwks	 set;
	char		 why[256];

	switch (load(&set, why, sizeof(why))) {
	case LOAD_OK:
		install(&set);
		break;
	case LOAD_UNREACHABLE:
	case LOAD_INVALID:
		log_err("CHAT_JWT_JWKS: reading %s again: %s; the keys read "
		    "before stay", source, why);
		break;
	}
	pthread_mutex_lock(&lock);
	fetching = 0;
	pthread_mutex_unlock(&lock);
}

int
keyring_key(const char *alg, const char *kid, EVP_PKEY **pkey,
    struct chat_err *err)
{
	enum found	 f;
	long long	 now = clock_ms();
	int		 again = 0;

	*pkey = NULL;
	pthread_mutex_lock(&lock);
	f = find(alg, kid, pkey);
	if ((f == NOT_HELD || f == NO_SET) && !fetching &&
	    now - last_try_ms >= KEYRING_REFRESH_MS) {
		fetching = again = 1;
		last_try_ms = now;
	}
	pthread_mutex_unlock(&lock);
	if (again) {
		refresh();
		pthread_mutex_lock(&lock);
		f = find(alg, kid, pkey);
		pthread_mutex_unlock(&lock);
	}
	if (f == FOUND)
		return 0;
	if (f == NO_SET)
		return err_set(err, 503, "auth_unavailable", "The keys that "
		    "check this token cannot be read right now; try again "
		    "shortly.");
	return err_set(err, 401, "invalid_token", "The token is not signed "
	    "with a key this service knows.");
}
