/* t/unit/auth.c: auth_check() on tokens minted here, must-pass and
 * must-fail; its per-thread HMAC context across secrets and threads;
 * auth_user_id_valid() on a table of ids. Prints TAP. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth.h"

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
#define NOW		1700000000	/* the clock every case reads */
#define TOKEN_MAX	16384
#define A64		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" \
			"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

/* How a case's token is signed. */
enum sign {
	SIGN_HS256,		/* with SECRET, as the service expects */
	SIGN_HS512,		/* with SECRET, but HMAC-SHA512 */
	SIGN_WRONG_KEY,		/* HS256 with another secret */
	SIGN_NONE,		/* empty signature, as alg "none" has */
};

/* How the signed parts become the Authorization value. */
enum shape {
	SHAPE_JWT,		/* scheme header.payload.signature */
	SHAPE_TWO_PARTS,	/* scheme header.payload */
	SHAPE_FOUR_PARTS,	/* scheme header.payload.signature.signature */
	SHAPE_BAD_CHAR,		/* a '*' spliced into the header */
	SHAPE_HEADER_EXTRA_A,	/* the header's base64url + "A", signed */
	SHAPE_PADDED,		/* the signature with '=' padding */
	SHAPE_SIG_LOOSE_BITS,	/* the signature's unused low bits set */
	SHAPE_PAYLOAD_SWAPPED,	/* signed over payload, sent with "alt" */
	SHAPE_RAW,		/* the scheme string alone, no token */
	SHAPE_ABSENT,		/* no Authorization header at all */
};

static const struct {
	const char	*name;
	const char	*scheme;	/* what comes before the token */
	const char	*header;	/* JSON, base64url-encoded here */
	const char	*payload;
	enum sign	 sign;
	enum shape	 shape;
	size_t		 pad;		/* bytes of a "pad" claim to add */
	const char	*code;		/* NULL: must pass */
	const char	*user_id;	/* expected on a pass */
} cases[] = {
	/* Must pass. */
	{ "valid token", "Bearer ", "{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
	  "{\"sub\":\"alice\"}", SIGN_HS256, SHAPE_JWT, 0, NULL, "alice" },
	{ "no typ", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"bob@example.com\"}", SIGN_HS256, SHAPE_JWT, 0, NULL,
	  "bob@example.com" },
	{ "typ in lower case", "Bearer ", "{\"alg\":\"HS256\",\"typ\":\"jwt\"}",
	  "{\"sub\":\"u1\"}", SIGN_HS256, SHAPE_JWT, 0, NULL, "u1" },
	{ "typ as a media type", "Bearer ",
	  "{\"alg\":\"HS256\",\"typ\":\"application/jwt\"}",
	  "{\"sub\":\"u1\"}", SIGN_HS256, SHAPE_JWT, 0, NULL, "u1" },
	{ "lower-case bearer", "bearer ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"alice\"}", SIGN_HS256, SHAPE_JWT, 0, NULL, "alice" },
	{ "upper-case BEARER", "BEARER ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"alice\"}", SIGN_HS256, SHAPE_JWT, 0, NULL, "alice" },
	{ "extra spaces after the scheme", "Bearer    ",
	  "{\"alg\":\"HS256\"}", "{\"sub\":\"alice\"}", SIGN_HS256,
	  SHAPE_JWT, 0, NULL, "alice" },
	{ "exp in the future", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"alice\",\"exp\":1700000001}", SIGN_HS256, SHAPE_JWT,
	  0, NULL, "alice" },
	{ "exp and nbf as fractions", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"alice\",\"nbf\":1699999999.5,\"exp\":1700000000.5}",
	  SIGN_HS256, SHAPE_JWT, 0, NULL, "alice" },
	{ "nbf in the past", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"alice\",\"nbf\":1699990000}", SIGN_HS256, SHAPE_JWT,
	  0, NULL, "alice" },
	{ "nbf within the 30 s leeway", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"alice\",\"nbf\":1700000030}", SIGN_HS256, SHAPE_JWT,
	  0, NULL, "alice" },
	{ "sub of 128 bytes", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"" A64 A64 "\"}", SIGN_HS256, SHAPE_JWT, 0, NULL,
	  A64 A64 },
	{ "sub with every allowed punctuation", "Bearer ",
	  "{\"alg\":\"HS256\"}", "{\"sub\":\"A.z_0@9+x-Y\"}", SIGN_HS256,
	  SHAPE_JWT, 0, NULL, "A.z_0@9+x-Y" },
	{ "other claims ignored", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"iss\":\"x\",\"sub\":\"alice\",\"iat\":1,\"aud\":[\"a\"]}",
	  SIGN_HS256, SHAPE_JWT, 0, NULL, "alice" },
	{ "escaped backslash before u0000 is text", "Bearer ",
	  "{\"alg\":\"HS256\"}", "{\"sub\":\"alice\",\"x\":\"\\\\u0000\"}",
	  SIGN_HS256, SHAPE_JWT, 0, NULL, "alice" },
	{ "JSON whitespace after the payload", "Bearer ",
	  "{\"alg\":\"HS256\"}", "{\"sub\":\"alice\"}\r\n\t ",
	  SIGN_HS256, SHAPE_JWT, 0, NULL, "alice" },
	{ "token just under 8 KiB", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"alice\"}", SIGN_HS256, SHAPE_JWT, 6000, NULL,
	  "alice" },

	/* Must fail: not a bearer token at all. */
	{ "header absent", NULL, NULL, NULL, SIGN_HS256, SHAPE_ABSENT, 0,
	  "missing_token", NULL },
	{ "header empty", "", NULL, NULL, SIGN_HS256, SHAPE_RAW, 0,
	  "missing_token", NULL },
	{ "Basic scheme", "Basic dXNlcjpwYXNz", NULL, NULL, SIGN_HS256,
	  SHAPE_RAW, 0, "missing_token", NULL },
	{ "Basic scheme with a JWT", "Basic ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"alice\"}", SIGN_HS256, SHAPE_JWT, 0, "missing_token",
	  NULL },
	{ "Bearer without a token", "Bearer", NULL, NULL, SIGN_HS256,
	  SHAPE_RAW, 0, "missing_token", NULL },
	{ "Bearer and spaces only", "Bearer   ", NULL, NULL, SIGN_HS256,
	  SHAPE_RAW, 0, "missing_token", NULL },
	{ "scheme glued to the token", "Bearer", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"alice\"}", SIGN_HS256, SHAPE_JWT, 0, "missing_token",
	  NULL },

	/* Must fail: the signature or algorithm. */
	{ "wrong key", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"alice\"}", SIGN_WRONG_KEY, SHAPE_JWT, 0,
	  "invalid_token", NULL },
	{ "payload changed after signing", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"alice\"}", SIGN_HS256, SHAPE_PAYLOAD_SWAPPED, 0,
	  "invalid_token", NULL },
	{ "alg none, no signature", "Bearer ", "{\"alg\":\"none\"}",
	  "{\"sub\":\"alice\"}", SIGN_NONE, SHAPE_JWT, 0, "invalid_token",
	  NULL },
	{ "alg none, HS256 signature", "Bearer ", "{\"alg\":\"none\"}",
	  "{\"sub\":\"alice\"}", SIGN_HS256, SHAPE_JWT, 0, "invalid_token",
	  NULL },
	{ "alg HS512, correct HS512 signature", "Bearer ",
	  "{\"alg\":\"HS512\"}", "{\"sub\":\"alice\"}", SIGN_HS512,
	  SHAPE_JWT, 0, "invalid_token", NULL },
	{ "alg HS512, HS256 signature", "Bearer ", "{\"alg\":\"HS512\"}",
	  "{\"sub\":\"alice\"}", SIGN_HS256, SHAPE_JWT, 0, "invalid_token",
	  NULL },
	{ "alg hs256 in lower case", "Bearer ", "{\"alg\":\"hs256\"}",
	  "{\"sub\":\"alice\"}", SIGN_HS256, SHAPE_JWT, 0, "invalid_token",
	  NULL },
	{ "alg missing", "Bearer ", "{\"typ\":\"JWT\"}",
	  "{\"sub\":\"alice\"}", SIGN_HS256, SHAPE_JWT, 0, "invalid_token",
	  NULL },
	{ "alg not a string", "Bearer ", "{\"alg\":256}",
	  "{\"sub\":\"alice\"}", SIGN_HS256, SHAPE_JWT, 0, "invalid_token",
	  NULL },
	{ "alg twice", "Bearer ", "{\"alg\":\"HS256\",\"alg\":\"none\"}",
	  "{\"sub\":\"alice\"}", SIGN_HS256, SHAPE_JWT, 0, "invalid_token",
	  NULL },
	{ "typ of another kind", "Bearer ",
	  "{\"alg\":\"HS256\",\"typ\":\"JOSE+JSON\"}", "{\"sub\":\"alice\"}",
	  SIGN_HS256, SHAPE_JWT, 0, "invalid_token", NULL },
	{ "crit present", "Bearer ",
	  "{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", "{\"sub\":\"alice\"}",
	  SIGN_HS256, SHAPE_JWT, 0, "invalid_token", NULL },
	{ "signature with unused bits set", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"alice\"}", SIGN_HS256, SHAPE_SIG_LOOSE_BITS, 0,
	  "invalid_token", NULL },

	/* Must fail: the shape of the token. */
	{ "two parts", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"alice\"}", SIGN_HS256, SHAPE_TWO_PARTS, 0,
	  "invalid_token", NULL },
	{ "four parts", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"alice\"}", SIGN_HS256, SHAPE_FOUR_PARTS, 0,
	  "invalid_token", NULL },
	{ "not base64url", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"alice\"}", SIGN_HS256, SHAPE_BAD_CHAR, 0,
	  "invalid_token", NULL },
	{ "header of 4n+1 characters", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"alice\"}", SIGN_HS256, SHAPE_HEADER_EXTRA_A, 0,
	  "invalid_token", NULL },
	{ "base64 padding", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"alice\"}", SIGN_HS256, SHAPE_PADDED, 0,
	  "invalid_token", NULL },
	{ "dots only", "Bearer ..", NULL, NULL, SIGN_HS256, SHAPE_RAW, 0,
	  "invalid_token", NULL },
	{ "junk", "Bearer not-a-token", NULL, NULL, SIGN_HS256, SHAPE_RAW,
	  0, "invalid_token", NULL },
	{ "header not JSON", "Bearer ", "alg: HS256", "{\"sub\":\"alice\"}",
	  SIGN_HS256, SHAPE_JWT, 0, "invalid_token", NULL },
	{ "header a JSON string", "Bearer ", "\"HS256\"",
	  "{\"sub\":\"alice\"}", SIGN_HS256, SHAPE_JWT, 0, "invalid_token",
	  NULL },
	{ "header with trailing bytes", "Bearer ", "{\"alg\":\"HS256\"}x",
	  "{\"sub\":\"alice\"}", SIGN_HS256, SHAPE_JWT, 0, "invalid_token",
	  NULL },
	{ "payload with a control byte after it", "Bearer ",
	  "{\"alg\":\"HS256\"}", "{\"sub\":\"alice\"}\v",
	  SIGN_HS256, SHAPE_JWT, 0, "invalid_token", NULL },
	{ "payload not JSON", "Bearer ", "{\"alg\":\"HS256\"}", "sub=alice",
	  SIGN_HS256, SHAPE_JWT, 0, "invalid_token", NULL },
	{ "payload an array", "Bearer ", "{\"alg\":\"HS256\"}",
	  "[{\"sub\":\"alice\"}]", SIGN_HS256, SHAPE_JWT, 0,
	  "invalid_token", NULL },
	{ "token over 8 KiB", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"alice\"}", SIGN_HS256, SHAPE_JWT, 6200,
	  "invalid_token", NULL },

	/* Must fail: the claims. */
	{ "expired", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"alice\",\"exp\":1699999999}", SIGN_HS256, SHAPE_JWT,
	  0, "invalid_token", NULL },
	{ "exp equal to now", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"alice\",\"exp\":1700000000}", SIGN_HS256, SHAPE_JWT,
	  0, "invalid_token", NULL },
	{ "exp a string", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"alice\",\"exp\":\"1800000000\"}", SIGN_HS256,
	  SHAPE_JWT, 0, "invalid_token", NULL },
	{ "exp null", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"alice\",\"exp\":null}", SIGN_HS256, SHAPE_JWT, 0,
	  "invalid_token", NULL },
	{ "nbf in the future", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"alice\",\"nbf\":1700003600}", SIGN_HS256, SHAPE_JWT,
	  0, "invalid_token", NULL },
	{ "nbf just past the leeway", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"alice\",\"nbf\":1700000031}", SIGN_HS256, SHAPE_JWT,
	  0, "invalid_token", NULL },
	{ "nbf a string", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"alice\",\"nbf\":\"0\"}", SIGN_HS256, SHAPE_JWT, 0,
	  "invalid_token", NULL },
	{ "no sub", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"name\":\"alice\"}", SIGN_HS256, SHAPE_JWT, 0, "invalid_token",
	  NULL },
	{ "sub a number", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":42}", SIGN_HS256, SHAPE_JWT, 0, "invalid_token", NULL },
	{ "sub null", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":null}", SIGN_HS256, SHAPE_JWT, 0, "invalid_token", NULL },
	{ "sub empty", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"\"}", SIGN_HS256, SHAPE_JWT, 0, "invalid_token", NULL },
	{ "sub of 129 bytes", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"" A64 A64 "a\"}", SIGN_HS256, SHAPE_JWT, 0,
	  "invalid_token", NULL },
	{ "sub with a space", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"al ice\"}", SIGN_HS256, SHAPE_JWT, 0, "invalid_token",
	  NULL },
	{ "sub with a slash", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"../alice\"}", SIGN_HS256, SHAPE_JWT, 0,
	  "invalid_token", NULL },
	{ "sub with a NUL", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"alice\\u0000bob\"}", SIGN_HS256, SHAPE_JWT, 0,
	  "invalid_token", NULL },
	{ "escaped NUL in a claim name", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"alice\",\"x\\u0000\":1}", SIGN_HS256, SHAPE_JWT,
	  0, "invalid_token", NULL },
	{ "sub twice", "Bearer ", "{\"alg\":\"HS256\"}",
	  "{\"sub\":\"alice\",\"sub\":\"bob\"}", SIGN_HS256, SHAPE_JWT, 0,
	  "invalid_token", NULL },
};

static const struct {
	const char	*name, *id;
	int		 valid;
} ids[] = {
	{ "plain", "alice", 1 },
	{ "one byte", "a", 1 },
	{ "e-mail", "user_42@example.org", 1 },
	{ "punctuation", "A-Z.a+z", 1 },
	{ "empty", "", 0 },
	{ "NULL", NULL, 0 },
	{ "space", "with space", 0 },
	{ "slash", "slash/", 0 },
	{ "percent", "percent%2F", 0 },
	{ "quote", "quote\"", 0 },
	{ "non-ASCII", "caf\xc3\xa9", 0 },
	{ "tab", "tab\t", 0 },
	{ "colon", "a:b", 0 },
};

/* RFC 4648 section 5, unpadded, as JWS wants (RFC 7515 section 2). */
static size_t
b64url(const unsigned char *p, size_t len, char *out)
{
	static const char	 abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t			 i, o = 0;
	unsigned int		 acc = 0, bits = 0;

	for (i = 0; i < len; i++) {
		acc = (acc << 8) | p[i];
		bits += 8;
		while (bits >= 6) {
			bits -= 6;
			out[o++] = abc[(acc >> bits) & 0x3f];
		}
	}
	if (bits > 0)
		out[o++] = abc[(acc << (6 - bits)) & 0x3f];
	out[o] = '\0';
	return o;
}

/* The payload with a "pad" claim of pad bytes in front, to reach a size. */
static char *
padded(const char *payload, size_t pad)
{
	char	*s;
	size_t	 len = strlen(payload);

	if ((s = malloc(len + pad + 16)) == NULL)
		abort();
	if (pad == 0) {
		memcpy(s, payload, len + 1);
		return s;
	}
	memcpy(s, "{\"pad\":\"", 8);
	memset(s + 8, 'x', pad);
	memcpy(s + 8 + pad, "\",", 2);
	memcpy(s + 10 + pad, payload + 1, len);	/* from after the '{' */
	return s;
}

/* Builds the Authorization value case i describes into out. */
static void
mint(size_t i, char *out)
{
	unsigned char	 mac[EVP_MAX_MD_SIZE];
	unsigned int	 mac_len = 0;
	const char	*key = SECRET;
	char		*payload;
	size_t		 o, signed_len;

	o = strlen(cases[i].scheme);
	memcpy(out, cases[i].scheme, o + 1);
	if (cases[i].shape == SHAPE_RAW)
		return;
	payload = padded(cases[i].payload, cases[i].pad);
	o += b64url((const unsigned char *)cases[i].header,
	    strlen(cases[i].header), out + o);
	/* A sixth bit past the last byte: no encoder writes it, and a
	 * lax decoder reads the same header from it. */
	if (cases[i].shape == SHAPE_HEADER_EXTRA_A)
		out[o++] = 'A';
	out[o++] = '.';
	o += b64url((const unsigned char *)payload, strlen(payload), out + o);
	free(payload);
	signed_len = o - strlen(cases[i].scheme);
	if (cases[i].sign == SIGN_WRONG_KEY)
		key = "another secret";
	if (cases[i].sign != SIGN_NONE && HMAC(cases[i].sign == SIGN_HS512 ?
	    EVP_sha512() : EVP_sha256(), key, (int)strlen(key),
	    (unsigned char *)out + strlen(cases[i].scheme), signed_len, mac,
	    &mac_len) == NULL)
		abort();
	if (cases[i].shape == SHAPE_PAYLOAD_SWAPPED) {
		/* Re-encode with another payload, keeping the old MAC. */
		o = strlen(cases[i].scheme);
		o += b64url((const unsigned char *)cases[i].header,
		    strlen(cases[i].header), out + o);
		out[o++] = '.';
		o += b64url((const unsigned char *)"{\"sub\":\"mallory\"}",
		    17, out + o);
	}
	if (cases[i].shape == SHAPE_TWO_PARTS)
		return;
	out[o++] = '.';
	o += b64url(mac, mac_len, out + o);
	if (cases[i].shape == SHAPE_FOUR_PARTS) {
		out[o++] = '.';
		o += b64url(mac, mac_len, out + o);
	} else if (cases[i].shape == SHAPE_PADDED) {
		memcpy(out + o, "=", 2);
	} else if (cases[i].shape == SHAPE_SIG_LOOSE_BITS) {
		/* 32 bytes take 43 characters, the last holding 2 unused
		 * bits. Its value is a multiple of 4, never '-' (62) or '_'
		 * (63), so the next character in the alphabet sets the
		 * lowest unused bit and leaves the decoded bytes alone. */
		out[o - 1]++;
	} else if (cases[i].shape == SHAPE_BAD_CHAR)
		out[strlen(cases[i].scheme) + 3] = '*';
}

/* One case: the outcome, the user id or error code, and an error
 * message that names no part of the token. */
static int
run(size_t i)
{
	static char		 header[TOKEN_MAX];
	char			 user_id[AUTH_USER_ID_MAX + 1], *dot;
	struct chat_err		 err;
	int			 rc;

	memset(&err, 0, sizeof(err));
	memset(user_id, 0, sizeof(user_id));
	if (cases[i].shape != SHAPE_ABSENT)
		mint(i, header);
	rc = hs_check(cases[i].shape == SHAPE_ABSENT ? NULL : header,
	    SECRET, strlen(SECRET), NOW, user_id, &err);
	if (cases[i].code == NULL)
		return rc == 0 && strcmp(user_id, cases[i].user_id) == 0;
	if (rc != -1 || err.status != 401 || err.code == NULL ||
	    strcmp(err.code, cases[i].code) != 0 || err.msg[0] == '\0' ||
	    user_id[0] != '\0')
		return 0;
	/* The message must not echo the token: not its header part, not
	 * its signature. */
	if (cases[i].shape != SHAPE_ABSENT && cases[i].shape != SHAPE_RAW) {
		if ((dot = strrchr(header, '.')) != NULL &&
		    strlen(dot + 1) >= 8 && strstr(err.msg, dot + 1) != NULL)
			return 0;
		if ((dot = strchr(header, '.')) != NULL) {
			*dot = '\0';
			if (strstr(err.msg, header + strlen(cases[i].scheme))
			    != NULL)
				return 0;
		}
	}
	return 1;
}

/* A token signed with the empty key is refused when the server has no
 * secret: an empty secret would let anyone sign. */
static int
empty_secret_refuses(void)
{
	static const char	 signing_input[] =
	    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9";
	struct chat_err		 err;
	unsigned char		 mac[EVP_MAX_MD_SIZE];
	unsigned int		 mac_len = 0;
	char			 user_id[AUTH_USER_ID_MAX + 1], h[256];
	size_t			 o;

	o = strlen("Bearer ") + strlen(signing_input);
	memcpy(h, "Bearer ", 7);
	memcpy(h + 7, signing_input, sizeof(signing_input));
	if (HMAC(EVP_sha256(), "", 0, (const unsigned char *)signing_input,
	    strlen(signing_input), mac, &mac_len) == NULL)
		abort();
	h[o++] = '.';
	b64url(mac, mac_len, h + o);
	memset(&err, 0, sizeof(err));
	return hs_check(h, "", 0, NOW, user_id, &err) == -1 &&
	    err.status == 401 && strcmp(err.code, "invalid_token") == 0;
}

/*
 * auth_check() keeps a thread's HMAC context keyed between calls, yet
 * must answer as if it keyed one for each: these steps run in order, each
 * checking a token signed with sign_key under the secret check_key, of
 * check_len bytes (0: all of it), always passed in the same buffer, so a
 * cache that compared only the pointer would answer with the old key.
 */
static const struct {
	const char	*name, *sign_key, *check_key;
	size_t		 check_len;
	int		 cleanup_first;	/* auth_thread_cleanup() before */
	int		 pass;
} rekeys[] = {
	{ "first key",				"key one", "key one", 0, 0, 1 },
	{ "same key again",			"key one", "key one", 0, 0, 1 },
	{ "new bytes in the same buffer",	"key two", "key two", 0, 0, 1 },
	{ "old key refused after re-keying",	"key one", "key two", 0, 0, 0 },
	{ "a longer secret is another key",	"key two", "key two!", 0, 0, 0 },
	{ "a prefix of the secret is another key",
						"key", "key two", 3, 0, 1 },
	{ "wrong key leaves the right one usable",
						"key two", "key two", 0, 0, 1 },
	{ "checks again after a thread cleanup",
						"key two", "key two", 0, 1, 1 },
	{ "refuses again after a thread cleanup",
						"key one", "key two", 0, 1, 0 },
};

/* "Bearer " and an HS256 token for sub "alice", signed with key. */
static void
mint_with(const char *key, char *out, size_t outsize)
{
	static const char	 signing_input[] =
	    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9";
	unsigned char		 mac[EVP_MAX_MD_SIZE];
	unsigned int		 mac_len = 0;
	size_t			 o;

	if (outsize < 7 + sizeof(signing_input) + 44)
		abort();
	memcpy(out, "Bearer ", 7);
	memcpy(out + 7, signing_input, sizeof(signing_input));
	o = 7 + strlen(signing_input);
	if (HMAC(EVP_sha256(), key, (int)strlen(key),
	    (const unsigned char *)signing_input, strlen(signing_input), mac,
	    &mac_len) == NULL)
		abort();
	out[o++] = '.';
	b64url(mac, mac_len, out + o);
}

static int
rekey(size_t i)
{
	static char		 secret[64];
	char			 h[256], user_id[AUTH_USER_ID_MAX + 1];
	struct chat_err		 err;
	size_t			 len;
	int			 rc;

	len = strlen(rekeys[i].check_key);
	memcpy(secret, rekeys[i].check_key, len + 1);
	if (rekeys[i].check_len > 0)
		len = rekeys[i].check_len;
	if (rekeys[i].cleanup_first)
		auth_thread_cleanup();
	mint_with(rekeys[i].sign_key, h, sizeof(h));
	memset(&err, 0, sizeof(err));
	rc = hs_check(h, secret, len, NOW, user_id, &err);
	return rekeys[i].pass ? rc == 0 && strcmp(user_id, "alice") == 0 :
	    rc == -1 && strcmp(err.code, "invalid_token") == 0;
}

/* Threads with a secret each, as workers with CHAT_WORKER_THREADS but
 * with keys that differ, so that a context shared between threads, or
 * one that leaked from a thread to another, refuses a good token or
 * takes a bad one. */
#define THREADS		4
#define THREAD_CHECKS	200

static void *
thread_checks(void *arg)
{
	char		 secret[32], other[32], good[256], bad[256];
	char		 user_id[AUTH_USER_ID_MAX + 1];
	struct chat_err	 err;
	size_t		 id = (size_t)arg, i;
	int		 right = 1;

	snprintf(secret, sizeof(secret), "thread secret %zu", id);
	snprintf(other, sizeof(other), "thread secret %zu",
	    (id + 1) % THREADS);
	mint_with(secret, good, sizeof(good));
	mint_with(other, bad, sizeof(bad));
	for (i = 0; i < THREAD_CHECKS; i++) {
		if (hs_check(good, secret, strlen(secret), NOW, user_id,
		    &err) != 0 || strcmp(user_id, "alice") != 0)
			right = 0;
		if (hs_check(bad, secret, strlen(secret), NOW, user_id,
		    &err) != -1)
			right = 0;
	}
	auth_thread_cleanup();
	return right ? arg : NULL;
}

static int
threads_keep_their_keys(void)
{
	pthread_t	 t[THREADS];
	void		*ret;
	size_t		 i, started;
	int		 right = 1;

	for (started = 0; started < THREADS; started++)
		if (pthread_create(&t[started], NULL, thread_checks,
		    (void *)started) != 0) {
			right = 0;
			break;
		}
	for (i = 0; i < started; i++)
		if (pthread_join(t[i], &ret) != 0 || ret != (void *)i)
			right = 0;
	return right;
}

int
main(void)
{
	size_t	 i, n = sizeof(cases) / sizeof(cases[0]);
	size_t	 nids = sizeof(ids) / sizeof(ids[0]);
	size_t	 nrekeys = sizeof(rekeys) / sizeof(rekeys[0]);
	size_t	 t = 0;

	printf("1..%zu\n", n + nids + nrekeys + 2);
	for (i = 0; i < n; i++)
		printf("%sok %zu - %s\n", run(i) ? "" : "not ", ++t,
		    cases[i].name);
	for (i = 0; i < nids; i++)
		printf("%sok %zu - user id: %s, %s\n",
		    auth_user_id_valid(ids[i].id) == ids[i].valid ? "" : "not ",
		    ++t, ids[i].name, ids[i].valid ? "valid" : "invalid");
	printf("%sok %zu - empty secret refuses every token\n",
	    empty_secret_refuses() ? "" : "not ", ++t);
	for (i = 0; i < nrekeys; i++)
		printf("%sok %zu - re-keying: %s\n", rekey(i) ? "" : "not ",
		    ++t, rekeys[i].name);
	printf("%sok %zu - %d threads, a secret each, keep their keys\n",
	    threads_keep_their_keys() ? "" : "not ", ++t, THREADS);
	/* As a worker thread does before it ends: valgrind (t/92-unit-valgrind.t) sees
	 * whether anything of this thread's is left. */
	auth_thread_cleanup();
	return 0;
}
