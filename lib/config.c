/* config.c: the environment, read once at start into a const struct. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"

/*
 * Where a variable goes: its kind and the offset of its field. The
 * _Generic in a struct's static assertion fails the build when the
 * field's type is not the kind's, so a row cannot write an int into a
 * long (or a size_t) by mistake.
 */
#define FIELD(kind, type, field)					\
	(kind), offsetof(struct config, field) + 0 * sizeof(struct {	\
		_Static_assert(_Generic(((struct config *)0)->field,	\
		    type: 1, default: 0), #field " is not " #type);	\
		char c;							\
	})
#define STRING(f)	FIELD(CONFIG_STRING, const char *, f)
#define INT(f)		FIELD(CONFIG_INT, int, f)
#define LONG(f)		FIELD(CONFIG_LONG, long, f)
#define SIZE(f)		FIELD(CONFIG_SIZE, size_t, f)

/* Named so the rows below read as "no bounds", "no fallback"... */
#define NO_RANGE	0, 0
#define NO_FALLBACK	NULL
#define OPTIONAL	0
#define REQUIRED	1
#define AS_DEF		NULL

/*
 * The configuration, in the README's order. The meanings are the
 * README's cells as they are (markdown included); the bounds are what
 * the rest of the code can live with: the reason is beside each.
 */
static const struct config_var vars[] = {
	{ "DATABASE_URL", STRING(database_url), "", NO_RANGE, NO_FALLBACK,
	  OPTIONAL, "libpq's defaults (`PGHOST`...)",
	  "libpq connection string or URI" },
	/* At least one of these two: config_from() checks. */
	{ "CHAT_JWT_SECRET", STRING(jwt_secret), NULL, NO_RANGE, NO_FALLBACK,
	  OPTIONAL, "none",
	  "HS256 secret bearer tokens may be signed with, at least 32 bytes" },
	{ "CHAT_JWT_JWKS", STRING(jwt_jwks), NULL, NO_RANGE, NO_FALLBACK,
	  OPTIONAL, "none",
	  "JSON Web Key Set as a file path or an `http(s)://` URL: the "
	  "public keys of EdDSA, ES256, RS256 and PS256 tokens (see "
	  "[Tokens](#tokens))" },
	{ "CHAT_JWT_ISSUER", STRING(jwt_issuer), NULL, NO_RANGE, NO_FALLBACK,
	  OPTIONAL, "unset: not checked",
	  "what every token's `iss` must be" },
	{ "CHAT_JWT_AUDIENCE", STRING(jwt_audience), NULL, NO_RANGE,
	  NO_FALLBACK, OPTIONAL, "unset: not checked",
	  "what every token's `aud` must be or contain" },
	{ "CHAT_MODEL_URL", STRING(model_url), NULL, NO_RANGE, NO_FALLBACK,
	  OPTIONAL, "unset: the built-in offline model",
	  "base URL of an OpenAI-compatible API, e.g. "
	  "`https://api.openai.com/v1`" },
	/* OpenAI's own tools use OPENAI_API_KEY; an operator may have it. */
	{ "CHAT_MODEL_KEY", STRING(model_key), NULL, NO_RANGE,
	  "OPENAI_API_KEY", OPTIONAL, "`OPENAI_API_KEY`",
	  "bearer key for that API" },
	{ "CHAT_MODEL", STRING(model), "gpt-4o-mini", NO_RANGE, NO_FALLBACK,
	  OPTIONAL, AS_DEF,
	  "model name sent with each request" },
	/* An hour: longer, nginx's read timeout has long given up. */
	{ "CHAT_MODEL_TIMEOUT_MS", LONG(model_timeout_ms), "60000",
	  1, 3600000, NO_FALLBACK, OPTIONAL, AS_DEF,
	  "bound on one model call, retries included" },
	{ "CHAT_MAX_TOOL_ROUNDS", INT(max_tool_rounds), "5", 1, 50,
	  NO_FALLBACK, OPTIONAL, AS_DEF,
	  "model calls that may ask for tools in one turn" },
	{ "CHAT_HISTORY_MESSAGES", INT(history_messages), "40", 0, 1000,
	  NO_FALLBACK, OPTIONAL, AS_DEF,
	  "most stored messages sent to the model as history" },
	{ "CHAT_HISTORY_TOKENS", LONG(history_tokens), "8000", 0, 10000000,
	  NO_FALLBACK, OPTIONAL, AS_DEF,
	  "approximate token budget of that history" },
	/* The body must at least hold a maximal message (32,000 bytes). */
	{ "CHAT_MAX_BODY_BYTES", SIZE(max_body_bytes), "65536", 1024,
	  64 * 1024 * 1024, NO_FALLBACK, OPTIONAL, AS_DEF,
	  "largest request body; more is a 413" },
	/* Each thread is a worker with its own connections; see README,
	 * "How many workers". */
	{ "CHAT_WORKER_THREADS", INT(threads), "1", 1, 4096, NO_FALLBACK,
	  OPTIONAL, AS_DEF,
	  "workers in each process: threads that each serve one request at "
	  "a time with a database connection of their own (see "
	  "[How many workers](#how-many-workers))" },
	/* The per-user limits travel to the database as integers; a limit
	 * of turns per minute is that many timestamps in the user's row. */
	{ "CHAT_USER_CONCURRENT_TURNS", INT(user_concurrent_turns), "4", 0,
	  10000, NO_FALLBACK, OPTIONAL, AS_DEF,
	  "turns of one user running at once, across all workers; `0`: no "
	  "limit (see [Limits](#limits-and-usage))" },
	{ "CHAT_USER_TURNS_PER_MINUTE", INT(user_turns_per_minute), "30", 0,
	  10000, NO_FALLBACK, OPTIONAL, AS_DEF,
	  "turns (and MCP tool calls) one user may start in any 60 seconds; "
	  "`0`: no limit" },
	{ "CHAT_USER_TOKENS_PER_DAY", LONG(user_tokens_per_day), "0", 0,
	  2000000000, NO_FALLBACK, OPTIONAL, AS_DEF,
	  "model tokens (prompt + completion, as the model reports them) "
	  "one user may use per UTC day; `0`: no limit" },
	{ "CHAT_USER_MAX_TASKS", LONG(user_max_tasks), "10000", 0,
	  2000000000, NO_FALLBACK, OPTIONAL, AS_DEF,
	  "tasks one user may keep; past it `add_task` answers the model an "
	  "error; `0`: no limit" },
	{ "CHAT_USER_MAX_CONVERSATIONS", LONG(user_max_conversations), "1000",
	  0, 2000000000, NO_FALLBACK, OPTIONAL, AS_DEF,
	  "conversations one user may keep; past it a new one is a 429 "
	  "`quota_exceeded`; `0`: no limit" },
	{ "CHAT_USER_MAX_MESSAGES", LONG(user_max_messages), "100000", 0,
	  2000000000, NO_FALLBACK, OPTIONAL, AS_DEF,
	  "messages one user may keep, all conversations together; past it "
	  "a turn is a 429 `quota_exceeded`; `0`: no limit" },
	/* A reply holds at most 32 calls (reply.h). */
	{ "CHAT_MAX_TOOL_CALLS", INT(max_tool_calls), "8", 1, 32, NO_FALLBACK,
	  OPTIONAL, AS_DEF,
	  "tool calls run per round; the model's further calls of that round "
	  "get an error as their result" },
	/* Room for the error that replaces a result that cannot be cut. */
	{ "CHAT_MAX_TOOL_RESULT_BYTES", SIZE(max_tool_result_bytes), "16384",
	  1024, 4 * 1024 * 1024, NO_FALLBACK, OPTIONAL, AS_DEF,
	  "bytes of one tool result sent to the model; a longer `list_tasks` "
	  "result is cut to fewer tasks, with a note saying so" },
	/* A request must hold a maximal message (32,000 bytes), the system
	 * prompt and the tool definitions. */
	{ "CHAT_MAX_REQUEST_BYTES", SIZE(max_request_bytes), "262144", 65536,
	  64 * 1024 * 1024, NO_FALLBACK, OPTIONAL, AS_DEF,
	  "bytes of one model request: the oldest history goes first; a turn "
	  "that cannot fit even without history answers that it was too "
	  "large" },
};

static struct config	 loaded;

static const char *
env_lookup(const char *name)
{
	return getenv(name);
}

/* Unset and empty are the same: a shell's VAR= is how one unsets. */
static const char *
lookup_set(const char *(*lookup)(const char *), const char *name)
{
	const char	*s = lookup(name);

	return (s == NULL || *s == '\0') ? NULL : s;
}

/* A plain decimal within [min, max], nothing around it: anything else is
 * an operator error worth refusing to start for. */
static int
parse_int(const char *s, long long min, long long max, long long *out)
{
	char		*end;
	long long	 v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/* Reads one variable into its field of c: 0, or -1 with a line logged. */
static int
var_read(const struct config_var *v, struct config *c,
    const char *(*lookup)(const char *))
{
	char		*field = (char *)c + v->offset;
	const char	*s;
	long long	 n;

	if ((s = lookup_set(lookup, v->name)) == NULL && v->fallback != NULL)
		s = lookup_set(lookup, v->fallback);
	if (s == NULL && v->required) {
		log_err("%s is not set: refusing to start without the %s",
		    v->name, v->meaning);
		return -1;
	}
	if (s == NULL)
		s = v->def;
	if (v->kind == CONFIG_STRING) {
		*(const char **)(void *)field = s;
		return 0;
	}
	if (s == NULL || parse_int(s, v->min, v->max, &n) == -1) {
		log_err("%s=%s: expected an integer from %lld to %lld",
		    v->name, s == NULL ? "" : s, v->min, v->max);
		return -1;
	}
	/* The bounds keep n within the field's type (t/unit/config.c). */
	switch (v->kind) {
	case CONFIG_INT:
		*(int *)(void *)field = n;
		break;
	case CONFIG_LONG:
		*(long *)(void *)field = n;
		break;
	case CONFIG_SIZE:
		*(size_t *)(void *)field = n;
		break;
	case CONFIG_STRING:
		break;
	}
	return 0;
}

const struct config_var *
config_vars(size_t *n)
{
	*n = sizeof(vars) / sizeof(vars[0]);
	return vars;
}

/* Tokens must be checkable: a secret long enough, or public keys, or
 * both. An empty secret would let anyone sign a token. */
static int
jwt_keys(struct config *c)
{
	if (c->jwt_secret == NULL && c->jwt_jwks == NULL) {
		log_err("CHAT_JWT_SECRET is not set: refusing to start "
		    "without it or CHAT_JWT_JWKS to check bearer tokens with");
		return -1;
	}
	c->jwt_secret_len = c->jwt_secret != NULL ? strlen(c->jwt_secret) : 0;
	if (c->jwt_secret != NULL && c->jwt_secret_len < CONFIG_SECRET_MIN) {
		log_err("CHAT_JWT_SECRET is %zu bytes: an HS256 secret must "
		    "be at least %d (RFC 7518, section 3.2), or anyone who "
		    "sees a token may guess it; refusing to start",
		    c->jwt_secret_len, CONFIG_SECRET_MIN);
		return -1;
	}
	return 0;
}

int
config_from(struct config *c, const char *(*lookup)(const char *))
{
	size_t	 i;

	memset(c, 0, sizeof(*c));
	for (i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		if (var_read(&vars[i], c, lookup) == -1)
			return -1;
	return jwt_keys(c);
}

int
config_load(void)
{
	return config_from(&loaded, env_lookup);
}

const struct config *
config(void)
{
	return &loaded;
}
