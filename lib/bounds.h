/* bounds.h: the bounds on what one turn sends the model, so that a turn
 * cannot grow its requests without end: a tool result cut to a size (a
 * list cut to its first items, with a note for the model, never in the
 * middle of its JSON), and the oldest history dropped until a request
 * fits its size. Pure: no I/O; turn.c applies them before each call. */
#ifndef BOUNDS_H
#define BOUNDS_H

#include <stddef.h>

/* The tool result (JSON text) as the model is to read it, within
 * max_bytes. 0: it fits as it is (*out NULL). 1: *out is a new string
 * (the caller free()s it): a JSON array (list_tasks' result) becomes
 * {"tasks": [its first items that fit], "note": "<why, and how many of
 * how many>"}; anything else too long becomes {"error": "..."}. -1 on
 * ENOMEM. */
int	 bounds_tool_result(const char *result, size_t max_bytes,
	    char **out);

/* How many of a request's oldest history messages to leave out so that
 * it fits max_bytes. The request is base bytes plus bytes[0..n) (its
 * messages as they print); the history is messages [first, first +
 * nhistory), oldest first, and is_tool[i] says message i is a tool
 * result: the first message kept is never one (its call would be gone,
 * which OpenAI-compatible servers refuse). Returns 0..nhistory, or -1
 * when the request does not fit even without any history. */
long	 bounds_history_drop(const size_t *bytes,
	    const unsigned char *is_tool, size_t n, size_t first,
	    size_t nhistory, size_t base, size_t max_bytes);

#endif
