/* t/unit/mcp.c: mcp_post() without a database, as a table: a request (the
 * MCP-Protocol-Version header and the body) and what the tool runner
 * answers, in; the HTTP status and a piece of the reply that must be
 * there, out. The runner stands in for db_tool() and says what it was
 * asked, so the table also shows that only checked arguments reach the
 * database, for the caller's user. Prints TAP. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "mcp.h"

/* What the stand-in for db_tool() does. */
enum db {
	DB_ROWS,	/* a list of one task */
	DB_CHANGE,	/* a changed task */
	DB_NONE,	/* no task of the user's matched */
	DB_DOWN,	/* the database is unavailable */
};

static enum db	 db_mode;
static char	 db_asked[512];	/* "user function args", last call */

static int
run_tool(const char *user_id, const char *function, const char *args,
    char **result, struct chat_err *err)
{
	snprintf(db_asked, sizeof(db_asked), "%s %s %s", user_id, function,
	    args);
	*result = NULL;
	switch (db_mode) {
	case DB_DOWN:
		return err_set(err, 503, "database_unavailable", "The database "
		    "is unavailable; try again shortly.");
	case DB_NONE:
		return 0;
	case DB_ROWS:
		*result = strdup("[{\"id\":4,\"title\":\"Buy milk\","
		    "\"description\":\"\",\"completed\":false}]");
		break;
	case DB_CHANGE:
		*result = strdup("{\"task_id\":4,\"status\":\"completed\","
		    "\"title\":\"Buy milk\"}");
		break;
	}
	return *result != NULL ? 0 : err_oom(err);
}

#define CALL(name, args) "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":" \
	"\"tools/call\",\"params\":{\"name\":\"" name "\",\"arguments\":" \
	args "}}"

static const struct {
	const char	*name;
	const char	*version;	/* the header, or NULL */
	const char	*body;
	enum db		 db;
	int		 status;
	const char	*has;		/* in the reply ("" for 202) */
	const char	*asked;		/* what reached the runner; NULL:
					 * it must not have been called */
} cases[] = {
	{ "list_tasks wraps its list", "2025-11-25",
	  CALL("list_tasks", "{}"), DB_ROWS, 200,
	  "\"structuredContent\":{\"tasks\":[{\"id\":4,",
	  "alice tool_list_tasks {\"status\":\"all\"}" },
	{ "the text item holds the same JSON", "2025-11-25",
	  CALL("list_tasks", "{\"status\":\"pending\"}"), DB_ROWS, 200,
	  "\"text\":\"{\\\"tasks\\\":[{\\\"id\\\":4,",
	  "alice tool_list_tasks {\"status\":\"pending\"}" },
	{ "user_id is never passed on", "2025-11-25",
	  CALL("complete_task", "{\"task_id\":4,\"user_id\":\"bob\"}"),
	  DB_CHANGE, 200, "\"structuredContent\":{\"task_id\":4,",
	  "alice tool_complete_task {\"task_id\":4}" },
	{ "no task: isError with the message", "2025-11-25",
	  CALL("delete_task", "{\"task_id\":7}"), DB_NONE, 200,
	  "\"text\":\"task 7 not found\"}],\"isError\":true",
	  "alice tool_delete_task {\"task_id\":7}" },
	{ "refused arguments never reach the database", "2025-11-25",
	  CALL("add_task", "{\"title\":\" \"}"), DB_CHANGE, 200,
	  "title must not be empty\"}],\"isError\":true", NULL },
	{ "arguments may be left out", "2025-11-25",
	  "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\","
	  "\"params\":{\"name\":\"list_tasks\"}}", DB_ROWS, 200,
	  "\"tasks\":[", "alice tool_list_tasks {\"status\":\"all\"}" },
	{ "arguments null are none", "2025-11-25",
	  CALL("list_tasks", "null"), DB_ROWS, 200, "\"tasks\":[",
	  "alice tool_list_tasks {\"status\":\"all\"}" },
	{ "the database down: 503, internal error", "2025-11-25",
	  CALL("list_tasks", "{}"), DB_DOWN, 503,
	  "\"id\":1,\"error\":{\"code\":-32603,",
	  "alice tool_list_tasks {\"status\":\"all\"}" },
	{ "an unknown tool is invalid params", "2025-11-25",
	  CALL("drop_table", "{}"), DB_ROWS, 200, "\"code\":-32602", NULL },
	{ "tools/list: list_tasks' outputSchema is an object", "2025-11-25",
	  "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}", DB_ROWS,
	  200, "\"outputSchema\":{\"type\":\"object\",\"properties\":"
	  "{\"tasks\":{\"type\":\"array\"", NULL },
	{ "initialize: a revision we speak", NULL,
	  "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":"
	  "{\"protocolVersion\":\"2025-06-18\"}}", DB_ROWS, 200,
	  "\"protocolVersion\":\"2025-06-18\"", NULL },
	{ "initialize: else our latest", NULL,
	  "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":"
	  "{\"protocolVersion\":\"2030-01-01\"}}", DB_ROWS, 200,
	  "\"protocolVersion\":\"2025-11-25\"", NULL },
	{ "ping", "2025-06-18", "{\"jsonrpc\":\"2.0\",\"id\":\"x\","
	  "\"method\":\"ping\"}", DB_ROWS, 200,
	  "{\"jsonrpc\":\"2.0\",\"id\":\"x\",\"result\":{}}", NULL },
	{ "a notification: 202", "2025-11-25",
	  "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}",
	  DB_ROWS, 202, "", NULL },
	{ "a batch in 2025-03-26", NULL,
	  "[" CALL("list_tasks", "{}") ",{\"jsonrpc\":\"2.0\",\"id\":2,"
	  "\"method\":\"ping\"}]", DB_ROWS, 200,
	  "},{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}]",
	  "alice tool_list_tasks {\"status\":\"all\"}" },
	{ "a batch in 2025-06-18", "2025-06-18",
	  "[{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}]", DB_ROWS, 400,
	  "\"id\":null,\"error\":{\"code\":-32600,", NULL },
	{ "a protocol version we do not speak", "2099-01-01",
	  "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}", DB_ROWS, 400,
	  "\"code\":-32022,\"message\":\"Unsupported MCP-Protocol-Version: "
	  "error.data.supported lists the revisions this server speaks.\","
	  "\"data\":{\"supported\":[\"2026-07-28\",\"2025-11-25\","
	  "\"2025-06-18\",\"2025-03-26\"],\"requested\":\"2099-01-01\"}",
	  NULL },
	{ "not JSON", "2025-11-25", "{\"jsonrpc\"", DB_ROWS, 400,
	  "\"code\":-32700", NULL },
};

/* The stateless revision (MCP-Protocol-Version 2026-07-28): the headers
 * that name the method and the tool, and the body. */
#define META "\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":" \
	"\"2026-07-28\",\"io.modelcontextprotocol/clientCapabilities\":{}}"

static const struct {
	const char	*name;
	const char	*method, *tool;	/* Mcp-Method, Mcp-Name, or NULL */
	const char	*body;
	int		 status;
	const char	*has;
	const char	*asked;
} stateless[] = {
	{ "server/discover", "server/discover", NULL,
	  "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"server/discover\","
	  "\"params\":{" META "}}", 200,
	  "\"supportedVersions\":[\"2026-07-28\",\"2025-11-25\",\"2025-06-18\","
	  "\"2025-03-26\"],\"capabilities\":{\"tools\":"
	  "{\"listChanged\":false}}",
	  NULL },
	{ "every result: resultType, serverInfo; caching hints", "tools/list",
	  NULL, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\","
	  "\"params\":{" META "}}", 200, "\"resultType\":\"complete\","
	  "\"_meta\":{\"io.modelcontextprotocol/serverInfo\":{\"name\":"
	  "\"todo-chat\",\"version\":\"1.0.0\"}},\"ttlMs\":300000,"
	  "\"cacheScope\":\"public\"}", NULL },
	{ "tools/call with Mcp-Name, spaces around it", "tools/call",
	  "  list_tasks\t", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":"
	  "\"tools/call\",\"params\":{\"name\":\"list_tasks\"," META "}}",
	  200, "\"resultType\":\"complete\"",
	  "alice tool_list_tasks {\"status\":\"all\"}" },
	{ "no Mcp-Method", NULL, NULL, "{\"jsonrpc\":\"2.0\",\"id\":1,"
	  "\"method\":\"tools/list\",\"params\":{" META "}}", 400,
	  "\"id\":1,\"error\":{\"code\":-32020", NULL },
	{ "Mcp-Method in other case", "TOOLS/LIST", NULL,
	  "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\","
	  "\"params\":{" META "}}", 400, "\"code\":-32020", NULL },
	{ "Mcp-Name of another tool", "tools/call", "delete_task",
	  "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\","
	  "\"params\":{\"name\":\"list_tasks\"," META "}}", 400,
	  "\"code\":-32020", NULL },
	{ "no Mcp-Name", "tools/call", NULL,
	  "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\","
	  "\"params\":{\"name\":\"list_tasks\"," META "}}", 400,
	  "\"code\":-32020", NULL },
	{ "no _meta", "tools/list", NULL, "{\"jsonrpc\":\"2.0\",\"id\":7,"
	  "\"method\":\"tools/list\",\"params\":{}}", 400,
	  "\"id\":7,\"error\":{\"code\":-32602", NULL },
	{ "_meta without clientCapabilities", "tools/list", NULL,
	  "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/list\","
	  "\"params\":{\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":"
	  "\"2026-07-28\"}}}", 400, "\"code\":-32602", NULL },
	{ "_meta naming another revision than the header", "tools/list", NULL,
	  "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/list\","
	  "\"params\":{\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":"
	  "\"2025-11-25\",\"io.modelcontextprotocol/clientCapabilities\":{}}}}",
	  400, "\"code\":-32020", NULL },
	{ "initialize is gone: 404", "initialize", NULL,
	  "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"initialize\","
	  "\"params\":{" META "}}", 404,
	  "\"id\":5,\"error\":{\"code\":-32601", NULL },
	{ "ping is gone: 404", "ping", NULL, "{\"jsonrpc\":\"2.0\",\"id\":5,"
	  "\"method\":\"ping\",\"params\":{" META "}}", 404,
	  "\"code\":-32601", NULL },
	{ "a tool's error: isError, resultType", "tools/call", "add_task",
	  "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\","
	  "\"params\":{\"name\":\"add_task\",\"arguments\":{}," META "}}",
	  200, "\"isError\":true,\"resultType\":\"complete\"", NULL },
	{ "a notification: 202", "notifications/cancelled", NULL,
	  "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\"}",
	  202, "", NULL },
	{ "a batch: refused", NULL, NULL,
	  "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}]",
	  400, "\"code\":-32600", NULL },
};

/* Runs one request; 1 if its reply and its database call are as given. */
static int
check(struct mcp_request *req, const char *body, int status,
    const char *has, const char *asked)
{
	struct mcp_reply	 out;
	int			 ok;

	db_asked[0] = '\0';
	req->body = body;
	req->body_len = strlen(body);
	mcp_post(req, &out);
	ok = out.status == status && (out.body != NULL ?
	    strstr(out.body, has) != NULL : has[0] == '\0') &&
	    strcmp(db_asked, asked != NULL ? asked : "") == 0;
	if (!ok)
		printf("# status %d, body %s, asked '%s'\n", out.status,
		    out.body != NULL ? out.body : "(none)", db_asked);
	cJSON_free(out.body);
	return ok;
}

int
main(void)
{
	struct mcp_request	 req = { "alice", NULL, NULL, NULL, NULL, NULL,
	    NULL, 0, run_tool };
	size_t			 i, n = sizeof(cases) / sizeof(cases[0]);
	size_t			 ns = sizeof(stateless) / sizeof(stateless[0]);
	int			 ok;

	printf("1..%zu\n", n + ns + 1);
	for (i = 0; i < n; i++) {
		db_mode = cases[i].db;
		req.protocol_version = cases[i].version;
		ok = check(&req, cases[i].body, cases[i].status, cases[i].has,
		    cases[i].asked);
		printf("%sok %zu - %s\n", ok ? "" : "not ", i + 1,
		    cases[i].name);
	}
	db_mode = DB_ROWS;
	req.protocol_version = "2026-07-28";
	for (i = 0; i < ns; i++) {
		req.mcp_method = stateless[i].method;
		req.mcp_name = stateless[i].tool;
		ok = check(&req, stateless[i].body, stateless[i].status,
		    stateless[i].has, stateless[i].asked);
		printf("%sok %zu - 2026-07-28: %s\n", ok ? "" : "not ",
		    n + i + 1, stateless[i].name);
	}
	{
		cJSON	*doc;
		char	*text;

		doc = mcp_resource_metadata("https://todo.example", NULL);
		text = cJSON_PrintUnformatted(doc);

		printf("%sok %zu - the metadata without an issuer\n",
		    text != NULL && strcmp(text, "{\"resource\":"
		    "\"https://todo.example/mcp\",\"resource_name\":"
		    "\"todo-chat\",\"bearer_methods_supported\":[\"header\"],"
		    "\"scopes_supported\":[]}") == 0 ? "" : "not ", n + ns + 1);
		cJSON_free(text);
		cJSON_Delete(doc);
	}
	return 0;
}
