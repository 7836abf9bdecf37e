/* config.h: the worker's settings, read once from the environment at
 * start (DESIGN.md, "Configuration") and constant afterwards. */
#ifndef CONFIG_H
#define CONFIG_H

#include <stddef.h>

struct config {
	const char	*database_url;	/* "" means libpq's defaults (PG*) */
	const char	*jwt_secret;	/* never NULL, never empty */
	size_t		 jwt_secret_len;
	const char	*model_url;	/* NULL: the built-in offline model */
	const char	*model_key;	/* NULL: no Authorization header */
	const char	*model;		/* model name sent in the request */
	long		 model_timeout_ms;
	int		 max_tool_rounds;
	int		 history_messages;
	long		 history_tokens;
	size_t		 max_body_bytes;
	int		 threads;	/* worker threads in the process */
};

/* Reads the environment into the process's configuration. 0, or -1 with
 * a line for the operator written to stderr (the caller exits). The
 * strings are borrowed from the environment, which we never change. */
int			 config_load(void);
/* The loaded configuration; valid after config_load() returned 0. */
const struct config	*config(void);

/* Exposed for tests: fills c from a getenv-like lookup. */
int	 config_from(struct config *c, const char *(*lookup)(const char *));

#endif
