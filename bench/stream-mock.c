/* bench/stream-mock.c: the streaming model of bench/stream.pl, cheap
 * enough to leave the cores to the service.
 *
 * At a thousand streams of 200 pieces in 2 s, the mock sends 100,000
 * chunks a second. t/mock_model.py, a thread a connection, took as much
 * CPU as the workers and PostgreSQL together at that rate, and the
 * benchmark measured the mock. This one answers the same default reply
 * in the same bytes (t/mock_model.py's --stream-pieces, --chunk-delay-ms
 * and --stamp-pieces, which are its options too) from one thread:
 * epoll for the connections, a wheel of 1 ms slots for the pieces due.
 * It knows nothing else: no scripted steps, no request log, no checks
 * of the request beyond its framing. Tests use t/mock_model.py.
 *
 *   stream-mock --port-file F [--port N] [--max-seconds N] [--key K]
 *       [--stream-pieces N] [--chunk-delay-ms N] [--stamp-pieces]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WHEEL_SLOTS	4096		/* ms; more than any delay asked */
#define REQUEST_MAX	(1024 * 1024)

struct conn {
	int		 fd;
	char		*in;		/* the request read so far */
	size_t		 in_len, in_cap;
	char		*out;		/* bytes the socket did not take */
	size_t		 out_len, out_cap;
	int		 streaming;	/* pieces sent so far + 1, 0: idle */
	long long	 start_ms;	/* when the stream's first chunk left */
	int		 usage;		/* stream_options.include_usage */
	unsigned long	 id;
	struct conn	*next_due;	/* in its wheel slot */
	int		 closing;
};

static int	 pieces = 200, delay_ms = 10, stamp;
static const char *key;
static struct conn *wheel[WHEEL_SLOTS];
static unsigned long completions;

static long long
now_us(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static long long
now_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
die(const char *what)
{
	perror(what);
	exit(1);
}

static void
grow(char **p, size_t *cap, size_t need)
{
	if (need <= *cap)
		return;
	*cap = need < 4096 ? 4096 : need * 2;
	if ((*p = realloc(*p, *cap)) == NULL)
		die("realloc");
}

/* Sends what the socket takes and keeps the rest for EPOLLOUT. */
static void
flush_out(struct conn *c)
{
	ssize_t	 n;

	while (c->out_len > 0) {
		n = write(c->fd, c->out, c->out_len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				c->closing = 1;
			return;
		}
		memmove(c->out, c->out + n, c->out_len - (size_t)n);
		c->out_len -= (size_t)n;
	}
}

static void
put(struct conn *c, const char *p, size_t len)
{
	grow(&c->out, &c->out_cap, c->out_len + len);
	memcpy(c->out + c->out_len, p, len);
	c->out_len += len;
}

/* One chunk of the chunked body: an SSE event, "data: <json>\n\n". */
static void
put_event(struct conn *c, const char *fmt, ...)
{
	char	 body[1024], head[16];
	va_list	 ap;
	int	 n, h;

	va_start(ap, fmt);
	n = vsnprintf(body, sizeof(body), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(body))
		abort();
	h = snprintf(head, sizeof(head), "%x\r\n", (unsigned)n);
	put(c, head, (size_t)h);
	put(c, body, (size_t)n);
	put(c, "\r\n", 2);
}

#define CHUNK_HEAD "data: {\"id\":\"chatcmpl-mock%lu\",\"object\":" \
	"\"chat.completion.chunk\",\"created\":%lld,\"model\":" \
	"\"gpt-4o-mini\",\"system_fingerprint\":\"fp_mock\",%s\"choices\":"

static const char *
usage_null(const struct conn *c)
{
	return c->usage ? "\"usage\":null," : "";
}

static void
schedule(struct conn *c, long long due_ms)
{
	struct conn	**slot = &wheel[due_ms % WHEEL_SLOTS];

	c->next_due = *slot;
	*slot = c;
}

static void
reply_error(struct conn *c, int status, const char *message)
{
	char	 body[512], head[256];
	int	 n, h;

	n = snprintf(body, sizeof(body), "{\"error\":{\"message\":\"%s\","
	    "\"type\":\"invalid_request_error\",\"param\":null,"
	    "\"code\":null}}", message);
	h = snprintf(head, sizeof(head), "HTTP/1.1 %d Error\r\n"
	    "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n",
	    status, n);
	put(c, head, (size_t)h);
	put(c, body, (size_t)n);
}

/* A whole request is in: starts its stream (the role chunk now, the
 * pieces on the wheel). */
static void
answer(struct conn *c, const char *head, const char *body)
{
	static const char hdr[] = "HTTP/1.1 200 OK\r\n"
	    "Content-Type: text/event-stream; charset=utf-8\r\n"
	    "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";
	char	 want[512];

	if (key != NULL) {
		snprintf(want, sizeof(want), "Bearer %s", key);
		if (strcasestr(head, "\r\nauthorization:") == NULL ||
		    strstr(head, want) == NULL) {
			reply_error(c, 401, "Incorrect API key provided.");
			return;
		}
	}
	if (strstr(body, "\"stream\":true") == NULL) {
		reply_error(c, 400, "This mock only streams.");
		return;
	}
	c->usage = strstr(body, "\"include_usage\":true") != NULL;
	c->id = ++completions;
	put(c, hdr, sizeof(hdr) - 1);
	put_event(c, CHUNK_HEAD "[{\"index\":0,\"delta\":{\"role\":"
	    "\"assistant\",\"refusal\":null,\"content\":\"\"},\"logprobs\":"
	    "null,\"finish_reason\":null}]}\n\n", c->id,
	    (long long)time(NULL), usage_null(c));
	c->streaming = 1;
	c->start_ms = now_ms();
	schedule(c, c->start_ms + delay_ms);
}

/* The next piece of c's stream, or its end. */
static void
piece(struct conn *c)
{
	char	 text[32];
	int	 k = c->streaming;

	if (k <= pieces) {
		if (stamp)
			snprintf(text, sizeof(text), "t%016lld ", now_us());
		else
			snprintf(text, sizeof(text), "w%05d ", k);
		put_event(c, CHUNK_HEAD "[{\"index\":0,\"delta\":{\"content\":"
		    "\"%s\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
		    c->id, (long long)time(NULL), usage_null(c), text);
		c->streaming++;
		schedule(c, c->start_ms + (long long)(k + 1) * delay_ms);
		return;
	}
	put_event(c, CHUNK_HEAD "[{\"index\":0,\"delta\":{},\"logprobs\":"
	    "null,\"finish_reason\":\"stop\"}]}\n\n", c->id,
	    (long long)time(NULL), usage_null(c));
	if (c->usage)
		put_event(c, "data: {\"id\":\"chatcmpl-mock%lu\",\"object\":"
		    "\"chat.completion.chunk\",\"created\":%lld,\"model\":"
		    "\"gpt-4o-mini\",\"system_fingerprint\":\"fp_mock\","
		    "\"choices\":[],\"usage\":{\"prompt_tokens\":10,"
		    "\"completion_tokens\":%d,\"total_tokens\":%d}}\n\n",
		    c->id, (long long)time(NULL), pieces, pieces + 10);
	put_event(c, "data: [DONE]\n\n");
	put(c, "0\r\n\r\n", 5);
	c->streaming = 0;
}

/* Reads what came; answers a request once its head and body are in. */
static void
readable(struct conn *c)
{
	char		*end, *cl;
	size_t		 head_len, body_len;
	ssize_t		 n;

	for (;;) {
		grow(&c->in, &c->in_cap, c->in_len + 65536 + 1);
		n = read(c->fd, c->in + c->in_len, 65536);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			c->closing = 1;
			return;
		}
		if (n < 0)
			break;
		c->in_len += (size_t)n;
		if (c->in_len > REQUEST_MAX) {
			c->closing = 1;
			return;
		}
	}
	c->in[c->in_len] = '\0';
	if (c->streaming || (end = strstr(c->in, "\r\n\r\n")) == NULL)
		return;
	head_len = (size_t)(end - c->in) + 4;
	body_len = 0;
	if ((cl = strcasestr(c->in, "\r\ncontent-length:")) != NULL &&
	    cl < end)
		body_len = strtoul(cl + 17, NULL, 10);
	if (c->in_len < head_len + body_len)
		return;
	end[2] = '\0';		/* the head, for answer() */
	{
		char	 saved = c->in[head_len + body_len];

		c->in[head_len + body_len] = '\0';
		answer(c, c->in, c->in + head_len);
		c->in[head_len + body_len] = saved;
	}
	memmove(c->in, c->in + head_len + body_len,
	    c->in_len - head_len - body_len);
	c->in_len -= head_len + body_len;
}

static void
drop(int ep, struct conn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	/* Still on the wheel while streaming: freed when its slot comes. */
	if (!c->streaming) {
		free(c->in);
		free(c->out);
		free(c);
	}
}

int
main(int argc, char *argv[])
{
	struct epoll_event	 ev, evs[256];
	struct sockaddr_in	 sin;
	socklen_t		 slen = sizeof(sin);
	const char		*port_file = NULL;
	long long		 deadline = 0, tick;
	int			 ls, ep, i, n, port = 0, one = 1;
	FILE			*f;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--stamp-pieces") == 0)
			stamp = 1;
		else if (i + 1 >= argc)
			break;		/* options of t/mock_model.py we lack */
		else if (strcmp(argv[i], "--port") == 0)
			port = atoi(argv[++i]);
		else if (strcmp(argv[i], "--port-file") == 0)
			port_file = argv[++i];
		else if (strcmp(argv[i], "--max-seconds") == 0)
			deadline = now_ms() + 1000LL * atoi(argv[++i]);
		else if (strcmp(argv[i], "--key") == 0)
			key = argv[++i];
		else if (strcmp(argv[i], "--stream-pieces") == 0)
			pieces = atoi(argv[++i]);
		else if (strcmp(argv[i], "--chunk-delay-ms") == 0)
			delay_ms = atoi(argv[++i]);
	}
	if (delay_ms < 1 || delay_ms >= WHEEL_SLOTS || pieces < 0) {
		fprintf(stderr, "stream-mock: bad --chunk-delay-ms or "
		    "--stream-pieces\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if ((ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0)) == -1)
		die("socket");
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((unsigned short)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(ls, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    listen(ls, 4096) == -1 ||
	    getsockname(ls, (struct sockaddr *)&sin, &slen) == -1)
		die("listen");
	if ((ep = epoll_create1(0)) == -1)
		die("epoll_create1");
	ev.events = EPOLLIN;
	ev.data.ptr = NULL;
	epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
	if (port_file != NULL) {
		/* Written whole, then renamed: a reader never sees half. */
		char	 tmp[4096];

		snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
		if ((f = fopen(tmp, "w")) == NULL)
			die(tmp);
		fprintf(f, "%d\n", ntohs(sin.sin_port));
		if (fclose(f) != 0 || rename(tmp, port_file) == -1)
			die(port_file);
	}

	tick = now_ms();
	for (;;) {
		long long	 now = now_ms();
		int		 wait;

		if (deadline && now >= deadline)
			return 0;
		/* Every slot up to now, so that a late wake-up misses none. */
		for (; tick <= now; tick++) {
			struct conn	*c, *next, **slot;

			slot = &wheel[tick % WHEEL_SLOTS];
			c = *slot;
			*slot = NULL;
			for (; c != NULL; c = next) {
				next = c->next_due;
				if (c->fd == -1) {
					free(c->in);
					free(c->out);
					free(c);
					continue;
				}
				piece(c);
				flush_out(c);
				if (!c->streaming && c->in_len > 0)
					readable(c);	/* pipelined */
				if (c->closing)
					drop(ep, c);
			}
		}
		wait = 1;
		n = epoll_wait(ep, evs, 256, wait);
		for (i = 0; i < n; i++) {
			struct conn	*c = evs[i].data.ptr;
			int		 fd;

			if (c == NULL) {
				while ((fd = accept4(ls, NULL, NULL,
				    SOCK_NONBLOCK)) != -1) {
					setsockopt(fd, IPPROTO_TCP,
					    TCP_NODELAY, &one, sizeof(one));
					if ((c = calloc(1, sizeof(*c))) ==
					    NULL)
						die("calloc");
					c->fd = fd;
					ev.events = EPOLLIN | EPOLLOUT |
					    EPOLLET | EPOLLRDHUP;
					ev.data.ptr = c;
					epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
				}
				continue;
			}
			if (evs[i].events & EPOLLIN)
				readable(c);
			flush_out(c);
			if (c->closing || (evs[i].events & (EPOLLERR |
			    EPOLLHUP)))
				drop(ep, c);
		}
	}
}
