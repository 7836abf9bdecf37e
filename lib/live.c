/* live.c: a streamed turn written to its client and, in batches, to its
 * record in the database, and followed from that record (live.h). */
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "db.h"
#include "live.h"
#include "log.h"

/* The stream's bytes pass through here: to the client, and (pings aside:
 * a follower makes its own) to the batch for the record. The client
 * going away ends only its own copy: the record must go on to [DONE],
 * since the followers it is for are mostly that client come back (a
 * reloaded page, a connection cut and opened again after its last
 * event id). So uistream is never told the client is gone. */
static int
live_write(void *arg, const char *p, size_t len)
{
	struct live	*l = arg;

	/* A batch holds 200 ms of events, or all of a stream not followed
	 * yet (a few KiB), far below its cap; past it (a runaway peer),
	 * events are left out of the record, and a follower sees a gap in
	 * the ids rather than the worker growing a buffer. */
	if (len == 0 || p[0] != ':')
		(void)buf_add(&l->pending, p, len);
	if (!l->client_gone && l->write(l->arg, p, len) == -1)
		l->client_gone = 1;
	return 0;
}

void
live_init(struct live *l, const char *user_id, live_writer write,
    live_flusher flush, void *arg)
{
	memset(l, 0, sizeof(*l));
	l->write = write;
	l->flush = flush;
	l->arg = arg;
	l->user_id = user_id;
	/* A turn's stream is a few KiB; its record is capped as a reply
	 * is, so that a runaway model cannot grow a row without bound. */
	l->pending = (struct buf)BUF_INIT(4UL * 1024 * 1024);
	uistream_init(&l->ui, live_write, l);
}

void
live_free(struct live *l)
{
	buf_free(&l->pending);
	uistream_free(&l->ui);
}

/* Writes the record: the events not stored yet (stored only once the
 * stream is followed; until then they stay pending, all of them since
 * the start), and whether it is done; reads whether a stop was asked. A
 * database that fails here fails the turn's next statement too; the
 * record itself is best effort: logged, and the turn goes on. */
static void
record(struct live *l, int done)
{
	struct chat_err	 err;
	int		 stop, followed;

	l->written_ms = l->checked_ms = clock_ms();
	if (l->user_message_id == 0)
		return;
	if (db_stream_put(l->user_id, l->conversation_id, l->user_message_id,
	    l->pending.data != NULL ? l->pending.data : "", done, &stop,
	    &followed, &err) == -1) {
		log_err("stream record of message %lld: %s", l->user_message_id,
		    err.code);
		return;
	}
	if (stop)
		l->stop = 1;
	if (followed) {
		l->followed = 1;
		buf_reset(&l->pending);
	}
}

/* Reads the record's flags: a stop asked, or a follower come, whose
 * events are then written at once. */
static void
check(struct live *l)
{
	struct chat_err	 err;
	int		 stop, followed;

	l->checked_ms = clock_ms();
	if (db_stream_check(l->user_id, l->user_message_id, &stop, &followed,
	    &err) == -1) {
		log_err("stream record of message %lld: %s", l->user_message_id,
		    err.code);
		return;
	}
	if (stop)
		l->stop = 1;
	if (followed)
		record(l, 0);
}

int
live_event(void *arg, const struct turn_event *ev)
{
	struct live	*l = arg;
	long long	 now;

	if (ev->type == TURN_START) {
		l->conversation_id = ev->conversation_id;
		l->user_message_id = ev->user_message_id;
	}
	uistream_event(&l->ui, ev);
	if (ev->type != TURN_TEXT)
		(void)l->flush(l->arg);
	now = clock_ms();
	/* The turn's own first and last statements made or ended the
	 * record (turn.h): nothing to write, the lease is fresh. */
	if ((ev->type == TURN_START && ev->record_made) ||
	    (ev->type == TURN_FINISH && ev->record_ended))
		l->written_ms = l->checked_ms = now;
	else if (ev->type == TURN_START || ev->type == TURN_FINISH ||
	    (l->followed && l->pending.len > 0 &&
	    now - l->written_ms >= LIVE_FLUSH_MS) ||
	    now - l->written_ms >= LIVE_LEASE_MS)
		record(l, ev->type == TURN_FINISH);
	else if (l->user_message_id != 0 &&
	    now - l->checked_ms >= LIVE_CHECK_MS)
		check(l);
	return l->stop;
}

/* The id of the event that starts at p ("id: N\n..."), 0 if none. */
static unsigned long
event_id(const char *p, size_t len)
{
	unsigned long	 id = 0;
	size_t		 i;

	if (len < 5 || strncmp(p, "id: ", 4) != 0)
		return 0;
	for (i = 4; i < len && p[i] >= '0' && p[i] <= '9'; i++)
		id = id * 10 + (unsigned long)(p[i] - '0');
	return id;
}

/* Passes on the whole events of events[0..len) whose ids are past
 * last_event_id. A batch ends on an event's end; an event cut short (a
 * record past its cap, live_write()) is left out. The number of events
 * passed on, or -1 when the client is gone. */
static int
forward(const char *events, size_t len, unsigned long last_event_id,
    live_writer write, void *arg, long long *wrote_ms)
{
	const char	*p, *end;
	size_t		 n, at = 0;
	int		 passed = 0;

	while (at < len) {
		p = events + at;
		if ((end = strstr(p, "\n\n")) == NULL)
			break;
		n = (size_t)(end - p) + 2;
		if (event_id(p, n) > last_event_id) {
			if (write(arg, p, n) == -1)
				return -1;
			*wrote_ms = clock_ms();
			passed++;
		}
		at += n;
	}
	return passed;
}

int
live_follow(const char *user_id, long long conversation_id,
    unsigned long last_event_id, live_writer write, live_flusher flush,
    void *arg, struct chat_err *err)
{
	struct db_stream	 s;
	long long		 message, wrote_ms;
	int			 batches = 0, gone = 0, over = 0, n;
	int			 passed = 0;

	if (db_stream_follow(user_id, conversation_id, &message, err) == -1)
		return -1;
	if (message == 0)
		return 1;
	wrote_ms = clock_ms();
	while (!gone && !over) {
		if (db_stream_events(user_id, message, batches, &s,
		    err) == -1)
			return -1;	/* the caller ends what it started */
		if (!s.found)
			over = 1;
		else {
			n = forward(s.events, s.len, last_event_id, write,
			    arg, &wrote_ms);
			gone = n == -1;
			passed += n > 0 ? n : 0;
			batches = s.batches;
			over = s.done || !s.alive;
		}
		db_stream_free(&s);
		if (!gone && !over && clock_ms() - wrote_ms >=
		    UISTREAM_PING_MS) {
			gone = write(arg, ": ping\n\n", 8) == -1;
			wrote_ms = clock_ms();
			passed++;	/* the stream has begun */
		}
		if (!gone)
			gone = flush(arg) == -1;
		if (!gone && !over)
			clock_sleep_ms(LIVE_POLL_MS);
	}
	/* Over before anything went to our client (its worker died, or it
	 * ended as we came): as if no turn ran. */
	return passed == 0 && !gone ? 1 : 0;
}
