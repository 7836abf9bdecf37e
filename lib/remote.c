/* remote.c: the backend that asks an OpenAI-compatible server: the worker
 * thread's CURL handle, the POST, the reply read whole or as a stream,
 * timeouts and retries (remote.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>
#include <curl/curl.h>

#include "buf.h"
#include "clock.h"
#include "config.h"
#include "log.h"
#include "openai.h"
#include "remote.h"

/* A chat completion is a few KiB; even REPLY_MAX_CALLS calls with long
 * arguments stay far below this. Past it the peer is misbehaving. */
#define REPLY_MAX_BYTES		(4UL * 1024 * 1024)
/* TCP and TLS setup gets at most this much of the budget, so that an
 * address that swallows packets leaves time for another try. */
#define CONNECT_TIMEOUT_MS	10000L
/* The wait before retry n is BACKOFF_FIRST_MS doubled n - 1 times,
 * capped, with "equal jitter" (half fixed, half random) so that workers
 * that failed together do not come back together. */
#define BACKOFF_FIRST_MS	250L
#define BACKOFF_MAX_MS		4000L
/* A streamed call tells its caller each time it is about to wait for
 * the model, so at least every POLL_MS (backend.h promises at least once
 * a second), and looks at the clock of silence as often: libcurl's own
 * progress calls come only about once a second when nothing arrives,
 * measured up to 1.3 s apart, too coarse for either. Between tries, it
 * tells its caller every IDLE_EVERY_MS. */
#define IDLE_EVERY_MS		500L
#define POLL_MS			100
/* OpenAI's SDKs give up after two retries; one more suits a server
 * behind a busy proxy, and keeps a dead model from costing a person
 * much more than two seconds of backoff (250 + 500 + 1000 ms). */
#define MAX_ATTEMPTS		4

/* Shared by the process's worker threads, set before they start and
 * only read afterwards. */
static const struct config	*model_cfg;
static struct curl_slist	*headers;
static char			*endpoint;
static int			 curl_ready;	/* curl_global_init() done */
/* Each worker thread's own handle: a CURL handle serves one transfer at
 * a time, and one kept for the thread's life keeps its connection (and
 * TLS session) to the model open between requests. */
static _Thread_local CURL	*curl;
/* ...and the multi handle that runs it when a call is streamed, so that
 * the thread can look at the clock while the transfer waits. It keeps
 * its own connections to the model, open between streamed calls. */
static _Thread_local CURLM	*multi;
static _Thread_local char	 curl_error[CURL_ERROR_SIZE];

/* How a streamed response's body is read, decided at its first bytes. */
enum body_mode {
	BODY_UNKNOWN,
	BODY_WHOLE,	/* an error, or a server that ignored "stream" */
	BODY_EVENTS,	/* text/event-stream: chunks as they come */
};

/* Why a streamed transfer was cut short by one of our callbacks. */
enum cut {
	CUT_NONE,
	CUT_STOPPED,	/* stream->text or stream->idle returned 1 */
	CUT_SILENT,	/* no chunk within the timeout */
	CUT_MALFORMED,	/* the events did not parse */
};

/* What one HTTP exchange brought back. */
struct attempt {
	struct buf	 body;
	CURLcode	 rc;
	long		 status;	/* 0 when no response arrived */
	long		 retry_after_ms; /* -1: the server named no delay */
	/* A streamed call only. */
	const struct model_stream *stream;
	struct model_reply	*out;
	struct openai_stream	 events;
	enum body_mode		 mode;
	enum cut		 cut;
	long long		 first_by_ms;	/* the first chunk's deadline */
	long long		 last_chunk_ms;	/* 0 before the first chunk */
	int			 sent;	/* words went to stream->text: from
					 * then on nothing is retried */
};

/* Transport failures worth another try: the next connection may work.
 * Anything else (a malformed URL, a certificate that does not verify, a
 * reply over REPLY_MAX_BYTES) would fail the same way again. */
static const CURLcode retryable[] = {
	CURLE_COULDNT_RESOLVE_PROXY,
	CURLE_COULDNT_RESOLVE_HOST,
	CURLE_COULDNT_CONNECT,
	CURLE_PARTIAL_FILE,
	CURLE_OPERATION_TIMEDOUT,
	CURLE_SSL_CONNECT_ERROR,
	CURLE_GOT_NOTHING,
	CURLE_SEND_ERROR,
	CURLE_RECV_ERROR,
	CURLE_HTTP2,
	CURLE_HTTP2_STREAM,
};

/* Delay headers, the more precise first: OpenAI sends retry-after-ms
 * beside Retry-After, whose HTTP-date form (RFC 9110) we ignore. */
static const struct {
	const char	*name;
	long		 unit_ms;
} delay_headers[] = {
	{ "retry-after-ms:", 1 },
	{ "retry-after:", 1000 },
};

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
	struct attempt	*a = arg;

	/* Anything but n makes libcurl stop with CURLE_WRITE_ERROR. */
	return buf_add(&a->body, p, size * n) == 0 ? size * n : 0;
}

/* stream->text, as the reply's words arrive. */
static int
on_words(void *arg, const char *p, size_t len)
{
	struct attempt	*a = arg;

	a->sent = 1;
	return a->stream->text(a->stream->arg, p, len) != 0;
}

/* The first bytes of a streamed response say how to read it: a 2xx
 * as events, unless the server answered whole (some OpenAI-compatible
 * servers ignore "stream"); anything else whole, as an error body. */
static enum body_mode
body_mode(void)
{
	const char	*type = NULL;
	long		 status = 0;

	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &type);
	if (status >= 200 && status < 300 && type != NULL &&
	    strncasecmp(type, "text/event-stream", 17) == 0)
		return BODY_EVENTS;
	return BODY_WHOLE;
}

static size_t
on_events(char *p, size_t size, size_t n, void *arg)
{
	struct attempt	*a = arg;
	size_t		 chunks = a->events.chunks;
	int		 rc;

	if (a->mode == BODY_UNKNOWN)
		a->mode = body_mode();
	if (a->mode == BODY_WHOLE)
		return on_body(p, size, n, arg);
	rc = openai_stream_feed(&a->events, p, size * n, on_words, a);
	if (a->events.chunks != chunks)
		a->last_chunk_ms = clock_ms();
	if (rc == 0)
		return size * n;
	a->cut = rc == 1 ? CUT_STOPPED : CUT_MALFORMED;
	return 0;	/* CURLE_WRITE_ERROR: the transfer ends here */
}

/* The clock while a streamed call runs, connecting, sending and
 * waiting included: the silence timeout, and the caller's idle. 0 to
 * go on, or 1 with a->cut set. */
static int
stream_clock(struct attempt *a)
{
	long long	 now = clock_ms(), limit;

	limit = a->last_chunk_ms == 0 ? a->first_by_ms :
	    a->last_chunk_ms + model_cfg->model_timeout_ms;
	if (now >= limit) {
		a->cut = CUT_SILENT;
		return 1;
	}
	if (a->stream->idle != NULL && a->stream->idle(a->stream->arg) != 0) {
		a->cut = CUT_STOPPED;
		return 1;
	}
	return 0;
}

/* Picks Retry-After (seconds) or retry-after-ms out of the headers. */
static size_t
on_header(char *p, size_t size, size_t n, void *arg)
{
	struct attempt	*a = arg;
	char		 value[16], *end;
	size_t		 len = size * n, i, skip, vlen;
	long		 v;

	for (i = 0; i < sizeof(delay_headers) / sizeof(delay_headers[0]);
	    i++) {
		skip = strlen(delay_headers[i].name);
		if (len <= skip || strncasecmp(p, delay_headers[i].name,
		    skip) != 0)
			continue;
		if (i > 0 && a->retry_after_ms >= 0)
			break;		/* a more precise one came first */
		for (; skip < len && (p[skip] == ' ' || p[skip] == '\t');
		    skip++)
			continue;
		/* libcurl's header line is not NUL-terminated. */
		for (vlen = 0; skip + vlen < len && p[skip + vlen] != '\r' &&
		    p[skip + vlen] != '\n'; vlen++)
			continue;
		while (vlen > 0 && (p[skip + vlen - 1] == ' ' ||
		    p[skip + vlen - 1] == '\t'))
			vlen--;
		if (vlen == 0 || vlen >= sizeof(value))
			break;
		memcpy(value, p + skip, vlen);
		value[vlen] = '\0';
		errno = 0;
		v = strtol(value, &end, 10);
		if (errno == 0 && *end == '\0' && v >= 0 &&
		    v <= 86400000L / delay_headers[i].unit_ms)
			a->retry_after_ms = v * delay_headers[i].unit_ms;
		break;
	}
	return len;
}

/* Content-Type, the key if any, and an empty Expect: without it libcurl
 * holds a large body back for a second waiting for "100 Continue",
 * which many servers never send. */
static int
make_headers(const char *key)
{
	struct buf		 auth = BUF_INIT(8192);
	struct curl_slist	*h;
	int			 rc = -1;

	h = curl_slist_append(NULL, "Content-Type: application/json");
	if (h == NULL || (headers = curl_slist_append(h, "Expect:")) == NULL)
		goto out;
	h = NULL;
	if (key == NULL)
		return 0;
	if (strpbrk(key, "\r\n") != NULL) {
		log_err("model: the model key contains a line break");
		return -1;
	}
	if (buf_adds(&auth, "Authorization: Bearer ") == -1 ||
	    buf_adds(&auth, key) == -1)
		goto out;
	if ((h = curl_slist_append(headers, auth.data)) != NULL) {
		headers = h;
		h = NULL;
		rc = 0;
	}
out:
	if (auth.data != NULL)	/* the slist keeps its own copy */
		explicit_bzero(auth.data, auth.len);
	buf_free(&auth);
	curl_slist_free_all(h);
	if (rc == -1)
		log_err("model: out of memory");
	return rc;
}

/* model_url, trailing slashes trimmed, + "/chat/completions". */
static char *
make_endpoint(const char *base)
{
	struct buf	 url = BUF_INIT(64 * 1024);
	size_t		 len = strlen(base);

	while (len > 0 && base[len - 1] == '/')
		len--;
	if (buf_add(&url, base, len) == -1 ||
	    buf_adds(&url, "/chat/completions") == -1) {
		buf_free(&url);
		return NULL;
	}
	return buf_detach(&url, NULL);
}

static void	remote_cleanup(void);

static int
remote_init(const struct config *cfg)
{
	model_cfg = cfg;
	if (endpoint != NULL)
		return 0;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		log_err("model: libcurl did not start");
		return -1;
	}
	curl_ready = 1;
	if ((endpoint = make_endpoint(cfg->model_url)) == NULL ||
	    make_headers(cfg->model_key) == -1) {
		remote_cleanup();
		return -1;
	}
	srandom((unsigned int)getpid() ^ (unsigned int)clock_ms());
	return 0;
}

/* The calling thread's handle, made on its first model call. */
static int
handle_open(void)
{
	if ((curl = curl_easy_init()) == NULL)
		return -1;
	curl_easy_setopt(curl, CURLOPT_URL, endpoint);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	/* Else libcurl may time out a DNS lookup with SIGALRM and
	 * siglongjmp(), unsafe beside libpq and FastCGI in one process. */
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(curl, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(curl, CURLOPT_USERAGENT, "todo-chat/1");
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_error);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
	return 0;
}

static void
remote_thread_cleanup(void)
{
	curl_multi_cleanup(multi);
	multi = NULL;
	curl_easy_cleanup(curl);
	curl = NULL;
}

static void
remote_cleanup(void)
{
	remote_thread_cleanup();
	if (curl_ready)
		curl_global_cleanup();
	curl_ready = 0;
	curl_slist_free_all(headers);
	headers = NULL;
	free(endpoint);
	endpoint = NULL;
}

/* A streamed try starts from an empty reply: what a failed try had
 * assembled (a call's first pieces) must not leak into the next. Its
 * deadline is the call's: the first chunk must come within the
 * timeout, retries included; then each silence gets the timeout anew,
 * which stream_clock() enforces in place of CURLOPT_TIMEOUT_MS. */
static void
stream_setup(struct attempt *a, long long left_ms)
{
	openai_stream_free(&a->events);
	reply_free(a->out);
	openai_stream_init(&a->events, a->out);
	a->mode = BODY_UNKNOWN;
	a->cut = CUT_NONE;
	a->last_chunk_ms = 0;
	a->first_by_ms = clock_ms() + left_ms;
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 0L);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_events);
}

/* curl_easy_perform() for a streamed call: the same transfer, run in
 * the thread's multi handle with a wait of at most POLL_MS between
 * looks at the clock. Removing the handle before the transfer is done
 * aborts it (and closes its connection). */
static CURLcode
stream_perform(struct attempt *a)
{
	CURLMsg		*m;
	CURLcode	 rc = CURLE_OK;
	int		 running = 1, queued;

	if (multi == NULL && (multi = curl_multi_init()) == NULL)
		return CURLE_OUT_OF_MEMORY;
	if (curl_multi_add_handle(multi, curl) != CURLM_OK)
		return CURLE_FAILED_INIT;
	for (;;) {
		if (curl_multi_perform(multi, &running) != CURLM_OK) {
			rc = CURLE_FAILED_INIT;
			break;
		}
		if (running == 0)
			break;
		if (stream_clock(a) != 0) {
			rc = CURLE_ABORTED_BY_CALLBACK;
			break;
		}
		curl_multi_poll(multi, NULL, 0, POLL_MS, NULL);
	}
	while ((m = curl_multi_info_read(multi, &queued)) != NULL)
		if (m->msg == CURLMSG_DONE && m->easy_handle == curl &&
		    running == 0)
			rc = m->data.result;
	curl_multi_remove_handle(multi, curl);
	return rc;
}

/* One POST, bounded by what is left of the call's budget. */
static void
attempt_run(struct attempt *a, long long left_ms)
{
	buf_free(&a->body);
	a->body.max = REPLY_MAX_BYTES;
	a->status = 0;
	a->retry_after_ms = -1;
	curl_error[0] = '\0';
	if (a->stream != NULL)
		stream_setup(a, left_ms);
	else
		curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)left_ms);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
	    left_ms < CONNECT_TIMEOUT_MS ? (long)left_ms : CONNECT_TIMEOUT_MS);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, a);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, a);
	a->rc = a->stream != NULL ? stream_perform(a) : curl_easy_perform(curl);
	if (a->cut == CUT_SILENT) {
		/* As a timeout: retried if nothing went out, else a 504. */
		a->rc = CURLE_OPERATION_TIMEDOUT;
		snprintf(curl_error, sizeof(curl_error), "no chunk for %ld "
		    "ms", model_cfg->model_timeout_ms);
	}
	if (a->rc == CURLE_OK)
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &a->status);
}

static int
attempt_retryable(const struct attempt *a)
{
	size_t	 i;

	/* The person has read words of this reply: another try would
	 * write different ones after them. */
	if (a->sent)
		return 0;
	if (a->rc == CURLE_OK)
		return a->status == 429 || a->status >= 500;
	for (i = 0; i < sizeof(retryable) / sizeof(retryable[0]); i++)
		if (a->rc == retryable[i])
			return 1;
	return 0;
}

/* How long to wait before try n + 1: the server's word when it gave
 * one, else exponential backoff with jitter. */
static long
backoff_ms(const struct attempt *a, int n)
{
	long	 ms = BACKOFF_FIRST_MS;

	if (a->retry_after_ms >= 0)
		return a->retry_after_ms;
	while (--n > 0 && ms < BACKOFF_MAX_MS)
		ms *= 2;
	if (ms > BACKOFF_MAX_MS)
		ms = BACKOFF_MAX_MS;
	return ms / 2 + random() % (ms / 2 + 1);
}

/* One line for the operator: what failed and what we do next. Never the
 * key, never the conversation: only status, curl's text, OpenAI's code. */
static void
attempt_log(const struct attempt *a, int n, const char *next)
{
	char	 code[65];

	if (a->rc == CURLE_WRITE_ERROR) {	/* on_body() said no */
		log_err("model: attempt %d of %d: reply over %lu bytes; %s",
		    n, MAX_ATTEMPTS, REPLY_MAX_BYTES, next);
		return;
	}
	if (a->rc != CURLE_OK) {
		log_err("model: attempt %d of %d: %s; %s", n, MAX_ATTEMPTS,
		    curl_error[0] != '\0' ? curl_error :
		    curl_easy_strerror(a->rc), next);
		return;
	}
	openai_error_code(a->body.data, a->body.len, code, sizeof(code));
	log_err("model: attempt %d of %d: HTTP %ld%s%s; %s", n,
	    MAX_ATTEMPTS, a->status, code[0] != '\0' ? " " : "", code, next);
}

static int
timeout_err(struct chat_err *err)
{
	return err_set(err, 504, "model_timeout", "The assistant took too "
	    "long to answer. Please try again.");
}

static int
failure_err(struct chat_err *err)
{
	return err_set(err, 502, "model_error", "The assistant is not "
	    "available right now. Please try again in a moment.");
}

/* The person stopped the call: what came stays, calls go (half a
 * reply must not act), and the call succeeds. */
static int
stream_stopped(struct attempt *a)
{
	calls_free(a->out->calls, a->out->ncalls);
	a->out->calls = NULL;
	a->out->ncalls = 0;
	a->out->stopped = 1;
	return 0;
}

/* A stream that did not make a reply: a 502, not retried (a server that
 * sends garbage once tends to send it again). Logged by what was wrong
 * and how far it got, never by what it said. */
static int
stream_malformed(struct attempt *a, int n, struct chat_err *err)
{
	log_err("model: attempt %d of %d: a malformed stream: %s, after %zu "
	    "chunks, %zu bytes; giving up", n, MAX_ATTEMPTS,
	    a->events.error != NULL ? a->events.error : "?",
	    a->events.chunks, a->events.bytes);
	return err_set(err, 502, "model_error", "The assistant's answer "
	    "broke off. Please try again.");
}

/* A 2xx: the reply, or a 502 for one we cannot read (not retried: a
 * server that sends garbage once tends to send it again). Streamed, a
 * reply that came whole goes to stream->text in one piece. */
static int
attempt_accept(struct attempt *a, int n, struct model_reply *out,
    struct chat_err *err)
{
	const char	*text;

	if (a->stream != NULL && a->mode == BODY_EVENTS)
		return openai_stream_end(&a->events) == 0 ? 0 :
		    stream_malformed(a, n, err);
	if (openai_parse_reply(a->body.data, a->body.len, out) == 0) {
		text = reply_text(out);
		if (a->stream != NULL && text != NULL && *text != '\0' &&
		    on_words(a, text, out->text.len) != 0)
			return stream_stopped(a);
		return 0;
	}
	log_err("model: attempt %d of %d: HTTP %ld with a malformed reply "
	    "of %zu bytes; giving up", n, MAX_ATTEMPTS, a->status,
	    a->body.len);
	return err_set(err, 502, "model_error", "The assistant sent an "
	    "answer that could not be read. Please try again.");
}

/* The wait between tries. Streamed, the caller hears from us as it
 * would while a try runs, and may stop the call: 1 then. */
static int
attempt_wait(struct attempt *a, long wait_ms)
{
	long long	 until = clock_ms() + wait_ms, left;

	if (a->stream == NULL) {
		clock_sleep_ms(wait_ms);
		return 0;
	}
	while ((left = until - clock_ms()) > 0) {
		clock_sleep_ms(left < IDLE_EVERY_MS ? (long)left : IDLE_EVERY_MS);
		if (a->stream->idle != NULL &&
		    a->stream->idle(a->stream->arg) != 0)
			return 1;
	}
	return 0;
}

/* Tries, retries on transport errors, 429 and 5xx, and stops at
 * MAX_ATTEMPTS or when the next try would start past the deadline:
 * CHAT_MODEL_TIMEOUT_MS bounds the whole call, retries and waits
 * included (streamed, up to the first chunk; after it, each silence).
 * The last try's outcome names the failure: a try that timed out is a
 * 504, a model that kept answering with errors a 502, even when it was
 * the deadline that stopped the retries. A streamed call is not tried
 * again once words went out, and a stop ends it at once. */
static int
post_with_retries(struct attempt *a, struct model_reply *out,
    struct chat_err *err)
{
	long long	 deadline, left;
	long		 wait_ms;
	int		 n;

	deadline = clock_ms() + model_cfg->model_timeout_ms;
	for (n = 1; ; n++) {
		if ((left = deadline - clock_ms()) <= 0)
			return timeout_err(err);
		attempt_run(a, left);
		if (a->cut == CUT_STOPPED)
			return stream_stopped(a);
		if (a->cut == CUT_MALFORMED)
			return stream_malformed(a, n, err);
		if (a->rc == CURLE_OK && a->status >= 200 && a->status < 300)
			return attempt_accept(a, n, out, err);
		if (!attempt_retryable(a)) {
			attempt_log(a, n, "giving up");
			if (a->rc == CURLE_OPERATION_TIMEDOUT)
				return timeout_err(err);
			return failure_err(err);
		}
		wait_ms = backoff_ms(a, n);
		if (n == MAX_ATTEMPTS || clock_ms() + wait_ms >= deadline) {
			attempt_log(a, n, n == MAX_ATTEMPTS ?
			    "no tries left" : "no time left");
			if (a->rc == CURLE_OPERATION_TIMEDOUT)
				return timeout_err(err);
			return failure_err(err);
		}
		attempt_log(a, n, "retrying");
		if (attempt_wait(a, wait_ms) == 1)
			return stream_stopped(a);
	}
}

static int
remote_complete(const struct transcript *t, int offer_tools,
    const struct model_stream *stream, struct model_reply *out,
    struct chat_err *err)
{
	struct attempt	 a;
	char		*body;
	int		 rc;

	if (curl == NULL && handle_open() == -1)
		return err_oom(err);
	if ((body = openai_request(t, model_cfg->model, offer_tools,
	    stream != NULL)) == NULL)
		return err_set(err, 502, "model_error", "The request for the "
		    "assistant could not be built. Please try again.");
	memset(&a, 0, sizeof(a));
	a.stream = stream;
	a.out = out;
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
	    (curl_off_t)strlen(body));
	rc = post_with_retries(&a, out, err);
	/* The handle must not keep pointers into freed memory. */
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, NULL);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, NULL);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, NULL);
	if (stream != NULL) {	/* the next call may want the reply whole */
		curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
		openai_stream_free(&a.events);
	}
	buf_free(&a.body);
	cJSON_free(body);
	return rc;
}

const struct model_backend remote_backend = {
	"remote",
	remote_init,
	remote_complete,
	remote_thread_cleanup,
	remote_cleanup,
};
