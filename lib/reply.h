/* reply.h: what the model answers in one step: words, calls of tools, or
 * both. Every backend (remote, offline) fills this type and nothing else,
 * and turn.c reads only it.
 *
 * A reply may arrive whole (a chat completion) or in pieces (a streamed
 * one: text deltas, and each call's id and name first, its arguments in
 * fragments after); both are assembled with the same calls, so the rest
 * of the service never sees the difference. */
#ifndef REPLY_H
#define REPLY_H

#include <stddef.h>

#include "buf.h"

/* Most calls a single reply may carry; more is a malformed reply. */
#define REPLY_MAX_CALLS		32
/* Bounds on what one reply may hold: a chat completion is a few KiB, and
 * even REPLY_MAX_CALLS calls with long arguments stay far below these.
 * Past them the peer is misbehaving. As large as the largest response
 * body the remote backend reads, so that nothing it accepted whole is
 * refused here. */
#define REPLY_TEXT_MAX		(4UL * 1024 * 1024)
#define REPLY_ARGUMENTS_MAX	(4UL * 1024 * 1024)

/* One function call the model asked for, as it sent it. */
struct model_call {
	char		*id;		/* tool_call id, never NULL once whole */
	char		*name;		/* function name (maybe unknown) */
	struct buf	 arguments;	/* JSON text as sent (maybe bad);
					 * .data NULL while none arrived */
};

/* What one model call reported it used ("usage"), in tokens; -1 where
 * it reported nothing (a server that sends no usage, a stream cut short
 * before its usage chunk, the offline model). */
struct model_usage {
	long long	 prompt_tokens;
	long long	 completion_tokens;
	long long	 cached_tokens;	/* of prompt_tokens, cached */
};

/* The model's answer. All memory is owned by the reply. */
struct model_reply {
	struct buf		 text;	/* .data NULL: the model sent none */
	struct model_call	*calls;
	size_t			 ncalls;
	int			 stopped; /* a streamed call was stopped: text
					 * is what came before, no calls */
	struct model_usage	 usage;
};

/* An empty reply (its usage unknown); reply_free() leaves one too. */
void	 reply_init(struct model_reply *r);

/* Sets u to "nothing reported". */
void	 usage_init(struct model_usage *u);
/* Adds what b reports to the sum (whose unknown parts count as 0 once
 * something is added): the usage of a turn's several calls. */
void	 usage_add(struct model_usage *sum, const struct model_usage *b);

/* Appends to the reply's words. content "" marks an answer that is
 * empty, as opposed to none. 0, or -1 on ENOMEM or past REPLY_TEXT_MAX. */
int	 reply_add_text(struct model_reply *r, const char *s, size_t len);

/* Adds to call number index (0, 1, ... in the order the model numbers
 * them): a new index starts a call, and must be the next one; id and
 * name, when not NULL, set the call's; arguments[0..len) is appended to
 * its arguments. A whole reply passes each call in one piece. 0, or -1
 * on ENOMEM, past REPLY_MAX_CALLS or REPLY_ARGUMENTS_MAX, or an index
 * that skips one. */
int	 reply_add_call(struct model_reply *r, size_t index, const char *id,
	    const char *name, const char *arguments, size_t len);

/* 0 once every call has a non-empty id and name (arguments "" when none
 * came): what a reply must be before anyone acts on it. Else -1. */
int	 reply_check(struct model_reply *r);

/* The words, NUL-terminated, or NULL when the model sent none. Borrowed:
 * valid until the reply changes. */
const char	*reply_text(const struct model_reply *r);

/* The call's arguments as they go back to the model and to clients:
 * its text when it is one JSON object, else "{}". A model sometimes sends
 * arguments cut short or otherwise broken (tools.c answers such a call
 * with an error), and several OpenAI-compatible servers parse every
 * earlier call's arguments and refuse the whole request when one does
 * not parse: replayed as sent, one bad call would make every later turn
 * of the conversation fail. What the model sent is stored as it was.
 * Borrowed from the call, or static. */
const char	*call_arguments(const struct model_call *c);

/* Takes the words (the caller free()s; NULL when there were none). */
char	*reply_take_text(struct model_reply *r);

/* Frees what the reply owns and empties it; harmless on an empty one. */
void	 reply_free(struct model_reply *r);

/* Frees the calls c[0..n) and the array. */
void	 calls_free(struct model_call *c, size_t n);

#endif
