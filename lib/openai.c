/* openai.c: OpenAI's chat-completions format (openai.h): requests from
 * transcripts, replies (whole or streamed) into struct model_reply, the
 * tools array, and stored tool_calls. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "openai.h"
#include "text.h"
#include "tools.h"

/* The tool definitions, built once from tools.h's table and shared, read
 * only, by the worker threads; the lock covers the building, which a
 * failure (ENOMEM) lets a later call try again. */
static cJSON		*definitions;
static pthread_mutex_t	 definitions_lock = PTHREAD_MUTEX_INITIALIZER;

static cJSON *
build_definitions(void)
{
	cJSON	*array, *tool, *fn, *params;
	size_t	 i;

	if ((array = cJSON_CreateArray()) == NULL)
		return NULL;
	for (i = 0; i < ntools; i++) {
		if ((tool = cJSON_CreateObject()) == NULL)
			goto fail;
		cJSON_AddItemToArray(array, tool);
		if (cJSON_AddStringToObject(tool, "type", "function") == NULL ||
		    (fn = cJSON_AddObjectToObject(tool, "function")) == NULL ||
		    cJSON_AddStringToObject(fn, "name", tools[i].name) ==
		    NULL || cJSON_AddStringToObject(fn, "description",
		    tools[i].description) == NULL ||
		    (params = cJSON_Parse(tools[i].input_schema)) == NULL)
			goto fail;
		cJSON_AddItemToObject(fn, "parameters", params);
	}
	return array;
fail:
	cJSON_Delete(array);
	return NULL;
}

/* Their printed size, taken once as they are built. */
static size_t		 definitions_bytes;

static const cJSON *
tool_definitions(void)
{
	const cJSON	*d;
	char		*text;

	pthread_mutex_lock(&definitions_lock);
	if (definitions == NULL && (definitions = build_definitions()) !=
	    NULL) {
		if ((text = cJSON_PrintUnformatted(definitions)) == NULL) {
			cJSON_Delete(definitions);
			definitions = NULL;
		} else {
			definitions_bytes = strlen(text);
			cJSON_free(text);
		}
	}
	d = definitions;
	pthread_mutex_unlock(&definitions_lock);
	return d;
}

void
openai_cleanup(void)
{
	cJSON_Delete(definitions);
	definitions = NULL;
}

/* A string member pointing into memory that outlives the request body
 * (the transcript, a static): nothing copied before it is printed. */
static int
add_ref(cJSON *o, const char *name, const char *s)
{
	cJSON	*v;

	v = s != NULL ? cJSON_CreateStringReference(s) : cJSON_CreateNull();
	if (v == NULL)
		return -1;
	cJSON_AddItemToObject(o, name, v);
	return 0;
}

/* calls as a "tool_calls" array; arguments(call) picks their text. */
static cJSON *
calls_array(const struct model_call *calls, size_t n,
    const char *(*arguments)(const struct model_call *))
{
	cJSON	*array, *call, *fn;
	size_t	 i;

	if ((array = cJSON_CreateArray()) == NULL)
		return NULL;
	for (i = 0; i < n; i++) {
		if ((call = cJSON_CreateObject()) == NULL)
			goto fail;
		cJSON_AddItemToArray(array, call);
		if (add_ref(call, "id", calls[i].id) == -1 ||
		    add_ref(call, "type", "function") == -1 ||
		    (fn = cJSON_AddObjectToObject(call, "function")) == NULL ||
		    add_ref(fn, "name", calls[i].name) == -1 ||
		    add_ref(fn, "arguments", arguments(&calls[i])) == -1)
			goto fail;
	}
	return array;
fail:
	cJSON_Delete(array);
	return NULL;
}

static const char *
sent_arguments(const struct model_call *c)
{
	return c->arguments.data != NULL ? c->arguments.data : "";
}

static cJSON *
message_json(const struct transcript_msg *m)
{
	cJSON	*o, *calls;

	if ((o = cJSON_CreateObject()) == NULL)
		return NULL;
	if (add_ref(o, "role", transcript_role_name(m->role)) == -1 ||
	    add_ref(o, "content", m->content) == -1)
		goto fail;
	if (m->ncalls > 0) {
		if ((calls = calls_array(m->calls, m->ncalls,
		    call_arguments)) == NULL)
			goto fail;
		cJSON_AddItemToObject(o, "tool_calls", calls);
	}
	if (m->tool_call_id != NULL &&
	    add_ref(o, "tool_call_id", m->tool_call_id) == -1)
		goto fail;
	return o;
fail:
	cJSON_Delete(o);
	return NULL;
}

/* "stream": true, and the usage chunk that OpenAI sends last only when
 * asked: a streamed reply then carries what a whole one does. */
static int
add_stream(cJSON *body)
{
	cJSON	*options;

	if (cJSON_AddTrueToObject(body, "stream") == NULL ||
	    (options = cJSON_AddObjectToObject(body, "stream_options")) ==
	    NULL || cJSON_AddTrueToObject(options, "include_usage") == NULL)
		return -1;
	return 0;
}

char *
openai_request(const struct transcript *t, const char *model,
    int offer_tools, int stream)
{
	const cJSON	*defs = NULL;
	cJSON		*body, *messages, *m, *ref;
	char		*text = NULL;
	size_t		 i;

	if (offer_tools && ntools > 0 && (defs = tool_definitions()) == NULL)
		return NULL;
	if ((body = cJSON_CreateObject()) == NULL)
		return NULL;
	if (add_ref(body, "model", model) == -1 ||
	    (messages = cJSON_AddArrayToObject(body, "messages")) == NULL)
		goto out;
	for (i = 0; i < t->n; i++) {
		if ((m = message_json(&t->msgs[i])) == NULL)
			goto out;
		cJSON_AddItemToArray(messages, m);
	}
	if (defs != NULL) {
		/* Printed in place: deleting the body leaves them alone. */
		if ((ref = cJSON_CreateArrayReference(defs->child)) == NULL)
			goto out;
		cJSON_AddItemToObject(body, "tools", ref);
	}
	if (stream && add_stream(body) == -1)
		goto out;
	text = cJSON_PrintUnformatted(body);
out:
	cJSON_Delete(body);
	return text;
}

/* Bytes s takes printed as a JSON string by cJSON, quotes included;
 * NULL prints as null. */
static size_t
string_bytes(const char *s)
{
	const unsigned char	*p;
	size_t			 n = 2;

	if (s == NULL)
		return 4;
	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\' || *p == '\b' || *p == '\f' ||
		    *p == '\n' || *p == '\r' || *p == '\t')
			n += 2;
		else if (*p < 0x20)
			n += 6;		/* \u00XX */
		else
			n++;
	}
	return n;
}

/* {"model":M,"messages":[...],"tools":T,"stream":true,
 * "stream_options":{"include_usage":true}}: the stream options are
 * counted whether asked for or not, a few bytes on the safe side. */
size_t
openai_request_base_bytes(const char *model, int offer_tools)
{
	size_t	 n = sizeof("{\"model\":,\"messages\":[]}") - 1 +
	    string_bytes(model) + sizeof(",\"stream\":true,\"stream_options\":"
	    "{\"include_usage\":true}") - 1;

	if (offer_tools && ntools > 0 && tool_definitions() != NULL)
		n += sizeof(",\"tools\":") - 1 + definitions_bytes;
	return n;
}

/* {"role":R,"content":C,"tool_calls":[{"id":I,"type":"function",
 * "function":{"name":N,"arguments":A}},...],"tool_call_id":T}, and the
 * comma before it. */
size_t
openai_message_bytes(const struct transcript_msg *m)
{
	size_t	 i, n = 1 + sizeof("{\"role\":,\"content\":}") - 1 +
	    string_bytes(transcript_role_name(m->role)) +
	    string_bytes(m->content);

	if (m->ncalls > 0)
		n += sizeof(",\"tool_calls\":[]") - 1 + m->ncalls - 1;
	for (i = 0; i < m->ncalls; i++)
		n += sizeof("{\"id\":,\"type\":\"function\",\"function\":"
		    "{\"name\":,\"arguments\":}}") - 1 +
		    string_bytes(m->calls[i].id) +
		    string_bytes(m->calls[i].name) +
		    string_bytes(call_arguments(&m->calls[i]));
	if (m->tool_call_id != NULL)
		n += sizeof(",\"tool_call_id\":") - 1 +
		    string_bytes(m->tool_call_id);
	return n;
}

char *
openai_calls_text(const struct model_call *calls, size_t n)
{
	cJSON	*array;
	char	*text;

	if ((array = calls_array(calls, n, sent_arguments)) == NULL)
		return NULL;
	text = cJSON_PrintUnformatted(array);
	cJSON_Delete(array);
	return text;
}

/* A string the database and the client can take: PostgreSQL refuses
 * text that is not UTF-8, and a bad byte would turn the turn into a 503. */
static int
text_ok(const cJSON *s)
{
	return cJSON_IsString(s) && text_utf8_valid(s->valuestring,
	    strlen(s->valuestring));
}

/* One call: {id, type: "function", function: {name, arguments}}, where
 * arguments is JSON text; whether it parses is tools.c's concern, since
 * a model that sends bad arguments is told so and may recover. */
static int
parse_call(const cJSON *call, size_t index, struct model_reply *out)
{
	const cJSON	*id, *type, *fn, *name, *args;

	id = cJSON_GetObjectItemCaseSensitive(call, "id");
	type = cJSON_GetObjectItemCaseSensitive(call, "type");
	fn = cJSON_GetObjectItemCaseSensitive(call, "function");
	name = cJSON_GetObjectItemCaseSensitive(fn, "name");
	args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
	if (!cJSON_IsObject(call) || !cJSON_IsObject(fn) || !text_ok(id) ||
	    !text_ok(name) || !text_ok(args))
		return -1;
	if (type != NULL && (!cJSON_IsString(type) ||
	    strcmp(type->valuestring, "function") != 0))
		return -1;
	return reply_add_call(out, index, id->valuestring, name->valuestring,
	    args->valuestring, strlen(args->valuestring));
}

static int
parse_calls(const cJSON *calls, struct model_reply *out)
{
	const cJSON	*call;
	size_t		 i = 0;

	if (calls == NULL || cJSON_IsNull(calls))
		return 0;
	if (!cJSON_IsArray(calls) || cJSON_GetArraySize(calls) >
	    REPLY_MAX_CALLS)
		return -1;
	cJSON_ArrayForEach(call, calls)
		if (parse_call(call, i++, out) == -1)
			return -1;
	return reply_check(out);
}

/* content: a string, or null/absent (a reply made of tool calls). A
 * refusal stands in for the content it replaces. */
static int
parse_content(const cJSON *message, struct model_reply *out)
{
	const cJSON	*content, *refusal;

	content = cJSON_GetObjectItemCaseSensitive(message, "content");
	refusal = cJSON_GetObjectItemCaseSensitive(message, "refusal");
	if ((content == NULL || cJSON_IsNull(content)) && text_ok(refusal))
		content = refusal;
	if (content == NULL || cJSON_IsNull(content))
		return 0;
	if (!text_ok(content))
		return -1;
	return reply_add_text(out, content->valuestring,
	    strlen(content->valuestring));
}

/* A token count as "usage" gives it: a whole number from 0 up; -1 for
 * anything else, which we then treat as not reported (a count is never
 * worth failing a turn for). */
static long long
token_count(const cJSON *n)
{
	if (!cJSON_IsNumber(n) || n->valuedouble < 0 ||
	    n->valuedouble > 1e15 ||
	    n->valuedouble != (double)(long long)n->valuedouble)
		return -1;
	return (long long)n->valuedouble;
}

/* "usage": {"prompt_tokens", "completion_tokens",
 * "prompt_tokens_details": {"cached_tokens"}}, each part optional; an
 * absent or null usage leaves u as it was. */
static void
parse_usage(const cJSON *usage, struct model_usage *u)
{
	if (!cJSON_IsObject(usage))
		return;
	u->prompt_tokens = token_count(cJSON_GetObjectItemCaseSensitive(usage,
	    "prompt_tokens"));
	u->completion_tokens = token_count(cJSON_GetObjectItemCaseSensitive(
	    usage, "completion_tokens"));
	u->cached_tokens = token_count(cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens_details"),
	    "cached_tokens"));
}

int
openai_parse_reply(const char *body, size_t len, struct model_reply *out)
{
	cJSON		*root;
	const cJSON	*message;
	int		 rc = -1;

	reply_init(out);
	if ((root = text_json_parse(body, len)) == NULL)
		return -1;
	message = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(
	    cJSON_GetObjectItemCaseSensitive(root, "choices"), 0), "message");
	if (cJSON_IsObject(root) && cJSON_IsObject(message) &&
	    parse_content(message, out) == 0 &&
	    parse_calls(cJSON_GetObjectItemCaseSensitive(message,
	    "tool_calls"), out) == 0 &&
	    (reply_text(out) != NULL || out->ncalls > 0))
		rc = 0;
	if (rc == -1)
		reply_free(out);
	else
		parse_usage(cJSON_GetObjectItemCaseSensitive(root, "usage"),
		    &out->usage);
	cJSON_Delete(root);
	return rc;
}

/* A member that may be absent or null, or else must be a valid string. */
static int
text_or_null(const cJSON *s)
{
	return s == NULL || cJSON_IsNull(s) || text_ok(s);
}

/* A number that names a call: integral, 0 to REPLY_MAX_CALLS - 1. */
static int
call_index(const cJSON *index, size_t *i)
{
	if (!cJSON_IsNumber(index) || index->valuedouble < 0 ||
	    index->valuedouble >= REPLY_MAX_CALLS ||
	    index->valuedouble != (double)(size_t)index->valuedouble)
		return -1;
	*i = (size_t)index->valuedouble;
	return 0;
}

/* One piece of a streamed call: {index, id?, type?, function: {name?,
 * arguments?}}. OpenAI sends id, type and name in a call's first piece
 * (arguments ""), then only fragments of arguments; a call whose first
 * piece lacks its id or name could never be answered, so it is
 * refused at once rather than when the stream ends. */
static int
parse_call_piece(const cJSON *call, struct model_reply *out)
{
	const cJSON	*id, *type, *fn, *name, *args;
	size_t		 i;

	id = cJSON_GetObjectItemCaseSensitive(call, "id");
	type = cJSON_GetObjectItemCaseSensitive(call, "type");
	fn = cJSON_GetObjectItemCaseSensitive(call, "function");
	name = cJSON_GetObjectItemCaseSensitive(fn, "name");
	args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
	if (!cJSON_IsObject(call) || call_index(
	    cJSON_GetObjectItemCaseSensitive(call, "index"), &i) == -1 ||
	    (fn != NULL && !cJSON_IsNull(fn) && !cJSON_IsObject(fn)) ||
	    !text_or_null(id) || !text_or_null(name) || !text_or_null(args))
		return -1;
	if (type != NULL && !cJSON_IsNull(type) && (!cJSON_IsString(type) ||
	    strcmp(type->valuestring, "function") != 0))
		return -1;
	if (i == out->ncalls && (!text_ok(id) || *id->valuestring == '\0' ||
	    !text_ok(name) || *name->valuestring == '\0'))
		return -1;
	return reply_add_call(out, i, text_ok(id) ? id->valuestring : NULL,
	    text_ok(name) ? name->valuestring : NULL,
	    text_ok(args) ? args->valuestring : NULL,
	    text_ok(args) ? strlen(args->valuestring) : 0);
}

/* choices[0] of a chunk: {index: 0, delta: {...}, finish_reason}. We
 * never ask for more than one choice, so another index is not ours. */
static int
parse_choice(const cJSON *choice, struct model_reply *out,
    struct openai_chunk *c)
{
	const cJSON	*index, *delta, *reason, *calls, *call;
	size_t		 text_len;
	int		 had_text;

	index = cJSON_GetObjectItemCaseSensitive(choice, "index");
	delta = cJSON_GetObjectItemCaseSensitive(choice, "delta");
	reason = cJSON_GetObjectItemCaseSensitive(choice, "finish_reason");
	calls = cJSON_GetObjectItemCaseSensitive(delta, "tool_calls");
	if (!cJSON_IsObject(choice) || !cJSON_IsObject(delta) ||
	    (index != NULL && (!cJSON_IsNumber(index) ||
	    index->valuedouble != 0)) || !text_or_null(reason) ||
	    (calls != NULL && !cJSON_IsNull(calls) && !cJSON_IsArray(calls)))
		return -1;
	c->choice = 1;
	c->finished = text_ok(reason);
	had_text = reply_text(out) != NULL;
	text_len = out->text.len;
	if (parse_content(delta, out) == -1)
		return -1;
	c->changed = (reply_text(out) != NULL) != had_text ||
	    out->text.len != text_len;
	cJSON_ArrayForEach(call, calls) {
		c->changed = 1;
		if (parse_call_piece(call, out) == -1)
			return -1;
	}
	return 0;
}

int
openai_parse_chunk(const char *chunk, size_t len, struct model_reply *out,
    struct openai_chunk *c)
{
	cJSON		*root;
	const cJSON	*choices, *usage;
	size_t		 before = out->text.len;
	int		 rc = -1;

	memset(c, 0, sizeof(*c));
	if ((root = text_json_parse(chunk, len)) == NULL)
		return -1;
	choices = cJSON_GetObjectItemCaseSensitive(root, "choices");
	usage = cJSON_GetObjectItemCaseSensitive(root, "usage");
	if (cJSON_IsObject(root) && cJSON_IsArray(choices) &&
	    (usage == NULL || cJSON_IsNull(usage) || cJSON_IsObject(usage))) {
		if (choices->child == NULL)
			rc = 0;
		else if (choices->child->next == NULL)
			rc = parse_choice(choices->child, out, c);
		parse_usage(usage, &out->usage);
	}
	c->text_len = out->text.len - before;
	cJSON_Delete(root);
	return rc;
}

void
openai_stream_init(struct openai_stream *s, struct model_reply *out)
{
	memset(s, 0, sizeof(*s));
	reply_init(out);
	s->reply = out;
	s->line = (struct buf)BUF_INIT(OPENAI_EVENT_MAX);
	s->data = (struct buf)BUF_INIT(OPENAI_EVENT_MAX);
}

static int
stream_fail(struct openai_stream *s, const char *why)
{
	if (s->error == NULL)
		s->error = why;
	return -1;
}

/* A blank line: the event is whole. Its data is a chunk, or "[DONE]". */
static int
stream_event(struct openai_stream *s,
    int (*text)(void *, const char *, size_t), void *arg)
{
	struct openai_chunk	 c;
	int			 rc;

	if (s->ndata == 0)
		return 0;	/* comments or other fields only */
	s->ndata = 0;
	if (s->done)
		return stream_fail(s, "an event after [DONE]");
	if (s->data.len == 6 && memcmp(s->data.data, "[DONE]", 6) == 0) {
		s->done = 1;
		return 0;
	}
	rc = openai_parse_chunk(s->data.data != NULL ? s->data.data : "",
	    s->data.len, s->reply, &c);
	buf_reset(&s->data);
	if (rc == -1)
		return stream_fail(s, "a chunk that does not parse");
	s->chunks++;
	/* After the finish_reason a choice may come back empty (Azure's
	 * content filter notes), but not with more of the reply. */
	if (s->finished && c.changed)
		return stream_fail(s, "a chunk after the finish_reason");
	s->finished |= c.finished;
	if (c.text_len > 0 && text(arg, s->reply->text.data +
	    s->reply->text.len - c.text_len, c.text_len) != 0)
		return 1;
	return 0;
}

/* One line, its end taken off. */
static int
stream_line(struct openai_stream *s,
    int (*text)(void *, const char *, size_t), void *arg)
{
	const char	*l = s->line.data;
	size_t		 len = s->line.len, field;

	if (len == 0)
		return stream_event(s, text, arg);
	if (l[0] == ':')
		return 0;
	for (field = 0; field < len && l[field] != ':'; field++)
		continue;
	if (field != 4 || memcmp(l, "data", 4) != 0)
		return 0;	/* event:, id:, retry: are not OpenAI's */
	if (field < len)
		field++;
	if (field < len && l[field] == ' ')
		field++;
	/* Lines of one event's data are joined with LF (the spec's rule;
	 * OpenAI sends one line an event). */
	if ((s->ndata++ > 0 && buf_add(&s->data, "\n", 1) == -1) ||
	    buf_add(&s->data, l + field, len - field) == -1)
		return stream_fail(s, "an event over OPENAI_EVENT_MAX bytes");
	return 0;
}

int
openai_stream_feed(struct openai_stream *s, const char *p, size_t n,
    int (*text)(void *, const char *, size_t), void *arg)
{
	size_t	 i;
	int	 rc;

	if (s->error != NULL)
		return -1;
	if (n > OPENAI_STREAM_MAX - s->bytes)
		return stream_fail(s, "a stream over OPENAI_STREAM_MAX bytes");
	s->bytes += n;
	while (n > 0) {
		/* The LF of a CRLF that a feed cut after its CR. */
		if (s->cr && *p == '\n') {
			p++;
			n--;
			s->cr = 0;
			continue;
		}
		s->cr = 0;
		for (i = 0; i < n && p[i] != '\n' && p[i] != '\r'; i++)
			continue;
		if (buf_add(&s->line, p, i) == -1)
			return stream_fail(s, "a line over OPENAI_EVENT_MAX "
			    "bytes");
		if (i == n)
			return 0;	/* the line goes on in the next feed */
		s->cr = p[i] == '\r';
		p += i + 1;
		n -= i + 1;
		rc = stream_line(s, text, arg);
		buf_reset(&s->line);
		if (rc != 0)
			return rc;
	}
	return 0;
}

int
openai_stream_end(struct openai_stream *s)
{
	/* A server that closes right after "data: [DONE]\n", without the
	 * blank line: the line ended, and nothing could follow it. */
	if (!s->done && s->line.len == 0 && s->ndata == 1 &&
	    s->data.len == 6 && memcmp(s->data.data, "[DONE]", 6) == 0) {
		s->done = 1;
		s->ndata = 0;
	}
	if (s->error != NULL)
		return -1;
	if (!s->done)
		return stream_fail(s, "no [DONE] at the end");
	if (!s->finished)
		return stream_fail(s, "no finish_reason");
	if (reply_check(s->reply) == -1)
		return stream_fail(s, "a call without its id or name");
	if (reply_text(s->reply) == NULL && s->reply->ncalls == 0)
		return stream_fail(s, "neither words nor calls");
	return 0;
}

void
openai_stream_free(struct openai_stream *s)
{
	buf_free(&s->line);
	buf_free(&s->data);
	s->ndata = 0;
}

int
openai_calls_parse(const char *text, struct model_call **calls, size_t *n)
{
	struct model_reply	 r;
	cJSON			*array;
	int			 rc = -1;

	reply_init(&r);
	*calls = NULL;
	*n = 0;
	if ((array = text_json_parses(text)) == NULL)
		return -1;
	if (cJSON_IsArray(array) && parse_calls(array, &r) == 0) {
		*calls = r.calls;
		*n = r.ncalls;
		r.calls = NULL;
		r.ncalls = 0;
		rc = 0;
	}
	reply_free(&r);
	cJSON_Delete(array);
	return rc;
}

void
openai_error_code(const char *body, size_t len, char *code, size_t size)
{
	const cJSON	*c;
	cJSON		*root;
	size_t		 n;

	code[0] = '\0';
	root = text_json_parse(body, len);
	c = cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(root, "error"), "code");
	if (cJSON_IsString(c) && (n = strlen(c->valuestring)) <= 64 &&
	    n < size && strspn(c->valuestring, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n)
		memcpy(code, c->valuestring, n + 1);
	cJSON_Delete(root);
}
