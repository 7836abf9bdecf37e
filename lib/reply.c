/* reply.c: assembling the model's reply, whole or in pieces (reply.h). */
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "reply.h"
#include "text.h"

void
reply_init(struct model_reply *r)
{
	memset(r, 0, sizeof(*r));
	r->text = (struct buf)BUF_INIT(REPLY_TEXT_MAX);
	usage_init(&r->usage);
}

void
usage_init(struct model_usage *u)
{
	u->prompt_tokens = u->completion_tokens = u->cached_tokens = -1;
}

static void
count_add(long long *sum, long long n)
{
	if (n < 0)
		return;
	*sum = (*sum < 0 ? 0 : *sum) + n;
}

void
usage_add(struct model_usage *sum, const struct model_usage *b)
{
	count_add(&sum->prompt_tokens, b->prompt_tokens);
	count_add(&sum->completion_tokens, b->completion_tokens);
	count_add(&sum->cached_tokens, b->cached_tokens);
}

int
reply_add_text(struct model_reply *r, const char *s, size_t len)
{
	return buf_add(&r->text, s, len);
}

/* Sets *field to a copy of s unless it already holds one: a streamed
 * call names itself in its first piece, and later pieces may repeat it. */
static int
set_once(char **field, const char *s)
{
	if (s == NULL || *field != NULL)
		return 0;
	return (*field = strdup(s)) != NULL ? 0 : -1;
}

int
reply_add_call(struct model_reply *r, size_t index, const char *id,
    const char *name, const char *arguments, size_t len)
{
	struct model_call	*calls, *c;

	if (index > r->ncalls || index >= REPLY_MAX_CALLS)
		return -1;
	if (index == r->ncalls) {
		calls = realloc(r->calls, (r->ncalls + 1) * sizeof(*calls));
		if (calls == NULL)
			return -1;
		r->calls = calls;
		c = &calls[r->ncalls++];
		memset(c, 0, sizeof(*c));
		c->arguments = (struct buf)BUF_INIT(REPLY_ARGUMENTS_MAX);
	}
	c = &r->calls[index];
	if (set_once(&c->id, id) == -1 || set_once(&c->name, name) == -1)
		return -1;
	return arguments != NULL ? buf_add(&c->arguments, arguments, len) : 0;
}

int
reply_check(struct model_reply *r)
{
	struct model_call	*c;
	size_t			 i;

	for (i = 0; i < r->ncalls; i++) {
		c = &r->calls[i];
		/* An empty id could not link the tool result to its call. */
		if (c->id == NULL || *c->id == '\0' || c->name == NULL ||
		    *c->name == '\0')
			return -1;
		if (c->arguments.data == NULL &&
		    buf_add(&c->arguments, "", 0) == -1)
			return -1;
	}
	return 0;
}

const char *
reply_text(const struct model_reply *r)
{
	return r->text.data;
}

const char *
call_arguments(const struct model_call *c)
{
	cJSON	*parsed;
	int	 object;

	parsed = text_json_parse(c->arguments.data, c->arguments.len);
	object = cJSON_IsObject(parsed);
	cJSON_Delete(parsed);
	return object ? c->arguments.data : "{}";
}

char *
reply_take_text(struct model_reply *r)
{
	return buf_detach(&r->text, NULL);
}

void
calls_free(struct model_call *c, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++) {
		free(c[i].id);
		free(c[i].name);
		buf_free(&c[i].arguments);
	}
	free(c);
}

void
reply_free(struct model_reply *r)
{
	buf_free(&r->text);
	calls_free(r->calls, r->ncalls);
	reply_init(r);
}
