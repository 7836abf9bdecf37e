/* http.h: one FastCGI request as the service sees it: the routing fields,
 * the capped body, and writing a JSON response (status, headers, body).
 *
 * A struct request lives from accept to finish; http_request_free()
 * releases what http_request_read() gathered. No business rules here. */
#ifndef HTTP_H
#define HTTP_H

#include <stddef.h>

#include <fcgiapp.h>

#include "buf.h"
#include "err.h"

/* Longest REQUEST_URI path we route; longer is a 404, not a crash. */
#define HTTP_PATH_MAX	1024

struct request {
	FCGX_Request	*fcgi;		/* borrowed from the accept loop */
	unsigned long	 seq;		/* per-worker counter, for the logs */
	const char	*method;	/* REQUEST_METHOD, never NULL */
	char		 path[HTTP_PATH_MAX]; /* REQUEST_URI minus the query */
	const char	*query;		/* after '?', never NULL, maybe "" */
	const char	*authorization;	/* HTTP_AUTHORIZATION or NULL */
	const char	*idempotency_key; /* HTTP_IDEMPOTENCY_KEY or NULL */
	const char	*last_event_id;	/* HTTP_LAST_EVENT_ID or NULL */
	int		 wants_stream;	/* Accept names text/event-stream */
	int		 streaming;	/* http_stream_start() was called */
	int		 client_gone;	/* a stream write failed */
	int		 unflushed;	/* stream bytes not flushed yet */
	struct buf	 body;		/* NUL-terminated; data NULL if empty */
	int		 body_too_large; /* 1: more than max_body_bytes sent */
};

/* Fills r from the FastCGI parameters and reads the body, keeping at most
 * max_body_bytes (the rest is drained so the front end sees a clean
 * exchange, and body_too_large set). Returns 0, or -1 with err set (400
 * for a malformed CONTENT_LENGTH or a path too long to route). Strings
 * are borrowed from the FastCGI request: valid until it is finished. */
int	 http_request_read(struct request *r, FCGX_Request *fcgi,
	    size_t max_body_bytes, struct chat_err *err);
/* A FastCGI parameter of the request ("HTTP_ACCEPT"), or NULL; borrowed
 * like the fields above. */
const char	*http_param(const struct request *r, const char *name);

/* The longest origin http_origin() writes, with its NUL. */
#define HTTP_ORIGIN_MAX	300

/* The origin the request was addressed to, as a browser writes it in
 * Origin: "http" or "https" (the front's HTTPS parameter), "://", the
 * host (HTTP_HOST; Debian's nginx passes $host, without the port) and,
 * when it is not the scheme's default, ":" and SERVER_PORT. A host that
 * is not plain host characters (or none) is SERVER_NAME's, else
 * "localhost". out has HTTP_ORIGIN_MAX bytes. */
void	 http_origin(const struct request *r, char *out);

/* Releases the body. */
void	 http_request_free(struct request *r);

/* Writes a complete response: status line, Content-Type
 * application/json, Content-Length, the extra header lines (each ending
 * in "\r\n", or NULL) and body (NULL or "" for none, as for 204). */
void	 http_reply(struct request *r, int status, const char *extra_headers,
	    const char *body);
/* Starts a 200 response of server-sent events, with the headers that
 * keep it unbuffered and uncompressed on its way (X-Accel-Buffering for
 * nginx) and name the protocol of its events. */
void	 http_stream_start(struct request *r, const char *protocol_header);
/* Writes bytes of the stream, held until http_stream_flush() (or until
 * they fill libfcgi's buffer): events that are ready together leave in
 * one write. 0, or -1 once the client (or the front) is gone: then
 * nothing more is written, and the caller carries on with its work
 * regardless. */
int	 http_stream_write(struct request *r, const char *p, size_t len);
/* Sends what the stream holds to the front, if anything; 0 or -1 as
 * above. */
int	 http_stream_flush(struct request *r);

/* Writes err as {"error": {"code", "message"}} (plus "conversation_id"
 * when set), with Allow on 405, WWW-Authenticate on 401 (naming
 * err->resource_metadata when set) and Retry-After on 429. */
void	 http_reply_error(struct request *r, const struct chat_err *err);

/* The reason phrase of a status we send ("Not Found"). */
const char	*http_status_text(int status);

#endif
