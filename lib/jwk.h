/* jwk.h: public keys from a JSON Web Key Set (RFC 7517), and checking a
 * JWS signature (RFC 7515, 7518) with one. The keys an identity provider
 * publishes: Ed25519 ("OKP", for EdDSA), P-256 ("EC", for ES256) and RSA
 * of 2048 bits or more (for RS256 and PS256); anything else in a set is
 * skipped. No I/O: keyring.c fetches the set, auth.c reads the token.
 * The cryptography is OpenSSL's (EVP). */
#ifndef JWK_H
#define JWK_H

#include <stddef.h>

#include <openssl/types.h>

enum jwk_type {
	JWK_ED25519,
	JWK_P256,
	JWK_RSA,
};

/* RSA keys below this are refused (RFC 7518 section 3.3 asks for at
 * least 2048 bits). */
#define JWK_RSA_MIN_BITS	2048
/* A kid longer than this is no identifier of ours to look up. */
#define JWK_KID_MAX		256

struct jwk {
	char		*kid;		/* NULL when the key names none */
	enum jwk_type	 type;
	char		 alg[8];	/* the key's "alg", "" when none */
	EVP_PKEY	*pkey;
};

/* A parsed set; jwks_free() frees it and its keys. */
struct jwks {
	struct jwk	*keys;
	size_t		 n;
	size_t		 skipped;	/* keys of other kinds, or malformed */
};

/* Parses JWKS text s[0..len) ({"keys": [...]}, whole and strict) into
 * *out. 0, or -1 when it is not a JWKS at all (or on ENOMEM), with a
 * reason for the operator in why. A set whose keys are all skipped is
 * not an error here: out->n says how many are usable. */
int	 jwks_parse(const char *s, size_t len, struct jwks *out, char *why,
	    size_t whylen);
void	 jwks_free(struct jwks *set);

/* The key type and the JWS "alg" that go together: EdDSA, ES256, RS256
 * and PS256. -1 for any other alg (HS256 included: no public key checks
 * it). */
int	 jwk_type_of_alg(const char *alg);

/* 1 if key may check a token signed with alg: its type is alg's and, when
 * the key names an alg, it is that one. */
int	 jwk_fits(const struct jwk *key, const char *alg);

/* Checks sig[0..siglen) (as decoded from the token: for ES256 the 64
 * bytes r || s of RFC 7518 section 3.4) over input[0..len) with pkey for
 * alg. 1 valid, 0 not (or on ENOMEM). */
int	 jwk_verify(EVP_PKEY *pkey, const char *alg, const char *input,
	    size_t len, const unsigned char *sig, size_t siglen);

#endif
