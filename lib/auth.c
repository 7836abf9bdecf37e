/* auth.c: the bearer token: its header, its signature (HS256 with the
 * secret, or a public key the caller looks up), its claims ("exp", "nbf",
 * "iss", "aud"), and "sub" as the user id (see auth.h). No I/O of its
 * own: the keys and the clock come in; each thread keeps only its keyed
 * HMAC context between calls. */
#include <pthread.h>
#include <string.h>
#include <strings.h>

#include <cJSON.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "auth.h"
#include "jwk.h"
#include "text.h"

/* Tokens we issue are a few hundred bytes; nginx allows 8 KiB of header
 * line anyway. The cap bounds the decoding and the JSON parser's work on
 * bytes nobody has vouched for yet. */
#define AUTH_TOKEN_MAX		8192
/* Room for the decoded header or payload: 3 bytes per 4 characters, 2
 * for a last group of 3. */
#define AUTH_PART_MAX		(AUTH_TOKEN_MAX / 4 * 3 + 2)
#define AUTH_SIG_LEN		32	/* HMAC-SHA256 */
/* The longest signature we decode: RSA of 8192 bits. */
#define AUTH_SIG_MAX		1024

/* Seconds an "nbf" may lie in our future. An issuer usually stamps nbf
 * with its own "now"; a worker whose clock runs a few seconds behind would
 * otherwise refuse a token fresh from the issuer. Half a minute covers
 * NTP-kept clocks and gives a stolen token nothing it will not have in 30
 * seconds anyway. "exp" gets no leeway: it is the issuer's promise of
 * when a token stops working, and the caller can get a new one. */
#define AUTH_NBF_LEEWAY_S	30

static int
missing(struct chat_err *err, const char *why)
{
	return err_set(err, 401, "missing_token", "%s", why);
}

/* The message says what was wrong with the token, never what it was. */
static int
invalid(struct chat_err *err, const char *why)
{
	return err_set(err, 401, "invalid_token", "%s", why);
}

int
auth_user_id_valid(const char *s)
{
	size_t	 i;

	if (s == NULL)
		return 0;
	for (i = 0; s[i] != '\0'; i++) {
		if (i >= AUTH_USER_ID_MAX)
			return 0;
		if (!((s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= '0' && s[i] <= '9') ||
		    strchr("._@+-", s[i]) != NULL))
			return 0;
	}
	return i > 0;
}


/*
 * Finds the token in an Authorization value: "Bearer", in any case (RFC
 * 9110 section 11.1: schemes are case-insensitive), one or more spaces,
 * the token. Surrounding spaces and tabs are dropped, as RFC 9110 section
 * 5.5 strips them from every field value. NULL when there is no bearer
 * token at all: absent, empty, another scheme, or "Bearer" alone.
 */
static const char *
bearer_token(const char *h, size_t *len)
{
	size_t	 n;

	if (h == NULL)
		return NULL;
	while (*h == ' ' || *h == '\t')
		h++;
	if (strncasecmp(h, "Bearer", 6) != 0 || h[6] != ' ')
		return NULL;
	for (h += 6; *h == ' '; h++)
		continue;
	n = strlen(h);
	while (n > 0 && (h[n - 1] == ' ' || h[n - 1] == '\t'))
		n--;
	if (n == 0)
		return NULL;
	*len = n;
	return h;
}

/* How many members of obj are called name: JSON allows duplicates and
 * cJSON reads the first; a token holding two "alg" or two "sub" means
 * different things to different parsers, so we take it from nobody. */
static int
member_count(const cJSON *obj, const char *name)
{
	const cJSON	*item;
	int		 count = 0;

	cJSON_ArrayForEach(item, obj)
		if (item->string != NULL && strcmp(item->string, name) == 0)
			count++;
	return count;
}

/* Decoded bytes as exactly one JSON object (text_json_parse(): nothing
 * but whitespace after it, no NUL byte hiding part of it), holding no
 * \u0000: cJSON decodes that into a real NUL, and a "sub" of
 * "alice\u0000x" would then read as "alice". */
static cJSON *
parse_object(const unsigned char *p, size_t len)
{
	const char	*s = (const char *)p;
	cJSON		*json;

	if (text_json_has_nul(s, len) ||
	    (json = text_json_parse(s, len)) == NULL)
		return NULL;
	if (!cJSON_IsObject(json)) {
		cJSON_Delete(json);
		return NULL;
	}
	return json;
}

/* What the header says: the algorithm, and the key's id if any. */
struct jose_header {
	char	 alg[8];
	char	 kid[JWK_KID_MAX + 1];
	int	 has_kid;
};

/*
 * The JOSE header. "alg" must be one we check and have a key for: HS256
 * when a secret is configured, EdDSA, ES256, RS256 or PS256 when public
 * keys are (RFC 8725 section 3.1: the algorithm picks the key type, and
 * a token never gets to pick a key of another type). "kid", when
 * present, is a string. "typ", when present, must be "JWT" or its media
 * type "application/jwt", in any case (RFC 7519 section 5.1): a token
 * typed as something else is, by its issuer's own word, not a token for
 * us. "crit" names extensions the recipient must understand (RFC 7515
 * section 4.1.11); we understand none.
 */
static int
check_header(const unsigned char *p, size_t len, const struct auth_keys *keys,
    struct jose_header *h, struct chat_err *err)
{
	cJSON		*hdr;
	const cJSON	*alg, *typ, *kid;
	int		 ok, known;

	if ((hdr = parse_object(p, len)) == NULL)
		return invalid(err, "The token's header is not a JSON object.");
	alg = cJSON_GetObjectItemCaseSensitive(hdr, "alg");
	typ = cJSON_GetObjectItemCaseSensitive(hdr, "typ");
	kid = cJSON_GetObjectItemCaseSensitive(hdr, "kid");
	ok = member_count(hdr, "alg") == 1 && member_count(hdr, "typ") <= 1 &&
	    member_count(hdr, "kid") <= 1 && cJSON_IsString(alg) &&
	    (kid == NULL || (cJSON_IsString(kid) &&
	    strlen(kid->valuestring) <= JWK_KID_MAX)) &&
	    (typ == NULL || (cJSON_IsString(typ) &&
	    (strcasecmp(typ->valuestring, "JWT") == 0 ||
	    strcasecmp(typ->valuestring, "application/jwt") == 0))) &&
	    cJSON_GetObjectItemCaseSensitive(hdr, "crit") == NULL;
	known = ok && ((strcmp(alg->valuestring, "HS256") == 0 &&
	    keys->secret != NULL) || (jwk_type_of_alg(alg->valuestring) >= 0 &&
	    keys->public_key != NULL));
	if (known) {
		memcpy(h->alg, alg->valuestring, strlen(alg->valuestring) + 1);
		if ((h->has_kid = kid != NULL))
			memcpy(h->kid, kid->valuestring,
			    strlen(kid->valuestring) + 1);
	}
	cJSON_Delete(hdr);
	if (!ok)
		return invalid(err, "The token's header is malformed.");
	if (!known)
		return invalid(err, "The token is signed with an algorithm "
		    "this service does not accept.");
	return 0;
}

/*
 * The HMAC implementation, fetched once for the process: OpenSSL 3's
 * one-shot HMAC() looks up HMAC and SHA-256 in the provider store on
 * every call, which cost about 7% of a worker's CPU a request. An
 * EVP_MAC may be shared by threads (its contexts may not). It is held
 * while some thread holds a context, so that when the last thread has
 * cleaned up nothing of ours keeps OpenSSL's provider alive past its own
 * cleanup at exit (valgrind would see it). A lock rather than
 * pthread_once(): a fetch that failed (ENOMEM) is tried again later, and
 * it is taken only when a thread keys or frees its context.
 */
static pthread_mutex_t	 hmac_lock = PTHREAD_MUTEX_INITIALIZER;
static EVP_MAC		*hmac;
static size_t		 hmac_users;	/* contexts made from hmac */

/* The calling thread's HMAC-SHA256 context, keyed with a copy of the
 * secret it was given: auth_check() takes the secret as a parameter, so
 * a call with other bytes (not merely another pointer: a caller may
 * reuse a buffer) keys it again. */
struct thread_mac {
	EVP_MAC_CTX	*ctx;
	unsigned char	*key;
	size_t		 key_len;
};
static _Thread_local struct thread_mac	 thread_mac;

/*
 * Tokens whose public-key signature this thread has checked, and the key
 * that checked them. An Ed25519 check costs about 1.5 million
 * instructions, an RSA one more, against a few thousand for the rest of
 * a token; a client sends the same token with every request for its
 * lifetime (Better Auth's last 15 minutes). Only the signature is
 * remembered: the claims (exp, nbf, iss, aud) are read every time. An
 * entry holds a reference to its key, so the key cannot be freed and
 * its address reused while the entry lives; a new key set brings new
 * keys, so a token remembered with a key that left the set is checked
 * afresh, against what the set holds now.
 */
#define VERIFIED_ENTRIES	8
#define VERIFIED_TOKEN_MAX	2048	/* longer tokens: checked each time */

struct verified {
	unsigned long long	 hash;	/* FNV-1a of the token */
	char			*token;	/* its bytes; NULL: a free entry */
	size_t			 len;
	EVP_PKEY		*pkey;	/* a reference of our own */
};
static _Thread_local struct verified	 verified[VERIFIED_ENTRIES];
static _Thread_local size_t		 verified_next;

static unsigned long long
token_hash(const char *token, size_t len)
{
	unsigned long long	 h = 0xcbf29ce484222325ULL;
	size_t			 i;

	for (i = 0; i < len; i++) {
		h ^= (unsigned char)token[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static int
verified_has(const char *token, size_t len, unsigned long long h,
    const EVP_PKEY *pkey)
{
	size_t	 i;

	for (i = 0; i < VERIFIED_ENTRIES; i++)
		if (verified[i].token != NULL && verified[i].hash == h &&
		    verified[i].len == len && verified[i].pkey == pkey &&
		    memcmp(verified[i].token, token, len) == 0)
			return 1;
	return 0;
}

static void
verified_drop(struct verified *v)
{
	free(v->token);
	EVP_PKEY_free(v->pkey);
	memset(v, 0, sizeof(*v));
}

/* Remembers a checked token, in place of the oldest entry. Out of memory,
 * it is simply not remembered. */
static void
verified_add(const char *token, size_t len, unsigned long long h,
    EVP_PKEY *pkey)
{
	struct verified	*v = &verified[verified_next];
	char		*copy;

	if (len > VERIFIED_TOKEN_MAX || (copy = malloc(len)) == NULL)
		return;
	if (EVP_PKEY_up_ref(pkey) != 1) {
		free(copy);
		return;
	}
	verified_drop(v);
	memcpy(copy, token, len);
	*v = (struct verified){ h, copy, len, pkey };
	verified_next = (verified_next + 1) % VERIFIED_ENTRIES;
}

static EVP_MAC_CTX *
hmac_ctx_new(void)
{
	EVP_MAC_CTX	*ctx = NULL;

	pthread_mutex_lock(&hmac_lock);
	if (hmac == NULL)
		hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	if (hmac != NULL && (ctx = EVP_MAC_CTX_new(hmac)) != NULL)
		hmac_users++;
	else if (hmac_users == 0) {
		EVP_MAC_free(hmac);
		hmac = NULL;
	}
	pthread_mutex_unlock(&hmac_lock);
	return ctx;
}

static void
hmac_ctx_free(EVP_MAC_CTX *ctx)
{
	if (ctx == NULL)
		return;
	EVP_MAC_CTX_free(ctx);
	pthread_mutex_lock(&hmac_lock);
	if (--hmac_users == 0) {
		EVP_MAC_free(hmac);
		hmac = NULL;
	}
	pthread_mutex_unlock(&hmac_lock);
}

void
auth_thread_cleanup(void)
{
	size_t	 i;

	hmac_ctx_free(thread_mac.ctx);
	OPENSSL_clear_free(thread_mac.key, thread_mac.key_len);
	memset(&thread_mac, 0, sizeof(thread_mac));
	for (i = 0; i < VERIFIED_ENTRIES; i++)
		verified_drop(&verified[i]);
	verified_next = 0;
}

/* This thread's context keyed with secret, with the digest set: what
 * EVP_MAC_init() is given here it keeps for later calls. Failure leaves
 * no context behind. 0 or -1. */
static int
thread_mac_key(const char *secret, size_t secret_len)
{
	char		 digest[] = "SHA256";
	OSSL_PARAM	 params[2];

	auth_thread_cleanup();
	if ((thread_mac.ctx = hmac_ctx_new()) == NULL ||
	    (thread_mac.key = OPENSSL_malloc(secret_len)) == NULL)
		goto fail;
	memcpy(thread_mac.key, secret, secret_len);
	thread_mac.key_len = secret_len;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
	    digest, 0);
	params[1] = OSSL_PARAM_construct_end();
	if (!EVP_MAC_init(thread_mac.ctx, (const unsigned char *)secret,
	    secret_len, params))
		goto fail;
	return 0;
fail:
	auth_thread_cleanup();
	return -1;
}

/*
 * HMAC-SHA256 of input[0..input_len) with secret into out. The thread's
 * context is keyed once; after that EVP_MAC_init() with no key restarts
 * it from the inner and outer states the key left, about a third of the
 * instructions of a one-shot HMAC(). OpenSSL's 3.0 branch does so since
 * April 2022, before any release Debian 12 shipped; an older one returns
 * success and does nothing, so every token but a thread's first would be
 * refused, which t/unit/auth.c shows at once. 0 or -1.
 */
static int
hs256(const char *secret, size_t secret_len, const char *input,
    size_t input_len, unsigned char out[AUTH_SIG_LEN])
{
	unsigned char	 mac[EVP_MAX_MD_SIZE];
	size_t		 mac_len = 0;

	if (thread_mac.ctx == NULL || thread_mac.key_len != secret_len ||
	    CRYPTO_memcmp(thread_mac.key, secret, secret_len) != 0) {
		if (thread_mac_key(secret, secret_len) == -1)
			return -1;
	} else if (!EVP_MAC_init(thread_mac.ctx, NULL, 0, NULL))
		goto fail;
	if (!EVP_MAC_update(thread_mac.ctx, (const unsigned char *)input,
	    input_len) ||
	    !EVP_MAC_final(thread_mac.ctx, mac, &mac_len, sizeof(mac)) ||
	    mac_len != AUTH_SIG_LEN)
		goto fail;
	memcpy(out, mac, AUTH_SIG_LEN);
	return 0;
fail:
	/* A context in an unknown state is not used again. */
	auth_thread_cleanup();
	return -1;
}

/* HMAC-SHA256 of the signing input (header "." payload, as sent) against
 * the decoded signature, compared in constant time so that the time a
 * refusal takes tells nothing about how much of a guess was right. */
static int
check_hs256(const char *input, size_t input_len, const unsigned char *sig,
    long siglen, const struct auth_keys *keys, struct chat_err *err)
{
	unsigned char	 mac[AUTH_SIG_LEN];

	/* An empty secret would let anyone sign; config.c refuses it, and
	 * we refuse tokens rather than trust that. */
	if (keys->secret == NULL || keys->secret_len == 0)
		return invalid(err, "The server cannot check tokens.");
	if (siglen != AUTH_SIG_LEN)
		return invalid(err, "The token's signature is malformed.");
	if (hs256(keys->secret, keys->secret_len, input, input_len,
	    mac) == -1)
		return invalid(err, "The server cannot check tokens.");
	if (CRYPTO_memcmp(sig, mac, AUTH_SIG_LEN) != 0)
		return invalid(err, "The token's signature does not match.");
	return 0;
}

/* The signature, with the secret for HS256, else with the public key the
 * caller finds for the header's alg and kid. */
static int
check_signature(const char *input, size_t input_len, const char *sig_b64,
    size_t sig_b64_len, const struct jose_header *h,
    const struct auth_keys *keys, struct chat_err *err)
{
	unsigned char		 sig[AUTH_SIG_MAX + 2];
	EVP_PKEY		*pkey;
	unsigned long long	 hash;
	long			 siglen;
	int			 ok;

	if ((siglen = text_b64url_decode(sig_b64, sig_b64_len, sig,
	    sizeof(sig))) < 0)
		return invalid(err, "The token's signature is malformed.");
	if (strcmp(h->alg, "HS256") == 0)
		return check_hs256(input, input_len, sig, siglen, keys, err);
	if (keys->public_key(h->alg, h->has_kid ? h->kid : NULL, &pkey,
	    err) == -1)
		return -1;
	/* The whole token, signature included, is what was checked. */
	hash = token_hash(input, input_len + 1 + sig_b64_len);
	ok = verified_has(input, input_len + 1 + sig_b64_len, hash, pkey);
	if (!ok && (ok = jwk_verify(pkey, h->alg, input, input_len, sig,
	    (size_t)siglen)))
		verified_add(input, input_len + 1 + sig_b64_len, hash, pkey);
	EVP_PKEY_free(pkey);
	if (!ok)
		return invalid(err, "The token's signature does not match.");
	return 0;
}

/* A NumericDate claim (RFC 7519 section 2): absent is fine, anything but
 * a number is not. 1 present, 0 absent, -1 malformed. */
static int
time_claim(const cJSON *claims, const char *name, double *value)
{
	const cJSON	*item;

	if ((item = cJSON_GetObjectItemCaseSensitive(claims, name)) == NULL)
		return 0;
	if (!cJSON_IsNumber(item) || member_count(claims, name) != 1)
		return -1;
	*value = item->valuedouble;
	return 1;
}

/* "iss" equal to the issuer we trust, when one is configured; else not
 * looked at, as before there was a setting for it. */
static int
issuer_ok(const cJSON *claims, const char *issuer)
{
	const cJSON	*iss = cJSON_GetObjectItemCaseSensitive(claims, "iss");

	if (issuer == NULL)
		return 1;
	return cJSON_IsString(iss) && member_count(claims, "iss") == 1 &&
	    strcmp(iss->valuestring, issuer) == 0;
}

/* "aud", a string or an array of strings (RFC 7519 section 4.1.3), that
 * names us, when an audience is configured. */
static int
audience_ok(const cJSON *claims, const char *audience)
{
	const cJSON	*aud = cJSON_GetObjectItemCaseSensitive(claims, "aud");
	const cJSON	*a;
	int		 named = 0;

	if (audience == NULL)
		return 1;
	if (member_count(claims, "aud") != 1)
		return 0;
	if (cJSON_IsString(aud))
		return strcmp(aud->valuestring, audience) == 0;
	cJSON_ArrayForEach(a, aud) {
		if (!cJSON_IsString(a))
			return 0;
		if (strcmp(a->valuestring, audience) == 0)
			named = 1;
	}
	return cJSON_IsArray(aud) && named;
}

/* The claims, read only once the signature has vouched for them. */
static int
check_claims(const unsigned char *p, size_t len, const struct auth_keys *keys,
    time_t now, char *user_id, struct chat_err *err)
{
	cJSON		*claims;
	const cJSON	*sub;
	double		 exp = 0, nbf = 0;
	int		 has_exp, has_nbf, rc = 0;

	if ((claims = parse_object(p, len)) == NULL)
		return invalid(err, "The token's claims are not a JSON "
		    "object.");
	sub = cJSON_GetObjectItemCaseSensitive(claims, "sub");
	has_exp = time_claim(claims, "exp", &exp);
	has_nbf = time_claim(claims, "nbf", &nbf);
	if (!cJSON_IsString(sub) || member_count(claims, "sub") != 1 ||
	    !auth_user_id_valid(sub->valuestring))
		rc = invalid(err, "The token's subject is not a user id.");
	else if (has_exp < 0 || has_nbf < 0)
		rc = invalid(err, "The token's exp or nbf is not a number.");
	else if (has_exp && !((double)now < exp))
		rc = invalid(err, "The token has expired.");
	else if (has_nbf && !((double)now + AUTH_NBF_LEEWAY_S >= nbf))
		rc = invalid(err, "The token is not valid yet.");
	else if (!issuer_ok(claims, keys->issuer))
		rc = invalid(err, "The token is not from the issuer this "
		    "service trusts.");
	else if (!audience_ok(claims, keys->audience))
		rc = invalid(err, "The token is not meant for this service.");
	else
		memcpy(user_id, sub->valuestring,
		    strlen(sub->valuestring) + 1);
	cJSON_Delete(claims);
	return rc;
}

/* A token cut at its dots; the parts are borrowed from the token. */
struct jwt_parts {
	const char	*header, *payload, *sig;
	size_t		 header_len, payload_len, sig_len;
};

/* Exactly three non-empty parts: header.payload.signature. */
static int
split_token(const char *token, size_t len, struct jwt_parts *p)
{
	const char	*dot;

	if ((dot = memchr(token, '.', len)) == NULL)
		return -1;
	p->header = token;
	p->header_len = (size_t)(dot - token);
	p->payload = dot + 1;
	if ((dot = memchr(p->payload, '.', len - p->header_len - 1)) == NULL)
		return -1;
	p->payload_len = (size_t)(dot - p->payload);
	p->sig = dot + 1;
	p->sig_len = len - p->header_len - p->payload_len - 2;
	if (memchr(p->sig, '.', p->sig_len) != NULL)
		return -1;
	return p->header_len > 0 && p->payload_len > 0 && p->sig_len > 0 ?
	    0 : -1;
}

int
auth_check(const char *authorization, const struct auth_keys *keys,
    time_t now, char *user_id, struct chat_err *err)
{
	unsigned char		 part[AUTH_PART_MAX];
	struct jwt_parts	 p;
	struct jose_header	 h;
	const char		*token;
	size_t			 len;
	long			 n;

	if ((token = bearer_token(authorization, &len)) == NULL)
		return missing(err, "Sign in first: this needs an "
		    "Authorization: Bearer token.");
	if (len > AUTH_TOKEN_MAX)
		return invalid(err, "The token is too long.");
	if (split_token(token, len, &p) == -1)
		return invalid(err, "The token is not a JWT.");

	/* Header first: a token that names an algorithm we do not accept
	 * is refused before its signature is looked at, whatever that
	 * would say. */
	if ((n = text_b64url_decode(p.header, p.header_len, part,
	    sizeof(part))) < 0)
		return invalid(err, "The token is not valid base64url.");
	if (check_header(part, (size_t)n, keys, &h, err) == -1)
		return -1;
	if (check_signature(token, p.header_len + 1 + p.payload_len, p.sig,
	    p.sig_len, &h, keys, err) == -1)
		return -1;
	if ((n = text_b64url_decode(p.payload, p.payload_len, part,
	    sizeof(part))) < 0)
		return invalid(err, "The token is not valid base64url.");
	return check_claims(part, (size_t)n, keys, now, user_id, err);
}
