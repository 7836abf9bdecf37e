/* openai.h: OpenAI's chat-completions format, written and read here and
 * nowhere else: a transcript as a request body, a response body as a
 * reply, the tool definitions, and the "tool_calls" array that an
 * assistant message carries (which is also how messages.tool_calls
 * stores it). Pure: no I/O. */
#ifndef OPENAI_H
#define OPENAI_H

#include <stddef.h>

#include "reply.h"
#include "transcript.h"

/* The request body for model: the transcript's messages and, when
 * offer_tools, the tools of tools.h's table (OpenAI refuses "tools": [],
 * so none means no key). NULL on ENOMEM; the caller cJSON_free()s it.
 * Calls' arguments go out as call_arguments() gives them. */
char	*openai_request(const struct transcript *t, const char *model,
	    int offer_tools);

/* Parses a chat-completions response body into *out (reply_init()ed
 * here). Rules, for a server we do not control: the body is one JSON
 * object, parsed whole; choices[0].message an object; content a string
 * or null (a refusal stands in for missing content); tool_calls, when
 * present, well formed and at most REPLY_MAX_CALLS; every string valid
 * UTF-8 (PostgreSQL refuses anything else). A reply with neither words
 * nor calls is malformed, except "" (an answer, if an empty one). 0, or
 * -1 with *out left empty. */
int	 openai_parse_reply(const char *body, size_t len,
	    struct model_reply *out);

/* The "tool_calls" array of calls[0..n), arguments as the model sent
 * them: what messages.tool_calls stores. NULL on ENOMEM; the caller
 * cJSON_free()s it. */
char	*openai_calls_text(const struct model_call *calls, size_t n);

/* Reads a stored "tool_calls" array back into *calls (the caller frees
 * them with calls_free()) and *n. 0, or -1 when text is not such an
 * array or on ENOMEM. */
int	 openai_calls_parse(const char *text, struct model_call **calls,
	    size_t *n);

/* The "error"."code" of an error body, when it is a short token safe to
 * log (letters, digits, "_.-"), copied into code; else code is "". */
void	 openai_error_code(const char *body, size_t len, char *code,
	    size_t size);

/* Frees the tool definitions openai_request() built once. At exit. */
void	 openai_cleanup(void);

#endif
