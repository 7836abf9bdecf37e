/* log.c: the worker's error lines on stderr, tagged with pid and request. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* Per thread: each worker thread serves its own request. */
static _Thread_local unsigned long	 current_request;

void
log_set_request(unsigned long request_seq)
{
	current_request = request_seq;
}

void
log_err(const char *fmt, ...)
{
	char	 line[1024];
	size_t	 len;
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* libpq's messages end in a newline of their own. */
	len = strlen(line);
	while (len > 0 && line[len - 1] == '\n')
		line[--len] = '\0';
	fprintf(stderr, "chat.fcgi[%ld] req %lu: %s\n", (long)getpid(),
	    current_request, line);
}
