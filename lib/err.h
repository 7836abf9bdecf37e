/* err.h: what went wrong in a request, in the terms the client sees.
 *
 * Code that knows what a failure means to the client fills a struct
 * chat_err and returns -1; only chat.fcgi.c turns it into a response. */
#ifndef ERR_H
#define ERR_H

struct chat_err {
	int		 status;	/* 400 ... 504, as README's "Errors" lists them */
	const char	*code;		/* a literal: "message_too_long" */
	char		 msg[200];	/* for a person: no SQL, no secrets */
	long long	 conversation_id; /* > 0 on 502/504 so a retry can follow */
	const char	*allow;		/* literal Allow header value on 405 */
	const char	*resource_metadata; /* on 401 from an MCP endpoint:
					 * the URL of its metadata (RFC 9728),
					 * borrowed; NULL elsewhere */
	int		 retry_after_s;	/* 429: its Retry-After */
};

/* Fills err (keeping conversation_id) and returns -1, so a caller can
 * write: return err_set(...); */
int	err_set(struct chat_err *err, int status, const char *code,
	    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* The error as the client reads it: {"error": {"code", "message"}} and,
 * when set, "conversation_id" beside it. NULL on ENOMEM; the caller
 * cJSON_free()s it. */
char	*err_json(const struct chat_err *err);

/* err_set() for the one failure every module shares: memory ran out.
 * 503 "out_of_memory"; returns -1. */
int	err_oom(struct chat_err *err);

#endif
