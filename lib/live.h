/* live.h: a streamed turn, live: its events written to the client as the
 * UI message stream (uistream.c) and, in batches, to the database, where
 * any worker can follow them (a reloaded page, GET .../stream) and where
 * a stop asked of any worker (POST .../stop) reaches the turn. */
#ifndef LIVE_H
#define LIVE_H

#include <stddef.h>

#include "buf.h"
#include "turn.h"
#include "uistream.h"

/* How often the record is written while events flow and someone
 * follows the stream; how often its flags are read otherwise (which is
 * how soon a stop, or a follower, is seen); and how often it is written
 * whatever happens, to keep the lease (schema.sql: chat_turn_lease(),
 * 30 s). */
#define LIVE_FLUSH_MS		200
#define LIVE_CHECK_MS		500
#define LIVE_LEASE_MS		10000
/* How often a follower reads the record again. */
#define LIVE_POLL_MS		100

/* The bytes' way to the client, which may hold them until the flush:
 * 0, or -1 once it is gone. */
typedef int	(*live_writer)(void *arg, const char *p, size_t len);
typedef int	(*live_flusher)(void *arg);

struct live {
	struct uistream	 ui;
	live_writer	 write;
	live_flusher	 flush;
	void		*arg;
	const char	*user_id;
	/* Private. */
	long long	 conversation_id, user_message_id;
	struct buf	 pending;	/* events not in the record yet */
	long long	 written_ms;	/* the record was last written */
	long long	 checked_ms;	/* ... or its flags last read */
	int		 followed;	/* events are stored as they go */
	int		 stop;
	int		 client_gone;	/* its writes failed: write no more */
};

/* Prepares l for a turn of user_id (borrowed) whose bytes go to write.
 * They are flushed after every event but the model's words, which are
 * flushed when the model is awaited (TURN_IDLE): the words that arrived
 * together leave together, in one write, and none waits for the next. */
void	 live_init(struct live *l, const char *user_id, live_writer write,
	    live_flusher flush, void *arg);
/* The turn observer function (turn.h): arg is the struct live. */
int	 live_event(void *arg, const struct turn_event *ev);
/* Frees what l holds, once the turn is over. */
void	 live_free(struct live *l);

/* Follows the running streamed turn of the user's conversation from its
 * start, or from the event after last_event_id (0: from the start), to
 * its end, writing its bytes to write. 0 when followed, 1 when there
 * was nothing to follow (no turn runs, or it ended with nothing after
 * last_event_id, or its worker died first: the caller answers 204,
 * nothing written), -1 with err (404 not
 * the user's conversation, 503). A follower stops with the turn's
 * "[DONE]", when its worker's lease runs out (a worker that died), or
 * when its own client goes. */
int	 live_follow(const char *user_id, long long conversation_id,
	    unsigned long last_event_id, live_writer write, live_flusher flush,
	    void *arg, struct chat_err *err);

#endif
