/* http.c: the FastCGI request's fields, its capped body, and JSON
 * responses. Routing and business rules live elsewhere. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
	{ 202, "Accepted" },
	{ 204, "No Content" },
	{ 400, "Bad Request" },
	{ 401, "Unauthorized" },
	{ 403, "Forbidden" },
	{ 404, "Not Found" },
	{ 405, "Method Not Allowed" },
	{ 406, "Not Acceptable" },
	{ 409, "Conflict" },
	{ 413, "Content Too Large" },
	{ 415, "Unsupported Media Type" },
	{ 429, "Too Many Requests" },
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

/* 1 if an Accept value lists text/event-stream: a list of media ranges,
 * in any case, each maybe with parameters (RFC 9110 section 12.5.1). */
static int
accepts_stream(const char *accept)
{
	static const char	 type[] = "text/event-stream";
	const char		*p = accept;
	size_t			 n;

	while (p != NULL && *p != '\0') {
		p += strspn(p, " \t,");
		n = strcspn(p, ",; \t");
		if (n == sizeof(type) - 1 && strncasecmp(p, type, n) == 0)
			return 1;
		p += strcspn(p, ",");
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
	r->wants_stream = accepts_stream(param(fcgi, "HTTP_ACCEPT"));
	r->last_event_id = param(fcgi, "HTTP_LAST_EVENT_ID");

	/* Route on REQUEST_URI, which every FastCGI front sets:
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

const char *
http_param(const struct request *r, const char *name)
{
	return param(r->fcgi, name);
}

/* 1 if s is a host as it may stand in a URL and a header: a name, an
 * IPv4 address or a bracketed IPv6 one, maybe with a port. The value
 * comes from the client: it must not smuggle a quote, a space or a
 * line into the WWW-Authenticate header or the metadata we build. */
static int
host_valid(const char *s)
{
	size_t	 n;

	if (s == NULL || (n = strlen(s)) == 0 || n > 255)
		return 0;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789.-_:[]") == n;
}

void
http_origin(const struct request *r, char *out)
{
	const char	*https = param(r->fcgi, "HTTPS");
	const char	*host = param(r->fcgi, "HTTP_HOST");
	const char	*port = param(r->fcgi, "SERVER_PORT");
	const char	*bracket;
	int		 secure, has_port;
	size_t		 i, n;

	secure = https != NULL && *https != '\0' &&
	    strcasecmp(https, "off") != 0;
	if (!host_valid(host))
		host = param(r->fcgi, "SERVER_NAME");
	if (!host_valid(host))
		host = "localhost";
	/* A front that passes the Host header as sent keeps its port:
	 * a ':' after the name (or after an IPv6 address's ']'). */
	bracket = strrchr(host, ']');
	has_port = strchr(bracket != NULL ? bracket : host, ':') != NULL;
	if (has_port || port == NULL || *port == '\0' ||
	    strspn(port, "0123456789") != strlen(port) || strlen(port) > 5 ||
	    strcmp(port, secure ? "443" : "80") == 0)
		port = NULL;
	snprintf(out, HTTP_ORIGIN_MAX, "%s://%s%s%s", secure ? "https" :
	    "http", host, port != NULL ? ":" : "", port != NULL ? port : "");
	/* Host names compare without case; Origin carries them lower. */
	n = strlen(out);
	for (i = 0; i < n; i++)
		if (out[i] >= 'A' && out[i] <= 'Z')
			out[i] = out[i] - 'A' + 'a';
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
http_stream_start(struct request *r, const char *protocol_header)
{
	char	 head[512];
	int	 n;

	n = snprintf(head, sizeof(head), "Status: 200 OK\r\n"
	    "Content-Type: text/event-stream\r\n"
	    "Cache-Control: no-cache\r\n"
	    "X-Accel-Buffering: no\r\n"
	    "%s\r\n\r\n", protocol_header);
	r->streaming = 1;
	if (n < 0 || (size_t)n >= sizeof(head)) {
		r->client_gone = 1;
		return;
	}
	http_stream_write(r, head, (size_t)n);
}

int
http_stream_write(struct request *r, const char *p, size_t len)
{
	if (r->client_gone)
		return -1;
	/* A client gone (nginx closes our connection when its client does)
	 * makes the write fail with EPIPE; SIGPIPE is ignored. */
	if (FCGX_PutStr(p, (int)len, r->fcgi->out) != (int)len) {
		r->client_gone = 1;
		return -1;
	}
	r->unflushed = 1;
	return 0;
}

int
http_stream_flush(struct request *r)
{
	if (r->client_gone)
		return -1;
	if (!r->unflushed)
		return 0;
	r->unflushed = 0;
	if (FCGX_FFlush(r->fcgi->out) == -1) {
		r->client_gone = 1;
		return -1;
	}
	return 0;
}

void
http_reply_error(struct request *r, const struct chat_err *err)
{
	static const char fallback[] = "{\"error\":{\"code\":\"internal_error\","
	    "\"message\":\"The server could not build its reply.\"}}";
	char	*text, headers[512];

	headers[0] = '\0';
	if (err->status == 405 && err->allow != NULL)
		snprintf(headers, sizeof(headers), "Allow: %s\r\n",
		    err->allow);
	else if (err->status == 401 && err->resource_metadata != NULL)
		/* How an MCP client finds where tokens come from (RFC 9728
		 * section 5.1). */
		snprintf(headers, sizeof(headers), "WWW-Authenticate: Bearer "
		    "resource_metadata=\"%s\"\r\n", err->resource_metadata);
	else if (err->status == 401)
		snprintf(headers, sizeof(headers),
		    "WWW-Authenticate: Bearer realm=\"todo-chat\"\r\n");
	else if (err->status == 429 && err->retry_after_s > 0)
		snprintf(headers, sizeof(headers), "Retry-After: %d\r\n",
		    err->retry_after_s);

	text = err_json(err);
	http_reply(r, err->status, headers, text != NULL ? text : fallback);
	cJSON_free(text);
}
