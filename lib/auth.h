/* auth.h: who is asking. An "Authorization: Bearer <JWT>" header, signed
 * with HS256 and CHAT_JWT_SECRET, or with EdDSA, ES256, RS256 or PS256
 * and a public key of CHAT_JWT_JWKS; the user id is the "sub" claim,
 * "exp" and "nbf" are enforced when present, "iss" and "aud" when an
 * issuer and an audience are configured. No I/O, no database; the only
 * state is each thread's keyed HMAC context, which changes no answer. */
#ifndef AUTH_H
#define AUTH_H

#include <stddef.h>
#include <time.h>

#include <openssl/types.h>

#include "err.h"

/* A user id is 1..AUTH_USER_ID_MAX bytes of [A-Za-z0-9._@+-]: it must fit
 * the user_id column and travel unescaped in /api/{user_id}/chat. */
#define AUTH_USER_ID_MAX	128

/* What tokens are checked against. Borrowed for the call. */
struct auth_keys {
	const char	*secret;	/* HS256; NULL: HS256 tokens refused */
	size_t		 secret_len;
	const char	*issuer;	/* NULL: "iss" not checked */
	const char	*audience;	/* NULL: "aud" not checked */
	/* The public key for a token signed with alg (EdDSA, ES256,
	 * RS256, PS256) that names kid (NULL: none): 0 and *pkey, which
	 * the caller EVP_PKEY_free()s, or -1 with err set (keyring_key()
	 * is the one the worker uses). NULL: such tokens refused. */
	int		(*public_key)(const char *alg, const char *kid,
			    EVP_PKEY **pkey, struct chat_err *err);
};

/* Checks the Authorization header value (NULL when absent) against keys
 * at time now. On success copies the user id into user_id (NUL-
 * terminated, at least AUTH_USER_ID_MAX + 1 bytes) and returns 0; else
 * returns -1 with err set: 401 "missing_token" or "invalid_token" (the
 * message never echoes the token), or what public_key() said (503
 * "auth_unavailable" when the keys cannot be read). */
int	 auth_check(const char *authorization, const struct auth_keys *keys,
	    time_t now, char *user_id, struct chat_err *err);

/* Frees the calling thread's HMAC context (auth_check() makes one per
 * thread and keeps it, keyed, for the next token). Each thread that
 * called auth_check() calls this before it ends; harmless if it never
 * did, and auth_check() may be called again afterwards. */
void	 auth_thread_cleanup(void);

/* 1 if s is a well-formed user id as above, else 0. */
int	 auth_user_id_valid(const char *s);

#endif
