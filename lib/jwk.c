/* jwk.c: public keys from a JWKS and JWS signatures checked with them
 * (jwk.h), through OpenSSL 3's EVP interfaces. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include "jwk.h"
#include "text.h"

/* The largest RSA modulus we read: 8192 bits. Larger keys exist in no
 * identity provider we know, and each check would cost a lot. */
#define RSA_MAX_BYTES	1024

/* Each JWS algorithm we check, its key type and its digest (NULL: the
 * algorithm hashes for itself, as Ed25519 does). */
static const struct {
	const char	*alg;
	enum jwk_type	 type;
	const char	*digest;
	int		 pss;
} algs[] = {
	{ "EdDSA",	JWK_ED25519,	NULL,		0 },
	{ "ES256",	JWK_P256,	"SHA256",	0 },
	{ "RS256",	JWK_RSA,	"SHA256",	0 },
	{ "PS256",	JWK_RSA,	"SHA256",	1 },
};

#define NALGS	(sizeof(algs) / sizeof(algs[0]))

static int
alg_index(const char *alg)
{
	size_t	 i;

	for (i = 0; alg != NULL && i < NALGS; i++)
		if (strcmp(alg, algs[i].alg) == 0)
			return (int)i;
	return -1;
}

int
jwk_type_of_alg(const char *alg)
{
	int	 i = alg_index(alg);

	return i < 0 ? -1 : (int)algs[i].type;
}

int
jwk_fits(const struct jwk *key, const char *alg)
{
	return jwk_type_of_alg(alg) == (int)key->type &&
	    (key->alg[0] == '\0' || strcmp(key->alg, alg) == 0);
}

static const char *
str_member(const cJSON *o, const char *name)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(o, name);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A base64url member of exactly want bytes (any length up to max when
 * want is 0) into out; its length, or -1. */
static long
b64_member(const cJSON *o, const char *name, unsigned char *out,
    size_t max, size_t want)
{
	const char	*s = str_member(o, name);
	long		 n;

	if (s == NULL)
		return -1;
	n = text_b64url_decode(s, strlen(s), out, max);
	if (n <= 0 || (want > 0 && (size_t)n != want))
		return -1;
	return n;
}

static EVP_PKEY *
from_params(const char *type, OSSL_PARAM *params)
{
	EVP_PKEY_CTX	*ctx, *check = NULL;
	EVP_PKEY	*pkey = NULL;

	if ((ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL)) == NULL)
		return NULL;
	if (EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		pkey = NULL;
	/* A point off the curve, an even modulus: not a key to trust. */
	if (pkey != NULL && ((check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey,
	    NULL)) == NULL || EVP_PKEY_public_check(check) != 1)) {
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
	EVP_PKEY_CTX_free(check);
	EVP_PKEY_CTX_free(ctx);
	return pkey;
}

static EVP_PKEY *
okp_key(const cJSON *o)
{
	unsigned char	 x[32 + 2];
	const char	*crv = str_member(o, "crv");

	if (crv == NULL || strcmp(crv, "Ed25519") != 0 ||
	    b64_member(o, "x", x, sizeof(x), 32) == -1)
		return NULL;
	return EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, x, 32);
}

/* The point as SEC 1 encodes it uncompressed: 0x04, x, y. */
static EVP_PKEY *
ec_key(const cJSON *o)
{
	unsigned char	 point[1 + 64 + 2];
	char		 group[] = "P-256";
	const char	*crv = str_member(o, "crv");
	OSSL_PARAM	 params[3];

	if (crv == NULL || strcmp(crv, "P-256") != 0 ||
	    b64_member(o, "x", point + 1, 32 + 2, 32) == -1 ||
	    b64_member(o, "y", point + 33, 32 + 2, 32) == -1)
		return NULL;
	point[0] = 0x04;
	params[0] = OSSL_PARAM_construct_utf8_string(
	    OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
	params[1] = OSSL_PARAM_construct_octet_string(
	    OSSL_PKEY_PARAM_PUB_KEY, point, 65);
	params[2] = OSSL_PARAM_construct_end();
	return from_params("EC", params);
}

static EVP_PKEY *
rsa_key(const cJSON *o)
{
	unsigned char	 n[RSA_MAX_BYTES + 2], e[16];
	long		 nlen, elen;
	BIGNUM		*bn_n = NULL, *bn_e = NULL;
	OSSL_PARAM_BLD	*bld = NULL;
	OSSL_PARAM	*params = NULL;
	EVP_PKEY	*pkey = NULL;

	if ((nlen = b64_member(o, "n", n, sizeof(n), 0)) == -1 ||
	    (elen = b64_member(o, "e", e, sizeof(e), 0)) == -1)
		return NULL;
	if ((bn_n = BN_bin2bn(n, (int)nlen, NULL)) != NULL &&
	    (bn_e = BN_bin2bn(e, (int)elen, NULL)) != NULL &&
	    (bld = OSSL_PARAM_BLD_new()) != NULL &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) &&
	    (params = OSSL_PARAM_BLD_to_param(bld)) != NULL)
		pkey = from_params("RSA", params);
	if (pkey != NULL && EVP_PKEY_get_bits(pkey) < JWK_RSA_MIN_BITS) {
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(bn_n);
	BN_free(bn_e);
	return pkey;
}

/* One key of the set into k: 0, or -1 to skip it. A key meant for
 * something else than signatures ("use": "enc"), of a type or curve we
 * do not check, or naming an algorithm its type cannot do, is skipped. */
static int
jwk_read(const cJSON *o, struct jwk *k)
{
	const char	*kty = str_member(o, "kty"), *use = str_member(o, "use");
	const char	*alg = str_member(o, "alg"), *kid = str_member(o, "kid");
	const cJSON	*kid_item = cJSON_GetObjectItemCaseSensitive(o, "kid");

	memset(k, 0, sizeof(*k));
	if (!cJSON_IsObject(o) || kty == NULL ||
	    (use != NULL && strcmp(use, "sig") != 0) ||
	    (kid_item != NULL && (kid == NULL || strlen(kid) > JWK_KID_MAX)))
		return -1;
	if (strcmp(kty, "OKP") == 0) {
		k->type = JWK_ED25519;
		k->pkey = okp_key(o);
	} else if (strcmp(kty, "EC") == 0) {
		k->type = JWK_P256;
		k->pkey = ec_key(o);
	} else if (strcmp(kty, "RSA") == 0) {
		k->type = JWK_RSA;
		k->pkey = rsa_key(o);
	} else
		return -1;
	if (k->pkey == NULL)
		return -1;
	if (alg != NULL) {
		if (jwk_type_of_alg(alg) != (int)k->type)
			goto skip;
		memcpy(k->alg, alg, strlen(alg) + 1);	/* known: short */
	}
	if (kid != NULL && (k->kid = strdup(kid)) == NULL)
		goto skip;
	return 0;
skip:
	EVP_PKEY_free(k->pkey);
	k->pkey = NULL;
	return -1;
}

int
jwks_parse(const char *s, size_t len, struct jwks *out, char *why,
    size_t whylen)
{
	const cJSON	*keys, *o;
	cJSON		*root;
	struct jwk	 k;
	int		 rc = -1;

	memset(out, 0, sizeof(*out));
	root = text_json_parse(s, len);
	keys = cJSON_GetObjectItemCaseSensitive(root, "keys");
	if (!cJSON_IsObject(root) || !cJSON_IsArray(keys)) {
		snprintf(why, whylen, "not a JSON Web Key Set (an object with "
		    "a \"keys\" array)");
		goto out;
	}
	if ((out->keys = calloc(cJSON_GetArraySize(keys) + 1,
	    sizeof(*out->keys))) == NULL) {
		snprintf(why, whylen, "out of memory");
		goto out;
	}
	cJSON_ArrayForEach(o, keys) {
		if (jwk_read(o, &k) == 0)
			out->keys[out->n++] = k;
		else
			out->skipped++;
	}
	rc = 0;
out:
	if (rc == -1)
		jwks_free(out);
	cJSON_Delete(root);
	return rc;
}

void
jwks_free(struct jwks *set)
{
	size_t	 i;

	for (i = 0; i < set->n; i++) {
		free(set->keys[i].kid);
		EVP_PKEY_free(set->keys[i].pkey);
	}
	free(set->keys);
	memset(set, 0, sizeof(*set));
}

/* JWS carries an ECDSA signature as r || s, 32 bytes each for P-256;
 * OpenSSL checks the DER of RFC 3279. NULL on a bad length or ENOMEM;
 * the caller OPENSSL_free()s the result. */
static unsigned char *
ecdsa_der(const unsigned char *sig, size_t siglen, int *derlen)
{
	ECDSA_SIG	*esig;
	BIGNUM		*r, *s;
	unsigned char	*der = NULL;

	if (siglen != 64 || (esig = ECDSA_SIG_new()) == NULL)
		return NULL;
	r = BN_bin2bn(sig, 32, NULL);
	s = BN_bin2bn(sig + 32, 32, NULL);
	if (r == NULL || s == NULL || ECDSA_SIG_set0(esig, r, s) != 1) {
		BN_free(r);
		BN_free(s);
	} else if ((*derlen = i2d_ECDSA_SIG(esig, &der)) <= 0)
		der = NULL;
	ECDSA_SIG_free(esig);
	return der;
}

static const char *const type_names[] = {
	[JWK_ED25519] = "ED25519",
	[JWK_P256] = "EC",
	[JWK_RSA] = "RSA",
};

int
jwk_verify(EVP_PKEY *pkey, const char *alg, const char *input, size_t len,
    const unsigned char *sig, size_t siglen)
{
	EVP_MD_CTX	*ctx;
	EVP_PKEY_CTX	*pctx = NULL;
	unsigned char	*der = NULL;
	int		 i, derlen = 0, ok = 0;

	if ((i = alg_index(alg)) < 0 ||
	    !EVP_PKEY_is_a(pkey, type_names[algs[i].type]))
		return 0;
	if (algs[i].type == JWK_ED25519 && siglen != 64)
		return 0;
	if (algs[i].type == JWK_P256) {
		if ((der = ecdsa_der(sig, siglen, &derlen)) == NULL)
			return 0;
		sig = der;
		siglen = (size_t)derlen;
	}
	if ((ctx = EVP_MD_CTX_new()) == NULL)
		goto out;
	if (EVP_DigestVerifyInit_ex(ctx, &pctx, algs[i].digest, NULL, NULL,
	    pkey, NULL) != 1)
		goto out;
	/* RFC 7518 section 3.5: PSS with MGF1 and a salt as long as the
	 * digest. */
	if (algs[i].pss && (EVP_PKEY_CTX_set_rsa_padding(pctx,
	    RSA_PKCS1_PSS_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) !=
	    1))
		goto out;
	ok = EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)input,
	    len) == 1;
out:
	EVP_MD_CTX_free(ctx);
	OPENSSL_free(der);
	return ok;
}
