/* turn.c: one chat turn: store the message, ask the model, run its tools
 * round by round, store the answer (DESIGN.md, request cycle 2 to 5). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <openssl/evp.h>

#include "config.h"
#include "db.h"
#include "history.h"
#include "model.h"
#include "tools.h"
#include "turn.h"

/* A conversation's title is the start of its first message: long enough
 * to recognise in a list, short enough for one line of it. */
#define TITLE_MAX_CHARS	60

/* What the turn answers when the model still wants tools after
 * CHAT_MAX_TOOL_ROUNDS rounds (DESIGN.md: a 200 that says so). */
static const char TOO_MANY_STEPS[] = "Sorry, that request took too many "
    "steps for me to finish. Could you break it into smaller ones?";

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

static cJSON *
chat_message(const char *role, const char *content)
{
	cJSON	*m;

	if ((m = cJSON_CreateObject()) == NULL)
		return NULL;
	if (cJSON_AddStringToObject(m, "role", role) == NULL ||
	    (content != NULL ?
	    cJSON_AddStringToObject(m, "content", content) :
	    cJSON_AddNullToObject(m, "content")) == NULL) {
		cJSON_Delete(m);
		return NULL;
	}
	return m;
}

/* Calls on their way back to the model: arguments that are not a JSON
 * object become "{}". A model sometimes sends arguments cut short or
 * otherwise broken (tools.c answers such a call with an error), and
 * several OpenAI-compatible servers parse every earlier call's arguments
 * and refuse the whole request when one does not parse: replayed as
 * sent, one bad call would make every later turn of the conversation
 * fail. What the model said stays as it was in messages.tool_calls.
 * 0, or -1 out of memory. */
static int
calls_for_model(cJSON *calls)
{
	cJSON	*call, *fn, *args, *parsed;
	int	 object;

	cJSON_ArrayForEach(call, calls) {
		fn = cJSON_GetObjectItemCaseSensitive(call, "function");
		args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
		if (!cJSON_IsString(args))
			continue;
		parsed = cJSON_Parse(args->valuestring);
		object = cJSON_IsObject(parsed);
		cJSON_Delete(parsed);
		if (!object && !cJSON_ReplaceItemInObjectCaseSensitive(fn,
		    "arguments", cJSON_CreateString("{}")))
			return -1;
	}
	return 0;
}

/* One stored message in OpenAI's format. */
static cJSON *
history_message(const struct hist_msg *h)
{
	static const char *const roles[] = {
	    [HIST_USER] = "user", [HIST_ASSISTANT] = "assistant",
	    [HIST_TOOL] = "tool" };
	cJSON	*m, *calls;

	if ((m = chat_message(roles[h->role], h->content)) == NULL)
		return NULL;
	if (h->tool_calls != NULL) {
		if ((calls = cJSON_Parse(h->tool_calls)) == NULL)
			goto fail;
		cJSON_AddItemToObject(m, "tool_calls", calls);
		if (calls_for_model(calls) == -1)
			goto fail;
	}
	if (h->tool_call_id != NULL && cJSON_AddStringToObject(m,
	    "tool_call_id", h->tool_call_id) == NULL)
		goto fail;
	return m;
fail:
	cJSON_Delete(m);
	return NULL;
}

/* The model's input: system prompt, the window of history (oldest
 * first), the new message, and what a resumed turn already stored. */
static cJSON *
build_messages(const struct db_turn *t, const char *message)
{
	const struct config	*cfg = config();
	cJSON			*messages, *m;
	size_t			 k, i;

	if ((messages = cJSON_CreateArray()) == NULL)
		return NULL;
	if ((m = chat_message("system", model_system_prompt())) == NULL)
		goto fail;
	cJSON_AddItemToArray(messages, m);
	k = hist_window(t->history, t->nhistory, cfg->history_messages,
	    cfg->history_tokens);
	for (i = k; i > 0; i--) {
		if ((m = history_message(&t->history[i - 1])) == NULL)
			goto fail;
		cJSON_AddItemToArray(messages, m);
	}
	if ((m = chat_message("user", message)) == NULL)
		goto fail;
	cJSON_AddItemToArray(messages, m);
	for (i = 0; i < t->nown; i++) {
		if ((m = history_message(&t->own[i])) == NULL)
			goto fail;
		cJSON_AddItemToArray(messages, m);
	}
	return messages;
fail:
	cJSON_Delete(messages);
	return NULL;
}

/* The assistant's calls in OpenAI's format, as sent back to the model
 * and stored in messages.tool_calls. */
static cJSON *
calls_json(const struct model_reply *mr)
{
	cJSON	*array, *call, *fn;
	size_t	 i;

	if ((array = cJSON_CreateArray()) == NULL)
		return NULL;
	for (i = 0; i < mr->ncalls; i++) {
		if ((call = cJSON_CreateObject()) == NULL)
			goto fail;
		cJSON_AddItemToArray(array, call);
		if (cJSON_AddStringToObject(call, "id", mr->calls[i].id) ==
		    NULL || cJSON_AddStringToObject(call, "type", "function") ==
		    NULL || (fn = cJSON_AddObjectToObject(call, "function")) ==
		    NULL || cJSON_AddStringToObject(fn, "name",
		    mr->calls[i].name) == NULL || cJSON_AddStringToObject(fn,
		    "arguments", mr->calls[i].arguments) == NULL)
			goto fail;
	}
	return array;
fail:
	cJSON_Delete(array);
	return NULL;
}

/* What one turn carries between its rounds. */
struct turn_state {
	const struct turn_request *req;
	long long		 conversation_id;
	long long		 user_message_id;
	int			 rounds_done;	/* stored by an earlier attempt */
	cJSON			*messages;	/* the model's input so far */
	const cJSON		*tools;		/* definitions offered */
	cJSON			*calls_out;	/* the reply's tool_calls */
};

/* Records a round's results: tool messages for the model, and
 * {"name", "arguments", "result"} entries for the client. */
static int
round_record(struct turn_state *ts, const struct model_reply *mr,
    struct db_tool_call *dbc, cJSON **args)
{
	cJSON	*m, *entry, *result;
	size_t	 i;

	for (i = 0; i < mr->ncalls; i++) {
		if ((m = chat_message("tool", dbc[i].result)) == NULL)
			return -1;
		cJSON_AddItemToArray(ts->messages, m);
		if (cJSON_AddStringToObject(m, "tool_call_id",
		    mr->calls[i].id) == NULL)
			return -1;
		if ((entry = cJSON_CreateObject()) == NULL)
			return -1;
		cJSON_AddItemToArray(ts->calls_out, entry);
		if (cJSON_AddStringToObject(entry, "name", mr->calls[i].name)
		    == NULL)
			return -1;
		/* Arguments that were not an object are shown as {}. */
		if (!cJSON_IsObject(args[i])) {
			cJSON_Delete(args[i]);
			args[i] = cJSON_CreateObject();
		}
		if (args[i] == NULL)
			return -1;
		cJSON_AddItemToObject(entry, "arguments", args[i]);
		args[i] = NULL;
		if ((result = cJSON_Parse(dbc[i].result)) == NULL)
			return -1;
		cJSON_AddItemToObject(entry, "result", result);
	}
	return 0;
}

/* One round: the assistant's calls and their results stored together,
 * then added to the conversation the model sees next. */
static int
run_round(struct turn_state *ts, int round, const struct model_reply *mr,
    struct chat_err *err)
{
	struct db_tool_call	*dbc;
	cJSON			**args, *calls = NULL, *m;
	char			**owned, *calls_text = NULL;
	size_t			 i, n = mr->ncalls;
	int			 rc = -1;

	dbc = calloc(n, sizeof(*dbc));
	args = calloc(n, sizeof(*args));
	owned = calloc(n, sizeof(*owned));
	if (dbc == NULL || args == NULL || owned == NULL ||
	    (calls = calls_json(mr)) == NULL ||
	    (calls_text = cJSON_PrintUnformatted(calls)) == NULL)
		goto oom;
	for (i = 0; i < n; i++)
		if (tools_prepare(&mr->calls[i], &args[i], &owned[i],
		    &dbc[i]) == -1)
			goto oom;
	if (db_round(ts->req->user_id, ts->req->idempotency_key,
	    ts->conversation_id, ts->user_message_id, round, mr->content,
	    calls_text, dbc, n, err) == -1)
		goto out;
	if ((m = chat_message("assistant", mr->content)) == NULL)
		goto oom;
	cJSON_AddItemToArray(ts->messages, m);
	cJSON_AddItemToObject(m, "tool_calls", calls);
	calls = NULL;
	if (calls_for_model(cJSON_GetObjectItemCaseSensitive(m,
	    "tool_calls")) == -1)
		goto oom;
	if (round_record(ts, mr, dbc, args) == -1)
		goto oom;
	rc = 0;
	goto out;
oom:
	err_oom(err);
out:
	for (i = 0; i < n; i++) {
		if (dbc != NULL)
			free(dbc[i].result);
		if (args != NULL)
			cJSON_Delete(args[i]);
		if (owned != NULL)
			free(owned[i]);
	}
	free(dbc);
	free(args);
	free(owned);
	cJSON_Delete(calls);
	cJSON_free(calls_text);
	return rc;
}

/* Asks the model and runs its tools until it answers in words or the
 * rounds run out; stores the answer. */
static int
converse(struct turn_state *ts, char **answer, struct chat_err *err)
{
	struct model_reply	 mr;
	int			 round, rc;

	for (round = ts->rounds_done + 1; ; round++) {
		memset(&mr, 0, sizeof(mr));
		if (model_complete(ts->messages, ts->tools, &mr, err) == -1)
			return -1;
		if (mr.ncalls == 0) {
			*answer = mr.content != NULL ? mr.content : strdup("");
			mr.content = NULL;
			model_reply_free(&mr);
			break;
		}
		if (round > config()->max_tool_rounds) {
			model_reply_free(&mr);
			*answer = strdup(TOO_MANY_STEPS);
			break;
		}
		rc = run_round(ts, round, &mr, err);
		model_reply_free(&mr);
		if (rc == -1)
			return -1;
	}
	if (*answer == NULL)
		return err_oom(err);
	return db_turn_finish(ts->req->user_id, ts->conversation_id,
	    ts->user_message_id, *answer, err);
}

static cJSON *
turn_reply(struct turn_state *ts, const char *answer)
{
	cJSON	*reply;

	if ((reply = cJSON_CreateObject()) == NULL)
		return NULL;
	if (cJSON_AddNumberToObject(reply, "conversation_id",
	    (double)ts->conversation_id) == NULL ||
	    cJSON_AddStringToObject(reply, "response", answer) == NULL) {
		cJSON_Delete(reply);
		return NULL;
	}
	cJSON_AddItemToObject(reply, "tool_calls", ts->calls_out);
	ts->calls_out = NULL;
	return reply;
}

/* The client's entry in "tool_calls" for one call an earlier attempt
 * stored: its name and arguments, and the result stored after it. */
static int
stored_call(const cJSON *call, const struct db_turn *t, cJSON *calls_out)
{
	const cJSON	*id, *fn, *name, *args;
	cJSON		*entry, *parsed;
	size_t		 i;

	id = cJSON_GetObjectItemCaseSensitive(call, "id");
	fn = cJSON_GetObjectItemCaseSensitive(call, "function");
	name = cJSON_GetObjectItemCaseSensitive(fn, "name");
	args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
	if (!cJSON_IsString(id) || !cJSON_IsString(name) ||
	    !cJSON_IsString(args) || (entry = cJSON_CreateObject()) == NULL)
		return -1;
	cJSON_AddItemToArray(calls_out, entry);
	if (cJSON_AddStringToObject(entry, "name", name->valuestring) == NULL)
		return -1;
	if (!cJSON_IsObject(parsed = cJSON_Parse(args->valuestring))) {
		cJSON_Delete(parsed);
		parsed = cJSON_CreateObject();
	}
	if (parsed == NULL)
		return -1;
	cJSON_AddItemToObject(entry, "arguments", parsed);
	for (i = 0; i < t->nown; i++)
		if (t->own[i].tool_call_id != NULL &&
		    strcmp(t->own[i].tool_call_id, id->valuestring) == 0)
			break;
	if (i == t->nown || (parsed = cJSON_Parse(t->own[i].content)) == NULL)
		return -1;
	cJSON_AddItemToObject(entry, "result", parsed);
	return 0;
}

/* Rebuilds what an earlier attempt of the turn stored: its rounds (for
 * the reply's tool_calls) and, when it finished, its answer. */
static int
stored_rounds(struct turn_state *ts, const struct db_turn *t,
    const char **answer)
{
	const struct hist_msg	*m;
	const cJSON		*call;
	cJSON			*calls;
	size_t			 i;
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
		if ((calls = cJSON_Parse(m->tool_calls)) == NULL)
			return -1;
		cJSON_ArrayForEach(call, calls)
			if ((rc = stored_call(call, t, ts->calls_out)) == -1)
				break;
		cJSON_Delete(calls);
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
	for (i = 0; ok && i < mdlen; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
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
	if (stored_rounds(ts, t, answer) == -1)
		return err_oom(err);
	return *answer != NULL;
}

/* Stores the message (or finds the turn its key names) and builds what
 * the model reads. 1 when the turn is already answered (*reply set). */
static int
turn_start(struct turn_state *ts, cJSON **reply, struct chat_err *err)
{
	const struct turn_request	*req = ts->req;
	struct db_turn			 t;
	const char			*answer = NULL;
	char				 title[TITLE_MAX_CHARS * 4 + 8];
	char				 hash[65];
	int				 rc;

	make_title(req->message, title, sizeof(title));
	if (request_hash(req, hash) == -1)
		return err_oom(err);
	if (db_turn_begin(req->user_id, req->conversation_id, title,
	    req->message, config()->history_messages, req->idempotency_key,
	    hash, &t, err) == -1)
		return -1;
	ts->conversation_id = t.conversation_id;
	ts->user_message_id = t.user_message_id;
	rc = t.prior ? turn_prior(ts, &t, hash, &answer, err) : 0;
	if (rc == 1 && (*reply = turn_reply(ts, answer)) == NULL)
		rc = err_set(err, 503, "out_of_memory", "The server is short "
		    "of memory; try again.");
	if (rc == 0 && (ts->messages = build_messages(&t,
	    req->message)) == NULL)
		rc = err_set(err, 503, "out_of_memory", "The server is short "
		    "of memory; try again.");
	db_turn_free(&t);
	return rc;
}

int
turn_run(const struct turn_request *req, cJSON **reply,
    struct chat_err *err)
{
	struct turn_state	 ts;
	char			*answer = NULL;
	int			 rc = -1, started;

	*reply = NULL;
	memset(&ts, 0, sizeof(ts));
	ts.req = req;
	if ((ts.calls_out = cJSON_CreateArray()) == NULL ||
	    (ts.tools = tools_definitions()) == NULL) {
		err_oom(err);
		goto out;
	}
	if ((started = turn_start(&ts, reply, err)) != 0) {
		rc = started == 1 ? 0 : -1;
		goto out;
	}
	if (converse(&ts, &answer, err) == 0) {
		if ((*reply = turn_reply(&ts, answer)) != NULL)
			rc = 0;
		else
			err_oom(err);
	}
	/* The stored message lets the client retry; with its key the retry
	 * resumes the turn at once instead of waiting out our lease. */
	if (rc == -1 && err->status >= 500) {
		err->conversation_id = ts.conversation_id;
		if (req->idempotency_key != NULL && ts.user_message_id != 0)
			db_turn_release(req->user_id, req->idempotency_key);
	}
out:
	free(answer);
	cJSON_Delete(ts.messages);
	cJSON_Delete(ts.calls_out);
	return rc;
}
