-- bench/mcp.lua: wrk script for MCP tool calls: every request is one
-- POST /mcp of tools/call list_tasks (the token's user has the tasks
-- bench/mcp.pl seeded), as an agent sends it after initialize. TOKEN is
-- the bearer token. Answers of 400 and above are counted and printed at
-- the end as "non-200"; no response() hook, to keep wrk's own CPU small
-- on a machine the service shares (as bench/turn.lua does).
local token = os.getenv("TOKEN")

function init(args)
	req = wrk.format("POST", "/mcp", {
		["Authorization"] = "Bearer " .. token,
		["Content-Type"] = "application/json",
		["Accept"] = "application/json, text/event-stream",
		["MCP-Protocol-Version"] = "2025-11-25"
	}, '{"jsonrpc":"2.0","id":1,"method":"tools/call",' ..
	    '"params":{"name":"list_tasks","arguments":{}}}')
end

function request()
	return req
end

function done(summary, latency, requests)
	io.write(string.format("non-200: %d\n", summary.errors.status))
	io.write(string.format("p50_us %d p99_us %d\n",
	    latency:percentile(50), latency:percentile(99)))
end
