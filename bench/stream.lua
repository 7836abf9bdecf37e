-- bench/stream.lua: bench/turn.lua with "Accept: text/event-stream", so
-- that the turns stream (bench/stream.pl); turns that call no tool. Each
-- connection posts to a conversation of its own, picked in turn from the
-- list bench passes in CONVERSATIONS (comma-separated ids); TOKEN is the
-- bearer token. Answers of 400 and above (wrk's status errors) are
-- counted and printed at the end as "non-200".
--
-- The requests are formatted once per thread, and no response() hook is
-- set (it makes wrk hand every response to Lua): the load generator's
-- CPU counts against the service on a 2-core machine, as pgbench's does
-- against the minimal turn, so it is kept as small as wrk allows.
local token = os.getenv("TOKEN")
local ids = {}
for id in string.gmatch(os.getenv("CONVERSATIONS") or "", "%d+") do
	ids[#ids + 1] = id
end
local counter = 0

function setup(thread)
	counter = counter + 1
	thread:set("tid", counter)
end

function init(args)
	n = 0
	requests = {}
	for i, conv in ipairs(ids) do
		requests[i] = wrk.format("POST", "/chat", {
			["Authorization"] = "Bearer " .. token,
			["Content-Type"] = "application/json",
			["Accept"] = "text/event-stream"
		}, '{"message":"how are you today","conversation_id":' ..
		    conv .. '}')
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
