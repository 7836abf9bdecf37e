/* fuzz/auth.c: auth_check() on Authorization values, as sent and re-signed. */
/*
 * The secret and the clock are those of t/unit/auth.c, so the tokens in
 * fuzz/corpus/auth (fuzz/mint-token) pass. A mutation almost always
 * breaks the signature, and then the claims are never read; so each input
 * is checked a second time with its signature replaced by the right one,
 * which lets the fuzzer reach the claims as an issuer holding the secret
 * would write them. That one is also checked under another secret, which
 * makes hs_check() key its per-thread HMAC context afresh each way.
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth.h"
#include "fuzz.h"

/* auth_check() with keys of an HS256 secret only. */
static int
hs_check(const char *authorization, const char *secret, size_t secret_len,
    time_t now, char *user_id, struct chat_err *err)
{
	struct auth_keys	 keys = { secret, secret_len, NULL, NULL,
				    NULL };

	return auth_check(authorization, &keys, now, user_id, err);
}

#define SECRET		"test secret, not for production"
#define OTHER_SECRET	"another secret"
#define NOW		1700000000

/* RFC 4648 section 5, unpadded. out holds 4 * ((len + 2) / 3) + 1. */
static void
b64url(const unsigned char *p, size_t len, char *out)
{
	static const char	 abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned int		 acc = 0, bits = 0;
	size_t			 i, o = 0;

	for (i = 0; i < len; i++) {
		acc = (acc << 8) | p[i];
		for (bits += 8; bits >= 6; bits -= 6)
			out[o++] = abc[(acc >> (bits - 6)) & 0x3f];
		acc &= (1U << bits) - 1;
	}
	if (bits > 0)
		out[o++] = abc[(acc << (6 - bits)) & 0x3f];
	out[o] = '\0';
}

/* auth.h's promises, for either outcome. */
static void
check(const char *header)
{
	char		 user_id[AUTH_USER_ID_MAX + 1];
	struct chat_err	 err;

	memset(&err, 0, sizeof(err));
	memset(user_id, 0, sizeof(user_id));
	if (hs_check(header, SECRET, strlen(SECRET), NOW, user_id,
	    &err) == 0) {
		FUZZ_CHECK(auth_user_id_valid(user_id));
		return;
	}
	FUZZ_CHECK(err.status == 401 && err.code != NULL);
	FUZZ_CHECK(strcmp(err.code, "missing_token") == 0 ||
	    strcmp(err.code, "invalid_token") == 0);
	FUZZ_CHECK(user_id[0] == '\0');
}

/* A value signed with SECRET is refused under any other: the thread's
 * context must not answer with the key it held before. */
static void
check_other_secret(const char *header)
{
	char		 user_id[AUTH_USER_ID_MAX + 1];
	struct chat_err	 err;

	memset(&err, 0, sizeof(err));
	memset(user_id, 0, sizeof(user_id));
	FUZZ_CHECK(hs_check(header, OTHER_SECRET, strlen(OTHER_SECRET),
	    NOW, user_id, &err) == -1);
	FUZZ_CHECK(user_id[0] == '\0');
}

/* header with everything after its last '.' replaced by the HS256
 * signature of what comes before it (after the scheme); the caller
 * frees. NULL when there is no '.' to sign up to. */
static char *
resigned(const char *header)
{
	unsigned char	 mac[EVP_MAX_MD_SIZE];
	unsigned int	 mac_len = 0;
	const char	*dot, *start;
	char		*out;
	size_t		 len;

	if ((dot = strrchr(header, '.')) == NULL)
		return NULL;
	if ((start = strrchr(header, ' ')) == NULL || start > dot)
		start = header;
	else
		start++;
	if (HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET),
	    (const unsigned char *)start, (size_t)(dot - start), mac,
	    &mac_len) == NULL)
		abort();
	len = (size_t)(dot - header) + 1;
	if ((out = malloc(len + 4 * ((mac_len + 2) / 3) + 1)) == NULL)
		abort();
	memcpy(out, header, len);
	b64url(mac, mac_len, out + len);
	return out;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	*header, *again;

	header = fuzz_string(data, size);
	check(header);
	if ((again = resigned(header)) != NULL) {
		check(again);
		check_other_secret(again);
		free(again);
	}
	free(header);
	return 0;
}
