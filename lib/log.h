/* log.h: one line per event on stderr, which spawn-fcgi hands to the
 * operator's log. Never a secret, a token or a message body in it. */
#ifndef LOG_H
#define LOG_H

/* Tags every line of this worker with the request being served (0 when
 * none), so the lines of one failed request can be found together. */
void	 log_set_request(unsigned long request_seq);
/* "chat.fcgi[pid] req N: <text>\n" on stderr. */
void	 log_err(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2)));

#endif
