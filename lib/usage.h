/* usage.h: GET /chat/usage: what the caller used today and this month
 * (UTC), as their model calls reported it, and the per-user limits that
 * apply to them. The counts come from one row per user and day, which
 * each turn's last statement adds to (schema.sql: usage_days), so the
 * answer never reads a user's history. */
#ifndef USAGE_H
#define USAGE_H

#include "err.h"

struct cJSON;

/* {"today": {"turns", "prompt_tokens", "completion_tokens"}, "month":
 * {...}, "limits": {"concurrent_turns", "turns_per_minute",
 * "tokens_per_day"}} (a limit of 0: none); the caller cJSON_Delete()s
 * *reply. 0, or -1 with err 503. */
int	 usage_report(const char *user_id, struct cJSON **reply,
	    struct chat_err *err);

#endif
