/* chat.fcgi.c: the FastCGI accept loop, the route table, and turning a
 * struct chat_err into an HTTP response. SQL and model calls live in
 * lib/; this file decides only who may call what. */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>
#include <fastcgi.h>
#include <fcgiapp.h>

#include "accept.h"
#include "auth.h"
#include "browse.h"
#include "chatreq.h"
#include "config.h"
#include "db.h"
#include "http.h"
#include "keyring.h"
#include "live.h"
#include "log.h"
#include "mcp.h"
#include "model.h"
#include "openai.h"
#include "text.h"
#include "turn.h"
#include "url.h"
#include "usage.h"

/* What a handler gets: the request, the caller (when the route needs
 * one) and the path segment the route's '*' matched. */
struct call {
	struct request	*req;
	const char	*user_id;
	const char	*segment;
};

static int	chat(struct call *, struct chat_err *);
static int	health(struct call *, struct chat_err *);
static int	conversations(struct call *, struct chat_err *);
static int	messages(struct call *, struct chat_err *);
static int	conversation_delete(struct call *, struct chat_err *);
static int	conversation_stream(struct call *, struct chat_err *);
static int	conversation_stop(struct call *, struct chat_err *);
static int	tasks(struct call *, struct chat_err *);
static int	mcp(struct call *, struct chat_err *);
static int	protected_resource(struct call *, struct chat_err *);
static int	usage(struct call *, struct chat_err *);

/* The routes: a '*' segment matches one non-empty path segment. A path
 * that matches no pattern is a 404; one that matches under other methods
 * only is a 405 naming them (GET and DELETE /mcp among them: a stateless
 * MCP server opens no stream and keeps no session to end). An MCP route
 * refuses a browser's request from another origin (403) before anything
 * else, and its 401 names the resource metadata. */
static const struct route {
	const char	*method;
	const char	*pattern;
	int		(*handler)(struct call *, struct chat_err *);
	int		 needs_auth;
	int		 mcp;
} routes[] = {
	{ "POST",   "/chat",				chat,		1, 0 },
	{ "POST",   "/api/*/chat",			chat,		1, 0 },
	{ "GET",    "/chat/health",			health,		0, 0 },
	{ "GET",    "/chat/conversations",		conversations,	1, 0 },
	{ "GET",    "/chat/conversations/*/messages",	messages,	1, 0 },
	{ "DELETE", "/chat/conversations/*",		conversation_delete,
								1, 0 },
	{ "GET",    "/chat/conversations/*/stream",	conversation_stream,
								1, 0 },
	{ "POST",   "/chat/conversations/*/stop",	conversation_stop,
								1, 0 },
	{ "POST",   "/mcp",				mcp,		1, 1 },
	/* RFC 9728: at the root, where WWW-Authenticate points, and with
	 * the resource's path appended, where a client that knows only
	 * the resource's URL looks. */
	{ "GET",    MCP_METADATA_PATH,		protected_resource,
								0, 0 },
	{ "GET",    MCP_METADATA_PATH "/mcp",		protected_resource,
								0, 0 },
	{ "GET",    "/chat/tasks",			tasks,		1, 0 },
	{ "GET",    "/chat/usage",			usage,		1, 0 },
};

#define NROUTES	(sizeof(routes) / sizeof(routes[0]))

/* 1 if path matches pattern; the '*' segment is percent-decoded into
 * segment. One that does not decode (a bad escape, an encoded '/')
 * matches nothing. */
static int
route_match(const char *pattern, const char *path, char *segment,
    size_t size)
{
	size_t	 len;

	while (*pattern != '\0') {
		if (*pattern == '*') {
			len = strcspn(path, "/");
			if (len == 0 || url_segment_decode(path, len,
			    segment, size) == -1)
				return 0;
			path += len;
			pattern++;
			continue;
		}
		if (*pattern++ != *path++)
			return 0;
	}
	return *path == '\0';
}

/* Finds the route for the request; else fills err (404, or 405 with the
 * methods the path allows written into allow, which err then borrows). */
static const struct route *
route_find(const struct request *r, char *segment, size_t size,
    char *allow, size_t allowlen, struct chat_err *err)
{
	size_t	 i;
	int	 matched = 0;

	allow[0] = '\0';
	for (i = 0; i < NROUTES; i++) {
		if (!route_match(routes[i].pattern, r->path, segment, size))
			continue;
		if (strcmp(routes[i].method, r->method) == 0)
			return &routes[i];
		if (matched++)
			strncat(allow, ", ", allowlen - strlen(allow) - 1);
		strncat(allow, routes[i].method, allowlen - strlen(allow) - 1);
	}
	if (!matched) {
		err_set(err, 404, "not_found", "No such endpoint.");
		return NULL;
	}
	err->allow = allow;
	err_set(err, 405, "method_not_allowed", "Use %s for this endpoint.",
	    allow);
	return NULL;
}

static void
reply_json(struct request *r, int status, cJSON *body)
{
	char	*text;

	if ((text = cJSON_PrintUnformatted(body)) == NULL) {
		struct chat_err	 err = { 0 };

		err_oom(&err);
		http_reply_error(r, &err);
		return;
	}
	http_reply(r, status, NULL, text);
	cJSON_free(text);
}

static int
health(struct call *c, struct chat_err *err)
{
	if (db_ping(err) == -1)
		return -1;
	http_reply(c->req, 200, NULL, "{\"status\":\"ok\"}");
	return 0;
}

/* A streamed turn's bytes: the response starts with the first of them,
 * which is the turn's start (the message is stored), so that what fails
 * before it is still an ordinary JSON error. */
static int
stream_write(void *arg, const char *p, size_t len)
{
	struct request	*r = arg;

	if (!r->streaming)
		http_stream_start(r, "x-vercel-ai-ui-message-stream: v1");
	return http_stream_write(r, p, len);
}

static int
stream_flush(void *arg)
{
	return http_stream_flush(arg);
}

static int
chat(struct call *c, struct chat_err *err)
{
	struct chat_request	 cr;
	struct live		 live;
	struct turn_observer	 observer = { live_event, &live, 1 };
	cJSON			*reply;
	int			 rc;

	/* /api/{user_id}/chat names the caller: it must be the token's. */
	if (c->segment[0] != '\0' && strcmp(c->segment, c->user_id) != 0)
		return err_set(err, 403, "forbidden", "The path names another "
		    "user than the token.");
	if (chatreq_parse(c->req->body.data, c->req->body.len,
	    c->req->idempotency_key, &cr, err) == -1)
		return -1;
	cr.turn.user_id = c->user_id;
	live_init(&live, c->user_id, stream_write, stream_flush, c->req);
	rc = turn_run(&cr.turn, c->req->wants_stream ? &observer : NULL,
	    &reply, err);
	live_free(&live);
	if (c->req->streaming)
		rc = 0;		/* answered: an error went as its part */
	else if (rc == 0)
		reply_json(c->req, 200, reply);
	cJSON_Delete(reply);
	chatreq_free(&cr);
	return rc;
}

/* A conversation id in the path; anything but a positive decimal number
 * names no conversation of the caller's: 404, as for a foreign one. */
static int
path_id(const char *segment, long long *id, struct chat_err *err)
{
	if (text_id_parse(segment, id) == -1)
		return err_set(err, 404, "conversation_not_found",
		    "No such conversation.");
	return 0;
}

/* Sends a page the browse_ call built (rc 0), or passes its error on. */
static int
send_page(struct call *c, int rc, cJSON *reply)
{
	if (rc == -1)
		return -1;
	reply_json(c->req, 200, reply);
	cJSON_Delete(reply);
	return 0;
}

static int
conversations(struct call *c, struct chat_err *err)
{
	cJSON	*reply = NULL;
	int	 rc;

	rc = browse_conversations(c->user_id, c->req->query, &reply, err);
	return send_page(c, rc, reply);
}

static int
messages(struct call *c, struct chat_err *err)
{
	long long	 id;
	cJSON		*reply = NULL;
	int		 rc;

	if (path_id(c->segment, &id, err) == -1)
		return -1;
	rc = browse_messages(c->user_id, id, c->req->query, &reply, err);
	return send_page(c, rc, reply);
}

static int
tasks(struct call *c, struct chat_err *err)
{
	cJSON	*reply = NULL;
	int	 rc;

	rc = browse_tasks(c->user_id, c->req->query, &reply, err);
	return send_page(c, rc, reply);
}

static int
conversation_delete(struct call *c, struct chat_err *err)
{
	long long	 id;

	if (path_id(c->segment, &id, err) == -1 ||
	    browse_delete(c->user_id, id, err) == -1)
		return -1;
	http_reply(c->req, 204, NULL, NULL);
	return 0;
}

/* One POST /mcp: the Origin and the token were checked by serve(); the
 * rest is lib/mcp.c's. */
static int
mcp(struct call *c, struct chat_err *err)
{
	struct request		*r = c->req;
	struct mcp_request	 m = { c->user_id,
	    http_param(r, "HTTP_ACCEPT"), http_param(r, "CONTENT_TYPE"),
	    http_param(r, "HTTP_MCP_PROTOCOL_VERSION"),
	    http_param(r, "HTTP_MCP_METHOD"), http_param(r, "HTTP_MCP_NAME"),
	    r->body.data, r->body.len, db_tool };
	struct mcp_reply	 out;
	char			 headers[64] = "";

	mcp_post(&m, &out);
	if (out.body == NULL && out.status != 202)
		return err_oom(err);
	if (out.status == 429)
		snprintf(headers, sizeof(headers), "Retry-After: %d\r\n",
		    out.retry_after_s);
	http_reply(r, out.status, headers, out.body);
	cJSON_free(out.body);
	return 0;
}

/* The RFC 9728 document: public, and readable from any page (an MCP
 * client running in a browser fetches it cross-origin). */
static int
protected_resource(struct call *c, struct chat_err *err)
{
	cJSON	*doc;
	char	*text, origin[HTTP_ORIGIN_MAX];

	http_origin(c->req, origin);
	if ((doc = mcp_resource_metadata(origin, config()->jwt_issuer)) ==
	    NULL || (text = cJSON_PrintUnformatted(doc)) == NULL) {
		cJSON_Delete(doc);
		return err_oom(err);
	}
	http_reply(c->req, 200, "Access-Control-Allow-Origin: *\r\n", text);
	cJSON_free(text);
	cJSON_Delete(doc);
	return 0;
}

/* An MCP route's checks before the token's: a browser's request must
 * come from a page of this origin (a page elsewhere gets 403), and a
 * 401 that follows names where the resource metadata is (metadata_url,
 * HTTP_ORIGIN_MAX + sizeof(MCP_METADATA_PATH) bytes, borrowed by err). */
static int
mcp_guard(struct call *c, char *metadata_url, struct chat_err *err)
{
	const char	*origin = http_param(c->req, "HTTP_ORIGIN");
	char		 ours[HTTP_ORIGIN_MAX];

	http_origin(c->req, ours);
	snprintf(metadata_url, HTTP_ORIGIN_MAX + sizeof(MCP_METADATA_PATH),
	    "%s%s", ours, MCP_METADATA_PATH);
	err->resource_metadata = metadata_url;
	if (origin != NULL && strcasecmp(origin, ours) != 0)
		return err_set(err, 403, "forbidden_origin", "Requests from "
		    "another origin's pages are refused.");
	return 0;
}

static int
usage(struct call *c, struct chat_err *err)
{
	cJSON	*reply = NULL;
	int	 rc;

	rc = usage_report(c->user_id, &reply, err);
	return send_page(c, rc, reply);
}

/* What tokens are checked against: set from the configuration before the
 * worker threads start, read only afterwards. */
static struct auth_keys	 token_keys;

static void
token_keys_init(const struct config *cfg)
{
	token_keys.secret = cfg->jwt_secret;
	token_keys.secret_len = cfg->jwt_secret_len;
	token_keys.issuer = cfg->jwt_issuer;
	token_keys.audience = cfg->jwt_audience;
	token_keys.public_key = cfg->jwt_jwks != NULL ? keyring_key : NULL;
}

/* The running streamed turn of a conversation, followed to its end from
 * its start or from the event after Last-Event-ID; 204 when none runs. */
static int
conversation_stream(struct call *c, struct chat_err *err)
{
	const char	*last = c->req->last_event_id;
	long long	 id, last_id = 0;
	int		 rc;

	if (path_id(c->segment, &id, err) == -1)
		return -1;
	/* An id that is not ours (or not a number) names no event: the
	 * stream is followed from its start. */
	if (last != NULL && text_id_parse(last, &last_id) == -1)
		last_id = 0;
	rc = live_follow(c->user_id, id, (unsigned long)last_id,
	    stream_write, stream_flush, c->req, err);
	/* No turn running, or nothing after Last-Event-ID before it ended
	 * (live_follow() tells both apart from a stream): 204. */
	if (rc == 1)
		http_reply(c->req, 204, NULL, NULL);
	return rc == -1 && !c->req->streaming ? -1 : 0;
}

/* Asks the running turn of a conversation, if any, to stop. */
static int
conversation_stop(struct call *c, struct chat_err *err)
{
	long long	 id;

	if (path_id(c->segment, &id, err) == -1 ||
	    db_stream_stop(c->user_id, id, err) == -1)
		return -1;
	http_reply(c->req, 204, NULL, NULL);
	return 0;
}

/* One request, start to finish: route, method, caller, size, handler. */
static void
serve(FCGX_Request *fcgi, unsigned long seq)
{
	const struct config	*cfg = config();
	const struct route	*route;
	struct request		 r;
	struct chat_err		 err = { 0 };
	struct call		 c = { &r, NULL, "" };
	char			 user_id[AUTH_USER_ID_MAX + 1];
	char			 segment[HTTP_PATH_MAX], allow[64];
	char			 metadata_url[HTTP_ORIGIN_MAX +
				    sizeof(MCP_METADATA_PATH)];

	memset(&r, 0, sizeof(r));
	r.seq = seq;
	segment[0] = '\0';
	if (http_request_read(&r, fcgi, cfg->max_body_bytes, &err) == -1 ||
	    (route = route_find(&r, segment, sizeof(segment), allow,
	    sizeof(allow), &err)) == NULL)
		goto fail;
	c.segment = segment;
	if (route->mcp && mcp_guard(&c, metadata_url, &err) == -1)
		goto fail;
	if (route->needs_auth) {
		if (auth_check(r.authorization, &token_keys, time(NULL),
		    user_id, &err) == -1)
			goto fail;
		c.user_id = user_id;
	}
	if (r.body_too_large) {
		err_set(&err, 413, "body_too_large", "The body is over %zu "
		    "bytes.", cfg->max_body_bytes);
		goto fail;
	}
	if (route->handler(&c, &err) == 0)
		goto done;
fail:
	if (err.status >= 500)
		log_err("%s %s: %d %s", r.method, r.path, err.status,
		    err.code);
	http_reply_error(&r, &err);
done:
	http_request_free(&r);
}

/* Set on SIGTERM (multiwatch's stop): each worker thread finishes the
 * request it is serving, then leaves its loop and releases what it
 * holds. */
static atomic_int	 stopping;
/* Set by a worker thread whose loop ended on its own (libfcgi could not
 * accept): the process stops, and exits non-zero for multiwatch. */
static atomic_int	 failed;
/* Numbers the process's requests for its log lines (lib/log.h). */
static atomic_ulong	 requests;

/* Whether the worker threads take their connections through lib/accept.h
 * (the usual case) or through libfcgi's accept, which is left to do it
 * when FCGI_WEB_SERVER_ADDRS asks it to check who connects. */
static int		 own_accept;

/* The next request into fcgi: 0, or -1 when the thread must stop (the
 * process stopping, or the listening socket unusable). */
static int
worker_accept(struct acceptor *a, FCGX_Request *fcgi)
{
	int	 fd, rc;

	for (;;) {
		if (own_accept && fcgi->ipcFd < 0) {
			if ((fd = acceptor_next(a)) == -1) {
				if (errno == EINTR && !stopping)
					continue;
				return -1;
			}
			fcgi->ipcFd = fd;
			/* So that FCGX_Accept_r(), which first finishes the
			 * previous request as if its connection were still
			 * open, reads this one instead of closing it; the
			 * new request's own flags then say whether it is
			 * kept. */
			fcgi->keepConnection = 1;
		}
		if ((rc = FCGX_Accept_r(fcgi)) >= 0)
			return 0;
		/* The connection ended with no request on it: libfcgi then
		 * tries an accept of its own, on the non-blocking socket. */
		if (own_accept && !stopping && (rc == -EAGAIN ||
		    rc == -EWOULDBLOCK || rc == -EINTR))
			continue;
		return -1;
	}
}

/* Each worker thread: one FastCGI request at a time, with a database
 * connection and a model handle of its own (lib/db.c and lib/model.c
 * keep them per thread). */
struct worker {
	pthread_t	 thread;
	atomic_int	 busy;		/* serving a request */
	atomic_int	 done;		/* out of its loop */
};

static void *
worker_run(void *arg)
{
	struct worker	*w = arg;
	FCGX_Request	 fcgi;
	struct acceptor	 a = { -1, -1 };
	unsigned long	 seq;

	if (own_accept && acceptor_open(&a, FCGI_LISTENSOCK_FILENO) == -1) {
		log_err("epoll: %s", strerror(errno));
		goto out;
	}
	if (FCGX_InitRequest(&fcgi, FCGI_LISTENSOCK_FILENO,
	    FCGI_FAIL_ACCEPT_ON_INTR) != 0)
		goto out;
	while (!stopping && worker_accept(&a, &fcgi) == 0) {
		w->busy = 1;
		seq = ++requests;
		log_set_request(seq);
		db_request_begin();
		serve(&fcgi, seq);
		/* libfcgi's close shuts down the write side and waits (up
		 * to 2 s) for the server to hang up: unread input could
		 * otherwise make TCP reset the connection and lose the
		 * reply. With the input read to its end (every request
		 * but a body too large to drain) there is nothing to reset
		 * over: close at once, one wake-up a request fewer. */
		if (FCGX_HasSeenEOF(fcgi.in) == EOF &&
		    FCGX_GetError(fcgi.in) == 0)
			FCGX_Detach(&fcgi);
		else
			FCGX_Attach(&fcgi);	/* undo an earlier request's
						 * Detach on a kept connection */
		FCGX_Finish_r(&fcgi);
		log_set_request(0);
		w->busy = 0;
	}
	FCGX_Free(&fcgi, 1);
out:
	acceptor_close(&a);
	if (!stopping) {
		log_err("a worker thread could not accept: stopping");
		failed = 1;
		kill(getpid(), SIGTERM);
	}
	model_thread_cleanup();
	auth_thread_cleanup();
	db_cleanup();
	w->done = 1;
	return NULL;
}

/* Only breaks a worker thread's wait in accept(2), or in read(2) on a
 * connection the front keeps open: installed without SA_RESTART, so the
 * call fails with EINTR and the thread finds stopping set (libpq and
 * libcurl retry their own interrupted calls, so a request in flight is
 * finished first). */
static void
on_wake(int sig)
{
	(void)sig;
}

/* The signals that stop the worker: SIGTERM, SIGINT, and SIGUSR1, which
 * multiwatch sends its children on SIGTERM (libfcgi's "finish the
 * request, then exit"). They are blocked in every thread and taken by
 * the main thread with sigwait(); SIGUSR2 wakes the worker threads. */
static int
signals_init(sigset_t *stop)
{
	struct sigaction	 sa;

	sigemptyset(stop);
	sigaddset(stop, SIGTERM);
	sigaddset(stop, SIGINT);
	sigaddset(stop, SIGUSR1);
	if (pthread_sigmask(SIG_BLOCK, stop, NULL) != 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_wake;
	if (sigaction(SIGUSR2, &sa, NULL) == -1)
		return -1;
	/* A client gone mid-reply must not kill the worker. */
	sa.sa_handler = SIG_IGN;
	return sigaction(SIGPIPE, &sa, NULL);
}

/* Stops the worker threads: libfcgi's flag keeps them from going back
 * to accept(); SIGUSR2 ends the wait of those waiting for a request,
 * again every 50 ms for one that was about to start waiting when the
 * first came. A thread serving a request is left alone to finish it
 * (libfcgi gives up a read or write that a signal interrupts) and finds
 * stopping set when it is done. */
static void
workers_stop(struct worker *w, int n)
{
	const struct timespec	 pause = { 0, 50 * 1000 * 1000 };
	int			 i, left;

	stopping = 1;
	FCGX_ShutdownPending();
	for (;;) {
		for (i = 0, left = 0; i < n; i++)
			if (!w[i].done) {
				if (!w[i].busy)
					pthread_kill(w[i].thread, SIGUSR2);
				left++;
			}
		if (left == 0)
			break;
		nanosleep(&pause, NULL);
	}
	for (i = 0; i < n; i++)
		pthread_join(w[i].thread, NULL);
}

int
main(void)
{
	struct worker	*w;
	sigset_t	 stop;
	int		 i, n, sig;

	/* No fastbins: with them every allocation of a kilobyte or more
	 * (libpq's results, libfcgi's 8 KiB stream buffers, several a
	 * request) first consolidates the freed small chunks, 3% of a
	 * worker's CPU; the per-thread cache serves small sizes as well. */
	mallopt(M_MXFAST, 0);
	if (config_load() == -1)
		return 1;
	if (config()->jwt_jwks != NULL &&
	    keyring_init(config()->jwt_jwks) == -1)
		return 1;
	token_keys_init(config());
	if (model_init(config()) == -1)
		return 1;
	if (signals_init(&stop) == -1) {
		log_err("signals: %s", strerror(errno));
		return 1;
	}
	if (FCGX_Init() != 0) {
		log_err("cannot set up FastCGI on fd 0 (start it with "
		    "spawn-fcgi)");
		return 1;
	}
	own_accept = getenv("FCGI_WEB_SERVER_ADDRS") == NULL;
	if (own_accept && accept_init(FCGI_LISTENSOCK_FILENO) == -1) {
		log_err("the FastCGI socket: %s", strerror(errno));
		return 1;
	}
	n = config()->threads;
	if ((w = calloc(n, sizeof(*w))) == NULL) {
		log_err("%s", strerror(errno));
		return 1;
	}
	for (i = 0; i < n; i++)
		if ((errno = pthread_create(&w[i].thread, NULL, worker_run,
		    &w[i])) != 0) {
			log_err("pthread_create: %s", strerror(errno));
			workers_stop(w, i);
			free(w);
			return 1;
		}
	while (sigwait(&stop, &sig) != 0)
		continue;
	workers_stop(w, n);
	free(w);
	model_cleanup();
	keyring_cleanup();
	openai_cleanup();
	return failed ? 1 : 0;
}
