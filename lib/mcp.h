/* mcp.h: the task tools over MCP, the Model Context Protocol, for agents
 * other than our own turns: the JSON-RPC 2.0 messages of POST /mcp as a
 * stateless Streamable HTTP server answers them (every answer whole, as
 * application/json; no Mcp-Session-Id, nothing kept between requests),
 * in the revisions with a handshake (2025-11-25, 2025-06-18, 2025-03-26)
 * and the stateless one (2026-07-28: server/discover, _meta on every
 * request, the method in headers), and the protected resource metadata
 * (RFC 9728) that tells a client where its tokens come from.
 *
 * The HTTP front (chat.fcgi.c) has checked the Origin, the token and the
 * body's size before mcp_post(); this module checks the MCP headers,
 * reads the body, and runs what it asks for the token's user only: the
 * tools are tools.c's rows, run by the function the caller gives
 * (db_tool() in the worker: the same SQL function as a turn's tool
 * calls), so that this module does no I/O of its own and its tests and
 * fuzzer can run it without a database. Nothing here touches FastCGI. */
#ifndef MCP_H
#define MCP_H

#include <stddef.h>

#include "err.h"

struct cJSON;

/* The protocol revision we answer with when the client asks for one we
 * do not speak, and the one a request without MCP-Protocol-Version is
 * taken to use (the transport's rule for clients older than the
 * header). */
#define MCP_VERSION_LATEST	"2025-11-25"
#define MCP_VERSION_DEFAULT	"2025-03-26"
/* The stateless revision: no handshake (server/discover instead), the
 * revision and the client's capabilities in every request's _meta, and
 * the method (and tool) named in headers too. */
#define MCP_VERSION_STATELESS	"2026-07-28"

/* What mcp_post() reads of the request; all borrowed. */
struct mcp_request {
	const char	*user_id;	/* the token's, already checked */
	const char	*accept;	/* the Accept header, or NULL */
	const char	*content_type;	/* Content-Type, or NULL */
	const char	*protocol_version; /* MCP-Protocol-Version, or NULL */
	const char	*mcp_method;	/* Mcp-Method, or NULL (stateless) */
	const char	*mcp_name;	/* Mcp-Name, or NULL (stateless) */
	const char	*body;		/* at most the configured maximum; */
	size_t		 body_len;	/* NULL when empty */
	/* Runs a tool's SQL function as db_tool() does (db.h: its
	 * contract, which the worker passes). */
	int		(*run_tool)(const char *user_id,
			    const char *function, const char *args,
			    char **result, struct chat_err *err);
};

/* What to answer: a status and, but for 202, a JSON body (a JSON-RPC
 * response, a batch of them, or a JSON-RPC error for a request that
 * could not be read), which the caller cJSON_free()s. */
struct mcp_reply {
	int		 status;	/* 200, 202, 400, 404, 406, 415, 429,
					 * 503 */
	char		*body;		/* NULL for 202 and on ENOMEM */
	int		 retry_after_s;	/* 429: the Retry-After to send */
};

/* Answers one POST /mcp. Never fails as such: a request we cannot serve
 * gets its error in out; body NULL with a status other than 202 means
 * memory ran out (the caller answers 503 as for any request). */
void	 mcp_post(const struct mcp_request *req, struct mcp_reply *out);

/* The RFC 9728 document of the resource at origin ("https://host"):
 * "resource" origin + "/mcp", "authorization_servers" [issuer] when an
 * issuer is configured (NULL: none), "bearer_methods_supported"
 * ["header"], "scopes_supported" [] (no scopes: a token is for the
 * whole of its user's list). NULL on ENOMEM; the caller cJSON_Delete()s
 * it. */
struct cJSON	*mcp_resource_metadata(const char *origin,
		    const char *issuer);

/* The path of that document under an origin, for WWW-Authenticate. */
#define MCP_METADATA_PATH	"/.well-known/oauth-protected-resource"

#endif
