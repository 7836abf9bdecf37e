/* uistream.c: turn events as the AI SDK's UI message stream (uistream.h).
 *
 * The parts, in order: start (with the conversation and user message
 * ids as messageMetadata); each step as start-step, its text (text-start,
 * text-delta..., text-end, one id), its tool calls (tool-input-available,
 * then tool-output-available once the round committed), finish-step;
 * an error part when the turn failed after its start; finish; [DONE].
 * The client's parser is strict: no member it does not know. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "clock.h"
#include "text.h"
#include "uistream.h"

void
uistream_init(struct uistream *u,
    int (*write)(void *arg, const char *p, size_t len), void *arg)
{
	memset(u, 0, sizeof(*u));
	u->write = write;
	u->arg = arg;
	u->next_id = 1;
	u->last_write_ms = clock_ms();
	/* An event is a part, and a part at most a model reply's words or
	 * a tool's result, both capped far below this. */
	u->event = (struct buf)BUF_INIT(8UL * 1024 * 1024);
}

void
uistream_free(struct uistream *u)
{
	buf_free(&u->event);
}

static void
emit(struct uistream *u, const char *p, size_t len)
{
	if (u->gone)
		return;
	if (u->write(u->arg, p, len) == -1)
		u->gone = 1;
	u->last_write_ms = clock_ms();
}

/* Starts an event in u->event: "id: N" and the data line's start. */
static int
event_start(struct uistream *u)
{
	char	 head[48];
	int	 n;

	buf_reset(&u->event);
	n = snprintf(head, sizeof(head), "id: %lu\ndata: ", u->next_id++);
	return buf_add(&u->event, head, (size_t)n);
}

/* Ends the event begun with event_start() and sends it, in one write. */
static void
event_send(struct uistream *u, int ok)
{
	if (ok && buf_add(&u->event, "\n\n", 2) == 0)
		emit(u, u->event.data, u->event.len);
}

/* One event: "id: N", the data line, a blank line. data holds no line
 * break: cJSON escapes them inside strings and prints none of its own. */
static void
emit_data(struct uistream *u, const char *data)
{
	event_send(u, event_start(u) == 0 && buf_adds(&u->event, data) == 0);
}

/* Prints and sends a part, which it frees. Out of memory, the part is
 * lost: the turn is stored all the same, and a client that misses a part
 * can read the conversation back. */
static void
emit_part(struct uistream *u, cJSON *part)
{
	char	*text;

	if (part != NULL && (text = cJSON_PrintUnformatted(part)) != NULL) {
		emit_data(u, text);
		cJSON_free(text);
	}
	cJSON_Delete(part);
}

static cJSON *
part(const char *type)
{
	cJSON	*p;

	if ((p = cJSON_CreateObject()) != NULL &&
	    cJSON_AddStringToObject(p, "type", type) == NULL) {
		cJSON_Delete(p);
		p = NULL;
	}
	return p;
}

/* The id of the current step's text part. */
static cJSON *
text_part(struct uistream *u, const char *type)
{
	char	 id[24];
	cJSON	*p;

	snprintf(id, sizeof(id), "text-%u", u->steps);
	if ((p = part(type)) != NULL &&
	    cJSON_AddStringToObject(p, "id", id) == NULL) {
		cJSON_Delete(p);
		p = NULL;
	}
	return p;
}

/* A text-delta, the part a stream has most of (one for each piece of
 * the model's words), written as it is instead of built as a cJSON
 * tree: the part as emit_part() would print it. */
static void
text(struct uistream *u, const char *delta, size_t len)
{
	char	 head[64];
	int	 n;

	if (len == 0)
		return;
	if (!u->text_open) {
		emit_part(u, text_part(u, "text-start"));
		u->text_open = 1;
	}
	n = snprintf(head, sizeof(head), "{\"type\":\"text-delta\","
	    "\"id\":\"text-%u\",\"delta\":", u->steps);
	event_send(u, event_start(u) == 0 &&
	    buf_add(&u->event, head, (size_t)n) == 0 &&
	    text_json_string(&u->event, delta, len) == 0 &&
	    buf_add(&u->event, "}", 1) == 0);
}

static void
end_text(struct uistream *u)
{
	if (u->text_open)
		emit_part(u, text_part(u, "text-end"));
	u->text_open = 0;
}

static void
end_step(struct uistream *u)
{
	end_text(u);
	if (u->step_open)
		emit_part(u, part("finish-step"));
	u->step_open = 0;
}

static void
start(struct uistream *u, const struct turn_event *ev)
{
	cJSON	*p, *meta;

	if ((p = part("start")) == NULL ||
	    (meta = cJSON_AddObjectToObject(p, "messageMetadata")) == NULL ||
	    cJSON_AddNumberToObject(meta, "conversation_id",
	    (double)ev->conversation_id) == NULL ||
	    cJSON_AddNumberToObject(meta, "user_message_id",
	    (double)ev->user_message_id) == NULL) {
		cJSON_Delete(p);
		p = NULL;
	}
	emit_part(u, p);
}

/* A JSON text as a member of p; the arguments and results we pass on
 * are objects or arrays we wrote, or checked, ourselves. */
static void
add_json(cJSON *p, const char *name, const char *json)
{
	cJSON	*v;

	if ((v = text_json_parses(json)) == NULL)
		v = cJSON_CreateObject();
	if (v != NULL)
		cJSON_AddItemToObject(p, name, v);
}

static void
tool_input(struct uistream *u, const struct model_call *call)
{
	cJSON	*p;

	end_text(u);
	if ((p = part("tool-input-available")) != NULL &&
	    cJSON_AddStringToObject(p, "toolCallId", call->id) != NULL &&
	    cJSON_AddStringToObject(p, "toolName", call->name) != NULL)
		add_json(p, "input", call_arguments(call));
	emit_part(u, p);
}

static void
tool_output(struct uistream *u, const char *call_id, const char *result)
{
	cJSON	*p;

	if ((p = part("tool-output-available")) != NULL &&
	    cJSON_AddStringToObject(p, "toolCallId", call_id) != NULL)
		add_json(p, "output", result);
	emit_part(u, p);
}

/* The error as the client would have had it without a stream, so that
 * it can retry with its Idempotency-Key. */
static void
error(struct uistream *u, const struct chat_err *err)
{
	cJSON	*p;
	char	*body;

	end_step(u);
	if ((body = err_json(err)) == NULL)
		return;
	if ((p = part("error")) != NULL &&
	    cJSON_AddStringToObject(p, "errorText", body) == NULL) {
		cJSON_Delete(p);
		p = NULL;
	}
	cJSON_free(body);
	emit_part(u, p);
}

void
uistream_event(struct uistream *u, const struct turn_event *ev)
{
	switch (ev->type) {
	case TURN_START:
		start(u, ev);
		break;
	case TURN_STEP_START:
		end_step(u);
		u->steps++;
		u->step_open = 1;
		emit_part(u, part("start-step"));
		break;
	case TURN_TEXT:
		text(u, ev->text, ev->len);
		break;
	case TURN_TOOL_INPUT:
		tool_input(u, ev->call);
		break;
	case TURN_TOOL_OUTPUT:
		tool_output(u, ev->call_id, ev->result);
		break;
	case TURN_STEP_FINISH:
		end_step(u);
		break;
	case TURN_IDLE:
		if (clock_ms() - u->last_write_ms >= UISTREAM_PING_MS)
			emit(u, ": ping\n\n", 8);
		break;
	case TURN_ERROR:
		error(u, ev->err);
		break;
	case TURN_FINISH:
		end_step(u);
		emit_part(u, part("finish"));
		emit_data(u, "[DONE]");
		break;
	}
}
