-- bench/turn.lua: wrk script for chat turns that call no tool. Each
-- connection posts to a conversation of its own, picked in turn from the
-- list bench passes in CONVERSATIONS (comma-separated ids); TOKEN is the
-- bearer token. Non-200 answers are counted and printed at the end.
local token = os.getenv("TOKEN")
local ids = {}
for id in string.gmatch(os.getenv("CONVERSATIONS") or "", "%d+") do
	ids[#ids + 1] = id
end
local counter = 0
local threads = {}

function setup(thread)
	counter = counter + 1
	thread:set("tid", counter)
	table.insert(threads, thread)
end

function init(args)
	bad = 0
	n = 0
end

function request()
	n = n + 1
	local conv = ids[((tid * 7919 + n) % #ids) + 1]
	local body = '{"message":"how are you today","conversation_id":' ..
	    conv .. '}'
	return wrk.format("POST", "/chat", {
		["Authorization"] = "Bearer " .. token,
		["Content-Type"] = "application/json"
	}, body)
end

function response(status, headers, body)
	if status ~= 200 then
		bad = bad + 1
	end
end

function done(summary, latency, requests)
	local total = 0
	for _, t in ipairs(threads) do
		total = total + t:get("bad")
	end
	io.write(string.format("non-200: %d\n", total))
	io.write(string.format("p50_us %d p99_us %d\n",
	    latency:percentile(50), latency:percentile(99)))
end
