/* openai.h: OpenAI's chat-completions format, written and read here and
 * nowhere else: a transcript as a request body, a response body as a
 * reply, a streamed response (server-sent events of chunks) as a reply,
 * the tool definitions, and the "tool_calls" array that an assistant
 * message carries (which is also how messages.tool_calls stores it).
 * Pure: no I/O. */
#ifndef OPENAI_H
#define OPENAI_H

#include <stddef.h>

#include "buf.h"
#include "reply.h"
#include "transcript.h"

/* Bytes one event of a streamed reply may hold: as many as a whole
 * response body (remote.c), so that a server that sends its answer in
 * a single chunk is not refused what it could have sent whole. */
#define OPENAI_EVENT_MAX	(4UL * 1024 * 1024)
/* Bytes a whole stream may hold. A chunk costs some 200 bytes of JSON
 * around a word or two, so a reply of a few KiB streams in tens of KiB;
 * this leaves room for long ones while a server that streams empty
 * chunks forever (each resets the silence timeout) is still stopped. */
#define OPENAI_STREAM_MAX	(64UL * 1024 * 1024)

/* The request body for model: the transcript's messages and, when
 * offer_tools, the tools of tools.h's table (OpenAI refuses "tools": [],
 * so none means no key); stream asks for the reply as server-sent
 * events (without it the body is what it always was). NULL on ENOMEM;
 * the caller cJSON_free()s it. Calls' arguments go out as
 * call_arguments() gives them. */
char	*openai_request(const struct transcript *t, const char *model,
	    int offer_tools, int stream);

/* What openai_request() would print, in bytes, without printing it: the
 * part around the messages (model, tools when offer_tools, stream
 * options) and each message, commas included; the request is the first
 * plus the sum of the second over the transcript. Exact for what cJSON
 * prints (escapes counted; a comma per message, a few bytes over at
 * most), so a bound on the request holds. */
size_t	 openai_request_base_bytes(const char *model, int offer_tools);
size_t	 openai_message_bytes(const struct transcript_msg *m);

/* Parses a chat-completions response body into *out (reply_init()ed
 * here). Rules, for a server we do not control: the body is one JSON
 * object, parsed whole; choices[0].message an object; content a string
 * or null (a refusal stands in for missing content); tool_calls, when
 * present, well formed and at most REPLY_MAX_CALLS; every string valid
 * UTF-8 (PostgreSQL refuses anything else). A reply with neither words
 * nor calls is malformed, except "" (an answer, if an empty one). 0, or
 * -1 with *out left empty. */
int	 openai_parse_reply(const char *body, size_t len,
	    struct model_reply *out);

/* What one chunk of a streamed reply brought. */
struct openai_chunk {
	size_t	 text_len;	/* bytes it added to the reply's words: the
				 * last text_len bytes of reply_text() */
	int	 choice;	/* it carried a choice (0: only "usage") */
	int	 changed;	/* ...with words or pieces of calls */
	int	 finished;	/* ...with a finish_reason */
};

/* Adds one chat.completion.chunk (the JSON of one event of a streamed
 * reply, chunk[0..len)) to *out, which holds the chunks before it.
 * Rules as openai_parse_reply()'s, piece by piece: one JSON object
 * parsed whole; "choices" an array of at most one choice (index 0),
 * empty in the last chunk that carries "usage"; delta an object whose
 * content (or refusal, standing in for it) is a piece of the words;
 * each tool_calls piece names its call by "index", the first piece of
 * a call brings its id and name, later ones fragments of arguments;
 * finish_reason null or a string; every string valid UTF-8. 0 and *c
 * filled, or -1 (out then holds part of the chunk: the whole reply is
 * bad). */
int	 openai_parse_chunk(const char *chunk, size_t len,
	    struct model_reply *out, struct openai_chunk *c);

/* A streamed reply being read: the body of a response to a request
 * with stream set, as libcurl hands it over, cut anywhere (inside a
 * line, a UTF-8 sequence, a CRLF). Server-sent events (the WHATWG
 * HTML EventSource format): lines end in LF, CRLF or CR; ":" opens a
 * comment (a keep-alive); "data:" lines make an event's data, which a
 * blank line delivers; other fields are not OpenAI's and are skipped.
 * Each event is a chunk, and "[DONE]" the end. */
struct openai_stream {
	struct model_reply	*reply;	 /* borrowed: what the chunks build */
	struct buf		 line;	 /* the line not yet ended */
	struct buf		 data;	 /* the event's data so far */
	size_t			 ndata;	 /* its data lines */
	size_t			 bytes;	 /* fed so far */
	size_t			 chunks; /* chunks read: the caller's clock
					  * of silence watches it move */
	int			 cr;	 /* the last byte fed was a CR */
	int			 finished; /* a finish_reason came */
	int			 done;	 /* "data: [DONE]" came */
	const char		*error;	 /* why it is malformed: a literal,
					  * safe to log (never content) */
};

/* Starts reading a stream into out (reply_init()ed here). */
void	 openai_stream_init(struct openai_stream *s, struct model_reply *out);

/* Feeds p[0..n), the next bytes of the body. Each chunk's words go to
 * text(arg, words, len) (not NULL, not empty, valid UTF-8, borrowed
 * from the reply) as soon as the chunk's event is whole; text returns
 * 0 to go on. 0; 1 when text returned non-zero (the feed stops there,
 * the reply holding the words passed); -1 when the stream is malformed
 * (s->error says why; this and later feeds fail). */
int	 openai_stream_feed(struct openai_stream *s, const char *p, size_t n,
	    int (*text)(void *, const char *, size_t), void *arg);

/* After the last byte: 0 when the stream made a whole reply ("[DONE]"
 * came, a finish_reason before it, every call has its id and name,
 * there are words or calls), else -1 with s->error set. */
int	 openai_stream_end(struct openai_stream *s);

/* Frees what s holds (not the reply); s can be init()ed again. */
void	 openai_stream_free(struct openai_stream *s);

/* The "tool_calls" array of calls[0..n), arguments as the model sent
 * them: what messages.tool_calls stores. NULL on ENOMEM; the caller
 * cJSON_free()s it. */
char	*openai_calls_text(const struct model_call *calls, size_t n);

/* Reads a stored "tool_calls" array back into *calls (the caller frees
 * them with calls_free()) and *n. 0, or -1 when text is not such an
 * array or on ENOMEM. */
int	 openai_calls_parse(const char *text, struct model_call **calls,
	    size_t *n);

/* The "error"."code" of an error body, when it is a short token safe to
 * log (letters, digits, "_.-"), copied into code; else code is "". */
void	 openai_error_code(const char *body, size_t len, char *code,
	    size_t size);

/* Frees the tool definitions openai_request() built once. At exit. */
void	 openai_cleanup(void);

#endif
