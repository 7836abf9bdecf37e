/* http.c: the FastCGI request's fields, its capped body, and JSON
 * responses. Routing and business rules live elsewhere. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "http.h"

/* How much of an oversized body we read and throw away before answering
 * 413. nginx sends the whole body before it reads our reply; closing on a
 * body still in flight would turn our clean 413 into its 502. Past this
 * bound the peer is not nginx doing its job, and we stop reading. */
#define DRAIN_MAX	(64UL * 1024 * 1024)

static const struct {
	int		 status;
	const char	*text;
} statuses[] = {
	{ 200, "OK" },
	{ 204, "No Content" },
	{ 400, "Bad Request" },
	{ 401, "Unauthorized" },
	{ 403, "Forbidden" },
	{ 404, "Not Found" },
	{ 405, "Method Not Allowed" },
	{ 409, "Conflict" },
	{ 413, "Content Too Large" },
	{ 500, "Internal Server Error" },
	{ 502, "Bad Gateway" },
	{ 503, "Service Unavailable" },
	{ 504, "Gateway Timeout" },
};

const char *
http_status_text(int status)
{
	size_t	 i;

	for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
		if (statuses[i].status == status)
			return statuses[i].text;
	return "Unknown";
}

static const char *
param(FCGX_Request *fcgi, const char *name)
{
	return FCGX_GetParam(name, fcgi->envp);
}

/* Reads the body: keeps at most max bytes in r->body, drains the rest. */
static int
read_body(struct request *r, size_t max, struct chat_err *err)
{
	char	 chunk[8192];
	size_t	 total = 0;
	int	 n;

	while ((n = FCGX_GetStr(chunk, sizeof(chunk), r->fcgi->in)) > 0) {
		total += n;
		if (r->body_too_large) {
			if (total > DRAIN_MAX)
				break;
			continue;
		}
		if (buf_add(&r->body, chunk, n) == -1) {
			if (r->body.len + n <= max)
				return err_oom(err);
			r->body_too_large = 1;
			buf_free(&r->body);
		}
	}
	return 0;
}

int
http_request_read(struct request *r, FCGX_Request *fcgi,
    size_t max_body_bytes, struct chat_err *err)
{
	const char	*uri, *q, *length;
	size_t		 pathlen;
	char		*end;
	long long	 declared = -1;

	r->fcgi = fcgi;
	r->body = (struct buf)BUF_INIT(max_body_bytes);
	r->body_too_large = 0;
	if ((r->method = param(fcgi, "REQUEST_METHOD")) == NULL)
		r->method = "";
	r->authorization = param(fcgi, "HTTP_AUTHORIZATION");
	r->idempotency_key = param(fcgi, "HTTP_IDEMPOTENCY_KEY");

	/* Route on REQUEST_URI, which every FastCGI front sets (DESIGN.md):
	 * no PATH_INFO or SCRIPT_NAME needed from the location. */
	if ((uri = param(fcgi, "REQUEST_URI")) == NULL)
		uri = "";
	q = strchr(uri, '?');
	pathlen = q != NULL ? (size_t)(q - uri) : strlen(uri);
	r->query = q != NULL ? q + 1 : "";
	if (pathlen >= sizeof(r->path)) {
		r->path[0] = '\0';
		return err_set(err, 404, "not_found", "No such endpoint.");
	}
	memcpy(r->path, uri, pathlen);
	r->path[pathlen] = '\0';

	if ((length = param(fcgi, "CONTENT_LENGTH")) != NULL &&
	    *length != '\0') {
		errno = 0;
		declared = strtoll(length, &end, 10);
		if (errno != 0 || *end != '\0' || declared < 0)
			return err_set(err, 400, "bad_request",
			    "Malformed Content-Length.");
	}
	if (declared > 0 && (unsigned long long)declared > max_body_bytes)
		r->body_too_large = 1;
	return read_body(r, max_body_bytes, err);
}

void
http_request_free(struct request *r)
{
	buf_free(&r->body);
}

void
http_reply(struct request *r, int status, const char *extra_headers,
    const char *body)
{
	size_t	 len = body != NULL ? strlen(body) : 0;
	char	 head[1024];
	int	 n;

	/* Formatted here: FCGX_FPrintF has a printf of its own that knows
	 * no %zu. The extra headers are ours and short. */
	n = snprintf(head, sizeof(head), "Status: %d %s\r\n"
	    "Content-Type: application/json\r\n"
	    "Content-Length: %zu\r\n"
	    "Cache-Control: no-store\r\n"
	    "%s\r\n", status, http_status_text(status), len,
	    extra_headers != NULL ? extra_headers : "");
	if (n < 0 || (size_t)n >= sizeof(head))
		return;
	FCGX_PutStr(head, n, r->fcgi->out);
	if (len > 0)
		FCGX_PutStr(body, (int)len, r->fcgi->out);
}

void
http_reply_error(struct request *r, const struct chat_err *err)
{
	static const char fallback[] = "{\"error\":{\"code\":\"internal_error\","
	    "\"message\":\"The server could not build its reply.\"}}";
	cJSON	*root, *error;
	char	*text = NULL, headers[256];

	headers[0] = '\0';
	if (err->status == 405 && err->allow != NULL)
		snprintf(headers, sizeof(headers), "Allow: %s\r\n",
		    err->allow);
	else if (err->status == 401)
		snprintf(headers, sizeof(headers),
		    "WWW-Authenticate: Bearer realm=\"todo-chat\"\r\n");

	if ((root = cJSON_CreateObject()) != NULL &&
	    (error = cJSON_AddObjectToObject(root, "error")) != NULL &&
	    cJSON_AddStringToObject(error, "code", err->code) != NULL &&
	    cJSON_AddStringToObject(error, "message", err->msg) != NULL &&
	    (err->conversation_id <= 0 || cJSON_AddNumberToObject(root,
	    "conversation_id", (double)err->conversation_id) != NULL))
		text = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	http_reply(r, err->status, headers, text != NULL ? text : fallback);
	cJSON_free(text);
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decodes s[0..len) into out (NUL-terminated); in a query
 * (plus_is_space) '+' is a space. 0, or -1 when malformed or too long. */
static int
percent_decode(const char *s, size_t len, int plus_is_space, char *out,
    size_t outlen)
{
	size_t	 i, o = 0;
	int	 hi, lo;

	/* No room even for the NUL: the loop's check would not run for an
	 * empty value, and out[0] would be written past the end. */
	if (outlen == 0)
		return -1;
	for (i = 0; i < len; i++) {
		if (o + 1 >= outlen)
			return -1;
		if (s[i] == '%') {
			/* "%4" at the end, a non-hex digit, or %00, which
			 * would cut the value short: malformed. */
			if (i + 2 >= len ||
			    (hi = hexval((unsigned char)s[i + 1])) < 0 ||
			    (lo = hexval((unsigned char)s[i + 2])) < 0 ||
			    (hi == 0 && lo == 0))
				return -1;
			out[o++] = (char)(hi * 16 + lo);
			i += 2;
		} else
			out[o++] = s[i] == '+' && plus_is_space ? ' ' : s[i];
	}
	out[o] = '\0';
	return 0;
}

static int
query_decode(const char *s, size_t len, char *out, size_t outlen)
{
	return percent_decode(s, len, 1, out, outlen);
}

int
http_segment_decode(const char *s, size_t len, char *out, size_t outlen)
{
	if (percent_decode(s, len, 0, out, outlen) == -1)
		return -1;
	/* "%2F" would make one segment look like two to whoever reads
	 * the decoded value as a path. */
	return strchr(out, '/') != NULL ? -1 : 0;
}

int
http_query_get(const char *query, const char *name, char *out,
    size_t outlen)
{
	size_t		 namelen = strlen(name), pairlen;
	const char	*p = query, *amp, *eq;

	while (p != NULL && *p != '\0') {
		amp = strchr(p, '&');
		pairlen = amp != NULL ? (size_t)(amp - p) : strlen(p);
		eq = memchr(p, '=', pairlen);
		if ((eq != NULL ? (size_t)(eq - p) : pairlen) == namelen &&
		    strncmp(p, name, namelen) == 0) {
			if (eq == NULL)
				return query_decode("", 0, out, outlen) == 0 ?
				    1 : -1;
			return query_decode(eq + 1, pairlen - namelen - 1,
			    out, outlen) == 0 ? 1 : -1;
		}
		p = amp != NULL ? amp + 1 : NULL;
	}
	return 0;
}

int
http_utf8_valid(const char *s, size_t len)
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

/* 1 if the JSON text holds a \u0000 escape. cJSON decodes it into a NUL
 * that ends its C string early: "abc\u0000def" would be stored as "abc".
 * Backslashes occur only inside JSON strings, so pairs can be skipped
 * without tracking where strings start and end. */
int
http_json_has_nul(const char *s, size_t len)
{
	size_t	 i;

	for (i = 0; i + 1 < len; i++) {
		if (s[i] != '\\')
			continue;
		if (s[i + 1] == 'u' && i + 5 < len &&
		    memcmp(s + i + 2, "0000", 4) == 0)
			return 1;
		i++;	/* the escaped character */
	}
	return 0;
}
