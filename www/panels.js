// panels.js: the two lists beside the chat: the person's conversations
// (newest activity first, paged as the list scrolls) and their tasks
// (pending and completed, from GET /chat/tasks).

import { call, describe } from "./api.js";
import { $, el, pager, shortDate } from "./dom.js";

const CONVERSATIONS_PAGE = 20;
const TASKS_PAGE = 50;

export function createConversations({ onOpen }) {
	const list = $("conversation-list");
	const more = $("more-conversations");
	const empty = $("conversations-empty");
	const items = new Map();	// id -> li
	let nextBefore = null;
	let current = null;
	let generation = 0;	// a reload makes older pages' answers stale

	function item(c) {
		const open = el("button", { class: "conversation",
		    attrs: { type: "button", "data-id": c.id } },
		    el("span", { class: "conversation-title",
		    text: c.title || "Untitled" }),
		    el("span", { class: "conversation-date",
		    text: shortDate(c.updated_at) }));
		open.addEventListener("click", () => onOpen(c.id, c.title));
		const li = el("li", {}, open);
		li.dataset.title = c.title || "Untitled";
		return li;
	}

	function mark() {
		for (const [id, li] of items) {
			const b = li.firstChild;
			if (id === current)
				b.setAttribute("aria-current", "true");
			else
				b.removeAttribute("aria-current");
		}
	}

	async function load() {
		const gen = generation;
		let path = "/chat/conversations?limit=" + CONVERSATIONS_PAGE;
		if (nextBefore !== null)
			path += "&before=" + nextBefore;
		const page = await call("GET", path);
		if (gen !== generation)
			return;
		for (const c of page.conversations) {
			if (items.has(c.id))
				continue;
			const li = item(c);
			items.set(c.id, li);
			list.append(li);
		}
		nextBefore = page.next_before;
		more.hidden = nextBefore === null;
		empty.hidden = items.size > 0;
		mark();
	}

	const paging = pager(more, $("conversations"), load);

	return {
		// The first page again (after a turn moved a conversation up).
		async reload() {
			generation++;
			nextBefore = null;
			items.clear();
			list.replaceChildren();
			more.hidden = true;
			await load();
			paging.poke();
		},
		select(id) {
			current = id;
			mark();
		},
		title(id) {
			const li = items.get(id);
			return li ? li.dataset.title : null;
		},
		remove(id) {
			const li = items.get(id);
			if (li)
				li.remove();
			items.delete(id);
			empty.hidden = items.size > 0;
		},
	};
}

export function createTasks() {
	const error = $("tasks-error");
	const lists = {
		pending: { ul: $("pending"), more: $("more-pending") },
		completed: { ul: $("completed"), more: $("more-completed") },
	};
	let generation = 0;

	function item(t) {
		const li = el("li", { class: t.completed ? "task done" : "task",
		    attrs: { "data-id": t.id } },
		    el("span", { class: "task-title", text: t.title }),
		    el("span", { class: "task-id", text: "#" + t.id }));
		if (t.description)
			li.append(el("span", { class: "task-description",
			    text: t.description }));
		return li;
	}

	async function load(status, first) {
		const gen = generation;
		const l = lists[status];
		let path = "/chat/tasks?status=" + status + "&limit=" + TASKS_PAGE;
		if (!first && l.nextBefore !== null)
			path += "&before=" + l.nextBefore;
		const page = await call("GET", path);
		if (gen !== generation)
			return;
		if (first)
			l.ul.replaceChildren();
		for (const t of page.tasks)
			l.ul.append(item(t));
		if (first && page.tasks.length === 0)
			l.ul.append(el("li", { class: "task none", text: status ===
			    "pending" ? "Nothing pending." : "Nothing completed yet." }));
		l.nextBefore = page.next_before;
		l.more.hidden = l.nextBefore === null;
	}

	for (const status of Object.keys(lists))
		pager(lists[status].more, $("tasks"), () =>
		    load(status, false).catch((err) => {
			show(err);
			throw err;
		    }));

	function show(err) {
		error.textContent = "The tasks could not be read: " + describe(err);
		error.hidden = false;
	}

	return {
		async refresh() {
			generation++;
			try {
				await Promise.all([load("pending", true),
				    load("completed", true)]);
				error.hidden = true;
			} catch (err) {
				show(err);
			}
		},
	};
}
