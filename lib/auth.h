/* auth.h: who is asking. An "Authorization: Bearer <JWT>" header, HS256
 * only, signed with CHAT_JWT_SECRET; the user id is the "sub" claim, "exp"
 * and "nbf" are enforced when present. No I/O, no database; the only
 * state is each thread's keyed HMAC context, which changes no answer. */
#ifndef AUTH_H
#define AUTH_H

#include <stddef.h>
#include <time.h>

#include "err.h"

/* A user id is 1..AUTH_USER_ID_MAX bytes of [A-Za-z0-9._@+-]: it must fit
 * the user_id column and travel unescaped in /api/{user_id}/chat. */
#define AUTH_USER_ID_MAX	128

/* Checks the Authorization header value (NULL when absent) against
 * secret at time now. On success copies the user id into user_id (NUL-
 * terminated, at least AUTH_USER_ID_MAX + 1 bytes) and returns 0; else
 * returns -1 with err set to 401 ("missing_token" or "invalid_token";
 * the message never echoes the token). */
int	 auth_check(const char *authorization, const char *secret,
	    size_t secret_len, time_t now, char *user_id,
	    struct chat_err *err);

/* Frees the calling thread's HMAC context (auth_check() makes one per
 * thread and keeps it, keyed, for the next token). Each thread that
 * called auth_check() calls this before it ends; harmless if it never
 * did, and auth_check() may be called again afterwards. */
void	 auth_thread_cleanup(void);

/* 1 if s is a well-formed user id as above, else 0. */
int	 auth_user_id_valid(const char *s);

#endif
