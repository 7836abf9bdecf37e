/* fuzz/jwks.c: jwks_parse() on a JSON Web Key Set, as a URL may serve it. */
/*
 * The text goes in a block of exactly its length (jwk.h: s[0..len), a
 * length the server chose). What is kept must be usable as it stands:
 * every key has an OpenSSL key of its type, an "alg" that fits it, and
 * the kept and skipped keys add up to no more than the set held.
 */
#include <openssl/evp.h>

#include "fuzz.h"
#include "jwk.h"

static const char *const algs[] = { "EdDSA", "ES256", "RS256", "PS256" };

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct jwks	 set;
	char		*text, why[256];
	size_t		 i, k, fits;

	text = fuzz_bytes(data, size);
	if (jwks_parse(text, size, &set, why, sizeof(why)) == 0) {
		FUZZ_CHECK(set.n + set.skipped <= size);
		for (i = 0; i < set.n; i++) {
			FUZZ_CHECK(set.keys[i].pkey != NULL);
			FUZZ_CHECK(set.keys[i].kid == NULL ||
			    strlen(set.keys[i].kid) <= JWK_KID_MAX);
			for (k = 0, fits = 0; k < 4; k++)
				fits += jwk_fits(&set.keys[i], algs[k]);
			FUZZ_CHECK(fits >= 1);
			if (set.keys[i].type == JWK_RSA)
				FUZZ_CHECK(EVP_PKEY_get_bits(set.keys[i].pkey)
				    >= JWK_RSA_MIN_BITS);
		}
		jwks_free(&set);
	} else
		FUZZ_CHECK(set.keys == NULL && set.n == 0);
	free(text);
	return 0;
}
