// conversation.js: the conversation in the middle: its messages (paged backwards
// as the person scrolls up), a turn streamed in as it runs, tool calls
// as they run, errors with a retry that reuses the turn's
// Idempotency-Key, Stop, and picking up a turn that runs on after a
// reload.

import { ApiError, call, describe, newIdempotencyKey, request } from "./api.js";
import { $, el, pager } from "./dom.js";
import { readTurn } from "./stream.js";

const MESSAGES_PAGE = 50;
const OPEN_KEY = "todo-chat.open";	// the open conversation, per tab
// How near the bottom (px) still counts as "at the newest line".
const STICK_PX = 48;
// Attempts to follow a cut stream again (GET .../stream) before giving up.
const FOLLOW_TRIES = 3;

// What a tool did, in words, from its result (lib/tools.c's shapes).
export function toolWords(name, result) {
	if (typeof result === "string") {
		try {
			result = JSON.parse(result);
		} catch {
			return result;
		}
	}
	if (result === null || result === undefined)
		return "No result.";
	const tasks = Array.isArray(result) ? result :
	    Array.isArray(result.tasks) ? result.tasks : null;
	if (tasks !== null)
		return tasks.length === 0 ? "Found no tasks." :
		    "Found " + tasks.length + (tasks.length === 1 ? " task: " :
		    " tasks: ") + tasks.slice(0, 5).map((t) => "\u201c" + t.title +
		    "\u201d").join(", ") + (tasks.length > 5 ? ", \u2026" : "") + ".";
	if (typeof result.error === "string")
		return "Failed: " + result.error;
	const what = result.title !== undefined ? "\u201c" + result.title +
	    "\u201d" : "task " + result.task_id;
	const n = result.task_id !== undefined ? " (task " + result.task_id + ")" : "";
	switch (result.status) {
	case "created":
		return "Added " + what + n + ".";
	case "completed":
		return "Marked " + what + n + " as complete.";
	case "deleted":
		return "Deleted " + what + n + ".";
	case "updated":
		return "Updated task " + result.task_id + " to " + what + ".";
	}
	return JSON.stringify(result);
}

export function createChat({ conversations, tasks, announce }) {
	const log = $("log");
	const list = $("messages");
	const older = $("older");
	const empty = $("log-empty");
	const title = $("chat-title");
	const input = $("message");
	const send = $("send");
	const stop = $("stop");
	const jump = $("jump");
	const remove = $("delete-conversation");

	let current = null;		// the open conversation's id, or null
	let nextBefore = null;		// paging backwards through it
	let view = 0;			// bumped whenever another one opens
	let follow = null;		// AbortController of the stream read
	let turn = null;		// the turn running in this view
	let stick = true;		// keep the newest line in view
	const boxes = new Map();	// tool call id -> its element

	// ------------------------------------------------------- scrolling

	function atBottom() {
		return log.scrollHeight - log.scrollTop - log.clientHeight < STICK_PX;
	}

	log.addEventListener("scroll", () => {
		stick = atBottom();
		if (stick)
			jump.hidden = true;
	});

	// After new content at the bottom: follow it, unless the person
	// scrolled up to read; then offer a way back down.
	function grew() {
		empty.hidden = list.childElementCount > 0;
		if (stick)
			log.scrollTop = log.scrollHeight;
		else
			jump.hidden = false;
	}

	jump.addEventListener("click", () => {
		stick = true;
		log.scrollTop = log.scrollHeight;
		jump.hidden = true;
		input.focus();
	});

	// -------------------------------------------------------- messages

	function bubble(role, text) {
		const body = el("div", { class: "text", text });
		const li = el("li", { class: "msg " + role },
		    el("span", { class: "who", text: role === "user" ? "You" :
		    "Assistant" }), body);
		return { li, body };
	}

	// A tool call's box; the call (name, input) and its result may come
	// in either order when a page boundary falls between them.
	function toolBox(id) {
		let box = id !== null ? boxes.get(id) : undefined;
		if (box)
			return box;
		const name = el("span", { class: "tool-name" });
		const input = el("code", { class: "tool-input" });
		const result = el("div", { class: "tool-result", text: "Running\u2026" });
		const li = el("li", { class: "msg tool" },
		    el("span", { class: "who", text: "Tool" }),
		    el("div", { class: "tool-call" }, name, " ", input), result);
		box = { li, name, input, result, tool: null, fresh: true };
		if (id !== null)
			boxes.set(id, box);
		return box;
	}

	function toolCalled(box, name, args) {
		box.tool = name;
		box.name.textContent = name;
		box.input.textContent = args === undefined ? "" :
		    typeof args === "string" ? args : JSON.stringify(args);
		box.li.setAttribute("aria-label", "Tool " + name);
	}

	function toolDone(box, output) {
		box.result.textContent = toolWords(box.tool, output);
		box.li.classList.add("done");
	}

	// Elements of stored messages, oldest first; the page is newest first.
	function stored(messages) {
		const out = [];
		for (const m of [...messages].reverse()) {
			if (m.role === "tool") {
				const box = toolBox(m.tool_call_id);
				toolDone(box, m.content);
				if (box.fresh)
					out.push(box.li);
				box.fresh = false;
				continue;
			}
			if (m.content)
				out.push(bubble(m.role, m.content).li);
			for (const c of m.tool_calls || []) {
				const box = toolBox(c.id);
				const f = c.function || {};
				let args = f.arguments;
				try {
					args = JSON.parse(args);
				} catch {
					// shown as it came
				}
				toolCalled(box, f.name || "tool", args);
				if (box.fresh)
					out.push(box.li);
				box.fresh = false;
			}
		}
		return out;
	}

	// An older page on top, the view kept where the person is reading.
	async function loadOlder(conversation, before) {
		const v = view;
		let path = "/chat/conversations/" + conversation +
		    "/messages?limit=" + MESSAGES_PAGE;
		if (before !== null)
			path += "&before=" + before;
		const page = await call("GET", path);
		if (v !== view)
			return;
		const from = log.scrollHeight - log.scrollTop;
		list.prepend(...stored(page.messages));
		nextBefore = page.next_before;
		older.hidden = nextBefore === null;
		empty.hidden = list.childElementCount > 0;
		if (stick)
			log.scrollTop = log.scrollHeight;
		else
			log.scrollTop = log.scrollHeight - from;
	}

	const paging = pager(older, log, () => loadOlder(current, nextBefore));

	// ----------------------------------------------------------- turns

	function running(t) {
		turn = t;
		send.disabled = t !== null;
		stop.hidden = t === null;
		stop.disabled = false;
		log.setAttribute("aria-busy", t !== null ? "true" : "false");
	}

	function setCurrent(id, name) {
		current = id;
		conversations.select(id);
		remove.hidden = id === null;
		title.textContent = id === null ? "New conversation" :
		    name || conversations.title(id) || "Conversation " + id;
		try {
			if (id === null)
				sessionStorage.removeItem(OPEN_KEY);
			else
				sessionStorage.setItem(OPEN_KEY, String(id));
		} catch {
			// no storage: a reload opens a new conversation
		}
	}

	// The parts of one attempt of a turn, rendered as they come.
	function partsView(t) {
		const mine = [];	// elements this attempt added
		const texts = new Map();
		const add = (li) => {
			mine.push(li);
			list.append(li);
			grew();
		};
		return {
			clear() {
				for (const li of mine)
					li.remove();
				mine.length = 0;
			},
			add,
			part(p) {
				switch (p.type) {
				case "start": {
					const meta = p.messageMetadata || {};
					t.userMessageId = meta.user_message_id;
					if (meta.conversation_id !== undefined &&
					    t.view === view) {
						t.conversation = meta.conversation_id;
						if (current !== t.conversation)
							setCurrent(t.conversation, t.title);
					}
					if (t.onStart)
						t.onStart();
					if (t.stopAsked)
						askStop(t);
					break;
				}
				case "tool-input-available": {
					const box = toolBox(null);
					boxes.set(p.toolCallId, box);
					toolCalled(box, p.toolName, p.input);
					box.fresh = false;
					add(box.li);
					break;
				}
				case "tool-output-available": {
					const box = boxes.get(p.toolCallId);
					if (box)
						toolDone(box, p.output);
					t.toolRan = true;
					grew();
					break;
				}
				case "text-start": {
					const b = bubble("assistant", "");
					const node = document.createTextNode("");
					b.body.append(node);
					texts.set(p.id, node);
					add(b.li);
					break;
				}
				case "text-delta": {
					const node = texts.get(p.id);
					if (node && typeof p.delta === "string") {
						node.appendData(p.delta);
						grew();
					}
					break;
				}
				case "error": {
					let body = null;
					try {
						body = JSON.parse(p.errorText);
					} catch {
						body = null;
					}
					const e = body && body.error ? body.error : {};
					t.error = new ApiError(500, e.code || "error",
					    e.message || String(p.errorText), body);
					break;
				}
				case "finish":
					t.finished = true;
					break;
				}
			},
		};
	}

	// An error in words, with Retry when trying again can help.
	function failed(t, parts, err) {
		const box = el("li", { class: "msg error", attrs: { role: "alert" } },
		    el("span", { class: "who", text: "Error" }),
		    el("p", { class: "text", text: describe(err) }));
		const again = err.retryable || err.code === "turn_in_progress";
		// Refused as it was (too long, say): back in the box to edit.
		if (!again && t.message !== null && input.value === "")
			input.value = t.message;
		if (again && t.message !== null) {
			const retry = el("button", { class: "retry",
			    attrs: { type: "button" }, text: "Retry" });
			retry.addEventListener("click", () => {
				parts.clear();
				box.remove();
				start(t);
			});
			box.append(retry);
		}
		parts.add(box);
		announce("The answer failed: " + describe(err));
		const retryButton = box.querySelector("button");
		if (retryButton)
			retryButton.focus({ preventScroll: true });
	}

	// A stream read to its end or to where the network cut it: the
	// turn goes on in the service either way.
	async function readSome(t, parts, res) {
		let lastId = null;
		try {
			return await readTurn(res, (p, id) => {
				lastId = id ?? lastId;
				parts.part(p);
			});
		} catch (err) {
			if (err && err.name === "AbortError")
				throw err;
			return { done: false, lastId };
		}
	}

	// The running turn of t's conversation, from after its event lastId
	// (null: from its start). A 204 when it no longer runs.
	function followAgain(t, lastId, signal) {
		const headers = lastId !== null ? { "Last-Event-ID": lastId } : {};
		return request("GET", "/chat/conversations/" + t.conversation +
		    "/stream", { headers, signal });
	}

	// Reads a turn's stream to its end, following it again (from the
	// last event) if the connection is cut before [DONE].
	async function consume(t, parts, res, signal) {
		let got = await readSome(t, parts, res);
		for (let n = 0; !got.done && !t.error && n < FOLLOW_TRIES; n++) {
			if (t.conversation === undefined)
				break;
			const again = await followAgain(t, got.lastId, signal);
			if (again.status === 204)
				return "ended";	// it finished meanwhile
			const more = await readSome(t, parts, again);
			got = { done: more.done, lastId: more.lastId ?? got.lastId };
		}
		return got.done ? "done" : "cut";
	}

	// POST /chat for the turn. A retry whose first attempt still runs
	// (409 turn_in_progress) follows that attempt instead.
	async function post(t, parts, signal) {
		try {
			return await request("POST", "/chat", { signal,
			    headers: { Accept: "text/event-stream",
			    "Idempotency-Key": t.key }, body: t.sent });
		} catch (err) {
			if (err.code !== "turn_in_progress" ||
			    t.conversation === undefined)
				throw err;
			parts.clear();
			return followAgain(t, null, signal);
		}
	}

	// One attempt of a turn: the request (POST /chat, or GET .../stream
	// for a turn that runs already), its stream, its outcome.
	async function start(t) {
		const controller = new AbortController();
		follow = controller;
		t.view = view;
		t.error = null;
		t.finished = false;
		running(t);
		const parts = partsView(t);
		let outcome;
		try {
			const res = t.message === null ? t.response :
			    await post(t, parts, controller.signal);
			t.response = null;
			const type = res.headers.get("Content-Type") || "";
			if (res.status === 204) {
				outcome = "ended";
			} else if (type.startsWith("application/json")) {
				// A finished turn's answer, as JSON.
				const reply = await res.json();
				t.conversation = reply.conversation_id;
				t.onStart && t.onStart();
				for (const c of reply.tool_calls || []) {
					const box = toolBox(null);
					toolCalled(box, c.name, c.arguments);
					toolDone(box, c.result);
					parts.add(box.li);
					t.toolRan = true;
				}
				parts.add(bubble("assistant", reply.response).li);
				outcome = "done";
			} else {
				outcome = await consume(t, parts, res, controller.signal);
			}
		} catch (err) {
			if (err && err.name === "AbortError")
				return;		// another conversation opened
			t.error = err instanceof ApiError ? err :
			    new ApiError(0, "network", String(err && err.message));
		} finally {
			if (follow === controller)
				follow = null;
			if (t.view === view)
				running(null);
		}
		if (t.view !== view)
			return;
		if (t.error) {
			failed(t, parts, t.error);
		} else if (outcome === "cut") {
			failed(t, parts, new ApiError(0, "network",
			    "The answer was cut off."));
		} else {
			if (outcome === "ended")
				await reopen();
			announce("The answer is complete.");
		}
		if (t.conversation !== undefined) {
			conversations.reload().then(() =>
			    conversations.select(current)).catch(() => {});
		}
		if (t.toolRan || outcome === "ended")
			tasks.refresh();
	}

	async function askStop(t) {
		stop.disabled = true;
		try {
			await call("POST", "/chat/conversations/" + t.conversation +
			    "/stop");
			announce("Stopping the answer.");
		} catch (err) {
			stop.disabled = false;
			announce("Stop failed: " + describe(err));
		}
	}

	stop.addEventListener("click", () => {
		if (!turn)
			return;
		turn.stopAsked = true;
		if (turn.conversation !== undefined)
			askStop(turn);
	});

	function submit() {
		const text = input.value;
		if (turn || text.trim() === "")
			return;
		input.value = "";
		const sent = { message: text };
		if (current !== null)
			sent.conversation_id = current;
		const t = { key: newIdempotencyKey(), message: text, sent,
		    conversation: current ?? undefined,
		    title: current === null ? text.slice(0, 200) : undefined };
		stick = true;
		list.append(bubble("user", text).li);
		grew();
		start(t);
	}

	$("composer").addEventListener("submit", (e) => {
		e.preventDefault();
		submit();
	});
	input.addEventListener("keydown", (e) => {
		if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
			e.preventDefault();
			submit();
		}
	});

	// ------------------------------------------------------ opening one

	function reset() {
		view++;
		if (follow)
			follow.abort();
		follow = null;
		running(null);
		boxes.clear();
		list.replaceChildren();
		nextBefore = null;
		older.hidden = true;
		empty.hidden = false;
		stick = true;
		jump.hidden = true;
	}

	// A conversation: a turn running in it is followed from its start
	// (after the messages stored before it); else its newest messages.
	async function open(id, name) {
		reset();
		setCurrent(id, name);
		const v = view;
		const controller = new AbortController();
		follow = controller;
		let res;
		try {
			res = await request("GET", "/chat/conversations/" + id +
			    "/stream", { signal: controller.signal });
		} catch (err) {
			if (err && err.name === "AbortError")
				return;
			if (v !== view)
				return;
			if (err.status === 404) {
				newConversation();
				announce("That conversation no longer exists.");
				return;
			}
			unreadable(id, name, err);
			return;
		}
		if (v !== view)
			return;
		if (res.status === 204) {
			follow = null;
			try {
				await loadOlder(id, null);
			} catch (err) {
				if (v === view && err.status !== 401)
					unreadable(id, name, err);
				return;
			}
			paging.poke();
			return;
		}
		const t = { key: null, message: null, response: res,
		    conversation: id };
		// The history up to the turn's own user message, once its
		// start says which that is.
		const history = new Promise((resolve) => { t.onStart = resolve; });
		await Promise.race([history, start(t)]);
		if (v === view && t.userMessageId !== undefined) {
			await loadOlder(id, t.userMessageId + 1);
			paging.poke();
		}
	}

	// A conversation that could not be read: why, and a way to try again.
	function unreadable(id, name, err) {
		const again = el("button", { class: "retry",
		    attrs: { type: "button" }, text: "Try again" });
		again.addEventListener("click", () => open(id, name));
		list.append(el("li", { class: "msg error", attrs: { role: "alert" } },
		    el("span", { class: "who", text: "Error" }),
		    el("p", { class: "text", text: "The conversation could not be " +
		    "read: " + describe(err) }), again));
		grew();
	}

	async function reopen() {
		if (current !== null)
			await open(current);
	}

	function newConversation() {
		reset();
		setCurrent(null);
		input.focus();
	}

	// ------------------------------------------------------- deleting

	const dialog = $("confirm-delete");
	remove.addEventListener("click", () => {
		if (current === null)
			return;
		$("confirm-delete-text").textContent = "\u201c" + title.textContent +
		    "\u201d and all its messages will be gone. Your tasks stay.";
		dialog.showModal();
	});
	$("confirm-delete-no").addEventListener("click", () => dialog.close());
	$("confirm-delete-yes").addEventListener("click", async () => {
		dialog.close();
		const id = current;
		try {
			await call("DELETE", "/chat/conversations/" + id);
		} catch (err) {
			if (err.status !== 404) {
				announce("Deleting failed: " + describe(err));
				const box = el("li", { class: "msg error",
				    attrs: { role: "alert" } }, el("p", { class: "text",
				    text: "Deleting failed: " + describe(err) }));
				list.append(box);
				grew();
				return;
			}
		}
		conversations.remove(id);
		newConversation();
		announce("The conversation was deleted.");
	});

	return {
		open,
		newConversation,
		// The conversation this tab had open, again (after a reload).
		restore() {
			let id = null;
			try {
				id = sessionStorage.getItem(OPEN_KEY);
			} catch {
				id = null;
			}
			if (id !== null && /^[1-9][0-9]*$/.test(id))
				return open(Number(id));
			newConversation();
			return Promise.resolve();
		},
		reset,
	};
}
