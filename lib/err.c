/* err.c: filling the client-facing error struct, and its JSON. */
#include <stdarg.h>
#include <stdio.h>

#include <cJSON.h>

#include "err.h"

int
err_set(struct chat_err *err, int status, const char *code,
    const char *fmt, ...)
{
	va_list	 ap;

	err->status = status;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return -1;
}

char *
err_json(const struct chat_err *err)
{
	cJSON	*root, *error;
	char	*text = NULL;

	if ((root = cJSON_CreateObject()) != NULL &&
	    (error = cJSON_AddObjectToObject(root, "error")) != NULL &&
	    cJSON_AddStringToObject(error, "code", err->code) != NULL &&
	    cJSON_AddStringToObject(error, "message", err->msg) != NULL &&
	    (err->conversation_id <= 0 || cJSON_AddNumberToObject(root,
	    "conversation_id", (double)err->conversation_id) != NULL))
		text = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	return text;
}

int
err_oom(struct chat_err *err)
{
	return err_set(err, 503, "out_of_memory", "The server is short of "
	    "memory; try again.");
}
