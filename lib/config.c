/* config.c: the environment, read once at start into a const struct. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

static struct config	 loaded;

static const char *
env_lookup(const char *name)
{
	return getenv(name);
}

/* Unset or empty means the default; anything but a plain decimal within
 * [min, max] is an operator error worth refusing to start for. */
static int
int_setting(const char *(*lookup)(const char *), const char *name,
    long long def, long long min, long long max, long long *out)
{
	const char	*s = lookup(name);
	char		*end;
	long long	 v;

	if (s == NULL || *s == '\0') {
		*out = def;
		return 0;
	}
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "chat.fcgi: %s=%s: expected an integer from "
		    "%lld to %lld\n", name, s, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

static const char *
str_setting(const char *(*lookup)(const char *), const char *name)
{
	const char	*s = lookup(name);

	return (s == NULL || *s == '\0') ? NULL : s;
}

int
config_from(struct config *c, const char *(*lookup)(const char *))
{
	long long	 v;

	memset(c, 0, sizeof(*c));
	if ((c->jwt_secret = str_setting(lookup, "CHAT_JWT_SECRET")) == NULL) {
		fprintf(stderr, "chat.fcgi: CHAT_JWT_SECRET is not set: "
		    "refusing to start without the HS256 secret that signs "
		    "client tokens\n");
		return -1;
	}
	c->jwt_secret_len = strlen(c->jwt_secret);
	c->database_url = str_setting(lookup, "DATABASE_URL");
	if (c->database_url == NULL)
		c->database_url = "";
	c->model_url = str_setting(lookup, "CHAT_MODEL_URL");
	c->model_key = str_setting(lookup, "CHAT_MODEL_KEY");
	if (c->model_key == NULL)
		c->model_key = str_setting(lookup, "OPENAI_API_KEY");
	c->model = str_setting(lookup, "CHAT_MODEL");
	if (c->model == NULL)
		c->model = "gpt-4o-mini";

	if (int_setting(lookup, "CHAT_MODEL_TIMEOUT_MS", 60000, 1,
	    3600000, &v) == -1)
		return -1;
	c->model_timeout_ms = v;
	if (int_setting(lookup, "CHAT_MAX_TOOL_ROUNDS", 5, 1, 50, &v) == -1)
		return -1;
	c->max_tool_rounds = v;
	if (int_setting(lookup, "CHAT_HISTORY_MESSAGES", 40, 0, 1000,
	    &v) == -1)
		return -1;
	c->history_messages = v;
	if (int_setting(lookup, "CHAT_HISTORY_TOKENS", 8000, 0, 10000000,
	    &v) == -1)
		return -1;
	c->history_tokens = v;
	/* The body must at least hold a maximal message (32,000 bytes). */
	if (int_setting(lookup, "CHAT_MAX_BODY_BYTES", 65536, 1024,
	    64 * 1024 * 1024, &v) == -1)
		return -1;
	c->max_body_bytes = v;
	/* Each thread is a worker with its own connections; see README,
	 * "How many workers". */
	if (int_setting(lookup, "CHAT_WORKER_THREADS", 1, 1, 4096, &v) == -1)
		return -1;
	c->threads = v;
	return 0;
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
