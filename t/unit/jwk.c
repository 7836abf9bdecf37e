/* t/unit/jwk.c: tokens signed here with keys made here, checked through
 * auth_check() against a JWKS file read by keyring.c: each algorithm, and
 * every way a token or a key set must be refused. Prints TAP. The same
 * against tokens from Better Auth and jose, and a JWKS served over HTTP,
 * is t/32-jwks.t's. */
#include <sys/stat.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "auth.h"
#include "jwk.h"
#include "keyring.h"

#define NOW		1700000000
#define SECRET		"a secret of thirty-two bytes or more, for HS256"

static int	 test_num;

static int
ok(int pass, const char *fmt, ...)
{
	va_list	 ap;

	printf("%sok %d - ", pass ? "" : "not ", ++test_num);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	return pass;
}

/* base64url without padding, into a static ring of buffers. */
static char *
b64(const unsigned char *p, size_t n)
{
	static char	 ring[4][8192];
	static int	 at;
	char		*out = ring[at++ % 4];
	int		 len, i, o;

	if (n * 4 / 3 + 4 > sizeof(ring[0]))
		abort();
	len = EVP_EncodeBlock((unsigned char *)out, p, (int)n);
	for (i = 0, o = 0; i < len; i++) {
		if (out[i] == '=')
			break;
		out[o++] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
	}
	out[o] = '\0';
	return out;
}

static char *
b64s(const char *s)
{
	return b64((const unsigned char *)s, strlen(s));
}

static EVP_PKEY *
keygen(const char *alg)
{
	EVP_PKEY	*k;

	if (strcmp(alg, "EdDSA") == 0)
		k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	else if (strcmp(alg, "ES256") == 0)
		k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	else
		k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA",
		    (size_t)(strcmp(alg, "RS1024") == 0 ? 1024 : 2048));
	if (k == NULL)
		abort();
	return k;
}

static char *
bn_b64(const EVP_PKEY *k, const char *name)
{
	unsigned char	 buf[1024];
	BIGNUM		*bn = NULL;
	int		 n;

	if (!EVP_PKEY_get_bn_param(k, name, &bn))
		abort();
	n = BN_bn2bin(bn, buf);
	BN_free(bn);
	return b64(buf, (size_t)n);
}

/* The public JWK of k as a cJSON object, with kid and alg when given. */
static cJSON *
jwk_of(EVP_PKEY *k, const char *kid, const char *alg)
{
	unsigned char	 pub[128];
	size_t		 len = sizeof(pub);
	cJSON		*o = cJSON_CreateObject();

	if (EVP_PKEY_is_a(k, "ED25519")) {
		if (!EVP_PKEY_get_raw_public_key(k, pub, &len))
			abort();
		cJSON_AddStringToObject(o, "kty", "OKP");
		cJSON_AddStringToObject(o, "crv", "Ed25519");
		cJSON_AddStringToObject(o, "x", b64(pub, len));
	} else if (EVP_PKEY_is_a(k, "EC")) {
		if (!EVP_PKEY_get_octet_string_param(k,
		    OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub), &len) ||
		    len != 65)
			abort();
		cJSON_AddStringToObject(o, "kty", "EC");
		cJSON_AddStringToObject(o, "crv", "P-256");
		cJSON_AddStringToObject(o, "x", b64(pub + 1, 32));
		cJSON_AddStringToObject(o, "y", b64(pub + 33, 32));
	} else {
		cJSON_AddStringToObject(o, "kty", "RSA");
		cJSON_AddStringToObject(o, "n", bn_b64(k, OSSL_PKEY_PARAM_RSA_N));
		cJSON_AddStringToObject(o, "e", bn_b64(k, OSSL_PKEY_PARAM_RSA_E));
	}
	if (kid != NULL)
		cJSON_AddStringToObject(o, "kid", kid);
	if (alg != NULL)
		cJSON_AddStringToObject(o, "alg", alg);
	return o;
}

/* A JWS signature of input with k for alg, base64url. */
static char *
sign(EVP_PKEY *k, const char *alg, const char *input)
{
	unsigned char	 sig[1024], raw[64];
	size_t		 len = sizeof(sig);
	EVP_MD_CTX	*ctx = EVP_MD_CTX_new();
	EVP_PKEY_CTX	*pctx;
	ECDSA_SIG	*esig;
	const unsigned char *p = sig;

	if (EVP_DigestSignInit_ex(ctx, &pctx, strcmp(alg, "EdDSA") == 0 ?
	    NULL : "SHA256", NULL, NULL, k, NULL) != 1)
		abort();
	if (strcmp(alg, "PS256") == 0 && (EVP_PKEY_CTX_set_rsa_padding(pctx,
	    RSA_PKCS1_PSS_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) !=
	    1))
		abort();
	if (EVP_DigestSign(ctx, sig, &len, (const unsigned char *)input,
	    strlen(input)) != 1)
		abort();
	EVP_MD_CTX_free(ctx);
	if (strcmp(alg, "ES256") != 0)
		return b64(sig, len);
	/* DER to JWS's r || s. */
	if ((esig = d2i_ECDSA_SIG(NULL, &p, (long)len)) == NULL ||
	    BN_bn2binpad(ECDSA_SIG_get0_r(esig), raw, 32) != 32 ||
	    BN_bn2binpad(ECDSA_SIG_get0_s(esig), raw + 32, 32) != 32)
		abort();
	ECDSA_SIG_free(esig);
	return b64(raw, 64);
}

/* "Bearer <token>" for header fields (alg, kid or NULL) and payload JSON,
 * signed with k for sign_alg (the header's alg unless it lies). */
static char *
token(const char *alg, const char *kid, const char *payload, EVP_PKEY *k,
    const char *sign_alg)
{
	static char	 out[16384];
	char		 header[256], input[8192];

	if (kid != NULL)
		snprintf(header, sizeof(header),
		    "{\"alg\":\"%s\",\"kid\":\"%s\",\"typ\":\"JWT\"}", alg, kid);
	else
		snprintf(header, sizeof(header), "{\"alg\":\"%s\"}", alg);
	snprintf(input, sizeof(input), "%s.%s", b64s(header), b64s(payload));
	snprintf(out, sizeof(out), "Bearer %s.%s", input,
	    sign(k, sign_alg != NULL ? sign_alg : alg, input));
	return out;
}

/* "Bearer <token>" HS256-signed with key[0..keylen). */
static char *
hs256_token(const char *payload, const unsigned char *key, size_t keylen)
{
	static char	 out[16384];
	char		 input[8192];
	unsigned char	 mac[EVP_MAX_MD_SIZE];
	size_t		 maclen = sizeof(mac);

	snprintf(input, sizeof(input), "%s.%s",
	    b64s("{\"alg\":\"HS256\",\"typ\":\"JWT\"}"), b64s(payload));
	if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, keylen,
	    (unsigned char *)input, strlen(input), mac, sizeof(mac),
	    &maclen) == NULL)
		abort();
	snprintf(out, sizeof(out), "Bearer %s.%s", input, b64(mac, maclen));
	return out;
}

/* Under t/tmp, which the tests' stacks use too (and git ignores). */
static const char *path = "t/tmp/unit-jwk.json";

static void
write_set(cJSON *keys)
{
	cJSON	*set = cJSON_CreateObject();
	char	*text;
	FILE	*f;

	cJSON_AddItemToObject(set, "keys", keys);
	text = cJSON_PrintUnformatted(set);
	if ((f = fopen(path, "w")) == NULL || fputs(text, f) == EOF ||
	    fclose(f) != 0)
		abort();
	cJSON_free(text);
	cJSON_Delete(set);
}

/* What auth_check() makes of authorization: the HTTP status (200 for a
 * token taken), and the user id or error code in what. */
static int
check(const struct auth_keys *keys, const char *authorization,
    const char **what)
{
	static char	 user_id[AUTH_USER_ID_MAX + 1];
	struct chat_err	 err;

	memset(&err, 0, sizeof(err));
	if (auth_check(authorization, keys, NOW, user_id, &err) == 0) {
		*what = user_id;
		return 200;
	}
	*what = err.code;
	return err.status;
}

#define CLAIMS	"{\"sub\":\"alice@example.com\",\"exp\":1800000000," \
		"\"iss\":\"https://auth.example\"," \
		"\"aud\":\"https://auth.example\"}"

static const char *const algs[] = { "EdDSA", "ES256", "RS256", "PS256" };
#define NALGS	(sizeof(algs) / sizeof(algs[0]))

int
main(void)
{
	struct auth_keys	 keys = { SECRET, sizeof(SECRET) - 1,
				    "https://auth.example",
				    "https://auth.example", keyring_key };
	EVP_PKEY		*k[NALGS], *foreign, *small;
	cJSON			*set, *o;
	struct jwks		 parsed;
	const char		*what;
	char			 kid[16], pem[4096], why[256], *t;
	BIO			*bio;
	size_t			 i;
	long			 pemlen;
	int			 st;

	if (mkdir("t/tmp", 0755) == -1 && errno != EEXIST)
		abort();
	/* Each algorithm's key, published with a kid; the RSA key once,
	 * for RS256 and PS256 alike. */
	set = cJSON_CreateArray();
	for (i = 0; i < NALGS; i++) {
		k[i] = i == 3 ? k[2] : keygen(algs[i]);
		if (i == 3)
			EVP_PKEY_up_ref(k[2]);
		snprintf(kid, sizeof(kid), "k%zu", i);
		if (i < 3)
			cJSON_AddItemToArray(set, jwk_of(k[i], kid, NULL));
	}
	/* Keys to skip: RSA of 1024 bits, a shared secret, a key for
	 * encryption, a curve we do not check. */
	small = keygen("RS1024");
	cJSON_AddItemToArray(set, jwk_of(small, "small", NULL));
	cJSON_AddItemToArray(set, cJSON_Parse("{\"kty\":\"oct\",\"k\":\"c2VjcmV0\","
	    "\"kid\":\"oct\"}"));
	cJSON_AddItemToArray(set, cJSON_Parse("{\"kty\":\"EC\",\"crv\":\"P-384\","
	    "\"x\":\"AA\",\"y\":\"AA\",\"kid\":\"p384\"}"));
	o = jwk_of(k[0], "enc", NULL);
	cJSON_AddStringToObject(o, "use", "enc");
	cJSON_AddItemToArray(set, o);
	cJSON_AddItemToArray(set, jwk_of(k[2], "rs-only", "RS256"));
	write_set(set);
	printf("1..%d\n", 39);

	ok(keyring_init(path) == 0, "a JWKS file with usable keys is read");
	for (i = 0; i < NALGS; i++) {
		snprintf(kid, sizeof(kid), "k%zu", i == 3 ? 2 : i);
		st = check(&keys, token(algs[i], kid, CLAIMS, k[i], NULL),
		    &what);
		ok(st == 200 && strcmp(what, "alice@example.com") == 0,
		    "%s: taken, the user is sub", algs[i]);
	}
	/* A payload changed after signing. */
	t = token("EdDSA", "k0", CLAIMS, k[0], NULL);
	t[strlen("Bearer ") + strlen(b64s("{\"alg\":\"EdDSA\",\"kid\":\"k0\","
	    "\"typ\":\"JWT\"}")) + 3] ^= 1;
	ok(check(&keys, t, &what) == 401, "a tampered payload: 401");
	foreign = keygen("EdDSA");
	ok(check(&keys, token("EdDSA", "k0", CLAIMS, foreign, NULL),
	    &what) == 401, "signed by a key not in the set, its kid borrowed: "
	    "401");
	ok(check(&keys, token("EdDSA", "nobody", CLAIMS, foreign, NULL),
	    &what) == 401 && strcmp(what, "invalid_token") == 0,
	    "a kid the set does not hold: 401");
	ok(check(&keys, token("ES256", "k0", CLAIMS, k[0], "EdDSA"),
	    &what) == 401, "alg ES256 with an Ed25519 key: 401");
	ok(check(&keys, token("RS256", "k1", CLAIMS, k[1], "ES256"),
	    &what) == 401, "alg RS256 naming a P-256 key: 401");
	ok(check(&keys, token("PS256", "rs-only", CLAIMS, k[2], NULL),
	    &what) == 401, "a key that names RS256 does not check PS256: 401");
	ok(check(&keys, token("RS256", "rs-only", CLAIMS, k[2], NULL),
	    &what) == 200, "...and does check RS256");
	ok(check(&keys, token("RS256", "small", CLAIMS, small, NULL),
	    &what) == 401, "an RSA key of 1024 bits is not used: 401");
	ok(check(&keys, token("EdDSA", "enc", CLAIMS, k[0], NULL),
	    &what) == 401, "a key for encryption is not used: 401");
	ok(check(&keys, token("EdDSA", NULL, CLAIMS, k[0], NULL),
	    &what) == 401, "no kid, several keys: 401");
	ok(check(&keys, token("RS512", "k2", CLAIMS, k[2], "RS256"),
	    &what) == 401, "an algorithm we do not check: 401");
	ok(check(&keys, token("none", "k0", CLAIMS, k[0], "EdDSA"),
	    &what) == 401, "alg none: 401");

	/* The classic confusion: HS256 with the public key as the secret. */
	bio = BIO_new(BIO_s_mem());
	PEM_write_bio_PUBKEY(bio, k[2]);
	pemlen = BIO_read(bio, pem, sizeof(pem) - 1);
	BIO_free(bio);
	ok(check(&keys, hs256_token(CLAIMS, (unsigned char *)pem,
	    (size_t)pemlen), &what) == 401,
	    "HS256 signed with the public key's PEM: 401");
	o = jwk_of(k[2], "k2", NULL);
	t = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	ok(check(&keys, hs256_token(CLAIMS, (unsigned char *)t, strlen(t)),
	    &what) == 401, "HS256 signed with the public key's JWK: 401");
	keys.secret = NULL;
	ok(check(&keys, hs256_token(CLAIMS, (unsigned char *)pem,
	    (size_t)pemlen), &what) == 401,
	    "...and with no secret configured: 401");
	free(t);
	ok(check(&keys, hs256_token(CLAIMS, (unsigned char *)SECRET,
	    sizeof(SECRET) - 1), &what) == 401,
	    "no secret configured: an HS256 token is refused");
	keys.secret = SECRET;
	ok(check(&keys, hs256_token(CLAIMS, (unsigned char *)SECRET,
	    sizeof(SECRET) - 1), &what) == 200,
	    "HS256 with the secret still works beside the keys");

	/* Issuer and audience, for every kind of token. */
	ok(check(&keys, token("EdDSA", "k0", "{\"sub\":\"a\","
	    "\"iss\":\"https://evil.example\",\"aud\":\"https://auth.example\"}",
	    k[0], NULL), &what) == 401, "a wrong iss: 401");
	ok(check(&keys, token("EdDSA", "k0", "{\"sub\":\"a\","
	    "\"iss\":\"https://auth.example\",\"aud\":\"https://other\"}",
	    k[0], NULL), &what) == 401, "a wrong aud: 401");
	ok(check(&keys, token("EdDSA", "k0", "{\"sub\":\"a\","
	    "\"iss\":\"https://auth.example\",\"aud\":[\"x\","
	    "\"https://auth.example\"]}", k[0], NULL), &what) == 200,
	    "aud an array that holds the audience: taken");
	ok(check(&keys, token("EdDSA", "k0", "{\"sub\":\"a\","
	    "\"iss\":\"https://auth.example\"}", k[0], NULL), &what) == 401,
	    "no aud when one is required: 401");
	ok(check(&keys, hs256_token("{\"sub\":\"a\",\"iss\":\"https://x\","
	    "\"aud\":\"https://auth.example\"}", (unsigned char *)SECRET,
	    sizeof(SECRET) - 1), &what) == 401,
	    "an HS256 token with a wrong iss: 401 too");
	ok(check(&keys, token("EdDSA", "k0", "{\"sub\":\"a\",\"exp\":1,"
	    "\"iss\":\"https://auth.example\",\"aud\":\"https://auth.example\"}",
	    k[0], NULL), &what) == 401, "an expired EdDSA token: 401");
	keyring_cleanup();

	/* A set of one key: a token without kid may use it. */
	set = cJSON_CreateArray();
	cJSON_AddItemToArray(set, jwk_of(k[0], NULL, "EdDSA"));
	write_set(set);
	ok(keyring_init(path) == 0 && check(&keys, token("EdDSA", NULL, CLAIMS,
	    k[0], NULL), &what) == 200, "no kid, a set of one key: taken");
	keyring_cleanup();

	/* A token checked once is remembered with the key that checked it:
	 * a new set whose kid names another key checks it afresh. */
	t = strdup(token("EdDSA", "k0", CLAIMS, k[0], NULL));
	set = cJSON_CreateArray();
	cJSON_AddItemToArray(set, jwk_of(k[0], "k0", NULL));
	write_set(set);
	ok(keyring_init(path) == 0 && check(&keys, t, &what) == 200 &&
	    check(&keys, t, &what) == 200, "a token checked twice: taken");
	keyring_cleanup();
	set = cJSON_CreateArray();
	cJSON_AddItemToArray(set, jwk_of(foreign, "k0", NULL));
	write_set(set);
	ok(keyring_init(path) == 0 && check(&keys, t, &what) == 401,
	    "...and refused once its kid names another key");
	keyring_cleanup();
	set = cJSON_CreateArray();
	cJSON_AddItemToArray(set, jwk_of(k[0], "k0", NULL));
	write_set(set);
	ok(keyring_init(path) == 0 && check(&keys, t, &what) == 200,
	    "...and taken again when the key comes back");
	keyring_cleanup();
	free(t);

	/* Sets that are no reason to start. */
	set = cJSON_CreateArray();
	cJSON_AddItemToArray(set, jwk_of(small, "small", NULL));
	write_set(set);
	ok(keyring_init(path) == -1, "a set with no usable key: refused");
	keyring_cleanup();
	ok(keyring_init("t/tmp/no-such-jwks.json") == -1,
	    "a JWKS file that is not there: refused");
	keyring_cleanup();
	ok(jwks_parse("{\"keys\":[]}}", 12, &parsed, why, sizeof(why)) == -1,
	    "a set with bytes after it: not a JWKS");
	ok(jwks_parse("[]", 2, &parsed, why, sizeof(why)) == -1,
	    "an array: not a JWKS");

	/* A URL that does not answer: start, and 503 until it does. */
	ok(keyring_init("http://127.0.0.1:1/jwks") == 0,
	    "a JWKS URL that does not answer is no reason not to start");
	st = check(&keys, token("EdDSA", "k0", CLAIMS, k[0], NULL), &what);
	ok(st == 503 && strcmp(what, "auth_unavailable") == 0,
	    "...its tokens get 503 auth_unavailable");
	ok(check(&keys, hs256_token(CLAIMS, (unsigned char *)SECRET,
	    sizeof(SECRET) - 1), &what) == 200,
	    "...while HS256 tokens are taken");
	keyring_cleanup();
	auth_thread_cleanup();

	for (i = 0; i < NALGS; i++)
		EVP_PKEY_free(k[i]);
	EVP_PKEY_free(foreign);
	EVP_PKEY_free(small);
	unlink(path);
	return 0;
}
