/* err.c: filling the client-facing error struct. */
#include <stdarg.h>
#include <stdio.h>

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

int
err_oom(struct chat_err *err)
{
	return err_set(err, 503, "out_of_memory", "The server is short of "
	    "memory; try again.");
}
