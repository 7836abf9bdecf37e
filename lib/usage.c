/* usage.c: the caller's use and limits as GET /chat/usage answers them
 * (usage.h). */
#include <stddef.h>

#include <cJSON.h>

#include "config.h"
#include "db.h"
#include "usage.h"

/* {"turns", "prompt_tokens", "completion_tokens"} added to reply as
 * name; NULL on ENOMEM. */
static cJSON *
period(cJSON *reply, const char *name, long long turns, long long prompt,
    long long completion)
{
	cJSON	*o;

	if ((o = cJSON_AddObjectToObject(reply, name)) == NULL ||
	    cJSON_AddNumberToObject(o, "turns", (double)turns) == NULL ||
	    cJSON_AddNumberToObject(o, "prompt_tokens", (double)prompt) ==
	    NULL || cJSON_AddNumberToObject(o, "completion_tokens",
	    (double)completion) == NULL)
		return NULL;
	return o;
}

int
usage_report(const char *user_id, cJSON **reply, struct chat_err *err)
{
	const struct config	*cfg = config();
	struct db_usage		 u;
	cJSON			*r, *limits;

	*reply = NULL;
	if (db_usage(user_id, &u, err) == -1)
		return -1;
	if ((r = cJSON_CreateObject()) == NULL ||
	    period(r, "today", u.day_turns, u.day_prompt_tokens,
	    u.day_completion_tokens) == NULL ||
	    period(r, "month", u.month_turns, u.month_prompt_tokens,
	    u.month_completion_tokens) == NULL ||
	    (limits = cJSON_AddObjectToObject(r, "limits")) == NULL ||
	    cJSON_AddNumberToObject(limits, "concurrent_turns",
	    cfg->user_concurrent_turns) == NULL ||
	    cJSON_AddNumberToObject(limits, "turns_per_minute",
	    cfg->user_turns_per_minute) == NULL ||
	    cJSON_AddNumberToObject(limits, "tokens_per_day",
	    (double)cfg->user_tokens_per_day) == NULL) {
		cJSON_Delete(r);
		return err_oom(err);
	}
	*reply = r;
	return 0;
}
