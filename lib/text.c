/* text.c: UTF-8, strict JSON and id checks on outside text (text.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "buf.h"
#include "text.h"

int
text_utf8_valid(const char *s, size_t len)
{
	const unsigned char	*p = (const unsigned char *)s;
	size_t			 i = 0, n, k;
	unsigned int		 cp, min;

	while (i < len) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		if ((p[i] & 0xe0) == 0xc0) {
			n = 1; cp = p[i] & 0x1f; min = 0x80;
		} else if ((p[i] & 0xf0) == 0xe0) {
			n = 2; cp = p[i] & 0x0f; min = 0x800;
		} else if ((p[i] & 0xf8) == 0xf0) {
			n = 3; cp = p[i] & 0x07; min = 0x10000;
		} else
			return 0;
		if (len - i - 1 < n)
			return 0;
		for (k = 1; k <= n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += n + 1;
	}
	return 1;
}

/* Backslashes occur only inside JSON strings, where each starts an
 * escape that takes the next byte with it, so pairs can be skipped
 * without tracking where strings start and end. */
int
text_json_has_nul(const char *s, size_t len)
{
	size_t	 i;

	for (i = 0; i + 1 < len; i++) {
		if (s[i] != '\\')
			continue;
		if (s[i + 1] == 'u' && len - i >= 6 &&
		    memcmp(s + i + 2, "0000", 4) == 0)
			return 1;
		i++;	/* the escaped character */
	}
	return 0;
}

int
text_json_string(struct buf *b, const char *s, size_t len)
{
	static const char	 hex[] = "0123456789abcdef";
	char			 esc[6];
	size_t			 i, from = 0;
	const char		*rep;
	unsigned char		 c;

	if (buf_add(b, "\"", 1) == -1)
		return -1;
	for (i = 0; i < len; i++) {
		c = (unsigned char)s[i];
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		switch (c) {
		case '"':	rep = "\\\""; break;
		case '\\':	rep = "\\\\"; break;
		case '\b':	rep = "\\b"; break;
		case '\f':	rep = "\\f"; break;
		case '\n':	rep = "\\n"; break;
		case '\r':	rep = "\\r"; break;
		case '\t':	rep = "\\t"; break;
		default:
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			rep = NULL;
			break;
		}
		if (buf_add(b, s + from, i - from) == -1 ||
		    buf_add(b, rep != NULL ? rep : esc, rep != NULL ?
		    strlen(rep) : sizeof(esc)) == -1)
			return -1;
		from = i + 1;
	}
	if (buf_add(b, s + from, len - from) == -1 ||
	    buf_add(b, "\"", 1) == -1)
		return -1;
	return 0;
}

cJSON *
text_json_parse(const char *s, size_t len)
{
	const char	*end = NULL;
	cJSON		*json;

	if (s == NULL || len == 0 || memchr(s, '\0', len) != NULL)
		return NULL;
	if ((json = cJSON_ParseWithLengthOpts(s, len, &end, 0)) == NULL)
		return NULL;
	while (end < s + len && strchr(" \t\r\n", *end) != NULL)
		end++;
	if (end != s + len) {
		cJSON_Delete(json);
		return NULL;
	}
	return json;
}

cJSON *
text_json_parses(const char *s)
{
	return s != NULL ? text_json_parse(s, strlen(s)) : NULL;
}

int
text_id_parse(const char *s, long long *id)
{
	char		*end;
	long long	 v;

	if (*s < '1' || *s > '9' || strlen(s) > 16)
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > TEXT_ID_MAX)
		return -1;
	*id = v;
	return 0;
}

int
text_id_json(const cJSON *v, int strings, long long *id)
{
	double	 d;

	if (cJSON_IsNumber(v)) {
		d = v->valuedouble;
		if (d < 1 || d > (double)TEXT_ID_MAX || (double)(long long)d != d)
			return -1;
		*id = (long long)d;
		return 0;
	}
	if (strings && cJSON_IsString(v))
		return text_id_parse(v->valuestring, id);
	return -1;
}

static int
b64url_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

cJSON *
text_json_add_int(cJSON *object, const char *name, long long v)
{
	char			 digits[24], *p = digits + sizeof(digits);
	unsigned long long	 u = v < 0 ? 0ULL - (unsigned long long)v :
				    (unsigned long long)v;

	*--p = '\0';
	do
		*--p = (char)('0' + u % 10);
	while ((u /= 10) > 0);
	if (v < 0)
		*--p = '-';
	return cJSON_AddRawToObject(object, name, p);
}

/* RFC 7515 section 2 drops the '=' padding, so '=' is as foreign as
 * any other byte. Leftover bits must be zero: otherwise several strings
 * carry one signature, and whatever keys on the token's text (a log, a
 * deny list) would take one token for many. */
long
text_b64url_decode(const char *s, size_t len, unsigned char *out,
    size_t outsize)
{
	size_t		 i, o = 0;
	unsigned int	 acc = 0, bits = 0;
	int		 v;

	if (len % 4 == 1 || len / 4 * 3 + 2 > outsize)
		return -1;
	for (i = 0; i < len; i++) {
		if ((v = b64url_value((unsigned char)s[i])) < 0)
			return -1;
		acc = (acc << 6) | (unsigned int)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1U << bits) - 1;
		}
	}
	if (acc != 0)
		return -1;
	return (long)o;
}
