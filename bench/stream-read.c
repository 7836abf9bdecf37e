/* bench/stream-read.c: the clients of bench/stream.pl's latency run.
 *
 * STREAMS connections to nginx, each posting a streamed turn on a
 * conversation of its own and, when its stream ends, the next, until
 * SECONDS are over. The mock stamps every piece with its send time
 * (bench/stream-mock --stamp-pieces: "t" and 16 digits of microseconds
 * since the epoch); for every stamp in a text-delta this prints the
 * delay from the mock sending it to this client reading it, in
 * microseconds, one a line, after a first line "turns BAD_TURNS". The
 * starts are spread over SPREAD_MS: streams that started together would
 * have the mock send their pieces in the same millisecond for their
 * whole life, a burst no real load makes.
 *
 * A reader in Perl took as much CPU as the workers at 100 streams and
 * was late to its own sockets: one thread and epoll keep the client out
 * of what is measured.
 *
 *   stream-read PORT TOKEN CONVERSATION_IDS(a,b,...) STREAMS SECONDS
 *       SPREAD_MS
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct stream {
	int		 fd;
	long long	 conversation;
	char		*in;		/* bytes read, not yet taken */
	size_t		 len, cap;
	int		 head_done, chunked, status, done;
	char		*body;		/* de-chunked body, not yet taken */
	size_t		 blen, bcap;
};

static const char *token;
static int	 port;
static long long *delays;
static size_t	 ndelays, cdelays;

static long long
now_us(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void *
xrealloc(void *p, size_t n)
{
	if ((p = realloc(p, n)) == NULL) {
		perror("realloc");
		exit(1);
	}
	return p;
}

static void
append(char **p, size_t *len, size_t *cap, const char *src, size_t n)
{
	if (*len + n + 1 > *cap) {
		*cap = (*len + n + 1) * 2;
		*p = xrealloc(*p, *cap);
	}
	memcpy(*p + *len, src, n);
	*len += n;
	(*p)[*len] = '\0';
}

static void
start(int ep, struct stream *s)
{
	struct sockaddr_in	 sin;
	struct epoll_event	 ev;
	char			 body[128], req[2048];
	int			 n, one = 1;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((unsigned short)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((s->fd = socket(AF_INET, SOCK_STREAM, 0)) == -1 ||
	    connect(s->fd, (struct sockaddr *)&sin, sizeof(sin)) == -1) {
		perror("connect");
		exit(1);
	}
	setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	snprintf(body, sizeof(body), "{\"message\":\"how are you today\","
	    "\"conversation_id\":%lld}", s->conversation);
	n = snprintf(req, sizeof(req), "POST /chat HTTP/1.1\r\n"
	    "Host: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
	    "Content-Type: application/json\r\nAccept: text/event-stream\r\n"
	    "Connection: close\r\nContent-Length: %zu\r\n\r\n%s", token,
	    strlen(body), body);
	if (n < 0 || (size_t)n >= sizeof(req) ||
	    write(s->fd, req, (size_t)n) != n) {
		perror("write");
		exit(1);
	}
	s->len = s->blen = 0;
	s->head_done = s->chunked = s->status = s->done = 0;
	ev.events = EPOLLIN;
	ev.data.ptr = s;
	epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev);
}

/* The events in the body so far: every text-delta's stamps. */
static void
events(struct stream *s, long long now)
{
	char	*p = s->body, *end, *t;

	while ((end = strstr(p, "\n\n")) != NULL) {
		*end = '\0';
		if (strcmp(p, "data: [DONE]") == 0 ||
		    strstr(p, "\ndata: [DONE]") != NULL)
			s->done = 1;
		if (strstr(p, "\"type\":\"text-delta\"") != NULL)
			for (t = p; (t = strchr(t, 't')) != NULL; t++) {
				char		*e;
				long long	 stamp;

				stamp = strtoll(t + 1, &e, 10);
				if (e - t != 17 || *e != ' ')
					continue;
				if (ndelays == cdelays) {
					cdelays = cdelays ? cdelays * 2 :
					    65536;
					delays = xrealloc(delays, cdelays *
					    sizeof(*delays));
				}
				delays[ndelays++] = now - stamp;
			}
		p = end + 2;
	}
	s->blen -= (size_t)(p - s->body);
	memmove(s->body, p, s->blen + 1);
}

/* Takes what the socket gave: the head, then the body, de-chunked. */
static void
consume(struct stream *s, long long now)
{
	char	*end, *p;
	size_t	 n, hl;

	if (!s->head_done) {
		if ((end = strstr(s->in, "\r\n\r\n")) == NULL)
			return;
		s->head_done = 1;
		s->status = atoi(s->in + 9);
		*end = '\0';
		s->chunked = strcasestr(s->in,
		    "\r\ntransfer-encoding: chunked") != NULL;
		hl = (size_t)(end - s->in) + 4;
		s->len -= hl;
		memmove(s->in, end + 4, s->len + 1);
	}
	if (!s->chunked) {
		append(&s->body, &s->blen, &s->bcap, s->in, s->len);
		s->len = 0;
	} else
		for (;;) {
			n = strtoul(s->in, &p, 16);
			if (p == s->in || (end = strstr(p, "\r\n")) == NULL)
				break;
			hl = (size_t)(end - s->in) + 2;
			if (s->len < hl + n + 2)
				break;
			append(&s->body, &s->blen, &s->bcap, s->in + hl, n);
			s->len -= hl + n + 2;
			memmove(s->in, s->in + hl + n + 2, s->len + 1);
		}
	events(s, now);
}

static int
cmp(const void *a, const void *b)
{
	long long	 x = *(const long long *)a, y = *(const long long *)b;

	return x < y ? -1 : x > y;
}

int
main(int argc, char *argv[])
{
	struct epoll_event	 evs[64];
	struct stream		*streams;
	char			*ids, *id;
	long long		 t0, end, spread;
	int			 ep, i, n, nstreams, opened = 0, open_now = 0;
	int			 turns = 0, bad = 0;
	size_t			 k;

	if (argc != 7) {
		fprintf(stderr, "usage: stream-read PORT TOKEN IDS STREAMS "
		    "SECONDS SPREAD_MS\n");
		return 2;
	}
	port = atoi(argv[1]);
	token = argv[2];
	ids = argv[3];
	nstreams = atoi(argv[4]);
	t0 = now_us();
	end = t0 + 1000000LL * atoi(argv[5]);
	spread = 1000LL * atoi(argv[6]);
	if ((streams = calloc((size_t)nstreams, sizeof(*streams))) == NULL)
		return 1;
	for (i = 0; i < nstreams; i++) {
		if ((id = strsep(&ids, ",")) == NULL) {
			fprintf(stderr, "stream-read: fewer ids than streams\n");
			return 2;
		}
		streams[i].conversation = atoll(id);
	}
	if ((ep = epoll_create1(0)) == -1)
		return 1;
	while (open_now > 0 || opened < nstreams) {
		long long	 now = now_us();

		while (opened < nstreams && now >= t0 + spread * opened /
		    nstreams && now < end) {
			start(ep, &streams[opened++]);
			open_now++;
		}
		if (opened < nstreams && now >= end)
			opened = nstreams;	/* too late to start them */
		n = epoll_wait(ep, evs, 64, 1);
		for (i = 0; i < n; i++) {
			struct stream	*s = evs[i].data.ptr;
			char		 buf[65536];
			ssize_t		 r;

			r = read(s->fd, buf, sizeof(buf));
			now = now_us();
			if (r < 0 && errno == EINTR)
				continue;
			if (r > 0) {
				append(&s->in, &s->len, &s->cap, buf,
				    (size_t)r);
				consume(s, now);
				continue;
			}
			/* The end of a turn's stream. */
			epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
			close(s->fd);
			if (s->status == 200 && s->done)
				turns++;
			else
				bad++;
			if (now < end)
				start(ep, s);
			else
				open_now--;
		}
	}
	qsort(delays, ndelays, sizeof(*delays), cmp);
	printf("%d %d\n", turns, bad);
	for (k = 0; k < ndelays; k++)
		printf("%lld\n", delays[k]);
	for (i = 0; i < nstreams; i++) {
		free(streams[i].in);
		free(streams[i].body);
	}
	free(streams);
	free(delays);
	return 0;
}
