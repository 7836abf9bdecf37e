/* config.h: the worker's settings, read once from the environment at
 * start (README, "Configuration") and constant afterwards. */
#ifndef CONFIG_H
#define CONFIG_H

#include <stddef.h>

struct config {
	const char	*database_url;	/* "" means libpq's defaults (PG*) */
	const char	*jwt_secret;	/* NULL: no HS256 tokens; else at
					 * least CONFIG_SECRET_MIN bytes */
	size_t		 jwt_secret_len;
	const char	*jwt_jwks;	/* file or URL; NULL: no public keys;
					 * never NULL with jwt_secret NULL */
	const char	*jwt_issuer;	/* NULL: "iss" not checked */
	const char	*jwt_audience;	/* NULL: "aud" not checked */
	const char	*model_url;	/* NULL: the built-in offline model */
	const char	*model_key;	/* NULL: no Authorization header */
	const char	*model;		/* model name sent in the request */
	long		 model_timeout_ms;
	int		 max_tool_rounds;
	int		 history_messages;
	long		 history_tokens;
	size_t		 max_body_bytes;
	int		 threads;	/* worker threads in the process */
	/* Per-user limits, across every worker; 0: none. */
	int		 user_concurrent_turns;
	int		 user_turns_per_minute;
	long		 user_tokens_per_day;
	long		 user_max_tasks;
	long		 user_max_conversations;
	long		 user_max_messages;
	/* Bounds inside one turn. */
	int		 max_tool_calls;	/* handled per round */
	size_t		 max_tool_result_bytes;	/* one, to the model */
	size_t		 max_request_bytes;	/* one model request */
};

/* An HS256 key shorter than the hash is weaker than the hash: RFC 7518
 * section 3.2 asks for at least 256 bits. */
#define CONFIG_SECRET_MIN	32

/* The C type of a variable's field in struct config. */
enum config_kind {
	CONFIG_STRING,		/* const char *, borrowed from the environment */
	CONFIG_INT,		/* int */
	CONFIG_LONG,		/* long */
	CONFIG_SIZE,		/* size_t */
};

/*
 * One environment variable the worker reads: the list of them is the
 * configuration, the README's table shows the same rows (t/unit/config.c
 * holds the two together) and scripts/run passes each on to its workers.
 * Unset and empty are the same: the fallback variable is read, then def
 * is used.
 */
struct config_var {
	const char	*name;
	enum config_kind kind;
	size_t		 offset;	/* of the field in struct config */
	const char	*def;		/* the value when unset, as text; NULL:
					 * the field stays NULL */
	long long	 min, max;	/* integers: the range accepted */
	const char	*fallback;	/* read when name is unset, or NULL */
	int		 required;	/* unset and no fallback: refuse to start */
	const char	*shown_default;	/* the README's default column when it
					 * is not def in backquotes, or NULL */
	const char	*meaning;	/* the README's meaning column, as is */
};

/* Reads the environment into the process's configuration. 0, or -1 with
 * a line for the operator logged (log_err()); the caller exits. The
 * strings are borrowed from the environment, which we never change. */
int			 config_load(void);
/* The loaded configuration; valid after config_load() returned 0. */
const struct config	*config(void);

/* The variables, in the README's order; *n gets their number. Static
 * and read-only: for tests and for listing them. */
const struct config_var	*config_vars(size_t *n);

/* Exposed for tests: fills c from a getenv-like lookup; 0 or -1 as
 * config_load(). On -1, c holds what was read before the failure. */
int	 config_from(struct config *c, const char *(*lookup)(const char *));

#endif
