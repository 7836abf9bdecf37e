/* offline.c: the built-in offline model: reads what the person wants from
 * the last user message of the transcript and answers through the five
 * tools, round by round, as a real model would (see offline.h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cJSON.h>

#include "buf.h"
#include "offline.h"
#include "text.h"

#define MAX_WORDS	64	/* commands are short; later words ignored */
#define WORD_BYTES	32	/* a longer word matches no keyword, title */
#define LIST_SHOWN	100	/* tasks spelled out in one answer */
#define ANSWER_MAX	(8UL * 1024 * 1024)

/* A word of the user's text: where it is, and how we compare it. */
struct word {
	const char	*start, *end;
	char		 norm[WORD_BYTES]; /* lower case, no apostrophes; ""
					    * when too long to be a keyword */
	size_t		 len;		/* of norm */
};

struct words {
	struct word	 w[MAX_WORDS];
	size_t		 n;
};

enum act {
	ACT_HELP,	/* no tool: say what we understand */
	ACT_THANKS,
	ACT_ASK_TITLE,	/* "add" with nothing to add */
	ACT_ASK_RENAME,	/* "rename task 2" without the new name */
	ACT_ASK_TARGET,	/* "delete" without a number or a name */
	ACT_REOPEN,	/* no tool marks a task as not done */
	ACT_ADD,
	ACT_LIST,
	ACT_COMPLETE,
	ACT_DELETE,
	ACT_UPDATE,
};

struct intent {
	enum act	 act;
	const char	*status;	/* all, pending or completed */
	long long	 task_id;	/* > 0 when the person gave a number */
	size_t		 name_from;	/* else the task's name is in these */
	size_t		 name_to;	/* words, stop words aside */
	const char	*text;		/* add, update: new title, in the */
	size_t		 text_len;	/* user's message, not NUL-ended */
	const char	*field;		/* "title" or "description" */
};

/* This turn as the transcript shows it. */
struct turn {
	const struct transcript	*t;
	const char		*text;	/* the last user message, "" if none */
	size_t			 user;	/* its index in t, t->n if none */
	int			 rounds; /* assistant tool-call messages since */
	size_t			 calls_at; /* the newest of those */
};

/* Fixed answers, for intents that need no tool. */
static const char *const answers[] = {
	[ACT_HELP] = "I can look after your todo list. Try \"Add a task "
	    "to buy groceries\", \"What's pending?\", \"Mark task 3 as "
	    "complete\", \"Delete the meeting task\" or \"Change task 1 to "
	    "'Call mom tonight'\".",
	[ACT_THANKS] = "You're welcome! Anything else for your list?",
	[ACT_ASK_TITLE] = "What should the task say? For example: \"Add a "
	    "task to buy groceries\".",
	[ACT_ASK_RENAME] = "What should the new title be? For example: "
	    "\"Change task 1 to 'Call mom tonight'\".",
	[ACT_ASK_TARGET] = "Which task do you mean? Tell me its number or "
	    "part of its title, for example \"task 3\" or \"the meeting "
	    "task\".",
	[ACT_REOPEN] = "Sorry, I can't mark a task as not done. I can add, "
	    "list, complete, delete and rename tasks.",
};

/* The tool each action calls (tools.h names them), how to ask for it by
 * number ("<verb> <id><tail>"), and what its result says in words:
 * Added "Buy groceries" (task 5). */
static const struct {
	const char	*tool;
	const char	*verb, *tail;
	const char	*done_verb, *done_tail;
} acts[] = {
	[ACT_ADD] = { "add_task", NULL, NULL, "Added", "" },
	[ACT_LIST] = { "list_tasks", NULL, NULL, NULL, NULL },
	[ACT_COMPLETE] = { "complete_task", "complete task", "",
	    "Marked", " as complete" },
	[ACT_DELETE] = { "delete_task", "delete task", "", "Deleted", "" },
	[ACT_UPDATE] = { "update_task", "change task", " to ...", "Updated",
	    "" },
};

/* Phrases, as normalised words. Within a table the first match wins,
 * so a longer phrase comes before its own beginning. */
static const char *const fillers[] = { "please", "pls", "plz", "hey", "hi",
	"hello", "ok", "okay", "oh", "so", "now", "also", "and", "then",
	"well", "kindly", "just", "yes", "yeah", "can you", "could you",
	"would you", "will you", "can u", "can i", "could i", "may i",
	"i want to", "i wanna", "i would like to", "id like to",
	"i want you to", "go ahead and", "lets", "let me", "help me", NULL };
static const char *const thanks[] = { "thanks", "thank you", "thx", "ty",
	"cheers", NULL };
static const char *const add_verbs[] = { "add a new task to",
	"add a new task called", "add a new task named", "add a new task",
	"add a task to", "add a task called", "add a task named",
	"add a task for", "add a task", "add new task to", "add new task",
	"add task to", "add task called", "add task", "add a todo to",
	"add a todo", "add todo", "add a reminder to", "add a reminder",
	"add an item", "add item", "create a new task to",
	"create a new task", "create a task to", "create a task called",
	"create a task", "create task", "make a task to", "make a task",
	"new task", "new todo", "remind me to", "i need to remember to",
	"i have to remember to", "i must remember to", "remember to",
	"dont let me forget to", "dont forget to", "note to self", "add",
	NULL };
/* Only once nothing else matched: "I need to delete task 2" deletes. */
static const char *const add_weak[] = { "i need to", "i have to", "i must",
	"i should", "i gotta", "i got to", "need to", "have to", "todo",
	"to do", NULL };
static const char *const update_verbs[] = { "change", "rename", "update",
	"edit", "modify", "set", "retitle", NULL };
static const char *const update_seps[] = { "to say", "to read", "to be",
	"to", "into", "as", NULL };
static const char *const description_words[] = { "description",
	"details", "notes", "note", NULL };
static const char *const delete_verbs[] = { "delete", "remove", "erase",
	"drop", "cancel", "trash", "discard", "scrap", "get rid of", "del",
	"rm", NULL };
static const char *const complete_verbs[] = { "complete", "completed",
	"finish", "finished", "done", "mark", "marked", "check off",
	"checked off", "tick off", "ticked off", "cross off", "crossed off",
	"did", "accomplished", "close", "closed", NULL };
static const char *const reopen_words[] = { "not", "incomplete",
	"uncomplete", "undone", "undo", "unmark", "reopen", "pending",
	"unfinished", NULL };
static const char *const list_leads[] = { "what", "whats", "which", "show",
	"list", "display", "view", "see", "tell", "how", "any", "do", "have",
	"are", "is", "my", "all", "give", "print", "whatre", NULL };
static const char *const list_words[] = { "tasks", "task", "todos",
	"todo", "to do", "list", "pending", "agenda", "items", "everything",
	"anything", "left", "remaining", "outstanding", NULL };
static const char *const pending_words[] = { "pending", "open",
	"incomplete", "unfinished", "outstanding", "left", "remaining",
	"undone", "not done", "not completed", "not finished", "to do",
	"still", NULL };
static const char *const completed_words[] = { "completed", "complete",
	"done", "finished", "finish", "accomplished", "did", NULL };
/* A number right after one of these (or first) is a task id. */
static const char *const id_anchors[] = { "task", "tasks", "number", "no",
	"num", "nr", "item", "todo", "id", "delete", "remove", "erase",
	"drop", "cancel", "complete", "finish", "mark", "close", "check",
	"tick", "cross", "change", "rename", "update", "edit", "modify",
	"set", "did", "done", NULL };
/* Words that do not name a task: "delete the meeting task" -> meeting. */
static const char *const stop_words[] = { "the", "a", "an", "my", "task",
	"tasks", "todo", "todos", "item", "one", "called", "named", "titled",
	"as", "is", "it", "its", "this", "that", "of", "for", "from", "on",
	"in", "with", "to", "i", "im", "ive", "have", "has", "had", "just",
	"already", "now", "please", "list", "off", "out", "all", "get",
	"rid", "can", "you", "me", "about", "thing", "entry", "reminder",
	"was", "be", "been", "title", "name", "description", "details",
	"mark", "marked", "done",
	"complete", "completed", "finish", "finished", "check", "checked",
	"tick", "ticked", "cross", "crossed", "did", "accomplished", "close",
	"closed", "delete", "remove", "erase", "drop", "cancel", "trash",
	"discard", "scrap", "del", "rm", "change", "rename", "update", "edit",
	"modify", "set", "retitle", NULL };
/* Said after a title, not part of it: "add milk to my list". */
static const char *const title_tails[] = { " to my list",
	" to my todo list", " to my to-do list", " to my to do list",
	" to the list", " to my tasks", " to the todo list", " on my list",
	" please", " for me", NULL };

static char
lower(char c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* U+2018 to U+201D, the curly quotes: their length, else 0. */
static size_t
curly_quote(const char *p)
{
	const unsigned char	*u = (const unsigned char *)p;

	return u[0] == 0xe2 && u[1] == 0x80 && u[2] >= 0x98 && u[2] <= 0x9d ?
	    3 : 0;
}

/* Letters, digits, and every other code point but the curly quotes. */
static int
word_byte(const char *p)
{
	unsigned char	 c = *p;

	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return 1;
	return c >= 0x80 && curly_quote(p) == 0;
}

/* An apostrophe (' or U+2019) between letters: "what's", "don't". */
static size_t
apostrophe(const char *p)
{
	size_t	 n = 0;

	if (*p == '\'')
		n = 1;
	else if (strncmp(p, "\xe2\x80\x99", 3) == 0)
		n = 3;
	return n > 0 && word_byte(p + n) ? n : 0;
}

/* The next word at or after *p: its span, with *p moved past it. */
static int
next_word(const char **p, const char **start, const char **end)
{
	const char	*q = *p;
	size_t		 n;

	while (*q != '\0' && !word_byte(q))
		q += (n = curly_quote(q)) > 0 ? n : 1;
	if (*q == '\0')
		return 0;
	*start = q;
	for (;;) {
		if (word_byte(q))
			q++;
		else if ((n = apostrophe(q)) > 0)
			q += n;
		else
			break;
	}
	*p = *end = q;
	return 1;
}

/* Compares a span of text to a normalised word: 1 if equal, or, with
 * prefix, if the span starts with it. */
static int
span_matches(const char *p, const char *end, const char *norm, int prefix)
{
	size_t	 n;

	if (*norm == '\0')
		return 0;
	while (p < end && *norm != '\0') {
		if ((n = apostrophe(p)) > 0) {
			p += n;
			continue;
		}
		if (lower(*p++) != *norm++)
			return 0;
	}
	return *norm == '\0' && (prefix || p == end);
}

static void
split_words(const char *text, struct words *ws)
{
	const char	*p = text, *start, *end, *q;
	struct word	*w;
	size_t		 o, n;

	ws->n = 0;
	while (ws->n < MAX_WORDS && next_word(&p, &start, &end)) {
		w = &ws->w[ws->n++];
		w->start = start;
		w->end = end;
		for (q = start, o = 0; q < end && o < sizeof(w->norm); )
			if ((n = apostrophe(q)) > 0)
				q += n;
			else
				w->norm[o++] = lower(*q++);
		if (o == sizeof(w->norm))
			o = 0;
		w->norm[o] = '\0';
		w->len = o;
	}
}

/* How many words the space-separated phrase covers at ws[i...], or 0. */
static size_t
phrase_at(const struct words *ws, size_t i, const char *phrase)
{
	size_t	 n = 0, len;

	for (;;) {
		/* The first letters differ for nearly every phrase of a
		 * table: the cheap test first (a turn tries hundreds). */
		if (i + n >= ws->n || ws->w[i + n].norm[0] != phrase[0])
			return 0;
		len = strcspn(phrase, " ");
		if (ws->w[i + n].len != len ||
		    memcmp(ws->w[i + n].norm, phrase, len) != 0)
			return 0;
		n++;
		if (phrase[len] == '\0')
			return n;
		phrase += len + 1;
	}
}

/* The first phrase of table found at ws[i...]: its length, or 0. */
static size_t
table_at(const struct words *ws, size_t i, const char *const *table)
{
	size_t	 n;

	for (; *table != NULL; table++)
		if ((n = phrase_at(ws, i, *table)) > 0)
			return n;
	return 0;
}

/* Where a phrase of table first occurs in ws[from, to): its index (to
 * when nowhere) and, in *len, its length. */
static size_t
table_find(const struct words *ws, size_t from, size_t to,
    const char *const *table, size_t *len)
{
	size_t	 n;

	for (; from < to; from++)
		if ((n = table_at(ws, from, table)) > 0 && from + n <= to) {
			if (len != NULL)
				*len = n;
			return from;
		}
	return to;
}

static int
has_phrase(const struct words *ws, size_t from, const char *const *table)
{
	return table_find(ws, from, ws->n, table, NULL) < ws->n;
}

/* A task id the person typed: a number first, or right after "task",
 * "#" (not a word) or a verb: "delete 2", "task #3 is done". "Buy 2
 * apples" has none. 0 when ws[from, to) has none; else *at is where. */
static long long
task_number(const struct words *ws, size_t from, size_t to, size_t *at)
{
	const char	*s;
	size_t		 i, len;

	for (i = from; i < to; i++) {
		s = ws->w[i].norm;
		len = strlen(s);
		/* 15 digits stay below 2^53, exact in a JSON number. */
		if (len == 0 || len > 15 || strspn(s, "0123456789") != len)
			continue;
		if (i > from && table_at(ws, i - 1, id_anchors) != 1)
			continue;
		if (at != NULL)
			*at = i;
		return strtoll(s, NULL, 10);
	}
	return 0;
}

static int
is_stop_word(const struct words *ws, size_t i)
{
	return table_at(ws, i, stop_words) == 1;
}

/* The words naming the task, for messages: from the first to the last
 * word that is not a stop word. 0 when there are none. */
static int
name_span(const struct words *ws, const struct intent *in,
    const char **start, const char **end)
{
	size_t	 i;
	int	 found = 0;

	for (i = in->name_from; i < in->name_to; i++) {
		if (is_stop_word(ws, i))
			continue;
		if (!found)
			*start = ws->w[i].start;
		*end = ws->w[i].end;
		found = 1;
	}
	return found;
}

/* Trims the text after a verb down to a title: leading ":", quotes
 * around it, final punctuation, "to my list"; case kept. */
static void
trim_title(const char **text, size_t *len)
{
	const char	*p = *text, *end = p + strlen(p);
	size_t		 i, n, q;
	int		 again = 1;

	while (p < end && strchr(" \t\r\n:-,", *p) != NULL)
		p++;
	while (again) {
		again = 0;
		while (end > p && strchr(" \t\r\n.!?,;", end[-1]) != NULL)
			end--;
		for (i = 0; title_tails[i] != NULL; i++) {
			n = strlen(title_tails[i]);
			if ((size_t)(end - p) > n &&
			    strncasecmp(end - n, title_tails[i], n) == 0) {
				end -= n;
				again = 1;
			}
		}
	}
	/* 'Call mom tonight' or a curly pair: drop the quotes. */
	q = (*p == '\'' || *p == '"') ? 1 : curly_quote(p);
	if (q > 0 && end - p >= (ptrdiff_t)(2 * q) &&
	    ((q == 1 && (end[-1] == '\'' || end[-1] == '"')) ||
	    (q == 3 && curly_quote(end - 3) == 3))) {
		p += q;
		end -= q;
	}
	*text = p;
	*len = end - p;
}

static void
intent_text(struct intent *in, const char *text)
{
	in->text = text;
	trim_title(&in->text, &in->text_len);
	in->field = "title";
}

static void
intent_list(const struct words *ws, size_t r, struct intent *in)
{
	in->act = ACT_LIST;
	if (has_phrase(ws, r, pending_words))
		in->status = "pending";
	else if (has_phrase(ws, r, completed_words))
		in->status = "completed";
}

/* complete or delete: by the number given, else by name. */
static void
intent_target(const struct words *ws, size_t r, enum act act,
    struct intent *in)
{
	const char	*start, *end;

	in->act = act;
	if ((in->task_id = task_number(ws, r, ws->n, NULL)) > 0)
		return;
	in->name_from = r;
	in->name_to = ws->n;
	/* "completed tasks" names no task: it asks for a list. */
	if (!name_span(ws, in, &start, &end)) {
		if (has_phrase(ws, r, list_words))
			intent_list(ws, r, in);
		else
			in->act = ACT_ASK_TARGET;
	}
}

/* "change task 1 to X", "rename the meeting task to X", "update task 1
 * description to X". r is the verb. */
static void
intent_update(const struct words *ws, const char *text, size_t r,
    struct intent *in)
{
	const char	*start, *end;
	size_t		 sep, len = 0, at = 0;

	in->act = ACT_UPDATE;
	sep = table_find(ws, r + 1, ws->n, update_seps, &len);
	in->task_id = task_number(ws, r, sep, &at);
	in->name_from = r + 1;
	in->name_to = sep;
	if (sep < ws->n)
		intent_text(in, ws->w[sep + len - 1].end);
	else if (in->task_id > 0)	/* "rename task 2: X" */
		intent_text(in, ws->w[at].end);
	else
		intent_text(in, text + strlen(text));
	if (table_find(ws, r, in->name_to, description_words, NULL) <
	    in->name_to)
		in->field = "description";
	if (in->task_id == 0 && !name_span(ws, in, &start, &end))
		in->act = ACT_ASK_TARGET;
	else if (in->text_len == 0)
		in->act = ACT_ASK_RENAME;
}

static void
intent_add(const struct words *ws, size_t last, struct intent *in)
{
	intent_text(in, ws->w[last].end);
	in->act = in->text_len > 0 ? ACT_ADD : ACT_ASK_TITLE;
}

/* The order is the meaning: "add a task to delete X" adds, "show
 * completed" lists, "task 3 is done" completes, "I need to buy milk"
 * adds, and "I need to delete task 2" deletes. */
static void
read_intent(const struct words *ws, const char *text, struct intent *in)
{
	size_t	 r = 0, len;

	memset(in, 0, sizeof(*in));
	in->status = "all";
	while ((len = table_at(ws, r, fillers)) > 0)
		r += len;
	if (r >= ws->n)
		in->act = ACT_HELP;
	else if (table_at(ws, r, thanks) > 0)
		in->act = ACT_THANKS;
	else if ((len = table_at(ws, r, add_verbs)) > 0)
		intent_add(ws, r + len - 1, in);
	else if (table_at(ws, r, update_verbs) > 0)
		intent_update(ws, text, r, in);
	else if (table_at(ws, r, list_leads) > 0 &&
	    task_number(ws, r, ws->n, NULL) == 0 && (has_phrase(ws, r,
	    list_words) || has_phrase(ws, r, pending_words) ||
	    has_phrase(ws, r, completed_words)))
		intent_list(ws, r, in);
	else if (has_phrase(ws, r, delete_verbs))
		intent_target(ws, r, ACT_DELETE, in);
	else if (has_phrase(ws, r, complete_verbs) &&
	    has_phrase(ws, r, reopen_words))
		in->act = ACT_REOPEN;
	else if (has_phrase(ws, r, complete_verbs))
		intent_target(ws, r, ACT_COMPLETE, in);
	else if (has_phrase(ws, r, list_words))
		intent_list(ws, r, in);
	else if ((len = table_at(ws, r, add_weak)) > 0)
		intent_add(ws, r + len - 1, in);
	else
		in->act = ACT_HELP;
}

static const char *
str_item(const cJSON *object, const char *key)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(object, key);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* FNV-1a over s and its NUL, so that ("ab", "c") and ("a", "bc") differ. */
static uint64_t
hash_str(uint64_t h, const char *s)
{
	if (s == NULL)
		s = "";
	do {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	} while (*s++ != '\0');
	return h;
}

/* Finds the last user message and what this turn has done since. */
static void
read_turn(const struct transcript *tr, struct turn *t)
{
	size_t	 i, user;

	memset(t, 0, sizeof(*t));
	t->t = tr;
	t->text = "";
	for (i = tr->n, user = tr->n; i > 0 && user == tr->n; i--)
		if (tr->msgs[i - 1].role == ROLE_USER)
			user = i - 1;
	t->user = user;
	if (user == tr->n)
		return;
	if (tr->msgs[user].content != NULL)
		t->text = tr->msgs[user].content;
	for (i = user + 1; i < tr->n; i++)
		if (tr->msgs[i].role == ROLE_ASSISTANT &&
		    tr->msgs[i].ncalls > 0) {
			t->rounds++;
			t->calls_at = i;
		}
}

/* A hash of the whole conversation up to the turn's user message, for
 * the ids of its calls: "list tasks" asked twice gets two sets of them.
 * Made only for a reply that calls a tool, since it reads every message
 * of the history. */
static uint64_t
turn_hash(const struct turn *t)
{
	const struct transcript_msg	*m;
	uint64_t			 h = 0xcbf29ce484222325ULL;
	size_t				 i;

	for (i = 0; t->user < t->t->n && i <= t->user; i++) {
		m = &t->t->msgs[i];
		h = hash_str(h, transcript_role_name(m->role));
		h = hash_str(h, m->content);
		h = hash_str(h, m->tool_call_id);
	}
	return h;
}

/* The newest assistant message asking for calls. */
static const struct transcript_msg *
calls_msg(const struct turn *t)
{
	return &t->t->msgs[t->calls_at];
}

static int
reply_words(struct model_reply *out, const char *text)
{
	return reply_add_text(out, text, strlen(text));
}

/* Asks for one tool call (takes args). The id is OpenAI-shaped and the
 * same for the same conversation and round: a retried turn asks for the
 * same call, and two rounds never share an id. */
static int
reply_call(const struct turn *t, const char *tool, cJSON *args,
    struct model_reply *out)
{
	char		 id[32], *text;
	uint64_t	 h;
	int		 rc = -1;

	if (args == NULL)
		return -1;
	h = (turn_hash(t) ^ (uint64_t)(t->rounds + 1)) * 0x100000001b3ULL;
	snprintf(id, sizeof(id), "call_%016llx", (unsigned long long)h);
	if ((text = cJSON_PrintUnformatted(args)) != NULL) {
		rc = reply_add_call(out, out->ncalls, id, tool, text,
		    strlen(text));
		cJSON_free(text);
	}
	cJSON_Delete(args);
	return rc;
}

/* A title as the person typed it, with a capital first letter. */
static int
add_text(cJSON *args, const char *key, const char *text, size_t len)
{
	char	*s;
	int	 rc;

	if ((s = malloc(len + 1)) == NULL)
		return -1;
	memcpy(s, text, len);
	s[len] = '\0';
	if (s[0] >= 'a' && s[0] <= 'z')
		s[0] = s[0] - 'a' + 'A';
	rc = cJSON_AddStringToObject(args, key, s) != NULL ? 0 : -1;
	free(s);
	return rc;
}

/* The arguments of in's tool for task_id (0: none). NULL on ENOMEM. */
static cJSON *
intent_args(const struct intent *in, long long task_id)
{
	cJSON	*args;

	if ((args = cJSON_CreateObject()) == NULL)
		return NULL;
	if (in->act == ACT_LIST && cJSON_AddStringToObject(args, "status",
	    in->status) == NULL)
		goto fail;
	if (task_id > 0 && cJSON_AddNumberToObject(args, "task_id",
	    (double)task_id) == NULL)
		goto fail;
	if ((in->act == ACT_ADD || in->act == ACT_UPDATE) &&
	    add_text(args, in->field, in->text, in->text_len) == -1)
		goto fail;
	return args;
fail:
	cJSON_Delete(args);
	return NULL;
}

static int
by_name(const struct intent *in)
{
	return (in->act == ACT_COMPLETE || in->act == ACT_DELETE ||
	    in->act == ACT_UPDATE) && in->task_id == 0;
}

/* Round one: a tool call, a lookup by name, or words. */
static int
first_step(const struct turn *t, const struct intent *in,
    struct model_reply *out)
{
	cJSON	*args;

	if (in->act < ACT_ADD)
		return reply_words(out, answers[in->act]);
	if (!by_name(in))
		return reply_call(t, acts[in->act].tool,
		    intent_args(in, in->task_id), out);
	/* Never guess an id: read the list, then pick from it. */
	if ((args = cJSON_CreateObject()) == NULL ||
	    cJSON_AddStringToObject(args, "status", "all") == NULL) {
		cJSON_Delete(args);
		return -1;
	}
	return reply_call(t, "list_tasks", args, out);
}

static int
say(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Appends a short formatted piece; titles go in with buf_adds(). */
static int
say(struct buf *b, const char *fmt, ...)
{
	char	 piece[256];
	va_list	 ap;
	int	 n;

	va_start(ap, fmt);
	n = vsnprintf(piece, sizeof(piece), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(piece))
		return -1;
	return buf_add(b, piece, n);
}

/* A positive integer id: a JSON number, or digits in a string (models
 * send "3" now and then). 0 when v holds none. */
static long long
json_id(const cJSON *v)
{
	long long	 id;

	return text_id_json(v, 1, &id) == 0 ? id : 0;
}

/* The call of the turn's newest round that tool message m answers, or
 * NULL. */
static const struct model_call *
answered_call(const struct turn *t, const struct transcript_msg *m)
{
	const struct transcript_msg	*calls = calls_msg(t);
	size_t				 i;

	for (i = 0; m->tool_call_id != NULL && i < calls->ncalls; i++)
		if (strcmp(calls->calls[i].id, m->tool_call_id) == 0)
			return &calls->calls[i];
	return NULL;
}

/* The parsed arguments of a call (caller frees), NULL if none. */
static cJSON *
call_args(const struct model_call *call)
{
	return call != NULL ? text_json_parse(call->arguments.data,
	    call->arguments.len) : NULL;
}

/* "You have 2 pending tasks:\n1. [ ] Buy groceries". */
static int
say_list(struct buf *b, const cJSON *list, const char *status)
{
	const cJSON	*task;
	const char	*title, *kind = "";
	int		 n = cJSON_GetArraySize(list), shown = 0;

	if (status != NULL && (strcmp(status, "pending") == 0 ||
	    strcmp(status, "completed") == 0))
		kind = status;
	if (n == 0)
		return say(b, "You have no %s%stasks.", kind, *kind ? " " : "");
	if (say(b, "You have %d %s%stask%s:", n, kind, *kind ? " " : "",
	    n == 1 ? "" : "s") == -1)
		return -1;
	cJSON_ArrayForEach(task, list) {
		if (shown++ == LIST_SHOWN)
			return say(b, "\n...and %d more.", n - LIST_SHOWN);
		title = str_item(task, "title");
		if (say(b, "\n%lld. [%c] ", json_id(
		    cJSON_GetObjectItemCaseSensitive(task, "id")),
		    cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(task,
		    "completed")) ? 'x' : ' ') == -1 ||
		    buf_adds(b, title != NULL ? title : "") == -1)
			return -1;
	}
	return 0;
}

static int
say_error(struct buf *b, const char *error, const cJSON *args)
{
	long long	 task_id;
	const char	*p;
	size_t		 len;

	task_id = json_id(cJSON_GetObjectItemCaseSensitive(args, "task_id"));
	for (p = error; *p != '\0'; p++)
		if (strncasecmp(p, "not found", 9) == 0 && task_id > 0)
			return say(b, "I couldn't find task %lld.", task_id);
	len = strlen(error);
	while (len > 0 && strchr(" .", error[len - 1]) != NULL)
		len--;
	if (say(b, "Sorry, I couldn't do that: ") == -1 ||
	    buf_add(b, error, len) == -1)
		return -1;
	return say(b, ".");
}

/* What the call did, as a sentence around the title its result names:
 * Added "Buy groceries" (task 5). */
static int
say_done(struct buf *b, const struct model_call *call, const cJSON *result)
{
	const char	*title = str_item(result, "title");
	long long	 task_id;
	size_t		 i;

	task_id = json_id(cJSON_GetObjectItemCaseSensitive(result,
	    "task_id"));
	for (i = 0; i < sizeof(acts) / sizeof(acts[0]); i++)
		if (call != NULL && title != NULL && task_id > 0 &&
		    acts[i].done_verb != NULL &&
		    strcmp(call->name, acts[i].tool) == 0) {
			if (say(b, "%s \"", acts[i].done_verb) == -1 ||
			    buf_adds(b, title) == -1)
				return -1;
			return say(b, "\" (task %lld)%s.", task_id,
			    acts[i].done_tail);
		}
	return say(b, "Done.");
}

/* One tool message of the last round, in words. */
static int
say_result(struct buf *b, const struct model_call *call,
    const struct transcript_msg *m)
{
	cJSON		*result, *args;
	const char	*error;
	int		 rc;

	result = text_json_parses(m->content);
	args = call_args(call);
	if (cJSON_IsArray(result))
		rc = say_list(b, result, str_item(args, "status"));
	else if ((error = str_item(result, "error")) != NULL)
		rc = say_error(b, error, args);
	else
		rc = say_done(b, call, result);
	cJSON_Delete(result);
	cJSON_Delete(args);
	return rc;
}

/* The final answer: the last round's results, one line each. */
static int
summarize(const struct turn *t, struct model_reply *out)
{
	struct buf			 b = BUF_INIT(ANSWER_MAX);
	const struct transcript_msg	*m;
	size_t				 i;
	int				 rc;

	for (i = t->calls_at + 1; i < t->t->n; i++) {
		m = &t->t->msgs[i];
		if (m->role != ROLE_TOOL)
			continue;
		if ((b.len > 0 && buf_adds(&b, "\n") == -1) ||
		    say_result(&b, answered_call(t, m), m) == -1)
			goto fail;
	}
	if (b.len == 0 && say(&b, "Done.") == -1)
		goto fail;
	rc = reply_add_text(out, b.data, b.len);
	buf_free(&b);
	return rc;
fail:
	buf_free(&b);
	return -1;
}

/* 1 if every name word starts a word of the title: "meet" finds "Team
 * meeting", "all" does not find "Call mom". */
static int
title_matches(const struct words *ws, const struct intent *in,
    const char *title)
{
	const char	*p, *start, *end;
	size_t		 i;
	int		 found;

	for (i = in->name_from; i < in->name_to; i++) {
		if (is_stop_word(ws, i))
			continue;
		found = 0;
		for (p = title; !found && next_word(&p, &start, &end); )
			found = span_matches(start, end, ws->w[i].norm, 1);
		if (!found)
			return 0;
	}
	return 1;
}

/* No task or several match the name: say so, and how to be precise. */
static int
say_lookup(struct buf *b, const struct words *ws, const struct intent *in,
    const cJSON *list, long long first_id)
{
	const cJSON	*task;
	const char	*start = "", *end = start, *title;

	name_span(ws, in, &start, &end);
	if (first_id == 0) {
		if (say(b, "I couldn't find a task matching \"") == -1 ||
		    buf_add(b, start, end - start) == -1)
			return -1;
		return say(b, "\". Say \"list tasks\" to see them all.");
	}
	if (say(b, "Several tasks match \"") == -1 ||
	    buf_add(b, start, end - start) == -1 || say(b, "\":") == -1)
		return -1;
	cJSON_ArrayForEach(task, list) {
		title = str_item(task, "title");
		if (title == NULL || !title_matches(ws, in, title))
			continue;
		if (say(b, "\n%lld. ", json_id(cJSON_GetObjectItemCaseSensitive(
		    task, "id"))) == -1 || buf_adds(b, title) == -1)
			return -1;
	}
	return say(b, "\nWhich one do you mean? Tell me its number, for "
	    "example \"%s %lld%s\".", acts[in->act].verb, first_id,
	    acts[in->act].tail);
}

/* Round two of a request by name: round one's list shows which task
 * is meant. One match: act on it; none or several: say so. */
static int
lookup_step(const struct turn *t, const struct words *ws,
    const struct intent *in, struct model_reply *out)
{
	struct buf	 b = BUF_INIT(ANSWER_MAX);
	const cJSON	*task;
	cJSON		*list = NULL;
	const char	*title;
	long long	 id, first_id = 0;
	size_t		 i;
	int		 nmatch = 0, rc;

	for (i = t->calls_at + 1; i < t->t->n && list == NULL; i++)
		if (t->t->msgs[i].role == ROLE_TOOL &&
		    (list = text_json_parses(t->t->msgs[i].content)) == NULL)
			break;
	if (!cJSON_IsArray(list)) {	/* an error: tell it as it is */
		cJSON_Delete(list);
		return summarize(t, out);
	}
	cJSON_ArrayForEach(task, list) {
		title = str_item(task, "title");
		id = json_id(cJSON_GetObjectItemCaseSensitive(task, "id"));
		if (id > 0 && title != NULL && title_matches(ws, in, title) &&
		    nmatch++ == 0)
			first_id = id;
	}
	if (nmatch == 1)
		rc = reply_call(t, acts[in->act].tool, intent_args(in,
		    first_id), out);
	else if ((rc = say_lookup(&b, ws, in, list, first_id)) == 0)
		rc = reply_add_text(out, b.data, b.len);
	buf_free(&b);
	cJSON_Delete(list);
	return rc;
}

/* 1 if the turn's newest round began by calling tool. */
static int
called(const struct turn *t, const char *tool)
{
	const struct transcript_msg	*m = calls_msg(t);

	return m->ncalls > 0 && strcmp(m->calls[0].name, tool) == 0;
}

int
offline_complete(const struct transcript *tr, struct model_reply *out)
{
	struct turn	 t;
	struct words	 ws;
	struct intent	 in;
	int		 rc;

	read_turn(tr, &t);
	split_words(t.text, &ws);
	read_intent(&ws, t.text, &in);
	if (t.rounds == 0)
		rc = first_step(&t, &in, out);
	else if (t.rounds == 1 && by_name(&in) && called(&t, "list_tasks"))
		rc = lookup_step(&t, &ws, &in, out);
	else
		rc = summarize(&t, out);
	if (rc == -1)
		reply_free(out);
	return rc;
}

/* Streamed, the words go out a word at a time (each with the spaces
 * after it, and each sent on its own, as the idle between a real model's
 * words sends them): the same path, with no network. A stop keeps the
 * words sent so far and drops the calls. */
static void
offline_stream(const struct model_stream *stream, struct model_reply *out)
{
	const char	*text = reply_text(out), *p;
	size_t		 n;

	if (text == NULL)
		return;
	for (p = text; *p != '\0'; p += n) {
		n = strcspn(p, " \n");
		n += strspn(p + n, " \n");
		if (stream->text(stream->arg, p, n) == 1 ||
		    (stream->idle != NULL && stream->idle(stream->arg) == 1)) {
			out->text.len = (size_t)(p + n - text);
			out->text.data[out->text.len] = '\0';
			calls_free(out->calls, out->ncalls);
			out->calls = NULL;
			out->ncalls = 0;
			out->stopped = 1;
			return;
		}
	}
}

/* Held to what a real model could do: offered no tools, it cannot call
 * any, so a call becomes words. */
static int
offline_step(const struct transcript *t, int offer_tools,
    const struct model_stream *stream, struct model_reply *out,
    struct chat_err *err)
{
	static const char no_tools[] = "Sorry, that needs more steps than I "
	    "can take right now. Could you break it into smaller ones?";

	if (offline_complete(t, out) == -1)
		return err_set(err, 502, "model_error", "The assistant ran "
		    "out of memory. Please try again.");
	if (out->ncalls > 0 && !offer_tools) {
		reply_free(out);
		if (reply_add_text(out, no_tools, strlen(no_tools)) == -1)
			return err_set(err, 502, "model_error", "The "
			    "assistant ran out of memory. Please try again.");
	}
	if (stream != NULL)
		offline_stream(stream, out);
	return 0;
}

const struct model_backend offline_backend = {
	"offline",
	NULL,
	offline_step,
	NULL,
	NULL,
};
