/* t/unit/offline.c: the offline model's first step for each command it
 * knows, its rounds by name, and its final sentences. Prints TAP.
 *
 * JSON in the tables is written with ' for " (see dq()), so no title
 * here may hold an apostrophe. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "offline.h"
#include "reply.h"
#include "transcript.h"

/* What the first reply to a message must be: a call of tool with exactly
 * args, or, tool NULL, words containing args. */
static const struct {
	const char	*text, *tool, *args;
} first[] = {
	{ "Add a task to buy groceries", "add_task",
	  "{'title':'Buy groceries'}" },
	{ "add buy milk", "add_task", "{'title':'Buy milk'}" },
	{ "Remind me to call the dentist.", "add_task",
	  "{'title':'Call the dentist'}" },
	{ "I need to remember to pay bills", "add_task",
	  "{'title':'Pay bills'}" },
	{ "please add a new task: Book flights!", "add_task",
	  "{'title':'Book flights'}" },
	{ "Add 'water plants' to my list", "add_task",
	  "{'title':'Water plants'}" },
	{ "create a task called renew passport", "add_task",
	  "{'title':'Renew passport'}" },
	{ "I need to buy eggs", "add_task", "{'title':'Buy eggs'}" },
	{ "Show me all my tasks", "list_tasks", "{'status':'all'}" },
	{ "list tasks", "list_tasks", "{'status':'all'}" },
	{ "what are my tasks?", "list_tasks", "{'status':'all'}" },
	{ "What's pending?", "list_tasks", "{'status':'pending'}" },
	{ "What\xe2\x80\x99s left to do", "list_tasks",
	  "{'status':'pending'}" },
	{ "show pending tasks", "list_tasks", "{'status':'pending'}" },
	{ "pending", "list_tasks", "{'status':'pending'}" },
	{ "What have I completed?", "list_tasks", "{'status':'completed'}" },
	{ "show completed", "list_tasks", "{'status':'completed'}" },
	{ "completed tasks", "list_tasks", "{'status':'completed'}" },
	{ "Mark task 3 as complete", "complete_task", "{'task_id':3}" },
	{ "complete task 3", "complete_task", "{'task_id':3}" },
	{ "task 3 is done", "complete_task", "{'task_id':3}" },
	{ "MARK TASK #12 DONE!!", "complete_task", "{'task_id':12}" },
	{ "Delete task 2", "delete_task", "{'task_id':2}" },
	{ "can you remove #4 please", "delete_task", "{'task_id':4}" },
	{ "I need to delete task 9", "delete_task", "{'task_id':9}" },
	{ "Add a task to delete old emails", "add_task",
	  "{'title':'Delete old emails'}" },
	{ "Delete the meeting task", "list_tasks", "{'status':'all'}" },
	{ "complete the groceries task", "list_tasks", "{'status':'all'}" },
	{ "mark the dentist task as done", "list_tasks", "{'status':'all'}" },
	{ "Change task 1 to 'Call mom tonight'", "update_task",
	  "{'task_id':1,'title':'Call mom tonight'}" },
	{ "Change task 1 to \xe2\x80\x9c" "Call mom tonight\xe2\x80\x9d",
	  "update_task", "{'task_id':1,'title':'Call mom tonight'}" },
	{ "rename task 1 to call dad", "update_task",
	  "{'task_id':1,'title':'Call dad'}" },
	{ "update task 1 title to Pay rent", "update_task",
	  "{'task_id':1,'title':'Pay rent'}" },
	{ "update task 2 description to oat milk", "update_task",
	  "{'task_id':2,'description':'Oat milk'}" },
	{ "rename task 5: Gym", "update_task", "{'task_id':5,'title':'Gym'}" },
	{ "rename the meeting task to Standup", "list_tasks",
	  "{'status':'all'}" },
	{ "What is the weather like?", NULL, "I can look after your todo" },
	{ "", NULL, "I can look after your todo" },
	{ "add", NULL, "What should the task say?" },
	{ "delete", NULL, "Which task do you mean?" },
	{ "rename task 4", NULL, "What should the new title be?" },
	{ "mark task 3 as not done", NULL, "can't mark a task as not done" },
	{ "thanks!", NULL, "welcome" },
};

/* Later rounds: the user's message, the calls made so far ("tool args")
 * with their results, and what must come next: a call (tool, args) or,
 * tool NULL, exactly the words in args. */
static const struct {
	const char	*name, *text;
	const char	*calls[2], *results[2];
	const char	*tool, *args;
} later[] = {
	{ "by name: one match is deleted", "Delete the meeting task",
	  { "list_tasks {'status':'all'}" },
	  { "[{'id':1,'title':'Buy groceries','description':'','completed':"
	    "false},{'id':4,'title':'Team meeting','description':'',"
	    "'completed':false}]" },
	  "delete_task", "{'task_id':4}" },
	{ "by name: the result is confirmed", "Delete the meeting task",
	  { "list_tasks {'status':'all'}", "delete_task {'task_id':4}" },
	  { "[{'id':4,'title':'Team meeting','completed':false}]",
	    "{'task_id':4,'status':'deleted','title':'Team meeting'}" },
	  NULL, "Deleted \"Team meeting\" (task 4)." },
	{ "by name: no match", "Delete the meeting task",
	  { "list_tasks {'status':'all'}" },
	  { "[{'id':1,'title':'Buy milk','completed':false}]" },
	  NULL, "I couldn't find a task matching \"meeting\". Say \"list "
	  "tasks\" to see them all." },
	{ "by name: several match", "delete the meeting task",
	  { "list_tasks {'status':'all'}" },
	  { "[{'id':2,'title':'Meeting notes','completed':true},"
	    "{'id':5,'title':'Team meeting','completed':false}]" },
	  NULL, "Several tasks match \"meeting\":\n2. Meeting notes\n5. Team "
	  "meeting\nWhich one do you mean? Tell me its number, for example "
	  "\"delete task 2\"." },
	{ "by name: no list at all", "Delete the meeting task",
	  { "list_tasks {'status':'all'}" }, { "[]" },
	  NULL, "I couldn't find a task matching \"meeting\". Say \"list "
	  "tasks\" to see them all." },
	{ "by name: word starts only", "complete the om task",
	  { "list_tasks {'status':'all'}" },
	  { "[{'id':1,'title':'Call mom','completed':false}]" },
	  NULL, "I couldn't find a task matching \"om\". Say \"list "
	  "tasks\" to see them all." },
	{ "by name: a word prefix matches", "complete the meet task",
	  { "list_tasks {'status':'all'}" },
	  { "[{'id':6,'title':'Team meeting','completed':false}]" },
	  "complete_task", "{'task_id':6}" },
	{ "by name: complete, case aside", "complete the GROCERIES task",
	  { "list_tasks {'status':'all'}" },
	  { "[{'id':7,'title':'Buy groceries','completed':false}]" },
	  "complete_task", "{'task_id':7}" },
	{ "by name: rename", "rename the meeting task to standup",
	  { "list_tasks {'status':'all'}" },
	  { "[{'id':4,'title':'Team meeting','completed':false}]" },
	  "update_task", "{'task_id':4,'title':'Standup'}" },
	{ "by name: a new description", "change the description of the "
	  "meeting task to bring slides", { "list_tasks {'status':'all'}" },
	  { "[{'id':4,'title':'Team meeting','completed':false}]" },
	  "update_task", "{'task_id':4,'description':'Bring slides'}" },
	{ "by name: the lookup failed", "delete the meeting task",
	  { "list_tasks {'status':'all'}" }, { "{'error':'no result'}" },
	  NULL, "Sorry, I couldn't do that: no result." },
	{ "added", "add buy groceries",
	  { "add_task {'title':'Buy groceries'}" },
	  { "{'task_id':5,'status':'created','title':'Buy groceries'}" },
	  NULL, "Added \"Buy groceries\" (task 5)." },
	{ "completed", "complete task 3", { "complete_task {'task_id':3}" },
	  { "{'task_id':3,'status':'completed','title':'Call mom'}" },
	  NULL, "Marked \"Call mom\" (task 3) as complete." },
	{ "updated", "change task 1 to x",
	  { "update_task {'task_id':1,'title':'X'}" },
	  { "{'task_id':1,'status':'updated','title':'X'}" },
	  NULL, "Updated \"X\" (task 1)." },
	{ "not found", "complete task 7", { "complete_task {'task_id':7}" },
	  { "{'error':'task 7 not found'}" }, NULL,
	  "I couldn't find task 7." },
	{ "other tool error", "add x", { "add_task {'title':'X'}" },
	  { "{'error':'title must not be empty'}" }, NULL,
	  "Sorry, I couldn't do that: title must not be empty." },
	{ "list of two", "list tasks", { "list_tasks {'status':'all'}" },
	  { "[{'id':1,'title':'Buy groceries','completed':false},"
	    "{'id':3,'title':'Call mom','completed':true}]" },
	  NULL, "You have 2 tasks:\n1. [ ] Buy groceries\n3. [x] Call mom" },
	{ "list of one pending", "pending",
	  { "list_tasks {'status':'pending'}" },
	  { "[{'id':8,'title':'Gym','completed':false}]" },
	  NULL, "You have 1 pending task:\n8. [ ] Gym" },
	{ "no pending tasks", "pending", { "list_tasks {'status':'pending'}" },
	  { "[]" }, NULL, "You have no pending tasks." },
	{ "no completed tasks", "what have i completed",
	  { "list_tasks {'status':'completed'}" }, { "[]" }, NULL,
	  "You have no completed tasks." },
	{ "no tasks", "list", { "list_tasks {'status':'all'}" }, { "[]" },
	  NULL, "You have no tasks." },
	{ "a result that is not JSON", "list", { "list_tasks {}" },
	  { "oops" }, NULL, "Done." },
};

static int	 test_num;

static void
ok(int pass, const char *name)
{
	printf("%sok %d - %s\n", pass ? "" : "not ", ++test_num, name);
}

/* s with ' made ", in a static buffer. */
static const char *
dq(const char *s)
{
	static char	 out[4096];
	size_t		 i;

	for (i = 0; s[i] != '\0' && i + 1 < sizeof(out); i++)
		out[i] = s[i] == '\'' ? '"' : s[i];
	out[i] = '\0';
	return out;
}

/* Appends a message, or gives up on the whole test. */
static void
say(struct transcript *t, enum chat_role role, const char *content,
    const char *tool_call_id)
{
	if (transcript_add(t, role, content, tool_call_id) == -1)
		abort();
}

/* Appends an assistant call "tool args" as call id, and its result. */
static void
add_round(struct transcript *t, const char *id, const char *call,
    const char *result)
{
	struct model_reply	 r;
	char			 name[64];
	const char		*args;
	size_t			 len = strcspn(call, " ");

	snprintf(name, sizeof(name), "%.*s", (int)len, call);
	args = dq(call + len + 1);
	reply_init(&r);
	if (reply_add_call(&r, 0, id, name, args, strlen(args)) == -1 ||
	    transcript_add_calls(t, NULL, r.calls, r.ncalls) == -1)
		abort();
	r.calls = NULL;
	r.ncalls = 0;
	reply_free(&r);
	say(t, ROLE_TOOL, dq(result), id);
}

static struct transcript *
conversation(const char *text)
{
	struct transcript	*t;

	if ((t = malloc(sizeof(*t))) == NULL || transcript_init(t) == -1)
		abort();
	say(t, ROLE_USER, text, NULL);
	return t;
}

static void
conversation_free(struct transcript *t)
{
	transcript_free(t);
	free(t);
}

/* 1 if r is a call of tool with args (JSON with ') or, tool NULL, words
 * that contain (exact: equal) args. */
static int
reply_is(const struct model_reply *r, const char *tool, const char *args,
    int exact)
{
	const char	*words = reply_text(r);

	if (tool == NULL)
		return r->ncalls == 0 && words != NULL && (exact ?
		    strcmp(words, args) == 0 : strstr(words, args) != NULL);
	return r->ncalls == 1 && words == NULL &&
	    strcmp(r->calls[0].name, tool) == 0 &&
	    strcmp(r->calls[0].arguments.data, dq(args)) == 0 &&
	    strncmp(r->calls[0].id, "call_", 5) == 0;
}

/* The offline model's next step for t. */
static int
step(const struct transcript *t, struct model_reply *r)
{
	reply_init(r);
	return offline_complete(t, r);
}

static void
test_first(void)
{
	struct model_reply	 r;
	struct transcript	*t;
	size_t			 i;
	char			 name[160];

	for (i = 0; i < sizeof(first) / sizeof(first[0]); i++) {
		t = conversation(first[i].text);
		snprintf(name, sizeof(name), "\"%s\"", first[i].text);
		ok(step(t, &r) == 0 &&
		    reply_is(&r, first[i].tool, first[i].args, 0), name);
		if (r.ncalls == 0 && reply_text(&r) == NULL)
			printf("# no reply\n");
		reply_free(&r);
		conversation_free(t);
	}
}

static void
test_later(void)
{
	struct model_reply	 r;
	struct transcript	*t;
	size_t			 i, k;
	char			 id[16];

	for (i = 0; i < sizeof(later) / sizeof(later[0]); i++) {
		t = conversation(later[i].text);
		for (k = 0; k < 2 && later[i].calls[k] != NULL; k++) {
			snprintf(id, sizeof(id), "call_%zu", k);
			add_round(t, id, later[i].calls[k],
			    later[i].results[k]);
		}
		ok(step(t, &r) == 0 &&
		    reply_is(&r, later[i].tool, later[i].args, 1),
		    later[i].name);
		if (reply_text(&r) != NULL && !reply_is(&r, later[i].tool,
		    later[i].args, 1))
			printf("# got: %s\n", reply_text(&r));
		reply_free(&r);
		conversation_free(t);
	}
}

/* The id of the first call answering t (caller frees). */
static char *
call_id(const struct transcript *t)
{
	struct model_reply	 r;
	char			*id = NULL;

	if (step(t, &r) == 0 && r.ncalls == 1)
		id = strdup(r.calls[0].id);
	reply_free(&r);
	return id;
}

/* Ids: the same for a retried turn, new for each round and turn. */
static void
test_ids(void)
{
	struct transcript	*a, *b;
	char			*id1, *id2, *id3, *id4;

	a = conversation("Delete the meeting task");
	b = conversation("Delete the meeting task");
	id1 = call_id(a);
	id2 = call_id(b);
	ok(id1 != NULL && id2 != NULL && strcmp(id1, id2) == 0,
	    "ids are deterministic");
	add_round(a, id1, "list_tasks {'status':'all'}",
	    "[{'id':4,'title':'Team meeting'}]");
	id3 = call_id(a);
	ok(id3 != NULL && strcmp(id1, id3) != 0, "each round a new id");
	say(a, ROLE_ASSISTANT, "Deleted.", NULL);
	say(a, ROLE_USER, "Delete the meeting task", NULL);
	id4 = call_id(a);
	ok(id4 != NULL && strcmp(id4, id1) != 0 && strcmp(id4, id3) != 0,
	    "the same words in a later turn get a new id");
	free(id1);
	free(id2);
	free(id3);
	free(id4);
	conversation_free(a);
	conversation_free(b);
}

/* Only this turn counts: an earlier turn's calls are history. */
static void
test_turns(void)
{
	struct model_reply	 r;
	struct transcript	*t, empty;

	t = conversation("Delete the meeting task");
	add_round(t, "call_x", "list_tasks {'status':'all'}",
	    "[{'id':4,'title':'Team meeting'}]");
	say(t, ROLE_ASSISTANT, "Which one?", NULL);
	say(t, ROLE_USER, "add buy milk", NULL);
	ok(step(t, &r) == 0 &&
	    reply_is(&r, "add_task", "{'title':'Buy milk'}", 1),
	    "earlier turns are history");
	reply_free(&r);
	conversation_free(t);
	memset(&empty, 0, sizeof(empty));
	ok(step(&empty, &r) == 0 && reply_text(&r) != NULL &&
	    r.ncalls == 0, "no user message: help");
	reply_free(&r);
}

int
main(void)
{
	printf("1..%zu\n", sizeof(first) / sizeof(first[0]) +
	    sizeof(later) / sizeof(later[0]) + 3 + 2);
	test_first();
	test_later();
	test_ids();
	test_turns();
	return 0;
}
