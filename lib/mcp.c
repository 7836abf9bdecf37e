/* mcp.c: POST /mcp's JSON-RPC messages (MCP over Streamable HTTP, as a
 * stateless server) and the protected resource metadata; see mcp.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cJSON.h>

#include "mcp.h"
#include "text.h"
#include "tools.h"

/* JSON-RPC 2.0's error codes (its section 5.1). */
#define RPC_PARSE_ERROR		-32700
#define RPC_INVALID_REQUEST	-32600
#define RPC_METHOD_NOT_FOUND	-32601
#define RPC_INVALID_PARAMS	-32602
#define RPC_INTERNAL_ERROR	-32603
/* MCP's own, of the stateless revision. */
#define RPC_HEADER_MISMATCH	-32020
#define RPC_UNSUPPORTED_VERSION	-32022
#define RPC_RATE_LIMITED	-32029	/* a server error of ours */

/* What the server calls itself in initialize and server/discover; a
 * client shows it. */
#define SERVER_NAME		"todo-chat"
#define SERVER_VERSION		"1.0.0"
#define SERVER_INSTRUCTIONS \
	"The tools read and change one person's todo list: the person the " \
	"bearer token names. Task ids come from list_tasks and add_task."

/* The revisions we speak, newest first: the stateless one, the current
 * one with a handshake, and those the official TypeScript SDK 1.x
 * negotiates. */
static const char *const versions[] = {
	MCP_VERSION_STATELESS, MCP_VERSION_LATEST, "2025-06-18",
	MCP_VERSION_DEFAULT,
};
#define NVERSIONS	(sizeof(versions) / sizeof(versions[0]))

/* How long a client may keep a tools/list or server/discover result
 * (stateless revision): the tools change only with a new release. The
 * list is the same for every user, so shared caches may keep it too. */
#define CACHE_TTL_MS		300000

/* The _meta keys of the stateless revision. */
#define META_VERSION		"io.modelcontextprotocol/protocolVersion"
#define META_CAPABILITIES	"io.modelcontextprotocol/clientCapabilities"
#define META_SERVER_INFO	"io.modelcontextprotocol/serverInfo"

/* Batches left JSON-RPC's use in MCP with 2025-06-18; a request of an
 * older revision may still send one, each message answered in turn. A
 * batch is bounded by the body's size already; this bounds the work
 * (each tools/call is a transaction). */
#define BATCH_MAX		32

/* A JSON-RPC error on its way to the client. */
struct rpc_err {
	int		 code;
	int		 status;	/* HTTP status of a lone message */
	char		 msg[200];
	const char	*api_code;	/* RPC_RATE_LIMITED: the API's code */
	const char	*requested;	/* RPC_UNSUPPORTED_VERSION: what the
					 * client asked for, borrowed */
};

/* One POST as it is read: the request and the revision it speaks. */
struct exchange {
	const struct mcp_request	*req;
	const char			*version;
	int				 stateless; /* the stateless one */
	int				*retry_after_s; /* the reply's */
};

static int
rpc_fail(struct rpc_err *e, int code, int status, const char *msg)
{
	e->code = code;
	e->status = status;
	snprintf(e->msg, sizeof(e->msg), "%s", msg);
	return -1;
}

static int
rpc_oom(struct rpc_err *e)
{
	return rpc_fail(e, RPC_INTERNAL_ERROR, 503,
	    "The server is short of memory; try again.");
}

/* {"jsonrpc":"2.0","id":id} with id copied (NULL: null), or NULL. */
static cJSON *
envelope(const cJSON *id)
{
	cJSON	*o, *copy;

	if ((o = cJSON_CreateObject()) == NULL)
		return NULL;
	copy = id != NULL ? cJSON_Duplicate(id, 1) : cJSON_CreateNull();
	if (cJSON_AddStringToObject(o, "jsonrpc", "2.0") == NULL ||
	    copy == NULL || !cJSON_AddItemToObject(o, "id", copy)) {
		cJSON_Delete(copy);
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

/* The versions we speak as a JSON array under name in o: 0, or -1. */
static int
add_versions(cJSON *o, const char *name)
{
	cJSON	*list;
	size_t	 i;

	if ((list = cJSON_AddArrayToObject(o, name)) == NULL)
		return -1;
	for (i = 0; i < NVERSIONS; i++)
		if (!cJSON_AddItemToArray(list,
		    cJSON_CreateString(versions[i])))
			return -1;
	return 0;
}

/* An UnsupportedProtocolVersionError's data: what we speak, and what was
 * asked for (when it is text we can echo). 0, or -1. */
static int
version_data(cJSON *error, const char *requested)
{
	cJSON	*data;

	if (requested == NULL || !text_utf8_valid(requested,
	    strlen(requested)))
		requested = "";
	if ((data = cJSON_AddObjectToObject(error, "data")) == NULL ||
	    add_versions(data, "supported") == -1 ||
	    cJSON_AddStringToObject(data, "requested", requested) == NULL)
		return -1;
	return 0;
}

/* "data": the API's error object, {"error": {"code", "message"}}. */
static int
api_error_data(cJSON *error, const struct rpc_err *e)
{
	cJSON	*data, *api;

	if ((data = cJSON_AddObjectToObject(error, "data")) == NULL ||
	    (api = cJSON_AddObjectToObject(data, "error")) == NULL ||
	    cJSON_AddStringToObject(api, "code", e->api_code) == NULL ||
	    cJSON_AddStringToObject(api, "message", e->msg) == NULL)
		return -1;
	return 0;
}

/* The error response to the message with id (NULL: unknown), or NULL. */
static cJSON *
error_response(const cJSON *id, const struct rpc_err *e)
{
	cJSON	*o, *error;

	if ((o = envelope(id)) == NULL)
		return NULL;
	if ((error = cJSON_AddObjectToObject(o, "error")) == NULL ||
	    cJSON_AddNumberToObject(error, "code", e->code) == NULL ||
	    cJSON_AddStringToObject(error, "message", e->msg) == NULL ||
	    (e->code == RPC_UNSUPPORTED_VERSION &&
	    version_data(error, e->requested) == -1) ||
	    (e->code == RPC_RATE_LIMITED &&
	    api_error_data(error, e) == -1)) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

/* Fills out with a reply holding only the error e, for the message with
 * id (NULL: none known). */
static void
reply_error(struct mcp_reply *out, const cJSON *id, const struct rpc_err *e)
{
	cJSON	*o = error_response(id, e);

	out->status = e->status;
	out->body = o != NULL ? cJSON_PrintUnformatted(o) : NULL;
	cJSON_Delete(o);
}

/* ------------------------------------------------------------ headers */

/* 1 if the media type of a Content-Type value (before any parameter)
 * is the one named, in any case. */
static int
media_type_is(const char *value, const char *type)
{
	size_t	 n;

	value += strspn(value, " \t");
	n = strcspn(value, ",; \t");
	return n == strlen(type) && strncasecmp(value, type, n) == 0;
}

/* 1 if an Accept value lets us answer JSON: absent (curl, most HTTP
 * libraries), or naming application/json, application/ * or * / *. The
 * transport asks clients to list text/event-stream too; a stateless
 * server never opens a stream, so it does not insist on it. */
static int
accepts_json(const char *accept)
{
	static const char *const ranges[] = { "application/json",
	    "application/*", "*/*" };
	const char	*p = accept;
	size_t		 i;

	if (accept == NULL || accept[strspn(accept, " \t")] == '\0')
		return 1;
	while (*p != '\0') {
		p += strspn(p, " \t,");
		for (i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++)
			if (media_type_is(p, ranges[i]))
				return 1;
		p += strcspn(p, ",");
	}
	return 0;
}

/* The revision a request speaks, by its MCP-Protocol-Version header;
 * NULL for one we do not. */
static const char *
request_version(const char *header)
{
	size_t	 i;

	if (header == NULL)
		return MCP_VERSION_DEFAULT;
	for (i = 0; i < NVERSIONS; i++)
		if (strcmp(header, versions[i]) == 0)
			return versions[i];
	return NULL;
}

/* The header checks of the transport: 0 and *version, or -1 with e. */
static int
check_headers(const struct mcp_request *req, const char **version,
    struct rpc_err *e)
{
	if (!accepts_json(req->accept))
		return rpc_fail(e, RPC_INVALID_REQUEST, 406, "This server "
		    "answers application/json; the Accept header refuses it.");
	if (req->content_type != NULL &&
	    !media_type_is(req->content_type, "application/json"))
		return rpc_fail(e, RPC_INVALID_REQUEST, 415, "Send the "
		    "JSON-RPC message as Content-Type: application/json.");
	if ((*version = request_version(req->protocol_version)) == NULL) {
		e->requested = req->protocol_version;
		return rpc_fail(e, RPC_UNSUPPORTED_VERSION, 400, "Unsupported "
		    "MCP-Protocol-Version: error.data.supported lists the "
		    "revisions this server speaks.");
	}
	return 0;
}

/* The body as one JSON value: valid UTF-8, one value and nothing after
 * it, and no \u0000 (cJSON would end the string there, silently: a
 * title would be stored cut short). NULL with e. */
static cJSON *
parse_body(const struct mcp_request *req, struct rpc_err *e)
{
	cJSON	*v;

	if (req->body == NULL || req->body_len == 0) {
		rpc_fail(e, RPC_PARSE_ERROR, 400, "The body is empty: send one "
		    "JSON-RPC message.");
		return NULL;
	}
	if (!text_utf8_valid(req->body, req->body_len) ||
	    (v = text_json_parse(req->body, req->body_len)) == NULL) {
		rpc_fail(e, RPC_PARSE_ERROR, 400, "The body is not one JSON "
		    "value in UTF-8.");
		return NULL;
	}
	if (text_json_has_nul(req->body, req->body_len)) {
		cJSON_Delete(v);
		rpc_fail(e, RPC_INVALID_REQUEST, 400, "\\u0000 is not accepted "
		    "in a string.");
		return NULL;
	}
	return v;
}

/* ------------------------------------------------------------ methods */

static int	m_initialize(const struct exchange *, const cJSON *, cJSON *,
		    struct rpc_err *);
static int	m_ping(const struct exchange *, const cJSON *, cJSON *,
		    struct rpc_err *);
static int	m_discover(const struct exchange *, const cJSON *, cJSON *,
		    struct rpc_err *);
static int	m_tools_list(const struct exchange *, const cJSON *, cJSON *,
		    struct rpc_err *);
static int	m_tools_call(const struct exchange *, const cJSON *, cJSON *,
		    struct rpc_err *);

/* Which revisions have a method. */
#define HANDSHAKE	1	/* 2025-11-25 and before */
#define STATELESS	2	/* MCP_VERSION_STATELESS */

/* The requests we answer, and in which revisions. Each fills result (an
 * empty object) for the exchange's user, or returns -1 with e. Anything
 * else is "method not found": resources, prompts, logging, completion,
 * sampling, elicitation and subscriptions are not offered, and
 * capabilities say so. A cacheable result carries caching hints in the
 * stateless revision. */
static const struct method {
	const char	*name;
	int		(*run)(const struct exchange *x, const cJSON *params,
			    cJSON *result, struct rpc_err *e);
	int		 revisions;
	int		 cacheable;
} methods[] = {
	{ "initialize",		m_initialize,	HANDSHAKE,		0 },
	{ "ping",		m_ping,		HANDSHAKE,		0 },
	{ "server/discover",	m_discover,	STATELESS,		1 },
	{ "tools/list",		m_tools_list,	HANDSHAKE | STATELESS,	1 },
	{ "tools/call",		m_tools_call,	HANDSHAKE | STATELESS,	0 },
};

/* {"tools": {"listChanged": false}}: the tools are all we offer, and
 * they change only with a release. 0, or -1. */
static int
add_capabilities(cJSON *result)
{
	cJSON	*caps, *tool_caps;

	if ((caps = cJSON_AddObjectToObject(result, "capabilities")) == NULL ||
	    (tool_caps = cJSON_AddObjectToObject(caps, "tools")) == NULL ||
	    cJSON_AddFalseToObject(tool_caps, "listChanged") == NULL)
		return -1;
	return 0;
}

/* {"name", "version"} under key in o. 0, or -1. */
static int
server_info(cJSON *o, const char *key)
{
	cJSON	*info;

	if ((info = cJSON_AddObjectToObject(o, key)) == NULL ||
	    cJSON_AddStringToObject(info, "name", SERVER_NAME) == NULL ||
	    cJSON_AddStringToObject(info, "version", SERVER_VERSION) == NULL)
		return -1;
	return 0;
}

static int
m_initialize(const struct exchange *x, const cJSON *params,
    cJSON *result, struct rpc_err *e)
{
	const cJSON	*asked;
	const char	*version = MCP_VERSION_LATEST;
	size_t		 i;

	(void)x;
	asked = cJSON_GetObjectItemCaseSensitive(params, "protocolVersion");
	if (!cJSON_IsString(asked))
		return rpc_fail(e, RPC_INVALID_PARAMS, 200, "initialize needs "
		    "params.protocolVersion, a string.");
	/* The client's revision when we speak it with a handshake, else
	 * our latest: the client then decides whether it can go on. */
	for (i = 0; i < NVERSIONS; i++)
		if (strcmp(asked->valuestring, versions[i]) == 0 &&
		    strcmp(versions[i], MCP_VERSION_STATELESS) != 0)
			version = versions[i];
	if (cJSON_AddStringToObject(result, "protocolVersion", version) ==
	    NULL || add_capabilities(result) == -1 ||
	    server_info(result, "serverInfo") == -1 ||
	    cJSON_AddStringToObject(result, "instructions",
	    SERVER_INSTRUCTIONS) == NULL)
		return rpc_oom(e);
	return 0;
}

/* The stateless revision's stand-in for the handshake: what we speak
 * and offer; who we are goes in the result's _meta, as on every result
 * of that revision. */
static int
m_discover(const struct exchange *x, const cJSON *params, cJSON *result,
    struct rpc_err *e)
{
	(void)x;
	(void)params;
	if (add_versions(result, "supportedVersions") == -1 ||
	    add_capabilities(result) == -1 ||
	    cJSON_AddStringToObject(result, "instructions",
	    SERVER_INSTRUCTIONS) == NULL)
		return rpc_oom(e);
	return 0;
}

static int
m_ping(const struct exchange *x, const cJSON *params,
    cJSON *result, struct rpc_err *e)
{
	(void)x;
	(void)params;
	(void)result;
	(void)e;
	return 0;
}

/* A tool's output schema as MCP wants it, always an object: a result
 * that is a list is described under its tools.c key. NULL on ENOMEM. */
static cJSON *
output_schema(const struct tool *t)
{
	cJSON	*schema, *wrapper, *props, *required;

	if ((schema = cJSON_Parse(t->output_schema)) == NULL ||
	    t->wrap_key == NULL)
		return schema;
	if ((wrapper = cJSON_CreateObject()) == NULL ||
	    cJSON_AddStringToObject(wrapper, "type", "object") == NULL ||
	    (props = cJSON_AddObjectToObject(wrapper, "properties")) == NULL ||
	    !cJSON_AddItemToObject(props, t->wrap_key, schema)) {
		cJSON_Delete(wrapper);
		cJSON_Delete(schema);
		return NULL;
	}
	if ((required = cJSON_AddArrayToObject(wrapper, "required")) == NULL ||
	    !cJSON_AddItemToArray(required, cJSON_CreateString(t->wrap_key))) {
		cJSON_Delete(wrapper);
		return NULL;
	}
	return wrapper;
}

/* One entry of tools/list, from the tool's row: the same name,
 * description and schemas the model reads in a turn. */
static cJSON *
tool_entry(const struct tool *t)
{
	cJSON	*o, *input, *output;

	if ((o = cJSON_CreateObject()) == NULL)
		return NULL;
	input = cJSON_Parse(t->input_schema);
	output = output_schema(t);
	if (cJSON_AddStringToObject(o, "name", t->name) == NULL ||
	    cJSON_AddStringToObject(o, "description", t->description) ==
	    NULL || input == NULL || !cJSON_AddItemToObject(o, "inputSchema",
	    input)) {
		cJSON_Delete(input);
		cJSON_Delete(output);
		cJSON_Delete(o);
		return NULL;
	}
	if (output == NULL || !cJSON_AddItemToObject(o, "outputSchema",
	    output)) {
		cJSON_Delete(output);
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

/* Every tool, in the table's order, in one page: five tools need no
 * cursor, and one given is ignored as the end of nothing. */
static int
m_tools_list(const struct exchange *x, const cJSON *params,
    cJSON *result, struct rpc_err *e)
{
	cJSON	*list, *entry;
	size_t	 i;

	(void)x;
	(void)params;
	if ((list = cJSON_AddArrayToObject(result, "tools")) == NULL)
		return rpc_oom(e);
	for (i = 0; i < ntools; i++)
		if ((entry = tool_entry(&tools[i])) == NULL ||
		    !cJSON_AddItemToArray(list, entry)) {
			cJSON_Delete(entry);
			return rpc_oom(e);
		}
	return 0;
}

/* A tool's answer for the caller: content holds text, and with
 * structured (taken over; NULL for an error) structuredContent too. */
static int
tool_result(cJSON *result, const char *text, cJSON *structured, int is_error,
    struct rpc_err *e)
{
	cJSON	*content, *item;

	if ((content = cJSON_AddArrayToObject(result, "content")) == NULL ||
	    (item = cJSON_CreateObject()) == NULL) {
		cJSON_Delete(structured);
		return rpc_oom(e);
	}
	if (!cJSON_AddItemToArray(content, item) ||
	    cJSON_AddStringToObject(item, "type", "text") == NULL ||
	    cJSON_AddStringToObject(item, "text", text) == NULL ||
	    (structured != NULL && !cJSON_AddItemToObject(result,
	    "structuredContent", structured))) {
		cJSON_Delete(structured);
		return rpc_oom(e);
	}
	if (is_error && cJSON_AddTrueToObject(result, "isError") == NULL)
		return rpc_oom(e);
	return 0;
}

/* The result the tool's SQL function gave (JSON text we wrote), as
 * structuredContent: an object, a list under the tool's key. */
static int
tool_success(const struct tool *t, const char *text, cJSON *result,
    struct rpc_err *e)
{
	cJSON	*value, *wrapper;
	char	*printed;
	int	 rc;

	if ((value = cJSON_Parse(text)) == NULL)
		return rpc_oom(e);
	if (t->wrap_key != NULL) {
		if ((wrapper = cJSON_CreateObject()) == NULL ||
		    !cJSON_AddItemToObject(wrapper, t->wrap_key, value)) {
			cJSON_Delete(wrapper);
			cJSON_Delete(value);
			return rpc_oom(e);
		}
		value = wrapper;
	}
	/* The text item holds the same JSON, for clients that read no
	 * structuredContent (the revision of 2025-06-18 asks for both). */
	if ((printed = cJSON_PrintUnformatted(value)) == NULL) {
		cJSON_Delete(value);
		return rpc_oom(e);
	}
	rc = tool_result(result, printed, value, 0, e);
	cJSON_free(printed);
	return rc;
}

/* Runs a tool as a turn's round would, for the token's user: the same
 * argument checks and the same SQL function. A refused argument or a
 * task that is not the user's is the tool's error (isError), for the
 * agent to read and correct; only a request the protocol cannot take
 * (no such tool, no name, arguments that are no object) is a JSON-RPC
 * error. */
static int
m_tools_call(const struct exchange *x, const cJSON *params,
    cJSON *result, struct rpc_err *e)
{
	const cJSON		*name, *args;
	const struct tool	*t;
	struct chat_err		 err = { 0 };
	char			*args_text, *out, why[160];
	long long		 task_id;
	int			 rc;

	name = cJSON_GetObjectItemCaseSensitive(params, "name");
	args = cJSON_GetObjectItemCaseSensitive(params, "arguments");
	if (!cJSON_IsString(name))
		return rpc_fail(e, RPC_INVALID_PARAMS, 200, "tools/call needs "
		    "params.name, a string.");
	if ((t = tools_find(name->valuestring)) == NULL)
		return rpc_fail(e, RPC_INVALID_PARAMS, 200, "Unknown tool; "
		    "tools/list names them.");
	if (args != NULL && !cJSON_IsNull(args) && !cJSON_IsObject(args))
		return rpc_fail(e, RPC_INVALID_PARAMS, 200, "params.arguments "
		    "must be an object.");
	if (cJSON_IsNull(args))
		args = NULL;
	if ((rc = tools_check(t, args, &args_text, &task_id, why,
	    sizeof(why))) == -1)
		return rpc_oom(e);
	if (rc == 1)
		return tool_result(result, why, NULL, 1, e);
	rc = x->req->run_tool(x->req->user_id, t->sql_function, args_text,
	    &out, &err);
	free(args_text);
	/* Over the user's turns a minute (a tools/call counts as a turn):
	 * HTTP 429 with Retry-After, as for a turn; a JSON-RPC error whose
	 * data is the API's error, so a client of either kind reads it. */
	if (rc == -1 && err.status == 429) {
		*x->retry_after_s = err.retry_after_s;
		e->api_code = err.code;
		return rpc_fail(e, RPC_RATE_LIMITED, 429, err.msg);
	}
	if (rc == -1)
		return rpc_fail(e, RPC_INTERNAL_ERROR, err.status, err.msg);
	if (out == NULL) {
		tools_no_result(task_id, why, sizeof(why));
		return tool_result(result, why, NULL, 1, e);
	}
	rc = tool_success(t, out, result, e);
	free(out);
	return rc;
}

/* ----------------------------------------------------------- messages */

/* 1 if v may be a request's id: MCP takes a string or an integer (never
 * null), and we keep integers to those a double holds exactly, so that
 * the id comes back as it was sent. */
static int
id_valid(const cJSON *v)
{
	if (cJSON_IsString(v))
		return 1;
	/* The range first: converting a double beyond long long's range
	 * (1e300, or the infinity cJSON makes of 1e999) is undefined. */
	return cJSON_IsNumber(v) && v->valuedouble <= (double)TEXT_ID_MAX &&
	    v->valuedouble >= -(double)TEXT_ID_MAX &&
	    v->valuedouble == (double)(long long)v->valuedouble;
}

static const struct method *
method_find(const char *name)
{
	size_t	 i;

	for (i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (strcmp(name, methods[i].name) == 0)
			return &methods[i];
	return NULL;
}

/* A header value without the whitespace HTTP allows around it (RFC 9110
 * section 5.5) equals s. */
static int
header_is(const char *header, const char *s)
{
	size_t	 n;

	header += strspn(header, " \t");
	n = strlen(header);
	while (n > 0 && (header[n - 1] == ' ' || header[n - 1] == '\t'))
		n--;
	return n == strlen(s) && strncmp(header, s, n) == 0;
}

/* The stateless revision names the method, and the tool a tools/call
 * calls, in headers too, so that a front can route on them unread: they
 * must say what the body says. 0, or -1 with e. */
static int
check_routing_headers(const struct exchange *x, const cJSON *msg,
    const char *method, struct rpc_err *e)
{
	const cJSON	*name;

	if (x->req->mcp_method == NULL ||
	    !header_is(x->req->mcp_method, method))
		return rpc_fail(e, RPC_HEADER_MISMATCH, 400, "The Mcp-Method "
		    "header must name the body's method.");
	name = cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(msg, "params"), "name");
	if (strcmp(method, "tools/call") == 0 && cJSON_IsString(name) &&
	    (x->req->mcp_name == NULL ||
	    !header_is(x->req->mcp_name, name->valuestring)))
		return rpc_fail(e, RPC_HEADER_MISMATCH, 400, "The Mcp-Name "
		    "header must name the tool the body calls.");
	return 0;
}

/* The stateless revision's per-request _meta: the revision, which must
 * be the header's, and the client's capabilities (clientInfo is
 * optional). 0, or -1 with e. */
static int
check_meta(const struct exchange *x, const cJSON *params, struct rpc_err *e)
{
	const cJSON	*meta, *version;

	meta = cJSON_GetObjectItemCaseSensitive(params, "_meta");
	version = cJSON_GetObjectItemCaseSensitive(meta, META_VERSION);
	if (!cJSON_IsString(version) || !cJSON_IsObject(
	    cJSON_GetObjectItemCaseSensitive(meta, META_CAPABILITIES)))
		return rpc_fail(e, RPC_INVALID_PARAMS, 400, "params._meta must "
		    "give " META_VERSION " and " META_CAPABILITIES ".");
	if (strcmp(version->valuestring, x->version) != 0)
		return rpc_fail(e, RPC_HEADER_MISMATCH, 400, "The revision in "
		    "_meta is not the MCP-Protocol-Version header's.");
	return 0;
}

/* What every result of the stateless revision carries: its type, who
 * answered and, for a result a client may keep, for how long and for
 * whom. 0, or -1. */
static int
stateless_result(cJSON *result, int cacheable)
{
	cJSON	*meta;

	if (cJSON_AddStringToObject(result, "resultType", "complete") ==
	    NULL || (meta = cJSON_AddObjectToObject(result, "_meta")) ==
	    NULL || server_info(meta, META_SERVER_INFO) == -1)
		return -1;
	if (cacheable && (cJSON_AddNumberToObject(result, "ttlMs",
	    CACHE_TTL_MS) == NULL ||
	    cJSON_AddStringToObject(result, "cacheScope", "public") == NULL))
		return -1;
	return 0;
}

/* The method a request names in its exchange's revision, or NULL with
 * e: an unknown method (404 in the stateless revision, where HTTP says
 * so too), or initialize inside a batch. */
static const struct method *
request_method(const struct exchange *x, const char *name, int batched,
    struct rpc_err *e)
{
	const struct method	*m = method_find(name);

	if (m == NULL || !(m->revisions & (x->stateless ? STATELESS :
	    HANDSHAKE))) {
		rpc_fail(e, RPC_METHOD_NOT_FOUND, x->stateless ? 404 : 200,
		    x->stateless ? "Method not found: this server offers "
		    "server/discover, tools/list and tools/call." : "Method "
		    "not found: this server offers initialize, ping, "
		    "tools/list and tools/call.");
		return NULL;
	}
	if (batched && m->run == m_initialize) {
		rpc_fail(e, RPC_INVALID_REQUEST, 400, "initialize must not be "
		    "part of a batch.");
		return NULL;
	}
	return m;
}

/* A request's answer: its result, or its error. *response NULL only on
 * ENOMEM. The HTTP status a lone request's reply takes is returned. */
static int
run_request(const struct exchange *x, const cJSON *msg, const cJSON *id,
    int batched, cJSON **response)
{
	const cJSON		*method, *params;
	const struct method	*m;
	struct rpc_err		 e = { 0 };
	cJSON			*result = NULL;

	method = cJSON_GetObjectItemCaseSensitive(msg, "method");
	params = cJSON_GetObjectItemCaseSensitive(msg, "params");
	if (params != NULL && !cJSON_IsObject(params))
		rpc_fail(&e, cJSON_IsArray(params) ? RPC_INVALID_PARAMS :
		    RPC_INVALID_REQUEST, cJSON_IsArray(params) ? 200 : 400,
		    "params must be an object.");
	else if (x->stateless && check_meta(x, params, &e) == -1)
		;
	else if ((m = request_method(x, method->valuestring, batched,
	    &e)) == NULL)
		;
	else if ((result = cJSON_CreateObject()) == NULL)
		rpc_oom(&e);
	else if (m->run(x, params, result, &e) == 0) {
		if ((!x->stateless || stateless_result(result,
		    m->cacheable) == 0) && (*response = envelope(id)) != NULL &&
		    cJSON_AddItemToObject(*response, "result", result))
			return 200;
		cJSON_Delete(*response);
		*response = NULL;
		cJSON_Delete(result);
		return 503;
	}
	cJSON_Delete(result);
	*response = error_response(id, &e);
	return e.status;
}

/* One message of the body. A request gets a response in *response; a
 * notification, or a response from the client (we send no requests, so
 * any is stale), gets none and is accepted: 202. Returns the HTTP status
 * a lone message's reply takes; *response NULL with a status other than
 * 202 is ENOMEM. */
static int
answer(const struct exchange *x, const cJSON *msg, int batched,
    cJSON **response)
{
	const cJSON	*version, *method, *id;
	struct rpc_err	 e = { 0 };

	*response = NULL;
	version = cJSON_GetObjectItemCaseSensitive(msg, "jsonrpc");
	method = cJSON_GetObjectItemCaseSensitive(msg, "method");
	id = cJSON_GetObjectItemCaseSensitive(msg, "id");
	if (id != NULL && !id_valid(id))
		id = NULL;
	if (!cJSON_IsObject(msg) || !cJSON_IsString(version) ||
	    strcmp(version->valuestring, "2.0") != 0)
		rpc_fail(&e, RPC_INVALID_REQUEST, 400, "Not a JSON-RPC 2.0 "
		    "message.");
	else if (method == NULL && (cJSON_HasObjectItem(msg, "result") ||
	    cJSON_HasObjectItem(msg, "error")))
		return 202;
	else if (!cJSON_IsString(method))
		rpc_fail(&e, RPC_INVALID_REQUEST, 400, "A request needs a "
		    "method, a string.");
	else if (x->stateless && check_routing_headers(x, msg,
	    method->valuestring, &e) == -1)
		;
	else if (!cJSON_HasObjectItem(msg, "id"))
		return 202;	/* a notification: nothing to answer */
	else if (id == NULL)
		rpc_fail(&e, RPC_INVALID_REQUEST, 400, "A request's id must "
		    "be a string or an integer.");
	else
		return run_request(x, msg, id, batched, response);
	*response = error_response(id, &e);
	return e.status;
}

/* A batch, for a revision that has them: the responses in the order of
 * the requests, none for notifications; 202 when there is none. */
static void
answer_batch(const struct exchange *x, const cJSON *batch,
    struct mcp_reply *out)
{
	const cJSON	*msg;
	cJSON		*responses, *response;

	if ((responses = cJSON_CreateArray()) == NULL)
		return;
	cJSON_ArrayForEach(msg, batch) {
		if (answer(x, msg, 1, &response) == 202)
			continue;
		if (response == NULL ||
		    !cJSON_AddItemToArray(responses, response)) {
			cJSON_Delete(response);
			cJSON_Delete(responses);
			return;
		}
	}
	out->status = cJSON_GetArraySize(responses) > 0 ? 200 : 202;
	if (out->status == 200)
		out->body = cJSON_PrintUnformatted(responses);
	cJSON_Delete(responses);
}

void
mcp_post(const struct mcp_request *req, struct mcp_reply *out)
{
	struct rpc_err	 e = { 0 };
	struct exchange	 x = { req, NULL, 0, &out->retry_after_s };
	const cJSON	*id;
	cJSON		*body, *response;

	out->status = 503;
	out->body = NULL;
	out->retry_after_s = 0;
	if ((body = parse_body(req, &e)) == NULL) {
		reply_error(out, NULL, &e);
		return;
	}
	/* The body first, so that a refusal of the headers answers the
	 * request by its id, as the stateless revision asks of every
	 * error. */
	if (check_headers(req, &x.version, &e) == -1) {
		id = cJSON_GetObjectItemCaseSensitive(body, "id");
		reply_error(out, id_valid(id) ? id : NULL, &e);
		cJSON_Delete(body);
		return;
	}
	x.stateless = strcmp(x.version, MCP_VERSION_STATELESS) == 0;
	if (cJSON_IsArray(body)) {
		if (strcmp(x.version, MCP_VERSION_DEFAULT) != 0)
			rpc_fail(&e, RPC_INVALID_REQUEST, 400, "Batches are "
			    "not part of this protocol revision: send one "
			    "message a request.");
		else if (cJSON_GetArraySize(body) == 0 ||
		    cJSON_GetArraySize(body) > BATCH_MAX)
			rpc_fail(&e, RPC_INVALID_REQUEST, 400, "A batch holds "
			    "1 to 32 messages.");
		else
			answer_batch(&x, body, out);
		if (e.code != 0)
			reply_error(out, NULL, &e);
		cJSON_Delete(body);
		return;
	}
	out->status = answer(&x, body, 0, &response);
	if (response != NULL)
		out->body = cJSON_PrintUnformatted(response);
	else if (out->status != 202)
		out->status = 503;
	cJSON_Delete(response);
	cJSON_Delete(body);
}

/* ----------------------------------------------------------- metadata */

cJSON *
mcp_resource_metadata(const char *origin, const char *issuer)
{
	cJSON	*doc, *list;
	char	 resource[512];

	snprintf(resource, sizeof(resource), "%s/mcp", origin);
	if ((doc = cJSON_CreateObject()) == NULL)
		return NULL;
	if (cJSON_AddStringToObject(doc, "resource", resource) == NULL ||
	    cJSON_AddStringToObject(doc, "resource_name", SERVER_NAME) ==
	    NULL)
		goto fail;
	if (issuer != NULL) {
		if ((list = cJSON_AddArrayToObject(doc,
		    "authorization_servers")) == NULL ||
		    !cJSON_AddItemToArray(list, cJSON_CreateString(issuer)))
			goto fail;
	}
	if ((list = cJSON_AddArrayToObject(doc, "bearer_methods_supported")) ==
	    NULL || !cJSON_AddItemToArray(list, cJSON_CreateString("header")) ||
	    cJSON_AddArrayToObject(doc, "scopes_supported") == NULL)
		goto fail;
	return doc;
fail:
	cJSON_Delete(doc);
	return NULL;
}
