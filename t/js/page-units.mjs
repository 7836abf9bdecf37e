// t/js/page-units.mjs: the chat page's pure parts, run in Node without a
// browser: the event-stream parser (www/stream.js) on bytes cut every
// way a network may cut them, and the words for what a tool did
// (www/conversation.js). One JSON line a check, as t/js/browser.mjs.
import { readTurn, sseEvents } from "../../www/stream.js";
import { toolWords } from "../../www/conversation.js";

function check(ok, name, diag) {
	console.log(JSON.stringify({ ok: !!ok, name, diag: diag ?? "" }));
}

// A body that delivers bytes in the given pieces.
function body(pieces) {
	const enc = new TextEncoder();
	return new ReadableStream({
		start(c) {
			for (const p of pieces)
				c.enqueue(typeof p === "string" ? enc.encode(p) : p);
			c.close();
		},
	});
}

async function events(pieces) {
	const out = [];
	for await (const e of sseEvents(body(pieces)))
		out.push(e);
	return out;
}

function bytes(text) {
	return [...new TextEncoder().encode(text)].map((b) => new Uint8Array([b]));
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

// name, stream text, events expected.
const streams = [
	["one event", "id: 1\ndata: {\"a\":1}\n\n", [{ id: "1", data: "{\"a\":1}" }]],
	["comments skipped", ": ping\n\nid: 2\ndata: x\n\n: ping\n\n",
	    [{ id: "2", data: "x" }]],
	["CRLF line ends", "id: 3\r\ndata: y\r\n\r\n", [{ id: "3", data: "y" }]],
	["CR line ends", "id: 4\rdata: z\r\r", [{ id: "4", data: "z" }]],
	["data lines joined", "data: a\ndata: b\n\n", [{ id: null, data: "a\nb" }]],
	["data lines joined, CRLF", "data: a\r\ndata: b\r\n\r\n",
	    [{ id: null, data: "a\nb" }]],
	["no space after the colon", "id:5\ndata:w\n\n", [{ id: "5", data: "w" }]],
	["the id carries on", "id: 6\ndata: p\n\ndata: q\n\n",
	    [{ id: "6", data: "p" }, { id: "6", data: "q" }]],
	["an unfinished event is dropped", "id: 7\ndata: r\n\nid: 8\ndata: s",
	    [{ id: "7", data: "r" }]],
	["other fields ignored", "event: x\nretry: 5\nid: 9\ndata: t\n\n",
	    [{ id: "9", data: "t" }]],
	["UTF-8 text", "id: 10\ndata: caf\u00e9 \u{1f600} <img>\n\n",
	    [{ id: "10", data: "caf\u00e9 \u{1f600} <img>" }]],
];
for (const [name, text, want] of streams) {
	const whole = await events([text]);
	check(same(whole, want), `sse: ${name}, in one piece`, JSON.stringify(whole));
	const byByte = await events(bytes(text));
	check(same(byByte, want), `sse: ${name}, a byte at a time`,
	    JSON.stringify(byByte));
}
// A CRLF cut between its two bytes is one line end, not two.
const cut = await events(["id: 11\r", "\ndata: u\r", "\ndata: v\r", "\n\r", "\n"]);
check(same(cut, [{ id: "11", data: "u\nv" }]), "sse: CRLF cut in two is one line end",
    JSON.stringify(cut));

// readTurn: parts in order, [DONE] ends it, the last id kept.
const parts = [];
let got = await readTurn({ body: body(["id: 1\ndata: {\"type\":\"start\"}\n\n",
    "id: 2\ndata: not json\n\nid: 3\ndata: {\"type\":\"finish\"}\n\n",
    "id: 4\ndata: [DONE]\n\n"]) }, (p, id) => parts.push(p.type + "@" + id));
check(got.done && got.lastId === "4" && same(parts, ["start@1", "finish@3"]),
    "readTurn: parts in order, what is not JSON skipped, done at [DONE]",
    JSON.stringify({ got, parts }));
got = await readTurn({ body: body(["id: 1\ndata: {\"type\":\"start\"}\n\nid: 2\n"]) },
    () => {});
check(!got.done && got.lastId === "1", "readTurn: a cut stream is not done; "
    + "its last id is for Last-Event-ID", JSON.stringify(got));

// What a tool did, in words.
const words = [
	["add_task", { task_id: 12, status: "created", title: "Buy milk" },
	    "Added \u201cBuy milk\u201d (task 12)."],
	["complete_task", "{\"task_id\":3,\"status\":\"completed\",\"title\":\"Call mom\"}",
	    "Marked \u201cCall mom\u201d (task 3) as complete."],
	["delete_task", { task_id: 4, status: "deleted", title: "X" },
	    "Deleted \u201cX\u201d (task 4)."],
	["update_task", { task_id: 1, status: "updated", title: "Call mom tonight" },
	    "Updated task 1 to \u201cCall mom tonight\u201d."],
	["list_tasks", [], "Found no tasks."],
	["list_tasks", { tasks: [{ id: 1, title: "A" }] }, "Found 1 task: \u201cA\u201d."],
	["complete_task", { error: "no such task" }, "Failed: no such task"],
	["x", "plain words", "plain words"],
];
for (const [name, result, want] of words) {
	const said = toolWords(name, result);
	check(said === want, `toolWords: ${name} ${JSON.stringify(result)}`, said);
}
console.log(JSON.stringify({ done: true }));
