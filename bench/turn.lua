-- bench/turn.lua: wrk script for chat turns that call no tool. Each
-- connection posts to a conversation of its own, picked in turn from the
-- list bench passes in CONVERSATIONS (comma-separated ids); TOKEN is the
-- bearer token. Or TOKENS_FILE names a file of "conversation token"
-- lines: each conversation with its own user's token (bench/perf.pl,
-- whose turns spread over many users, as the per-user limits would stop
-- one user's). Answers of 400 and above (wrk's status errors) are
-- counted and printed at the end as "non-200".
--
-- REQUEST says what each request is (bench/perf.pl measures all three
-- the same way, over the same users):
--   turn     POST /chat, the answer as JSON (the default)
--   stream   POST /chat with "Accept: text/event-stream": the turn as a
--            stream (README, "Streamed turns")
--   mcp      POST /mcp, a tools/call of list_tasks for the token's user,
--            as an agent sends it after initialize; it counts against
--            the user's turns a minute as a turn does, so it is spread
--            over the users the same way
--
-- bench/stream.pl and bench/mcp.pl use it too, with TOKEN and
-- CONVERSATIONS: one script, so that every benchmark sends the same
-- bytes for the same kind of request.
--
-- The requests are formatted once per thread, and no response() hook is
-- set (it makes wrk hand every response to Lua): the load generator's
-- CPU counts against the service on a 2-core machine, as pgbench's does
-- against the minimal turn, so it is kept as small as wrk allows.
local ids, tokens = {}, {}
local file = os.getenv("TOKENS_FILE")
if file then
	for line in io.lines(file) do
		local id, t = string.match(line, "^(%d+) (%S+)$")
		if id then
			ids[#ids + 1] = id
			tokens[#tokens + 1] = t
		end
	end
else
	for id in string.gmatch(os.getenv("CONVERSATIONS") or "", "%d+") do
		ids[#ids + 1] = id
		tokens[#tokens + 1] = os.getenv("TOKEN")
	end
end
local kind = os.getenv("REQUEST") or "turn"
if kind ~= "turn" and kind ~= "stream" and kind ~= "mcp" then
	error("REQUEST must be turn, stream or mcp, not " .. kind)
end
local counter = 0

function setup(thread)
	counter = counter + 1
	thread:set("tid", counter)
end

local function format(token, conv)
	if kind == "mcp" then
		return wrk.format("POST", "/mcp", {
			["Authorization"] = "Bearer " .. token,
			["Content-Type"] = "application/json",
			["Accept"] = "application/json, text/event-stream",
			["MCP-Protocol-Version"] = "2025-11-25"
		}, '{"jsonrpc":"2.0","id":1,"method":"tools/call",' ..
		    '"params":{"name":"list_tasks","arguments":{}}}')
	end
	local headers = {
		["Authorization"] = "Bearer " .. token,
		["Content-Type"] = "application/json"
	}
	if kind == "stream" then
		headers["Accept"] = "text/event-stream"
	end
	return wrk.format("POST", "/chat", headers,
	    '{"message":"how are you today","conversation_id":' ..
	    conv .. '}')
end

function init(args)
	n = 0
	requests = {}
	for i, conv in ipairs(ids) do
		requests[i] = format(tokens[i], conv)
	end
end

function request()
	n = n + 1
	return requests[((tid * 7919 + n) % #requests) + 1]
end

function done(summary, latency, requests)
	io.write(string.format("non-200: %d\n", summary.errors.status))
	io.write(string.format("p50_us %d p99_us %d\n",
	    latency:percentile(50), latency:percentile(99)))
end
