/* t/unit/text.c: the checks on outside text: UTF-8 validation, JSON
 * parsed whole, positive ids (text.h), query string lookup and path
 * segment decoding (url.h). Prints TAP. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "buf.h"
#include "text.h"
#include "url.h"

/* A literal and its length, NULs inside included. */
#define BYTES(s)	(s), sizeof(s) - 1

static const struct {
	const char	*name;
	const char	*s;
	size_t		 len;
	int		 valid;
} utf8[] = {
	/* Must pass. */
	{ "empty",			BYTES(""), 1 },
	{ "ASCII",			BYTES("add a task: buy milk"), 1 },
	{ "NUL is a character",		BYTES("a\0b"), 1 },
	{ "2 bytes, U+00E9",		BYTES("caf\xc3\xa9"), 1 },
	{ "2 bytes, lowest U+0080",	BYTES("\xc2\x80"), 1 },
	{ "2 bytes, highest U+07FF",	BYTES("\xdf\xbf"), 1 },
	{ "3 bytes, U+20AC",		BYTES("\xe2\x82\xac" "5"), 1 },
	{ "3 bytes, lowest U+0800",	BYTES("\xe0\xa0\x80"), 1 },
	{ "3 bytes, U+D7FF below surrogates", BYTES("\xed\x9f\xbf"), 1 },
	{ "3 bytes, U+E000 above surrogates", BYTES("\xee\x80\x80"), 1 },
	{ "3 bytes, U+FFFF",		BYTES("\xef\xbf\xbf"), 1 },
	{ "4 bytes, U+1F600",		BYTES("\xf0\x9f\x98\x80"), 1 },
	{ "4 bytes, lowest U+10000",	BYTES("\xf0\x90\x80\x80"), 1 },
	{ "4 bytes, highest U+10FFFF",	BYTES("\xf4\x8f\xbf\xbf"), 1 },
	{ "mixed widths",		BYTES("a\xc3\xa9\xe2\x82\xac"
					    "\xf0\x9f\x98\x80z"), 1 },

	/* Must fail: overlong forms. */
	{ "overlong NUL C0 80",		BYTES("\xc0\x80"), 0 },
	{ "overlong C1 BF",		BYTES("\xc1\xbf"), 0 },
	{ "overlong E0 80 80",		BYTES("\xe0\x80\x80"), 0 },
	{ "overlong U+07FF E0 9F BF",	BYTES("\xe0\x9f\xbf"), 0 },
	{ "overlong F0 80 80 80",	BYTES("\xf0\x80\x80\x80"), 0 },
	{ "overlong U+FFFF F0 8F BF BF", BYTES("\xf0\x8f\xbf\xbf"), 0 },
	{ "overlong '/' E0 80 AF",	BYTES("\xe0\x80\xaf"), 0 },

	/* Must fail: surrogates and code points past U+10FFFF. */
	{ "high surrogate ED A0 80",	BYTES("\xed\xa0\x80"), 0 },
	{ "low surrogate ED BF BF",	BYTES("\xed\xbf\xbf"), 0 },
	{ "surrogate pair as CESU-8",	BYTES("\xed\xa0\xbd\xed\xb8\x80"), 0 },
	{ "U+110000 F4 90 80 80",	BYTES("\xf4\x90\x80\x80"), 0 },
	{ "F5 lead byte",		BYTES("\xf5\x80\x80\x80"), 0 },
	{ "F7 BF BF BF",		BYTES("\xf7\xbf\xbf\xbf"), 0 },
	{ "5-byte F8 lead",		BYTES("\xf8\x88\x80\x80\x80"), 0 },
	{ "6-byte FC lead",		BYTES("\xfc\x84\x80\x80\x80\x80"), 0 },
	{ "FE",				BYTES("\xfe"), 0 },
	{ "FF",				BYTES("\xff"), 0 },

	/* Must fail: truncated sequences and stray continuation bytes. */
	{ "truncated 2-byte",		BYTES("\xc3"), 0 },
	{ "truncated 3-byte",		BYTES("\xe2\x82"), 0 },
	{ "truncated 4-byte",		BYTES("\xf0\x9f\x98"), 0 },
	{ "truncated after ASCII",	BYTES("abc\xe2\x82"), 0 },
	{ "truncated before ASCII",	BYTES("\xe2\x82" "abc"), 0 },
	{ "lone continuation 80",	BYTES("\x80"), 0 },
	{ "lone continuation BF",	BYTES("\xbf"), 0 },
	{ "continuation between ASCII",	BYTES("a\x80" "b"), 0 },
	{ "continuation after a sequence", BYTES("\xc3\xa9\xa9"), 0 },
	{ "ASCII as continuation",	BYTES("\xc3(" ), 0 },
	{ "bad second continuation",	BYTES("\xe2\x82(" ), 0 },
	{ "Latin-1 text",		BYTES("caf\xe9"), 0 },
};

static const struct {
	const char	*name;
	const char	*query, *key;
	size_t		 outlen;
	int		 rc;
	const char	*value;		/* compared when rc is 1 */
} queries[] = {
	{ "present",			"limit=20", "limit", 32, 1, "20" },
	{ "among others",		"a=1&limit=20&b=2", "limit", 32, 1,
					"20" },
	{ "last pair",			"a=1&before=99", "before", 32, 1,
					"99" },
	{ "absent",			"a=1&b=2", "limit", 32, 0, NULL },
	{ "empty query",		"", "limit", 32, 0, NULL },
	{ "empty value",		"limit=", "limit", 32, 1, "" },
	{ "name without '='",		"a=1&limit&b=2", "limit", 32, 1, "" },
	{ "percent-decoded",		"q=a%20b%2Fc", "q", 32, 1, "a b/c" },
	{ "hex in either case",		"q=%4a%4A", "q", 32, 1, "JJ" },
	{ "'+' is a space",		"q=a+b", "q", 32, 1, "a b" },
	{ "%2B is a plus",		"q=a%2Bb", "q", 32, 1, "a+b" },
	{ "encoded '&' stays in value",	"q=a%26b&r=1", "q", 32, 1, "a&b" },
	{ "'=' in value kept",		"q=a=b", "q", 32, 1, "a=b" },
	{ "malformed %zz",		"q=%zz", "q", 32, -1, NULL },
	{ "malformed %4z",		"q=%4z", "q", 32, -1, NULL },
	{ "%4 at the end",		"q=%4", "q", 32, -1, NULL },
	{ "%4 before the next pair",	"q=%4&r=1", "q", 32, -1, NULL },
	{ "'%' at the end",		"q=%", "q", 32, -1, NULL },
	{ "%00 rejected",		"q=a%00b", "q", 32, -1, NULL },
	{ "malformed other pair ignored", "r=%zz&q=1", "q", 32, 1, "1" },
	{ "fits exactly",		"q=abc", "q", 4, 1, "abc" },
	{ "one byte too long",		"q=abcd", "q", 4, -1, NULL },
	{ "decoded length counts",	"q=%41%42%43", "q", 4, 1, "ABC" },
	{ "empty value, one byte out",	"q=", "q", 1, 1, "" },
	{ "no room at all",		"q=", "q", 0, -1, NULL },
	{ "name a prefix of another",	"limitx=5&limit=7", "limit", 32, 1,
					"7" },
	{ "name longer than the key",	"limitx=5", "limit", 32, 0, NULL },
	{ "key longer than the name",	"lim=5", "limit", 32, 0, NULL },
	{ "first of two wins",		"limit=1&limit=2", "limit", 32, 1,
					"1" },
	{ "empty pairs skipped",	"&&limit=3&", "limit", 32, 1, "3" },
	{ "names are case-sensitive",	"LIMIT=3", "limit", 32, 0, NULL },
	{ "names are not decoded",	"li%6Dit=3", "limit", 32, 0, NULL },
};

static const struct {
	const char	*name;
	const char	*s;
	size_t		 outlen;
	int		 rc;
	const char	*value;		/* compared when rc is 0 */
} segments[] = {
	{ "plain",			"alice", 32, 0, "alice" },
	{ "%40 is '@'",			"bob%40example.com", 32, 0,
					"bob@example.com" },
	{ "'+' stays a plus",		"a+b", 32, 0, "a+b" },
	{ "%2B is a plus",		"a%2Bb", 32, 0, "a+b" },
	{ "hex in either case",		"al%69%6Ce", 32, 0, "alile" },
	{ "%2F would split the path",	"a%2Fb", 32, -1, NULL },
	{ "%2f too",			"a%2fb", 32, -1, NULL },
	{ "%00 rejected",		"a%00", 32, -1, NULL },
	{ "malformed %zz",		"%zz", 32, -1, NULL },
	{ "'%' at the end",		"a%", 32, -1, NULL },
	{ "%4 at the end",		"a%4", 32, -1, NULL },
	{ "fits exactly",		"a%40b", 4, 0, "a@b" },
	{ "one byte too long",		"abcd", 4, -1, NULL },
};

/* JSON texts from a client or the model: parsed whole, or not at all. */
static const struct {
	const char	*name;
	const char	*s;
	size_t		 len;
	int		 parses;
} json[] = {
	{ "an object",			BYTES("{\"title\":\"x\"}"), 1 },
	{ "whitespace around",		BYTES(" \t{\"a\":1}\r\n "), 1 },
	{ "a string",			BYTES("\"x\""), 1 },
	{ "a second closing brace",	BYTES("{\"title\":\"x\"}}"), 0 },
	{ "a second value",		BYTES("{} {}"), 0 },
	{ "trailing garbage",		BYTES("[1]x"), 0 },
	{ "a NUL byte after the value",	BYTES("{}\0garbage"), 0 },
	{ "a NUL byte inside",		BYTES("{\"a\0\":1}"), 0 },
	{ "cut short",			BYTES("{\"title\":\"x"), 0 },
	{ "empty",			BYTES(""), 0 },
	{ "only whitespace",		BYTES("  "), 0 },
	{ "length honoured, not the NUL", "{}}", 2, 1 },
};

/* Ids in a path, a query or a tool's arguments. */
static const struct {
	const char	*name;
	const char	*s;
	long long	 id;		/* 0: refused */
} ids[] = {
	{ "one",			"1", 1 },
	{ "a bigserial",		"12345", 12345 },
	{ "2^53 - 1",			"9007199254740991", 9007199254740991LL },
	{ "2^53",			"9007199254740992", 0 },
	{ "twenty digits",		"99999999999999999999", 0 },
	{ "zero",			"0", 0 },
	{ "a leading zero",		"07", 0 },
	{ "a sign",			"+3", 0 },
	{ "negative",			"-3", 0 },
	{ "a space before",		" 3", 0 },
	{ "a space after",		"3 ", 0 },
	{ "a decimal point",		"3.0", 0 },
	{ "an exponent",		"3e0", 0 },
	{ "hex",			"0x3", 0 },
	{ "empty",			"", 0 },
};

/* Ids as JSON values: numbers, and strings when allowed. */
static const struct {
	const char	*name;
	const char	*json;
	int		 strings;
	long long	 id;		/* 0: refused */
} json_ids[] = {
	{ "a number",			"3", 0, 3 },
	{ "an integral double",		"3.0", 0, 3 },
	{ "a fraction",			"1.5", 0, 0 },
	{ "zero",			"0", 0, 0 },
	{ "negative",			"-2", 0, 0 },
	{ "past 2^53",			"1e300", 0, 0 },
	{ "a string, not allowed",	"\"3\"", 0, 0 },
	{ "a string, allowed",		"\"3\"", 1, 3 },
	{ "a string with a sign",	"\"+3\"", 1, 0 },
	{ "true",			"true", 1, 0 },
	{ "null",			"null", 1, 0 },
};

static int
json_case(size_t i)
{
	cJSON	*v;
	char	*copy;
	int	 ok;

	if ((copy = malloc(json[i].len + 1)) == NULL)
		abort();
	memcpy(copy, json[i].s, json[i].len);
	v = text_json_parse(copy, json[i].len);
	ok = (v != NULL) == json[i].parses;
	cJSON_Delete(v);
	free(copy);
	return ok;
}

static int
id_case(size_t i)
{
	long long	 id = 0;
	int		 rc;

	rc = text_id_parse(ids[i].s, &id);
	return ids[i].id == 0 ? rc == -1 : rc == 0 && id == ids[i].id;
}

static int
json_id_case(size_t i)
{
	cJSON		*v = cJSON_Parse(json_ids[i].json);
	long long	 id = 0;
	int		 rc;

	rc = text_id_json(v, json_ids[i].strings, &id);
	cJSON_Delete(v);
	return json_ids[i].id == 0 ? rc == -1 :
	    rc == 0 && id == json_ids[i].id;
}

/* Checks a copy of exactly len bytes, so that ASan and valgrind see a
 * read past the end of a truncated sequence. */
static int
utf8_case(size_t i)
{
	char	*copy;
	int	 valid;

	if ((copy = malloc(utf8[i].len)) == NULL && utf8[i].len > 0)
		abort();
	if (utf8[i].len > 0)
		memcpy(copy, utf8[i].s, utf8[i].len);
	valid = text_utf8_valid(copy, utf8[i].len);
	free(copy);
	return valid == utf8[i].valid;
}

/* One lookup into a buffer of exactly outlen bytes, so that ASan and
 * valgrind see a write past it. */
static int
query_case(size_t i)
{
	char	*out;
	int	 rc, ok;

	if ((out = malloc(queries[i].outlen)) == NULL &&
	    queries[i].outlen > 0)
		abort();
	rc = url_query_get(queries[i].query, queries[i].key, out,
	    queries[i].outlen);
	ok = rc == queries[i].rc &&
	    (rc != 1 || strcmp(out, queries[i].value) == 0);
	free(out);
	return ok;
}

/* One segment, read from a copy of exactly its bytes (no NUL after
 * them) into a buffer of exactly outlen. */
static int
segment_case(size_t i)
{
	size_t	 len = strlen(segments[i].s);
	char	*in, *out;
	int	 rc, ok;

	if ((in = malloc(len)) == NULL ||
	    (out = malloc(segments[i].outlen)) == NULL)
		abort();
	memcpy(in, segments[i].s, len);
	rc = url_segment_decode(in, len, out, segments[i].outlen);
	ok = rc == segments[i].rc &&
	    (rc != 0 || strcmp(out, segments[i].value) == 0);
	free(in);
	free(out);
	return ok;
}

/* text_json_string() writes what cJSON would print for the same string,
 * for every ASCII byte alone and in company, and for UTF-8; a NUL, which
 * a cJSON string cannot hold, as \u0000. */
static int
json_string_case(int *count)
{
	static const char *const samples[] = { "", "plain words ",
	    "say \"hi\"\\n", "tab\there\r\nline\fform\bback",
	    "\x01\x1f\x7f", "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80",
	    "</script>&<img src=x onerror=alert(1)>" };
	char		 one[2] = { 0, 0 }, *want;
	struct buf	 b = BUF_INIT(1024);
	cJSON		*str;
	size_t		 i;
	int		 bad = 0;

	*count = 0;
	for (i = 0; i < 128 + sizeof(samples) / sizeof(samples[0]); i++) {
		const char	*s = i == 0 ? "" : i < 128 ? one : samples[i - 128];

		one[0] = (char)i;
		buf_reset(&b);
		if ((str = cJSON_CreateString(s)) == NULL ||
		    (want = cJSON_PrintUnformatted(str)) == NULL)
			abort();
		if (text_json_string(&b, s, strlen(s)) != 0 ||
		    strcmp(b.data, want) != 0)
			bad++;
		cJSON_free(want);
		cJSON_Delete(str);
		(*count)++;
	}
	buf_reset(&b);
	if (text_json_string(&b, "a\0b", 3) != 0 ||
	    strcmp(b.data, "\"a\\u0000b\"") != 0)
		bad++;
	buf_free(&b);
	b = (struct buf)BUF_INIT(4);
	if (text_json_string(&b, "too long", 8) != -1)	/* past max */
		bad++;
	buf_free(&b);
	return bad == 0;
}

/* text_json_add_int() prints every digit, to the ends of long long, and
 * what cJSON prints where cJSON is exact: below 10^15 (cJSON 1.7.15
 * writes 2^53 - 1, our largest id, as 9.00719925474099e+15, off by one). */
static int
json_int_case(void)
{
	static const long long	 values[] = { 0, 1, -1, 9, 10, 42, -1234567,
	    999999999999999LL, TEXT_ID_MAX, -TEXT_ID_MAX, LLONG_MIN,
	    LLONG_MAX };
	cJSON			*o, *item;
	char			*text, *cjson;
	char			 want[64];
	size_t			 i;
	int			 bad = 0;

	for (i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		if ((o = cJSON_CreateObject()) == NULL ||
		    (item = cJSON_CreateObject()) == NULL ||
		    text_json_add_int(o, "n", values[i]) == NULL ||
		    cJSON_AddNumberToObject(item, "n", (double)values[i]) ==
		    NULL)
			abort();
		text = cJSON_PrintUnformatted(o);
		cjson = cJSON_PrintUnformatted(item);
		snprintf(want, sizeof(want), "{\"n\":%lld}", values[i]);
		if (text == NULL || cjson == NULL || strcmp(text, want) != 0 ||
		    (values[i] > -1000000000000000LL &&
		    values[i] < 1000000000000000LL &&
		    strcmp(text, cjson) != 0))
			bad++;
		cJSON_free(text);
		cJSON_free(cjson);
		cJSON_Delete(o);
		cJSON_Delete(item);
	}
	return bad == 0;
}

int
main(void)
{
	size_t	 i, n = sizeof(utf8) / sizeof(utf8[0]);
	size_t	 nq = sizeof(queries) / sizeof(queries[0]);
	size_t	 ns = sizeof(segments) / sizeof(segments[0]);
	size_t	 nj = sizeof(json) / sizeof(json[0]);
	size_t	 ni = sizeof(ids) / sizeof(ids[0]);
	size_t	 nji = sizeof(json_ids) / sizeof(json_ids[0]);
	size_t	 t = n + nq + ns;

	int	 nstr;

	printf("1..%zu\n", t + nj + ni + nji + 2);
	for (i = 0; i < n; i++)
		printf("%sok %zu - utf8: %s\n", utf8_case(i) ? "" : "not ",
		    i + 1, utf8[i].name);
	for (i = 0; i < nq; i++)
		printf("%sok %zu - query: %s\n", query_case(i) ? "" : "not ",
		    n + i + 1, queries[i].name);
	for (i = 0; i < ns; i++)
		printf("%sok %zu - segment: %s\n", segment_case(i) ? "" :
		    "not ", n + nq + i + 1, segments[i].name);
	for (i = 0; i < nj; i++)
		printf("%sok %zu - json: %s\n", json_case(i) ? "" : "not ",
		    ++t, json[i].name);
	for (i = 0; i < ni; i++)
		printf("%sok %zu - id: %s\n", id_case(i) ? "" : "not ", ++t,
		    ids[i].name);
	for (i = 0; i < nji; i++)
		printf("%sok %zu - JSON id: %s\n", json_id_case(i) ? "" :
		    "not ", ++t, json_ids[i].name);
	printf("%sok %zu - text_json_string as cJSON prints", json_string_case(
	    &nstr) ? "" : "not ", ++t);
	printf(" (%d strings)\n", nstr);
	printf("%sok %zu - text_json_add_int as cJSON prints, to the ends of "
	    "long long\n", json_int_case() ? "" : "not ", ++t);
	return 0;
}
