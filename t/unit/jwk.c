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

/* RSA keys made once with openssl genpkey, for tests only: finding
 * RSA primes took over a minute of this test's 90 s under valgrind
 * (t/92-unit-valgrind.t), and Ed25519 and P-256 keys are made at once. */
static const char RSA2048_PEM[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQC9CEJbmkVneo7y\n"
    "gtKzQ5fY4WkjdA0d+7tvw2731jkJNk/mlLXrlUsavQAhgVk4C+phwu/TjaRiCBvQ\n"
    "XaPvb0Pk9L5ZwmJXIMZPYWbEmhnpBMseYg4fBTGjknJB4xyYGGH9QfpH33PRIMQ4\n"
    "bWcZ7oB47bsLkgMtv9QZX96HMEv6GYxMBv/xY4TABzN5VWzcSZASHPmUsukJTVpq\n"
    "YiUQpvlf6que4Z8UwK483qMK368lV1Cv1Uss7xUku4c9lEgkcvRqFJd6DiTBWF9q\n"
    "aBaOauyYkBpTvg6kdlbiVIMzAhA+OMWYx38c/Pph+u9wYDf1tpAb5PMRaR7+Fnwu\n"
    "DCK7b2VJAgMBAAECggEAFPuleAsaIKgtVXSZpF4ArUmqNM4FRbqDfh68wuSD7Mab\n"
    "XG5N+lJWZaesq8typqLF9+eeXQaYRGx/f+PhFmssp23Wclq+NUs1UCrw8Cpl7WSD\n"
    "koISbLWUIsLXDYLDEgwE1oq8GD3Q2povRc85FlsP5jyHWnuxACNOzSlD55BAIskB\n"
    "wsV3VE/qOGpfnm1MxeNM1EP1222bqy4MV3v2Fg8+yoeMpmKP7JbcuRUy8TGIvbqb\n"
    "ArtACpBAQFEDcOGCYDKFcaBgh4qRXtHWv+3co595NMQaSTGFst23CEZ1fVDQod6C\n"
    "pkn0IPKYYMyzexvf8im6nTFqA4UpyCiVZFNMcUWrfQKBgQDrkidK2ALzPYKtMGFt\n"
    "ekRBmnafMbdUY1hNwTSue/fo3b0iDwAUqH7HhGedTIH/nmMcsbBRRV1Wn3eAr+q7\n"
    "r2VRMakaA272gRpsMBUwdibs0ZMLcw8iRcSQgYl5tGLjVco82ajS4y+9mB78xDIc\n"
    "PAWWAopB08qQ8Xw8WqUCS23DNQKBgQDNbOnmdhGFb8+Ow5gHnF0QMiyU8nRXXPlQ\n"
    "xTapuGGmudG4QwJjgYdUUEl8RJ4RhcxMOhlxGbI/uBRyu1dIUlv+DwigYjwEi7M1\n"
    "0x2lEpZVKG2ad4Gp6IdbT+2y7QL1h5eS97O5SytDVmx22oxdBPvBVMffGsrbhtlp\n"
    "+mMLRKOoRQKBgQCAzBAfo6s5QtBH0MP0D31yQPnKYGxT/10wZgpfu/f3ogTeskTh\n"
    "Bp8KhyH/pu0MzZRzA9PbG4nE6rtz6Lr2kxdaJUTHrEjnDf9cV42+SVtO7+btw6Lq\n"
    "oiqut6Rqnm3Szf0c+ASOCRj5GEsY+ExNk6OaORlOlHWUefPrK8Q8VPFWYQKBgGqx\n"
    "8f6QPmN3Am/dKT5yuWdrF/q4vzKNCLUp6U1XheipxMKWk0wJf7eMB87yeMMTIlxJ\n"
    "JOO4e/taacx5f0kB9ePL/SgIPbICuS7wmwoc0FYkrGC5R3BvZLZJmmT/czUBmvlr\n"
    "jD5mS28rGSTWOGcr6nKszS8U5F4G+S9xLDYzDWmdAoGBAOa0FeP9DmJeMckp/zxs\n"
    "Eti9j2LfyrdQwOosN9tgiT/GNl90O0PXogRQfpJVwPP958iWffAVYf9x1gALgc80\n"
    "pYT1SjtaMrzPJVH+RvN3hcID4aehsw6K9Ld5EOow7r8eKBdwQteoJ7ooddt8Xwzi\n"
    "zsxFOUv3Erd0xlH5dsQFxmxE\n"
    "-----END PRIVATE KEY-----\n";

static const char RSA1024_PEM[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIICdgIBADANBgkqhkiG9w0BAQEFAASCAmAwggJcAgEAAoGBAN0ak0Gt+BLX/v4t\n"
    "YedAuZfZAYdFToxK0mnBiqvl4gGTh2Ynn+oBzBLXtYQOWVoHXweFgwl7EJUJcf+q\n"
    "qecLY2/KvDw0il3DVTHf2BTpFYDexRiFjutbWYXiV99qSKei1HaJaLq26wa+h61l\n"
    "Vtv2FinmgUZkgHRS9KpsrpybIQ2TAgMBAAECgYAdzo5ZhV1zFOFQXMfdCBG9Eckt\n"
    "9j7vlMqm7SuHnvcH5V6Ue/UH8/QR+jiDM/gBtgquleYjag7DOMHAiL5c4mEmGbOE\n"
    "Mn7mNMeTz5kOxAnAsNZrvJbsoGhXRE9jffSACOiatYT5WquxlmC4woiqTQryYGxO\n"
    "Lf8aeiwlgowzM3GdIQJBAP3bLR/Pcy23GttXVZkrs8FFBdVy4kxAHtZU3Z8+1eOt\n"
    "Nye6w9pBYYy3oFXAksioQhr/+nq9B7Y0nsaRfKgsCjECQQDe+JcQPHI6lQ+17Lqk\n"
    "8RxnjxDVS4yZUGhj0WgJzMSUdCGP4D2hfjQK47FJnO0SgPWTnsa7c7o66Qa7XIB6\n"
    "MR8DAkAsdLapTHYaOme8o8W8xjd7kC/eWnkg61W7KS+KlMF2Vr5C+eUUksCXmQy+\n"
    "F7Rc6YJyIgPmfLYeBYcMtSvEc7nxAkAZbZw8u8gDKlC6XJ8EhILKxKQUzyLfsS3W\n"
    "hGErDPE2RPA26kndCvmAbGshjAX1YEOhbDAZ3J7WbRDZeTkltkhlAkEA0UIQLxb+\n"
    "x8qua1WSv0KAFFQJ7VtVce93IHNqRPAWW6oQ66ZHHUIZfL9hCgka/KECAPOX1FeE\n"
    "CVbL8t2CCheN6A==\n"
    "-----END PRIVATE KEY-----\n";

static EVP_PKEY *
keygen(const char *alg)
{
	EVP_PKEY	*k;
	BIO		*pem;

	if (strcmp(alg, "EdDSA") == 0)
		k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	else if (strcmp(alg, "ES256") == 0)
		k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	else {
		if ((pem = BIO_new_mem_buf(strcmp(alg, "RS1024") == 0 ?
		    RSA1024_PEM : RSA2048_PEM, -1)) == NULL)
			abort();
		k = PEM_read_bio_PrivateKey(pem, NULL, NULL, NULL);
		BIO_free(pem);
	}
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
