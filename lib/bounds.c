/* bounds.c: cutting a tool result and a model request to their bounds
 * (bounds.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "bounds.h"

/* What the model reads beside a cut list: enough for it to tell the
 * person, and to ask for a narrower list instead of guessing. */
static const char NOTE[] = "Only the first %zu of %zu tasks are shown: "
    "the whole list is too long to send. Say so, and ask for pending or "
    "completed tasks only if the person needs the others.";

static int
too_large(size_t len, char **out)
{
	cJSON	*o;
	char	 why[160];

	snprintf(why, sizeof(why), "The result was too large to send "
	    "(%zu bytes).", len);
	if ((o = cJSON_CreateObject()) == NULL ||
	    cJSON_AddStringToObject(o, "error", why) == NULL) {
		cJSON_Delete(o);
		return -1;
	}
	*out = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return *out != NULL ? 1 : -1;
}

/* How many of the array's first items fit in room bytes printed with
 * the commas between them; -1 on ENOMEM. */
static long
items_that_fit(const cJSON *array, size_t room)
{
	const cJSON	*item;
	char		*text;
	size_t		 used = 0, len;
	long		 k = 0;

	cJSON_ArrayForEach(item, array) {
		if ((text = cJSON_PrintUnformatted(item)) == NULL)
			return -1;
		len = strlen(text) + (k > 0);
		cJSON_free(text);
		if (used + len > room)
			break;
		used += len;
		k++;
	}
	return k;
}

/* {"tasks": [the first k items of array], "note": ...}, taking the
 * items out of array. */
static char *
cut_list(cJSON *array, long k, size_t total)
{
	cJSON	*o, *tasks;
	char	 note[sizeof(NOTE) + 48], *text = NULL;

	snprintf(note, sizeof(note), NOTE, (size_t)k, total);
	if ((o = cJSON_CreateObject()) == NULL ||
	    (tasks = cJSON_AddArrayToObject(o, "tasks")) == NULL)
		goto out;
	while (k-- > 0)
		cJSON_AddItemToArray(tasks, cJSON_DetachItemFromArray(array,
		    0));
	if (cJSON_AddStringToObject(o, "note", note) != NULL)
		text = cJSON_PrintUnformatted(o);
out:
	cJSON_Delete(o);
	return text;
}

int
bounds_tool_result(const char *result, size_t max_bytes, char **out)
{
	cJSON	*root;
	char	 note[sizeof(NOTE) + 48];
	size_t	 len = strlen(result), total, wrapper;
	long	 k;
	int	 rc;

	*out = NULL;
	if (len <= max_bytes)
		return 0;
	root = cJSON_Parse(result);
	if (!cJSON_IsArray(root)) {
		cJSON_Delete(root);
		return too_large(len, out);
	}
	total = (size_t)cJSON_GetArraySize(root);
	/* The note at its longest: k printed as long as total. */
	snprintf(note, sizeof(note), NOTE, total, total);
	wrapper = sizeof("{\"tasks\":[],\"note\":\"\"}") - 1 + strlen(note);
	if (wrapper >= max_bytes) {
		cJSON_Delete(root);
		return too_large(len, out);
	}
	if ((k = items_that_fit(root, max_bytes - wrapper)) == -1) {
		cJSON_Delete(root);
		return -1;
	}
	*out = cut_list(root, k, total);
	rc = *out != NULL ? 1 : -1;
	cJSON_Delete(root);
	return rc;
}

long
bounds_history_drop(const size_t *bytes, const unsigned char *is_tool,
    size_t n, size_t first, size_t nhistory, size_t base, size_t max_bytes)
{
	size_t	 i, total = base, dropped = 0;

	for (i = 0; i < n; i++)
		total += bytes[i];
	while (total > max_bytes && dropped < nhistory)
		total -= bytes[first + dropped++];
	while (dropped < nhistory && is_tool[first + dropped])
		total -= bytes[first + dropped++];
	return total > max_bytes ? -1 : (long)dropped;
}
