/* fuzz/mcp.c: mcp_post() on a POST /mcp: its headers and its body. */
/*
 * Input: the MCP-Protocol-Version value, a newline, the body. Without a
 * newline the whole input is the body and the header is absent (NULL);
 * an empty first line is absent too. When the version is the stateless
 * one, two more lines before the body give Mcp-Method and Mcp-Name (an
 * empty one: absent). The body goes in a block of exactly its length, as
 * mcp.h promises to read body[0..len) and no further.
 * The tools run on a stand-in for db_tool() that answers by the body's
 * length: a result, no task, or a failed database, so that each way a
 * call ends is reached without a database.
 */
#include <cJSON.h>

#include "fuzz.h"
#include "mcp.h"
#include "text.h"

static size_t	 body_len;

static int
run_tool(const char *user_id, const char *function, const char *args,
    char **result, struct chat_err *err)
{
	FUZZ_CHECK(strcmp(user_id, "fuzz") == 0);
	FUZZ_CHECK(strncmp(function, "tool_", 5) == 0);
	/* tools.c checked them: one JSON object, whole. */
	FUZZ_CHECK(args != NULL);
	cJSON_Delete(text_json_parses(args));
	*result = NULL;
	switch (body_len % 4) {
	case 0:
		return err_set(err, 503, "database_unavailable", "down");
	case 1:
		return 0;		/* no task matched */
	case 2:
		*result = strdup("[{\"id\":1,\"title\":\"t\",\"description\":"
		    "\"\",\"completed\":false}]");
		break;
	default:
		*result = strdup("{\"task_id\":1,\"status\":\"created\","
		    "\"title\":\"t\"}");
	}
	FUZZ_CHECK(*result != NULL);
	return 0;
}

/* mcp.h: what every reply holds. */
static void
check_reply(const struct mcp_reply *out)
{
	cJSON		*v;
	const cJSON	*code;

	if (out->status == 202) {
		FUZZ_CHECK(out->body == NULL);
		return;
	}
	FUZZ_CHECK(out->status == 200 || out->status == 400 ||
	    out->status == 404 || out->status == 503);
	FUZZ_CHECK(out->body != NULL);
	v = text_json_parses(out->body);
	FUZZ_CHECK(v != NULL);
	FUZZ_CHECK(cJSON_IsObject(v) || (cJSON_IsArray(v) &&
	    out->status == 200 && cJSON_GetArraySize(v) > 0));
	if (cJSON_IsObject(v)) {
		FUZZ_CHECK(cJSON_IsString(cJSON_GetObjectItem(v, "jsonrpc")));
		code = cJSON_GetObjectItem(cJSON_GetObjectItem(v, "error"),
		    "code");
		FUZZ_CHECK(out->status == 200 || cJSON_IsNumber(code));
		if (out->status == 400)
			FUZZ_CHECK(code->valueint == -32700 ||
			    code->valueint == -32600 ||
			    code->valueint == -32602 ||
			    code->valueint == -32020 ||
			    code->valueint == -32022);
		if (out->status == 404)
			FUZZ_CHECK(code->valueint == -32601);
	}
	cJSON_Delete(v);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mcp_request	 req = { "fuzz", NULL, NULL, NULL, NULL, NULL,
	    NULL, 0, run_tool };
	struct mcp_reply	 out;
	char			*line[3] = { NULL, NULL, NULL }, *body;
	int			 i, lines = 1;

	body_len = size;
	for (i = 0; i < lines; i++) {
		const uint8_t	*nl = memchr(data, '\n', body_len);

		if (nl == NULL)
			break;
		line[i] = fuzz_string(data, (size_t)(nl - data));
		body_len -= (size_t)(nl - data) + 1;
		data = nl + 1;
		if (i == 0 && strcmp(line[0], MCP_VERSION_STATELESS) == 0)
			lines = 3;
	}
	body = fuzz_bytes(data, body_len);
	req.protocol_version = line[0] != NULL && *line[0] != '\0' ?
	    line[0] : NULL;
	req.mcp_method = line[1] != NULL && *line[1] != '\0' ? line[1] : NULL;
	req.mcp_name = line[2] != NULL && *line[2] != '\0' ? line[2] : NULL;
	req.body = body_len > 0 ? body : NULL;
	req.body_len = body_len;
	mcp_post(&req, &out);
	check_reply(&out);
	cJSON_free(out.body);
	free(body);
	for (i = 0; i < 3; i++)
		free(line[i]);
	return 0;
}
