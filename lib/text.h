/* text.h: checks on text that comes from outside (a client, a token, the
 * model): UTF-8, JSON parsed whole, positive ids. Pure: no I/O, and no
 * library but cJSON, so every module may use it.
 *
 * cJSON alone is lenient in three ways we must not be: cJSON_Parse()
 * stops at the end of the first value and ignores what follows
 * ("{\"a\":1}}" parses), it decodes \u0000 into a NUL that silently ends
 * its C string, and it takes any double for a number. */
#ifndef TEXT_H
#define TEXT_H

#include <stddef.h>

struct buf;
struct cJSON;

/* The largest id we accept: 2^53 - 1, the last integer a JSON number (an
 * IEEE double in every client) holds exactly; bigserial ids stay far
 * below it. */
#define TEXT_ID_MAX	9007199254740991LL

/* 1 if s[0..len) is well-formed UTF-8 (no overlongs, no surrogates, no
 * code points past U+10FFFF), else 0. */
int	 text_utf8_valid(const char *s, size_t len);

/* 1 if the JSON text s[0..len) holds a \u0000 escape, which cJSON would
 * decode into a NUL that silently ends its C string. */
int	 text_json_has_nul(const char *s, size_t len);

/* Parses s[0..len) as exactly one JSON value: only whitespace may follow
 * it, and no NUL byte may hide part of the text from the parser. NULL
 * when it is anything else (or on ENOMEM). The caller cJSON_Delete()s
 * the result. It does not check UTF-8 nor \u0000: callers that store
 * what they parse check those apart, to say which was wrong. */
struct cJSON	*text_json_parse(const char *s, size_t len);

/* As text_json_parse() for a NUL-terminated string; NULL for NULL. */
struct cJSON	*text_json_parses(const char *s);

/* An id written as people and clients write one: a decimal number from
 * 1 to TEXT_ID_MAX, no sign, no leading zero, nothing around it. 0 and
 * *id set, or -1. */
int	 text_id_parse(const char *s, long long *id);

/* An id in JSON: an integral number from 1 to TEXT_ID_MAX, or (with
 * strings 1, since models now and then send "3" for 3) a string that
 * text_id_parse() accepts. 0 and *id set, or -1. */
int	 text_id_json(const struct cJSON *v, int strings, long long *id);

/* Appends s[0..len) to b as a JSON string, quoted and escaped as cJSON
 * prints one (quote, backslash and control characters escaped, the rest
 * as it is): for the few strings sent often enough that building a cJSON
 * tree for each costs more than the sending. 0, or -1 as buf_add() (b
 * then holds a part of the string). */
int	 text_json_string(struct buf *b, const char *s, size_t len);

/* Adds an integer member name: v to object, written in decimal once,
 * here, as a raw item. cJSON prints a number with sprintf("%1.15g") and
 * reads it back with sscanf() to check it, which cost a turn's reply
 * more than the rest of its printing, and which rounds from 10^15 up
 * (2^53 - 1, TEXT_ID_MAX, comes out as 9.00719925474099e+15). For
 * numbers that are only printed (cJSON_GetNumberValue() does not read a
 * raw item). The item, or NULL on ENOMEM. */
struct cJSON	*text_json_add_int(struct cJSON *object, const char *name,
		    long long v);

/* Decodes unpadded base64url (the JOSE encoding) s[0..len) into out,
 * which has outsize bytes, at least len / 4 * 3 + 2. Strict: no padding,
 * no other byte, no stray bits. The length, or -1. */
long	 text_b64url_decode(const char *s, size_t len, unsigned char *out,
	    size_t outsize);

#endif
