/* t/unit/config.c: config_from() on a table of environments, and the
 * variables' table against the README's and against what scripts/run
 * passes to its workers. Prints TAP; run from the repository root. */
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

/* A secret of the least length accepted: 32 bytes. */
#define SECRET32	"0123456789abcdef0123456789abcdef"
#define S	"CHAT_JWT_SECRET=" SECRET32	/* tokens must be checkable */
#define LINE_MAX_BYTES	4096

/*
 * One environment (NAME=value strings) and what config_from() makes of
 * it: its return, one field named by its variable with its value as
 * text (want NULL: the field is NULL), and a piece of the logged line.
 */
static const struct {
	const char	*name;
	const char	*env[4];
	int		 rc;
	const char	*var, *want, *log;
} cases[] = {
	/* Defaults, as the README gives them. */
	{ "DATABASE_URL unset: libpq's defaults", { S }, 0,
	  "DATABASE_URL", "", NULL },
	{ "CHAT_MODEL_URL unset: the offline model", { S }, 0,
	  "CHAT_MODEL_URL", NULL, NULL },
	{ "CHAT_MODEL_KEY unset: no key", { S }, 0,
	  "CHAT_MODEL_KEY", NULL, NULL },
	{ "CHAT_MODEL default", { S }, 0, "CHAT_MODEL", "gpt-4o-mini", NULL },
	{ "CHAT_MODEL_TIMEOUT_MS default", { S }, 0,
	  "CHAT_MODEL_TIMEOUT_MS", "60000", NULL },
	{ "CHAT_MAX_TOOL_ROUNDS default", { S }, 0,
	  "CHAT_MAX_TOOL_ROUNDS", "5", NULL },
	{ "CHAT_HISTORY_MESSAGES default", { S }, 0,
	  "CHAT_HISTORY_MESSAGES", "40", NULL },
	{ "CHAT_HISTORY_TOKENS default", { S }, 0,
	  "CHAT_HISTORY_TOKENS", "8000", NULL },
	{ "CHAT_MAX_BODY_BYTES default", { S }, 0,
	  "CHAT_MAX_BODY_BYTES", "65536", NULL },
	{ "CHAT_WORKER_THREADS default", { S }, 0,
	  "CHAT_WORKER_THREADS", "1", NULL },

	/* Strings pass as they are. */
	{ "DATABASE_URL as given", { S, "DATABASE_URL=host=/x dbname=y" },
	  0, "DATABASE_URL", "host=/x dbname=y", NULL },
	{ "CHAT_JWT_SECRET as given",
	  { "CHAT_JWT_SECRET=abc def " SECRET32 }, 0,
	  "CHAT_JWT_SECRET", "abc def " SECRET32, NULL },
	{ "CHAT_JWT_JWKS as given", { "CHAT_JWT_JWKS=https://a.example/jwks" },
	  0, "CHAT_JWT_JWKS", "https://a.example/jwks", NULL },
	{ "CHAT_JWT_ISSUER as given", { S, "CHAT_JWT_ISSUER=https://a" }, 0,
	  "CHAT_JWT_ISSUER", "https://a", NULL },
	{ "CHAT_JWT_AUDIENCE as given", { S, "CHAT_JWT_AUDIENCE=todo" }, 0,
	  "CHAT_JWT_AUDIENCE", "todo", NULL },
	{ "CHAT_JWT_ISSUER unset: not checked", { S }, 0,
	  "CHAT_JWT_ISSUER", NULL, NULL },
	{ "CHAT_MODEL_URL as given", { S, "CHAT_MODEL_URL=http://m/v1" }, 0,
	  "CHAT_MODEL_URL", "http://m/v1", NULL },
	{ "CHAT_MODEL as given", { S, "CHAT_MODEL=m-1" }, 0,
	  "CHAT_MODEL", "m-1", NULL },

	/* Empty is unset. */
	{ "empty DATABASE_URL: libpq's defaults", { S, "DATABASE_URL=" }, 0,
	  "DATABASE_URL", "", NULL },
	{ "empty CHAT_MODEL_URL: the offline model",
	  { S, "CHAT_MODEL_URL=" }, 0, "CHAT_MODEL_URL", NULL, NULL },
	{ "empty CHAT_MODEL: default", { S, "CHAT_MODEL=" }, 0,
	  "CHAT_MODEL", "gpt-4o-mini", NULL },
	{ "empty CHAT_MAX_TOOL_ROUNDS: default",
	  { S, "CHAT_MAX_TOOL_ROUNDS=" }, 0, "CHAT_MAX_TOOL_ROUNDS", "5",
	  NULL },
	{ "empty CHAT_WORKER_THREADS: default",
	  { S, "CHAT_WORKER_THREADS=" }, 0, "CHAT_WORKER_THREADS", "1", NULL },

	/* The key: CHAT_MODEL_KEY, else OPENAI_API_KEY. */
	{ "CHAT_MODEL_KEY as given", { S, "CHAT_MODEL_KEY=k1" }, 0,
	  "CHAT_MODEL_KEY", "k1", NULL },
	{ "OPENAI_API_KEY when CHAT_MODEL_KEY is unset",
	  { S, "OPENAI_API_KEY=k2" }, 0, "CHAT_MODEL_KEY", "k2", NULL },
	{ "OPENAI_API_KEY when CHAT_MODEL_KEY is empty",
	  { S, "CHAT_MODEL_KEY=", "OPENAI_API_KEY=k2" }, 0,
	  "CHAT_MODEL_KEY", "k2", NULL },
	{ "CHAT_MODEL_KEY wins over OPENAI_API_KEY",
	  { S, "CHAT_MODEL_KEY=k1", "OPENAI_API_KEY=k2" }, 0,
	  "CHAT_MODEL_KEY", "k1", NULL },
	{ "empty OPENAI_API_KEY: no key", { S, "OPENAI_API_KEY=" }, 0,
	  "CHAT_MODEL_KEY", NULL, NULL },

	/* Tokens must be checkable: a secret of 32 bytes or more, or a
	 * JWKS, or both. */
	{ "a JWKS and no secret: no HS256", { "CHAT_JWT_JWKS=/k.json" }, 0,
	  "CHAT_JWT_SECRET", NULL, NULL },
	{ "a 31-byte secret: refused",
	  { "CHAT_JWT_SECRET=0123456789abcdef0123456789abcde" }, -1, NULL,
	  NULL, "CHAT_JWT_SECRET is 31 bytes: an HS256 secret must be at "
	  "least 32" },
	{ "a short secret beside a JWKS: still refused",
	  { "CHAT_JWT_SECRET=short", "CHAT_JWT_JWKS=/k.json" }, -1, NULL,
	  NULL, "CHAT_JWT_SECRET is 5 bytes" },
	{ "no CHAT_JWT_SECRET: refused", { NULL }, -1, NULL, NULL,
	  "CHAT_JWT_SECRET is not set: refusing to start" },
	{ "empty CHAT_JWT_SECRET: refused", { "CHAT_JWT_SECRET=" }, -1,
	  NULL, NULL, "CHAT_JWT_SECRET is not set: refusing to start" },
	{ "no CHAT_JWT_SECRET, the rest fine: refused",
	  { "CHAT_WORKER_THREADS=4", "DATABASE_URL=x" }, -1, NULL, NULL,
	  "CHAT_JWT_SECRET is not set: refusing to start" },

	/* Every bound: accepted at its edge, refused one past it. */
	{ "CHAT_MODEL_TIMEOUT_MS 1", { S, "CHAT_MODEL_TIMEOUT_MS=1" }, 0,
	  "CHAT_MODEL_TIMEOUT_MS", "1", NULL },
	{ "CHAT_MODEL_TIMEOUT_MS 3600000",
	  { S, "CHAT_MODEL_TIMEOUT_MS=3600000" }, 0,
	  "CHAT_MODEL_TIMEOUT_MS", "3600000", NULL },
	{ "CHAT_MODEL_TIMEOUT_MS 0 refused", { S, "CHAT_MODEL_TIMEOUT_MS=0" },
	  -1, NULL, NULL,
	  "CHAT_MODEL_TIMEOUT_MS=0: expected an integer from 1 to 3600000" },
	{ "CHAT_MODEL_TIMEOUT_MS 3600001 refused",
	  { S, "CHAT_MODEL_TIMEOUT_MS=3600001" }, -1, NULL, NULL,
	  "CHAT_MODEL_TIMEOUT_MS=3600001: expected an integer from 1 to "
	  "3600000" },
	{ "CHAT_MAX_TOOL_ROUNDS 1", { S, "CHAT_MAX_TOOL_ROUNDS=1" }, 0,
	  "CHAT_MAX_TOOL_ROUNDS", "1", NULL },
	{ "CHAT_MAX_TOOL_ROUNDS 50", { S, "CHAT_MAX_TOOL_ROUNDS=50" }, 0,
	  "CHAT_MAX_TOOL_ROUNDS", "50", NULL },
	{ "CHAT_MAX_TOOL_ROUNDS 0 refused", { S, "CHAT_MAX_TOOL_ROUNDS=0" },
	  -1, NULL, NULL,
	  "CHAT_MAX_TOOL_ROUNDS=0: expected an integer from 1 to 50" },
	{ "CHAT_MAX_TOOL_ROUNDS 51 refused", { S, "CHAT_MAX_TOOL_ROUNDS=51" },
	  -1, NULL, NULL,
	  "CHAT_MAX_TOOL_ROUNDS=51: expected an integer from 1 to 50" },
	{ "CHAT_HISTORY_MESSAGES 0", { S, "CHAT_HISTORY_MESSAGES=0" }, 0,
	  "CHAT_HISTORY_MESSAGES", "0", NULL },
	{ "CHAT_HISTORY_MESSAGES 1000", { S, "CHAT_HISTORY_MESSAGES=1000" },
	  0, "CHAT_HISTORY_MESSAGES", "1000", NULL },
	{ "CHAT_HISTORY_MESSAGES -1 refused",
	  { S, "CHAT_HISTORY_MESSAGES=-1" }, -1, NULL, NULL,
	  "CHAT_HISTORY_MESSAGES=-1: expected an integer from 0 to 1000" },
	{ "CHAT_HISTORY_MESSAGES 1001 refused",
	  { S, "CHAT_HISTORY_MESSAGES=1001" }, -1, NULL, NULL,
	  "CHAT_HISTORY_MESSAGES=1001: expected an integer from 0 to 1000" },
	{ "CHAT_HISTORY_TOKENS 0", { S, "CHAT_HISTORY_TOKENS=0" }, 0,
	  "CHAT_HISTORY_TOKENS", "0", NULL },
	{ "CHAT_HISTORY_TOKENS 10000000",
	  { S, "CHAT_HISTORY_TOKENS=10000000" }, 0,
	  "CHAT_HISTORY_TOKENS", "10000000", NULL },
	{ "CHAT_HISTORY_TOKENS -1 refused", { S, "CHAT_HISTORY_TOKENS=-1" },
	  -1, NULL, NULL,
	  "CHAT_HISTORY_TOKENS=-1: expected an integer from 0 to 10000000" },
	{ "CHAT_HISTORY_TOKENS 10000001 refused",
	  { S, "CHAT_HISTORY_TOKENS=10000001" }, -1, NULL, NULL,
	  "CHAT_HISTORY_TOKENS=10000001: expected an integer from 0 to "
	  "10000000" },
	{ "CHAT_MAX_BODY_BYTES 1024", { S, "CHAT_MAX_BODY_BYTES=1024" }, 0,
	  "CHAT_MAX_BODY_BYTES", "1024", NULL },
	{ "CHAT_MAX_BODY_BYTES 64 MiB", { S, "CHAT_MAX_BODY_BYTES=67108864" },
	  0, "CHAT_MAX_BODY_BYTES", "67108864", NULL },
	{ "CHAT_MAX_BODY_BYTES 1023 refused",
	  { S, "CHAT_MAX_BODY_BYTES=1023" }, -1, NULL, NULL,
	  "CHAT_MAX_BODY_BYTES=1023: expected an integer from 1024 to "
	  "67108864" },
	{ "CHAT_MAX_BODY_BYTES 64 MiB + 1 refused",
	  { S, "CHAT_MAX_BODY_BYTES=67108865" }, -1, NULL, NULL,
	  "CHAT_MAX_BODY_BYTES=67108865: expected an integer from 1024 to "
	  "67108864" },
	{ "CHAT_WORKER_THREADS 1", { S, "CHAT_WORKER_THREADS=1" }, 0,
	  "CHAT_WORKER_THREADS", "1", NULL },
	{ "CHAT_WORKER_THREADS 4096", { S, "CHAT_WORKER_THREADS=4096" }, 0,
	  "CHAT_WORKER_THREADS", "4096", NULL },
	{ "CHAT_WORKER_THREADS 0 refused", { S, "CHAT_WORKER_THREADS=0" }, -1,
	  NULL, NULL,
	  "CHAT_WORKER_THREADS=0: expected an integer from 1 to 4096" },
	{ "CHAT_WORKER_THREADS 4097 refused",
	  { S, "CHAT_WORKER_THREADS=4097" }, -1, NULL, NULL,
	  "CHAT_WORKER_THREADS=4097: expected an integer from 1 to 4096" },

	/* Only a plain decimal is a number. */
	{ "letters refused", { S, "CHAT_WORKER_THREADS=four" }, -1, NULL,
	  NULL, "CHAT_WORKER_THREADS=four: expected an integer" },
	{ "trailing letters refused", { S, "CHAT_MAX_TOOL_ROUNDS=5x" }, -1,
	  NULL, NULL, "CHAT_MAX_TOOL_ROUNDS=5x: expected an integer" },
	{ "hexadecimal refused", { S, "CHAT_MAX_BODY_BYTES=0x10000" }, -1,
	  NULL, NULL, "CHAT_MAX_BODY_BYTES=0x10000: expected an integer" },
	{ "a fraction refused", { S, "CHAT_MODEL_TIMEOUT_MS=1.5" }, -1,
	  NULL, NULL, "CHAT_MODEL_TIMEOUT_MS=1.5: expected an integer" },
	{ "a trailing space refused", { S, "CHAT_HISTORY_TOKENS=8000 " }, -1,
	  NULL, NULL, "CHAT_HISTORY_TOKENS=8000 : expected an integer" },
	{ "past long long refused",
	  { S, "CHAT_HISTORY_TOKENS=99999999999999999999" }, -1, NULL, NULL,
	  "CHAT_HISTORY_TOKENS=99999999999999999999: expected an integer" },
	{ "a bad number after a good one refused",
	  { S, "CHAT_MAX_TOOL_ROUNDS=3", "CHAT_WORKER_THREADS=-2" }, -1,
	  NULL, NULL, "CHAT_WORKER_THREADS=-2: expected an integer" },
};

static size_t		 tests;
static int		 failed;
static const char	*const *current_env;	/* what lookup() reads */
static FILE		*captured;		/* stderr, while we read it */

static int	 ok(int, const char *, ...)
		    __attribute__((format(printf, 2, 3)));

static int
ok(int pass, const char *fmt, ...)
{
	va_list	 ap;

	printf("%sok %zu - ", pass ? "" : "not ", ++tests);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!pass)
		failed = 1;
	return pass;
}

static const char *
lookup(const char *name)
{
	size_t	 i, len = strlen(name);

	for (i = 0; current_env[i] != NULL; i++)
		if (strncmp(current_env[i], name, len) == 0 &&
		    current_env[i][len] == '=')
			return current_env[i] + len + 1;
	return NULL;
}

/* What config_from() logged since the last call; a static buffer. */
static const char *
take_log(void)
{
	static char	 text[LINE_MAX_BYTES];
	size_t		 n;

	fflush(stderr);
	rewind(captured);
	n = fread(text, 1, sizeof(text) - 1, captured);
	text[n] = '\0';
	if (ftruncate(fileno(captured), 0) == -1)
		text[0] = '\0';
	rewind(captured);
	return text;
}

static const struct config_var *
var_named(const char *name)
{
	const struct config_var	*vars;
	size_t			 i, n;

	vars = config_vars(&n);
	for (i = 0; i < n; i++)
		if (strcmp(vars[i].name, name) == 0)
			return &vars[i];
	return NULL;
}

/* The field of v in c as text, in buf; NULL when it is a NULL string. */
static const char *
field_text(const struct config *c, const struct config_var *v, char *buf,
    size_t size)
{
	const char	*field = (const char *)c + v->offset;

	switch (v->kind) {
	case CONFIG_STRING:
		return *(const char *const *)(const void *)field;
	case CONFIG_INT:
		snprintf(buf, size, "%d", *(const int *)(const void *)field);
		break;
	case CONFIG_LONG:
		snprintf(buf, size, "%ld", *(const long *)(const void *)field);
		break;
	case CONFIG_SIZE:
		snprintf(buf, size, "%zu",
		    *(const size_t *)(const void *)field);
		break;
	}
	return buf;
}

static int
field_is(const struct config *c, const char *name, const char *want)
{
	const struct config_var	*v = var_named(name);
	const char		*got;
	char			 buf[32];

	if (v == NULL)
		return 0;
	got = field_text(c, v, buf, sizeof(buf));
	if (got == NULL || want == NULL)
		return got == want;
	return strcmp(got, want) == 0;
}

static void
test_cases(void)
{
	struct config	 c;
	const char	*log;
	size_t		 i;
	int		 rc;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		current_env = cases[i].env;
		rc = config_from(&c, lookup);
		log = take_log();
		if (rc == 0 && cases[i].var != NULL &&
		    !field_is(&c, cases[i].var, cases[i].want))
			rc = 1;
		if (cases[i].log != NULL && strstr(log, cases[i].log) == NULL)
			rc = 1;
		if (cases[i].log == NULL && *log != '\0')
			rc = 1;
		if (!ok(rc == cases[i].rc, "%s", cases[i].name))
			printf("# returned %d, logged: %s\n", rc, log);
	}

	/* One line through the project's logger, naming the worker. */
	current_env = (const char *[]){ NULL };
	config_from(&c, lookup);
	log = take_log();
	ok(strncmp(log, "chat.fcgi[", 10) == 0 && strstr(log, "] req 0: ") &&
	    strchr(log, '\n') == log + strlen(log) - 1,
	    "a refusal is one line from log_err()");

	current_env = (const char *[]){ "CHAT_JWT_SECRET=" SECRET32 "0123",
	    NULL };
	ok(config_from(&c, lookup) == 0 && c.jwt_secret_len == 36,
	    "jwt_secret_len is the secret's length");
	take_log();
}

/* Each integer row's own bounds, so that a new row is tried too. */
static void
test_bounds(void)
{
	const struct config_var	*vars;
	struct config		 c;
	char			 env[4][64], buf[32];
	const char		*envp[3] = { S, NULL, NULL };
	long long		 edge[4];
	size_t			 i, j, n;
	int			 pass;

	vars = config_vars(&n);
	for (i = 0; i < n; i++) {
		if (vars[i].kind == CONFIG_STRING)
			continue;
		edge[0] = vars[i].min;
		edge[1] = vars[i].max;
		edge[2] = vars[i].min - 1;
		edge[3] = vars[i].max + 1;
		pass = 1;
		for (j = 0; j < 4; j++) {
			snprintf(env[j], sizeof(env[j]), "%s=%lld",
			    vars[i].name, edge[j]);
			envp[1] = env[j];
			current_env = envp;
			snprintf(buf, sizeof(buf), "%lld", edge[j]);
			if (j < 2)
				pass &= config_from(&c, lookup) == 0 &&
				    field_is(&c, vars[i].name, buf);
			else
				pass &= config_from(&c, lookup) == -1;
			take_log();
		}
		ok(pass, "%s: min and max accepted, one past refused",
		    vars[i].name);
	}
}

/* Each row says what its field can hold, and its default is valid. */
static void
test_rows(void)
{
	const struct config_var	*vars;
	struct config		 c;
	const char		*envp[] = { S, NULL };
	long long		 top;
	size_t			 i, n;

	vars = config_vars(&n);
	current_env = envp;
	ok(config_from(&c, lookup) == 0 && *take_log() == '\0',
	    "the defaults load, quietly");
	for (i = 0; i < n; i++) {
		if (vars[i].kind == CONFIG_STRING) {
			ok(vars[i].min == 0 && vars[i].max == 0,
			    "%s: a string, no bounds", vars[i].name);
			continue;
		}
		if (vars[i].kind == CONFIG_INT)
			top = INT_MAX;
		else if (vars[i].kind == CONFIG_LONG)
			top = LONG_MAX;
		else
			top = SIZE_MAX < LLONG_MAX ? (long long)SIZE_MAX
			    : LLONG_MAX;
		ok(vars[i].min <= vars[i].max && vars[i].max <= top &&
		    (vars[i].kind != CONFIG_SIZE || vars[i].min >= 0) &&
		    (vars[i].kind != CONFIG_INT || vars[i].min >= INT_MIN) &&
		    vars[i].def != NULL && !vars[i].required &&
		    vars[i].fallback == NULL,
		    "%s: bounds fit the field, a default", vars[i].name);
	}
}

/* A copy of line without its newline; NULL at the end of f. */
static char *
next_line(FILE *f, char *line, size_t size)
{
	if (fgets(line, size, f) == NULL)
		return NULL;
	line[strcspn(line, "\n")] = '\0';
	return line;
}

/* Splits "| a | b | c |" into its three cells, in place; 0 or -1. */
static int
split_row(char *line, char *cell[3])
{
	size_t	 i, len = strlen(line);
	char	*p, *bar;

	if (strncmp(line, "| ", 2) != 0 || len < 4 ||
	    strcmp(line + len - 2, " |") != 0)
		return -1;
	line[len - 2] = '\0';
	p = line + 2;
	for (i = 0; i < 3; i++) {
		cell[i] = p;
		if (i == 2)
			return strstr(p, " | ") == NULL ? 0 : -1;
		if ((bar = strstr(p, " | ")) == NULL)
			return -1;
		*bar = '\0';
		p = bar + 3;
	}
	return -1;
}

/* The README's table under "## Configuration" and the config table. */
static void
test_readme(void)
{
	const struct config_var	*vars;
	FILE			*f;
	char			 line[LINE_MAX_BYTES], name[128], def[256];
	char			*cell[3];
	size_t			 i = 0, n, rows = 0;
	int			 in_section = 0, in_table = 0;

	vars = config_vars(&n);
	if (!ok((f = fopen("README", "r")) != NULL, "README opens"))
		return;
	while (next_line(f, line, sizeof(line)) != NULL) {
		if (strncmp(line, "## ", 3) == 0) {
			if (in_section)
				break;
			in_section = strcmp(line, "## Configuration") == 0;
			continue;
		}
		if (!in_section)
			continue;
		if (strncmp(line, "| ", 2) != 0) {
			if (in_table)
				break;	/* the first table is the list */
			continue;
		}
		in_table = 1;
		if (strncmp(line, "| `", 3) != 0)
			continue;	/* the heading and its rule */
		rows++;
		if (split_row(line, cell) == -1) {
			ok(0, "README: a row of three cells: %s", line);
			continue;
		}
		if (i >= n) {
			ok(0, "README: %s is in lib/config.c's table", cell[0]);
			continue;
		}
		snprintf(name, sizeof(name), "`%s`", vars[i].name);
		if (vars[i].shown_default != NULL)
			snprintf(def, sizeof(def), "%s", vars[i].shown_default);
		else
			snprintf(def, sizeof(def), "`%s`", vars[i].def);
		ok(strcmp(cell[0], name) == 0, "README row %s in its place",
		    vars[i].name);
		if (!ok(strcmp(cell[1], def) == 0, "README: %s's default",
		    vars[i].name))
			printf("# README %s, table %s\n", cell[1], def);
		if (!ok(strcmp(cell[2], vars[i].meaning) == 0,
		    "README: %s's meaning", vars[i].name))
			printf("# README %s\n# table  %s\n", cell[2],
			    vars[i].meaning);
		i++;
	}
	fclose(f);
	ok(rows == n, "README's table has as many rows as the config table");
}

/* The value of a line NAME="..." or NAME=... of scripts/run, in out. */
static int
shell_value(const char *name, char *out, size_t size)
{
	FILE	*f;
	char	 line[LINE_MAX_BYTES], *p;
	size_t	 len = strlen(name);
	int	 found = 0;

	if ((f = fopen("scripts/run", "r")) == NULL)
		return 0;
	while (!found && next_line(f, line, sizeof(line)) != NULL) {
		if (strncmp(line, name, len) != 0 || line[len] != '=')
			continue;
		p = line + len + 1;
		if (*p == '"') {
			p++;
			if (strchr(p, '"') == NULL)
				break;	/* one line only */
			*strchr(p, '"') = '\0';
		}
		found = snprintf(out, size, "%s", p) < (int)size;
	}
	fclose(f);
	return found;
}

/* scripts/run hands its workers every variable whose name begins with
 * WORKER_PREFIX, and those of WORKER_VARS: together the whole table. */
static int
passed_on(const char *name, const char *prefix, const char *list)
{
	const char	*p = list;
	size_t		 len = strlen(name);

	if (*prefix != '\0' && strncmp(name, prefix, strlen(prefix)) == 0)
		return 1;
	while ((p = strstr(p, name)) != NULL) {
		if ((p == list || p[-1] == ' ') &&
		    (p[len] == ' ' || p[len] == '\0'))
			return 1;
		p += len;
	}
	return 0;
}

static void
test_run_script(void)
{
	const struct config_var	*vars;
	char			 prefix[64], list[1024];
	size_t			 i, n;

	vars = config_vars(&n);
	if (!ok(shell_value("WORKER_PREFIX", prefix, sizeof(prefix)) &&
	    shell_value("WORKER_VARS", list, sizeof(list)),
	    "scripts/run sets WORKER_PREFIX and WORKER_VARS"))
		return;
	for (i = 0; i < n; i++) {
		ok(passed_on(vars[i].name, prefix, list),
		    "scripts/run passes %s on", vars[i].name);
		if (vars[i].fallback != NULL)
			ok(passed_on(vars[i].fallback, prefix, list),
			    "scripts/run passes %s on", vars[i].fallback);
	}
}

int
main(void)
{
	int	 saved;

	/* config_from() logs its refusals on stderr: keep them to check. */
	if ((captured = tmpfile()) == NULL || (saved = dup(2)) == -1 ||
	    dup2(fileno(captured), 2) == -1) {
		printf("1..0 # SKIP cannot capture stderr\n");
		return 0;
	}
	test_cases();
	test_bounds();
	test_rows();
	dup2(saved, 2);
	close(saved);
	fclose(captured);
	test_readme();
	test_run_script();
	printf("1..%zu\n", tests);
	return failed;
}
