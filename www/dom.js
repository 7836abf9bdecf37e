// dom.js: building the page's elements. Text from the service (messages,
// titles, tool output) only ever goes in as text nodes: nothing here
// parses a string as HTML, so a message that looks like markup stays
// the characters it is.

// el("li", { class: "x", text: "...", attrs: { "aria-label": "..." } },
//    child, ...): an element; children are elements or strings (text).
export function el(tag, props = {}, ...children) {
	const node = document.createElement(tag);
	if (props.class)
		node.className = props.class;
	if (props.text !== undefined && props.text !== null)
		node.textContent = String(props.text);
	for (const [name, value] of Object.entries(props.attrs || {}))
		if (value !== undefined && value !== null && value !== false)
			node.setAttribute(name, value === true ? "" : String(value));
	for (const child of children)
		if (child !== null && child !== undefined)
			node.append(child);	// a string becomes a text node
	return node;
}

export function $(id) {
	return document.getElementById(id);
}

// A date for a list: the time today, else the day.
export function shortDate(iso) {
	const d = new Date(iso);
	if (Number.isNaN(d.getTime()))
		return "";
	const now = new Date();
	if (d.toDateString() === now.toDateString())
		return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
	return d.toLocaleDateString([], { month: "short", day: "numeric",
	    year: d.getFullYear() === now.getFullYear() ? undefined : "numeric" });
}

// Loads the next page whenever the button (the list's end) scrolls into
// view inside root, and when clicked (keyboard users). load() resolves
// once the page is in; it keeps going while the button stays in view,
// for a list too short to scroll.
export function pager(button, root, load) {
	let busy = false;
	const visible = () => {
		if (button.hidden)
			return false;
		const b = button.getBoundingClientRect();
		const r = root.getBoundingClientRect();
		return b.bottom >= r.top && b.top <= r.bottom && b.height > 0;
	};
	const run = async () => {
		if (busy || button.hidden)
			return;
		busy = true;
		button.setAttribute("aria-busy", "true");
		try {
			await load();
		} catch {
			// the list shows its own error; the button stays for a retry
			busy = false;
			button.removeAttribute("aria-busy");
			return;
		}
		busy = false;
		button.removeAttribute("aria-busy");
		if (visible())
			requestAnimationFrame(run);
	};
	button.addEventListener("click", run);
	const io = new IntersectionObserver((entries) => {
		if (entries.some((e) => e.isIntersecting))
			run();
	}, { root });
	io.observe(button);
	// The observer speaks only when the button comes into view: after a
	// page, the place is kept and the button pushed out of view, and a
	// person who scrolls straight back may give it no moment out of view.
	root.addEventListener("scroll", () => {
		if (visible())
			run();
	}, { passive: true });
	return { poke: () => { if (visible()) run(); } };
}
