/* turn.c: one chat turn: store the message, ask the model, run its tools
 * round by round, store the answer (doc/request-cycle.md, steps 2 to 5). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <openssl/evp.h>

#include "bounds.h"
#include "config.h"
#include "db.h"
#include "history.h"
#include "model.h"
#include "openai.h"
#include "text.h"
#include "tools.h"
#include "transcript.h"
#include "turn.h"

/* A conversation's title is the start of its first message: long enough
 * to recognise in a list, short enough for one line of it. */
#define TITLE_MAX_CHARS	60

/* What the turn answers when the model still wants tools after
 * CHAT_MAX_TOOL_ROUNDS rounds: still a 200, which says so. */
static const char TOO_MANY_STEPS[] = "Sorry, that request took too many "
    "steps for me to finish. Could you break it into smaller ones?";

/* ...and when its next model request would be over
 * CHAT_MAX_REQUEST_BYTES even without any history. */
static const char TOO_LARGE[] = "Sorry, that request grew too large for "
    "me to send on. Could you ask for less at once?";

/* The result of the calls of a round past CHAT_MAX_TOOL_CALLS: the model
 * must get a result for every call it made, and learns to ask for less. */
static const char TOO_MANY_CALLS[] = "not run: too many tool calls at once; "
    "make at most %d in one step";

/* Copies the first line of message into title, whitespace runs made one
 * space, cut at TITLE_MAX_CHARS code points with an ellipsis. */
static void
make_title(const char *message, char *title, size_t size)
{
	const unsigned char	*p = (const unsigned char *)message;
	size_t			 o = 0, chars = 0;
	int			 space = 0;

	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	for (; *p != '\0' && *p != '\n' && o + 8 < size; p++) {
		if (*p == ' ' || *p == '\t' || *p == '\r') {
			space = 1;
			continue;
		}
		if ((*p & 0xc0) != 0x80) {	/* a code point starts */
			if (chars + space >= TITLE_MAX_CHARS) {
				memcpy(title + o, "\xe2\x80\xa6", 3);
				o += 3;
				break;
			}
			chars += 1 + space;
			if (space)
				title[o++] = ' ';
			space = 0;
		}
		title[o++] = (char)*p;
	}
	title[o] = '\0';
}

/* A tool's result as the model reads it: cut to
 * CHAT_MAX_TOOL_RESULT_BYTES (bounds.h). */
static int
add_tool_result(struct transcript *t, const char *result,
    const char *call_id)
{
	char	*cut;
	int	 rc;

	if (bounds_tool_result(result, config()->max_tool_result_bytes,
	    &cut) == -1)
		return -1;
	rc = transcript_add(t, ROLE_TOOL, cut != NULL ? cut : result,
	    call_id);
	free(cut);
	return rc;
}

/* A stored message, as the model reads it. */
static int
add_stored(struct transcript *t, const struct hist_msg *h)
{
	static const enum chat_role roles[] = {
	    [HIST_USER] = ROLE_USER, [HIST_ASSISTANT] = ROLE_ASSISTANT,
	    [HIST_TOOL] = ROLE_TOOL };
	struct model_call	*calls;
	size_t			 n;

	if (h->role == HIST_TOOL && h->content != NULL)
		return add_tool_result(t, h->content, h->tool_call_id);
	if (h->tool_calls == NULL)
		return transcript_add(t, roles[h->role], h->content,
		    h->tool_call_id);
	if (openai_calls_parse(h->tool_calls, &calls, &n) == -1)
		return -1;
	return transcript_add_calls(t, h->content, calls, n);
}

/* The model's input: system prompt, the window of history (oldest
 * first), the new message, and what a resumed turn already stored. The
 * window's length goes to *nhistory. */
static int
build_transcript(struct transcript *tr, const struct db_turn *t,
    const char *message, size_t *nhistory)
{
	const struct config	*cfg = config();
	size_t			 k, i;

	if (transcript_init(tr) == -1)
		return -1;
	k = hist_window(t->history, t->nhistory, cfg->history_messages,
	    cfg->history_tokens);
	*nhistory = k;
	for (i = k; i > 0; i--)
		if (add_stored(tr, &t->history[i - 1]) == -1)
			return -1;
	if (transcript_add(tr, ROLE_USER, message, NULL) == -1)
		return -1;
	for (i = 0; i < t->nown; i++)
		if (add_stored(tr, &t->own[i]) == -1)
			return -1;
	return 0;
}

/* What one turn carries between its rounds. */
struct turn_state {
	const struct turn_request *req;
	const struct turn_observer *observer;	/* NULL: not watched */
	int			 started;	/* TURN_START was told */
	int			 record_ended;	/* by the last statement */
	size_t			 step_told;	/* bytes of words told this step */
	int			 stop;		/* the observer asked to stop */
	long long		 conversation_id;
	long long		 user_message_id;
	int			 rounds_done;	/* stored by an earlier attempt */
	struct transcript	 transcript;	/* the model's input so far */
	size_t			 nhistory;	/* its history, after
						 * the system prompt */
	struct model_usage	 usage;		/* its calls', summed */
	cJSON			*calls_out;	/* the reply's tool_calls */
};

/* Tells the observer, if any, an event of type with the fields of ev,
 * and notes a stop it asks for. */
static void
tell(struct turn_state *ts, enum turn_event_type type, struct turn_event ev)
{
	if (ts->observer == NULL)
		return;
	ev.type = type;
	if (ts->observer->event(ts->observer->arg, &ev) == 1)
		ts->stop = 1;
}

/* Whether the turn's statements make and end the observer's live
 * record. */
static int
records(const struct turn_state *ts)
{
	return ts->observer != NULL && ts->observer->records;
}

static void
tell_start(struct turn_state *ts, int record_made)
{
	tell(ts, TURN_START, (struct turn_event){ .conversation_id =
	    ts->conversation_id, .user_message_id = ts->user_message_id,
	    .record_made = record_made });
	ts->started = 1;
}

/* A step that the model did not write now: its words told whole. */
static void
tell_text_step(struct turn_state *ts, const char *text)
{
	tell(ts, TURN_STEP_START, (struct turn_event){ 0 });
	if (*text != '\0')
		tell(ts, TURN_TEXT, (struct turn_event){ .text = text,
		    .len = strlen(text) });
	tell(ts, TURN_STEP_FINISH, (struct turn_event){ 0 });
}

/* The model's words and idle ticks, passed on to the observer as they
 * come; a streamed turn never asks the model to stop (yet). */
static int
stream_text(void *arg, const char *delta, size_t len)
{
	struct turn_state	*ts = arg;

	ts->step_told += len;
	tell(ts, TURN_TEXT, (struct turn_event){ .text = delta, .len = len });
	return ts->stop;
}

/* The words of a step that the backend did not stream (or not all of):
 * told once the reply is whole, so that a watcher always gets them. */
static void
tell_rest(struct turn_state *ts, const struct model_reply *mr)
{
	const char	*text = reply_text(mr);

	if (text != NULL && mr->text.len > ts->step_told)
		tell(ts, TURN_TEXT, (struct turn_event){ .text = text +
		    ts->step_told, .len = mr->text.len - ts->step_told });
}

static int
stream_idle(void *arg)
{
	struct turn_state	*ts = arg;

	tell(ts, TURN_IDLE, (struct turn_event){ 0 });
	return ts->stop;
}

/* The client's {"name", "arguments", "result"} entry for a call and the
 * result stored for it, appended to calls_out. */
static int
client_call(cJSON *calls_out, const struct model_call *call,
    const char *result)
{
	cJSON	*entry, *v;

	if ((entry = cJSON_CreateObject()) == NULL)
		return -1;
	cJSON_AddItemToArray(calls_out, entry);
	if (cJSON_AddStringToObject(entry, "name", call->name) == NULL ||
	    (v = text_json_parses(call_arguments(call))) == NULL)
		return -1;
	cJSON_AddItemToObject(entry, "arguments", v);
	if ((v = text_json_parses(result)) == NULL)
		return -1;
	cJSON_AddItemToObject(entry, "result", v);
	return 0;
}

/* Runs the tools of a round and stores the assistant's calls and their
 * results together, then adds them to what the model reads next. The
 * reply's calls move into the transcript. */
static int
run_round(struct turn_state *ts, int round, struct model_reply *mr,
    struct chat_err *err)
{
	struct db_tool_call	*dbc;
	struct model_call	*calls;
	char			*calls_text = NULL;
	size_t			 i, n = mr->ncalls;
	int			 rc = -1;

	const struct config	*cfg = config();
	char			 why[128];

	if ((dbc = calloc(n, sizeof(*dbc))) == NULL ||
	    (calls_text = openai_calls_text(mr->calls, n)) == NULL)
		goto oom;
	snprintf(why, sizeof(why), TOO_MANY_CALLS, cfg->max_tool_calls);
	for (i = 0; i < n; i++)
		if (tools_prepare(&mr->calls[i], &dbc[i]) == -1 ||
		    (i >= (size_t)cfg->max_tool_calls &&
		    tools_refuse(&dbc[i], why) == -1))
			goto oom;
	for (i = 0; i < n; i++)
		tell(ts, TURN_TOOL_INPUT, (struct turn_event){ .call =
		    &mr->calls[i] });
	if (db_round(ts->req->user_id, ts->req->idempotency_key,
	    ts->conversation_id, ts->user_message_id, round, reply_text(mr),
	    &mr->usage, calls_text, dbc, n, err) == -1)
		goto out;
	calls = mr->calls;
	mr->calls = NULL;
	mr->ncalls = 0;
	if (transcript_add_calls(&ts->transcript, reply_text(mr), calls,
	    n) == -1)
		goto oom;
	for (i = 0; i < n; i++) {
		if (add_tool_result(&ts->transcript, dbc[i].result,
		    calls[i].id) == -1 || client_call(ts->calls_out,
		    &calls[i], dbc[i].result) == -1)
			goto oom;
		tell(ts, TURN_TOOL_OUTPUT, (struct turn_event){ .call_id =
		    calls[i].id, .result = dbc[i].result });
	}
	rc = 0;
	goto out;
oom:
	err_oom(err);
out:
	for (i = 0; dbc != NULL && i < n; i++)
		tools_call_free(&dbc[i]);
	free(dbc);
	cJSON_free(calls_text);
	return rc;
}

/* At least the bytes of the request for t: every byte of text may take
 * six once escaped (\u00XX), and each message and call some framing. */
static size_t
request_bytes_at_most(const struct transcript *t)
{
	const struct transcript_msg	*m;
	size_t				 i, k, n;

	n = openai_request_base_bytes(config()->model, 1);
	for (i = 0; i < t->n; i++) {
		m = &t->msgs[i];
		n += 64 + 6 * ((m->content != NULL ? strlen(m->content) : 0) +
		    (m->tool_call_id != NULL ? strlen(m->tool_call_id) : 0));
		for (k = 0; k < m->ncalls; k++)
			n += 96 + 6 * (strlen(m->calls[k].id) +
			    strlen(m->calls[k].name) +
			    strlen(call_arguments(&m->calls[k])));
	}
	return n;
}

/* Leaves out the oldest history until the next model request fits
 * CHAT_MAX_REQUEST_BYTES (bounds.h). 0 when it fits, 1 when it cannot
 * even without history, -1 on ENOMEM. */
static int
fit_request(struct turn_state *ts)
{
	struct transcript	*t = &ts->transcript;
	size_t			*bytes, i;
	unsigned char		*is_tool;
	long			 drop = -1;

	/* Nearly every request is far below the bound: an upper bound of
	 * its size, cheap to take, spares the exact count. */
	if (request_bytes_at_most(t) <= config()->max_request_bytes)
		return 0;
	bytes = calloc(t->n, sizeof(*bytes));
	is_tool = calloc(t->n, 1);
	if (bytes != NULL && is_tool != NULL) {
		for (i = 0; i < t->n; i++) {
			bytes[i] = openai_message_bytes(&t->msgs[i]);
			is_tool[i] = t->msgs[i].role == ROLE_TOOL;
		}
		drop = bounds_history_drop(bytes, is_tool, t->n, 1,
		    ts->nhistory, openai_request_base_bytes(config()->model, 1),
		    config()->max_request_bytes);
	}
	free(bytes);
	free(is_tool);
	if (bytes == NULL || is_tool == NULL)
		return -1;
	if (drop == -1)
		return 1;
	transcript_drop(t, 1, (size_t)drop);
	ts->nhistory -= (size_t)drop;
	return 0;
}

/* Asks the model and runs its tools until it answers in words or the
 * rounds run out; stores the answer. */
static int
converse(struct turn_state *ts, char **answer, struct chat_err *err)
{
	struct model_stream	 stream = { stream_text, stream_idle, ts };
	struct model_reply	 mr;
	struct model_usage	 used;	/* the answering call's */
	int			 open;	/* the live record, after it */
	int			 round, rc;

	usage_init(&used);
	for (round = ts->rounds_done + 1; ; round++) {
		if ((rc = fit_request(ts)) != 0) {
			if (rc == -1)
				return err_oom(err);
			tell_text_step(ts, TOO_LARGE);
			*answer = strdup(TOO_LARGE);
			break;
		}
		tell(ts, TURN_STEP_START, (struct turn_event){ 0 });
		ts->step_told = 0;
		if (model_complete(&ts->transcript, 1, ts->observer != NULL ?
		    &stream : NULL, &mr, err) == -1)
			return -1;
		usage_add(&ts->usage, &mr.usage);
		tell_rest(ts, &mr);
		/* Stopped: the words so far are the answer, no call runs. */
		if (mr.ncalls == 0 || mr.stopped || ts->stop) {
			used = mr.usage;
			if ((*answer = reply_take_text(&mr)) == NULL)
				*answer = strdup("");
			reply_free(&mr);
			tell(ts, TURN_STEP_FINISH, (struct turn_event){ 0 });
			break;
		}
		if (round > config()->max_tool_rounds) {
			/* Its tokens were spent all the same. */
			used = mr.usage;
			reply_free(&mr);
			tell(ts, TURN_STEP_FINISH, (struct turn_event){ 0 });
			/* The answer is ours, not the model's: a step
			 * of its own, so that it stands apart from any
			 * words the model sent with the calls. */
			tell_text_step(ts, TOO_MANY_STEPS);
			*answer = strdup(TOO_MANY_STEPS);
			break;
		}
		rc = run_round(ts, round, &mr, err);
		reply_free(&mr);
		if (rc == -1)
			return -1;
		tell(ts, TURN_STEP_FINISH, (struct turn_event){ 0 });
		if (ts->stop) {		/* asked between two model calls */
			*answer = strdup("");
			break;
		}
	}
	if (*answer == NULL)
		return err_oom(err);
	if (db_turn_finish(ts->req->user_id, ts->conversation_id,
	    ts->user_message_id, *answer, &used, records(ts), &open,
	    err) == -1)
		return -1;
	ts->record_ended = records(ts) && !open;
	return 0;
}

/* "usage": {"prompt_tokens", "completion_tokens", "total_tokens"}: what
 * the turn's model calls reported, 0 where none did. */
static int
add_usage(cJSON *reply, const struct model_usage *u)
{
	cJSON		*o;
	long long	 prompt = u->prompt_tokens > 0 ? u->prompt_tokens : 0;
	long long	 completion = u->completion_tokens > 0 ?
	    u->completion_tokens : 0;

	if ((o = cJSON_AddObjectToObject(reply, "usage")) == NULL ||
	    text_json_add_int(o, "prompt_tokens", prompt) == NULL ||
	    text_json_add_int(o, "completion_tokens", completion) == NULL ||
	    text_json_add_int(o, "total_tokens", prompt + completion) ==
	    NULL)
		return -1;
	return 0;
}

static cJSON *
turn_reply(struct turn_state *ts, const char *answer)
{
	cJSON	*reply;

	if ((reply = cJSON_CreateObject()) == NULL)
		return NULL;
	if (text_json_add_int(reply, "conversation_id",
	    ts->conversation_id) == NULL ||
	    cJSON_AddStringToObject(reply, "response", answer) == NULL) {
		cJSON_Delete(reply);
		return NULL;
	}
	cJSON_AddItemToObject(reply, "tool_calls", ts->calls_out);
	ts->calls_out = NULL;
	if (add_usage(reply, &ts->usage) == -1) {
		cJSON_Delete(reply);
		return NULL;
	}
	return reply;
}

/* The result an earlier attempt stored for the call with id call_id. */
static const char *
stored_result(const struct db_turn *t, const char *call_id)
{
	size_t	 i;

	for (i = 0; i < t->nown; i++)
		if (t->own[i].tool_call_id != NULL &&
		    strcmp(t->own[i].tool_call_id, call_id) == 0)
			return t->own[i].content;
	return NULL;
}

/* Rebuilds what an earlier attempt of the turn stored: its rounds (for
 * the reply's tool_calls) and, when it finished, its answer. */
static int
stored_rounds(struct turn_state *ts, const struct db_turn *t,
    const char **answer)
{
	const struct hist_msg	*m;
	struct model_call	*calls;
	size_t			 i, k, n;
	int			 rc = 0;

	*answer = NULL;
	for (i = 0; i < t->nown && rc == 0; i++) {
		m = &t->own[i];
		if (m->role != HIST_ASSISTANT)
			continue;
		if (m->tool_calls == NULL) {
			*answer = m->content != NULL ? m->content : "";
			continue;
		}
		ts->rounds_done++;
		if (openai_calls_parse(m->tool_calls, &calls, &n) == -1)
			return -1;
		tell(ts, TURN_STEP_START, (struct turn_event){ 0 });
		if (m->content != NULL && *m->content != '\0')
			tell(ts, TURN_TEXT, (struct turn_event){ .text =
			    m->content, .len = strlen(m->content) });
		for (k = 0; k < n; k++)
			tell(ts, TURN_TOOL_INPUT, (struct turn_event){ .call =
			    &calls[k] });
		for (k = 0; k < n && rc == 0; k++) {
			rc = client_call(ts->calls_out, &calls[k],
			    stored_result(t, calls[k].id));
			tell(ts, TURN_TOOL_OUTPUT, (struct turn_event){
			    .call_id = calls[k].id,
			    .result = stored_result(t, calls[k].id) });
		}
		tell(ts, TURN_STEP_FINISH, (struct turn_event){ 0 });
		calls_free(calls, n);
	}
	return rc;
}

/* What a retry is checked against: conversation and message, hashed. */
static int
request_hash(const struct turn_request *req, char hex[65])
{
	unsigned char	 md[EVP_MAX_MD_SIZE];
	unsigned int	 mdlen = 0, i;
	char		 conv[24];
	EVP_MD_CTX	*ctx;
	int		 ok;

	snprintf(conv, sizeof(conv), "%lld\n", req->conversation_id);
	if ((ctx = EVP_MD_CTX_new()) == NULL)
		return -1;
	ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
	    EVP_DigestUpdate(ctx, conv, strlen(conv)) &&
	    EVP_DigestUpdate(ctx, req->message, strlen(req->message)) &&
	    EVP_DigestFinal_ex(ctx, md, &mdlen) && mdlen == 32;
	EVP_MD_CTX_free(ctx);
	for (i = 0; ok && i < mdlen; i++) {
		hex[2 * i] = "0123456789abcdef"[md[i] >> 4];
		hex[2 * i + 1] = "0123456789abcdef"[md[i] & 15];
	}
	hex[2 * mdlen] = '\0';
	return ok ? 0 : -1;
}

/* A key used before: the same request gets the first turn's answer (or
 * finishes it), another request is refused. Fills *t for the resumed
 * turn and returns 0, 1 when *answer (pointing into *t) already is the
 * turn's answer, -1 with err. */
static int
turn_prior(struct turn_state *ts, struct db_turn *t, const char *hash,
    const char **answer, struct chat_err *err)
{
	const struct turn_request	*req = ts->req;
	int				 done = t->done;

	if (strcmp(t->request_hash, hash) != 0)
		return err_set(err, 409, "idempotency_key_reused", "This "
		    "Idempotency-Key was used with another request.");
	if (t->running && !done)
		return err_set(err, 409, "turn_in_progress", "This turn is "
		    "still being answered; retry in a few seconds.");
	db_turn_free(t);
	if (db_turn_load(req->user_id, req->idempotency_key,
	    config()->history_messages, !done, t, err) == -1)
		return -1;
	ts->conversation_id = t->conversation_id;
	ts->user_message_id = t->user_message_id;
	/* What the earlier attempts' calls used is the turn's too. */
	usage_add(&ts->usage, &t->own_usage);
	tell_start(ts, 0);
	if (stored_rounds(ts, t, answer) == -1)
		return err_oom(err);
	if (*answer != NULL)
		tell_text_step(ts, *answer);
	return *answer != NULL;
}

/* Stores the message (or finds the turn its key names) and builds what
 * the model reads. 1 when the turn is already answered (*reply set). */
static int
turn_start(struct turn_state *ts, cJSON **reply, struct chat_err *err)
{
	const struct turn_request	*req = ts->req;
	struct db_turn			 t;
	struct db_limits		 limits;
	const char			*answer = NULL;
	char				 title[TITLE_MAX_CHARS * 4 + 8];
	char				 hash[65];
	int				 rc;

	make_title(req->message, title, sizeof(title));
	/* Only a keyed turn is checked against a retry. */
	if (req->idempotency_key != NULL && request_hash(req, hash) == -1)
		return err_oom(err);
	db_limits_of_config(&limits);
	if (db_turn_begin(req->user_id, req->conversation_id, title,
	    req->message, config()->history_messages, req->idempotency_key,
	    req->idempotency_key != NULL ? hash : NULL, &limits, records(ts),
	    &t, err) == -1)
		return -1;
	ts->conversation_id = t.conversation_id;
	ts->user_message_id = t.user_message_id;
	if (!t.prior)
		tell_start(ts, records(ts));
	rc = t.prior ? turn_prior(ts, &t, hash, &answer, err) : 0;
	if (rc == 1 && (*reply = turn_reply(ts, answer)) == NULL)
		rc = err_oom(err);
	if (rc == 0 && build_transcript(&ts->transcript, &t,
	    req->message, &ts->nhistory) == -1)
		rc = err_oom(err);
	db_turn_free(&t);
	return rc;
}

int
turn_run(const struct turn_request *req, const struct turn_observer *observer,
    cJSON **reply, struct chat_err *err)
{
	struct turn_state	 ts;
	char			*answer = NULL;
	int			 rc = -1, started, conversed = 0;

	*reply = NULL;
	memset(&ts, 0, sizeof(ts));
	ts.req = req;
	ts.observer = observer;
	usage_init(&ts.usage);
	if ((ts.calls_out = cJSON_CreateArray()) == NULL) {
		err_oom(err);
		goto out;
	}
	if ((started = turn_start(&ts, reply, err)) != 0) {
		rc = started == 1 ? 0 : -1;
		goto out;
	}
	conversed = 1;
	if (converse(&ts, &answer, err) == 0) {
		if ((*reply = turn_reply(&ts, answer)) != NULL)
			rc = 0;
		else
			err_oom(err);
	}
out:
	/* The stored message lets the client retry; with its key the retry
	 * resumes the turn at once instead of waiting out our lease. Any
	 * failed turn stops counting against the user's running turns. */
	if (rc == -1 && conversed && err->status >= 500)
		err->conversation_id = ts.conversation_id;
	if (rc == -1 && conversed && ts.user_message_id != 0)
		db_turn_release(req->user_id, err->status >= 500 ?
		    req->idempotency_key : NULL, ts.user_message_id);
	if (ts.started) {
		if (rc == -1)
			tell(&ts, TURN_ERROR, (struct turn_event){ .err = err });
		tell(&ts, TURN_FINISH, (struct turn_event){
		    .record_ended = rc == 0 && ts.record_ended });
	}
	free(answer);
	transcript_free(&ts.transcript);
	cJSON_Delete(ts.calls_out);
	return rc;
}
