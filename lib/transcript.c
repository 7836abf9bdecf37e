/* transcript.c: the conversation the model reads (transcript.h) and the
 * system prompt that opens it. */
#include <stdlib.h>
#include <string.h>

#include "transcript.h"

static const char SYSTEM_PROMPT[] =
    "You are a friendly assistant that manages the user's todo list. "
    "You can only act through the tools you are offered.\n"
    "- When the user wants to remember, add or plan something, call "
    "add_task with a short title.\n"
    "- When the user asks what they have to do, what is pending or what "
    "is done, call list_tasks with status all, pending or completed.\n"
    "- When the user refers to a task by name rather than by number, "
    "call list_tasks first and use the id of the task whose title "
    "matches before calling complete_task, delete_task or update_task. "
    "If no task or several tasks match, say so and ask which one they "
    "mean.\n"
    "- Never invent or guess a task id: use the number the user gave or "
    "one you read in a list_tasks result.\n"
    "- A tool result with an \"error\" (for example a task that does not "
    "exist) is not a failure of yours: tell the user kindly what went "
    "wrong and what they can do instead.\n"
    "- After every action, confirm what you did in one short, friendly "
    "sentence that names the task, for example: Added \"Buy groceries\" "
    "(task 5).\n"
    "- When listing tasks, show each with its number and whether it is "
    "done.\n"
    "- If a request is not about the todo list, say briefly what you can "
    "help with.";

static const char *const role_names[] = {
	[ROLE_SYSTEM] = "system",
	[ROLE_USER] = "user",
	[ROLE_ASSISTANT] = "assistant",
	[ROLE_TOOL] = "tool",
};

const char *
transcript_system_prompt(void)
{
	return SYSTEM_PROMPT;
}

const char *
transcript_role_name(enum chat_role role)
{
	return role_names[role];
}

/* Room for one more message, doubling: a turn holds the window (at most
 * CHAT_HISTORY_MESSAGES) and a few rounds. */
static struct transcript_msg *
grow(struct transcript *t)
{
	struct transcript_msg	*msgs;
	size_t			 size;

	if (t->n == t->size) {
		size = t->size ? t->size * 2 : 16;
		if ((msgs = realloc(t->msgs, size * sizeof(*msgs))) == NULL)
			return NULL;
		t->msgs = msgs;
		t->size = size;
	}
	memset(&t->msgs[t->n], 0, sizeof(t->msgs[t->n]));
	return &t->msgs[t->n];
}

static int
copy(char **to, const char *s)
{
	*to = NULL;
	return s == NULL || (*to = strdup(s)) != NULL ? 0 : -1;
}

int
transcript_add(struct transcript *t, enum chat_role role,
    const char *content, const char *tool_call_id)
{
	struct transcript_msg	*m;

	if ((m = grow(t)) == NULL)
		return -1;
	m->role = role;
	if (copy(&m->content, content) == -1 ||
	    copy(&m->tool_call_id, tool_call_id) == -1) {
		free(m->content);
		return -1;
	}
	t->n++;
	return 0;
}

int
transcript_add_calls(struct transcript *t, const char *content,
    struct model_call *calls, size_t n)
{
	if (transcript_add(t, ROLE_ASSISTANT, content, NULL) == -1) {
		calls_free(calls, n);
		return -1;
	}
	t->msgs[t->n - 1].calls = calls;
	t->msgs[t->n - 1].ncalls = n;
	return 0;
}

int
transcript_init(struct transcript *t)
{
	memset(t, 0, sizeof(*t));
	if (transcript_add(t, ROLE_SYSTEM, SYSTEM_PROMPT, NULL) == -1) {
		transcript_free(t);
		return -1;
	}
	return 0;
}

static void
msg_free(struct transcript_msg *m)
{
	free(m->content);
	free(m->tool_call_id);
	calls_free(m->calls, m->ncalls);
}

void
transcript_drop(struct transcript *t, size_t first, size_t n)
{
	size_t	 i;

	if (first >= t->n)
		return;
	if (n > t->n - first)
		n = t->n - first;
	for (i = first; i < first + n; i++)
		msg_free(&t->msgs[i]);
	memmove(&t->msgs[first], &t->msgs[first + n],
	    (t->n - first - n) * sizeof(*t->msgs));
	t->n -= n;
}

void
transcript_free(struct transcript *t)
{
	size_t	 i;

	for (i = 0; i < t->n; i++)
		msg_free(&t->msgs[i]);
	free(t->msgs);
	memset(t, 0, sizeof(*t));
}
