/* model.c: the worker's CURL handle, the OpenAI chat-completions request
 * and reply, timeouts; the offline model stands in when no URL is set. */
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "model.h"

int
model_reply_add_call(struct model_reply *reply, const char *id,
    const char *name, const char *arguments)
{
	struct model_call	*calls, *call;

	if (reply->ncalls >= MODEL_MAX_CALLS)
		return -1;
	calls = realloc(reply->calls, (reply->ncalls + 1) * sizeof(*calls));
	if (calls == NULL)
		return -1;
	reply->calls = calls;
	call = &calls[reply->ncalls];
	call->id = strdup(id);
	call->name = strdup(name);
	call->arguments = strdup(arguments);
	if (call->id == NULL || call->name == NULL ||
	    call->arguments == NULL) {
		free(call->id);
		free(call->name);
		free(call->arguments);
		return -1;
	}
	reply->ncalls++;
	return 0;
}

void
model_reply_free(struct model_reply *reply)
{
	size_t	 i;

	for (i = 0; i < reply->ncalls; i++) {
		free(reply->calls[i].id);
		free(reply->calls[i].name);
		free(reply->calls[i].arguments);
	}
	free(reply->calls);
	free(reply->content);
	memset(reply, 0, sizeof(*reply));
}
