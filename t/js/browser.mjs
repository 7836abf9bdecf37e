// t/js/browser.mjs: the chat page (www/) in Debian's Chromium, driven by
// puppeteer-core against a running stack (t/65-browser.t starts it and
// reads the results). Reads a JSON object on stdin:
//   url            the stack's origin, http://127.0.0.1:PORT
//   token          a good token (user alice), bad_token one refused
//   mock           the mock model's control origin (its /__script)
//   long_conversation  id of alice's conversation of 300 messages
//   many_conversations how many conversations alice has before the test
//   tmp            where screenshots of a failure go (t/tmp)
// Prints one JSON line a check: {"ok": bool, "name": str, "diag": str},
// then {"done": true}. Every wait is bounded; a failing scenario leaves
// a screenshot, t/tmp/browser-NAME.png.
import { readFileSync, mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import puppeteer from "puppeteer-core";

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const cfg = JSON.parse(readFileSync(0, "utf8"));
const WAIT_MS = 15000;

let failures = 0;
function check(ok, name, diag) {
	if (!ok)
		failures++;
	console.log(JSON.stringify({ ok: !!ok, name, diag: diag ?? "" }));
}

// The browser reaches the stack through a TCP proxy of ours, so that a
// scenario can cut its connections (a network that drops) or refuse new
// ones (a network that is down) while the service runs on.
const net_ = { blocked: false, sockets: new Set() };
const proxy = net.createServer((client) => {
	if (net_.blocked) {
		client.destroy();
		return;
	}
	const upstream = net.connect(Number(new URL(cfg.url).port), "127.0.0.1");
	const end = () => {
		client.destroy();
		upstream.destroy();
		net_.sockets.delete(client);
	};
	net_.sockets.add(client);
	client.on("error", end).on("close", end);
	upstream.on("error", end).on("close", end);
	client.pipe(upstream);
	upstream.pipe(client);
});
await new Promise((resolve) => proxy.listen(0, "127.0.0.1", resolve));
const origin = `http://127.0.0.1:${proxy.address().port}`;
function cutConnections() {
	for (const c of net_.sockets)
		c.destroy();
}

const userDataDir = mkdtempSync(cfg.tmp + "/chromium-");
const browser = await puppeteer.launch({
	executablePath: cfg.chromium || "/usr/bin/chromium",
	headless: true,
	userDataDir,
	// As root (CI), Chromium refuses to start without --no-sandbox.
	args: [...(process.getuid && process.getuid() === 0 ?
	    ["--no-sandbox"] : []), "--disable-gpu", "--no-first-run",
	    "--disable-dev-shm-usage"],
	protocolTimeout: 60000,
});
// Whatever happens, the browser goes and its profile with it.
const overall = setTimeout(() => {
	check(false, "the whole run within 150 s");
	finish();
}, 150000);

let page = await browser.newPage();
await page.setViewport({ width: 1280, height: 800 });
const dialogs = [];
const pageErrors = [];
function watch(p) {
	p.on("dialog", async (d) => {
		dialogs.push(d.type() + ": " + d.message());
		await d.dismiss().catch(() => {});
	});
	p.on("pageerror", (e) => pageErrors.push(String(e.message || e)));
	// Chrome logs every failed request as an error; the scenarios make
	// some fail on purpose (401, 404, 409, cut connections).
	p.on("console", (m) => {
		if (m.type() === "error" && !/^Failed to load resource/.test(m.text()))
			pageErrors.push("console: " + m.text());
	});
}
watch(page);

async function shot(name, p = page) {
	await p.screenshot({ path: `${cfg.tmp}/browser-${name}.png` })
	    .catch(() => {});
}

async function scenario(name, fn) {
	const before = failures;
	try {
		await fn();
	} catch (e) {
		check(false, `${name}: ${String(e.message).split("\n")[0]}`,
		    e.stack);
	}
	if (failures > before)
		await shot(name);
}

// Waits for fn(arg) in the page to be true; a timeout says what for.
async function until(what, fn, arg, ms = WAIT_MS, p = page) {
	try {
		await p.waitForFunction(fn, { timeout: ms, polling: "raf" }, arg);
	} catch (e) {
		throw new Error(`timed out after ${ms} ms waiting for ${what}`);
	}
}

async function script(steps) {
	const r = await fetch(cfg.mock + "/__script", { method: "POST",
	    body: JSON.stringify(steps) });
	if (!r.ok)
		throw new Error("mock script: " + r.status);
}

// A visible button by its text, as a person finds it.
async function button(name, p = page) {
	const h = await p.evaluateHandle((n) => [...document.querySelectorAll(
	    "button")].find((b) => b.textContent.trim() === n &&
	    b.offsetParent !== null), name);
	const e = h.asElement();
	if (!e)
		throw new Error(`no visible button "${name}"`);
	return e;
}

async function say(text) {
	await page.focus("#message");
	await page.keyboard.type(text);
	await page.keyboard.press("Enter");
}

const texts = (sel) => page.$$eval(sel, (els) => els.map((e) => e.textContent));
const lastAnswer = () => page.$$eval(".msg.assistant .text",
    (els) => els.length ? els[els.length - 1].textContent : "");
const idle = () => until("the turn to end (Stop gone, Send usable)",
    () => document.getElementById("stop").hidden &&
    !document.getElementById("send").disabled);

async function axe(label) {
	await page.evaluate(AXE);
	const found = await page.evaluate(async () => {
		const r = await window.axe.run(document, { resultTypes: ["violations"] });
		return r.violations.filter((v) => v.impact === "serious" ||
		    v.impact === "critical").map((v) => v.id + " (" + v.impact +
		    "): " + v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", "));
	});
	check(found.length === 0, `axe-core: no serious or critical violation (${label})`,
	    found.join("\n"));
}

// ------------------------------------------------------------ scenarios

await scenario("link", async () => {
	await page.goto(`${origin}/#token=${cfg.token}`, { waitUntil: "load" });
	await until("the chat to show", () => !document.getElementById("app").hidden);
	check(await page.evaluate(() => location.hash === "" &&
	    !location.href.includes("token")), "the token leaves the address bar");
	check(await page.evaluate((t) => localStorage.getItem("todo-chat.token") === t,
	    cfg.token), "... and is kept in the browser's storage");
	check(await page.evaluate(() => document.activeElement.id === "message" &&
	    document.querySelector('label[for="message"]').textContent === "Message"),
	    'the box labelled "Message" has the focus');
	await until("the conversation list", (n) => document.querySelectorAll(
	    "#conversation-list li").length >= 20, cfg.many_conversations);
});

await scenario("chat", async () => {
	// Shift+Enter is a new line, not a send.
	await page.focus("#message");
	await page.keyboard.type("line one");
	await page.keyboard.down("Shift");
	await page.keyboard.press("Enter");
	await page.keyboard.up("Shift");
	await page.keyboard.type("line two");
	check(await page.$eval("#message", (e) => e.value) === "line one\nline two" &&
	    (await texts(".msg.user")).length === 0,
	    "Shift+Enter makes a new line and sends nothing");
	await page.$eval("#message", (e) => { e.value = ""; });

	const answer = 'I added "Buy milk" to your list. Anything else to remember?';
	await script([
	    { reply: { content: null, tool_calls: [{ name: "add_task",
		arguments: { title: "Buy milk" } }] } },
	    { reply: { content: answer }, piece_chars: 3, chunk_delay_ms: 60 },
	]);
	await say("Add a task to buy milk");
	await until("the message to show as sent", () => [...document.querySelectorAll(
	    ".msg.user .text")].some((e) => e.textContent === "Add a task to buy milk"));
	check(await page.evaluate(() => !document.getElementById("stop").hidden &&
	    document.getElementById("send").disabled), "Stop shows while the turn runs");
	await until("the tool call", () => /add_task/.test(document.querySelector(
	    ".msg.tool")?.textContent ?? "") && /Added \u201cBuy milk\u201d/.test(
	    document.querySelector(".msg.tool .tool-result")?.textContent ?? ""));
	check(true, "the tool call shows its name and what it did");
	await until("part of the answer", (a) => {
		const els = document.querySelectorAll(".msg.assistant .text");
		const t = els.length ? els[els.length - 1].textContent : "";
		return t.length > 0 && t.length < a.length && a.startsWith(t);
	}, answer);
	check(true, "the answer streams in (seen part-way)");
	await until("the whole answer", (a) => [...document.querySelectorAll(
	    ".msg.assistant .text")].some((e) => e.textContent === a), answer);
	check(true, "the whole answer arrives");
	await idle();
	await until('"Buy milk" in the task panel', () => [...document.querySelectorAll(
	    "#pending .task-title")].some((e) => e.textContent === "Buy milk"));
	check(true, '"Buy milk" appears in the task panel');
	await until("the new conversation at the top of the list", () =>
	    document.querySelector("#conversation-list li .conversation-title")
	    ?.textContent === "Add a task to buy milk" && document.querySelector(
	    "#conversation-list li button").getAttribute("aria-current") === "true");
	check(await page.$eval("#chat-title", (e) => e.textContent) ===
	    "Add a task to buy milk", "the conversation is named after its first message");
	await axe("a conversation, light");
	await page.emulateMediaFeatures([{ name: "prefers-color-scheme", value: "dark" }]);
	check(await page.evaluate(() => getComputedStyle(document.body)
	    .backgroundColor !== "rgb(255, 255, 255)"), "dark mode follows the system");
	await axe("a conversation, dark");
	await page.emulateMediaFeatures([{ name: "prefers-color-scheme", value: "light" }]);
});

await scenario("reload", async () => {
	const story = Array.from({ length: 40 }, (_, i) => `word${i + 1}`).join(" ");
	// About 5 s of answer: a reload takes well under that.
	await script([{ reply: { content: story }, piece_chars: 5,
	    chunk_delay_ms: 100 }]);
	await say("Tell me a story");
	await until("the story to begin", () => {
		const els = document.querySelectorAll(".msg.assistant .text");
		return els.length && els[els.length - 1].textContent.startsWith("word1 ");
	});
	const seen = await lastAnswer();
	await page.reload({ waitUntil: "load" });
	await until("the reloaded page to follow the running turn", (s) => {
		const els = document.querySelectorAll(".msg.assistant .text");
		const t = els.length ? els[els.length - 1].textContent : "";
		return !document.getElementById("stop").hidden &&
		    t.startsWith("word1 ") && t.length < s.length;
	}, story);
	check(true, "the reloaded page follows the running turn, part-way");
	const resumed = await lastAnswer();
	await until("the answer to grow on live", (a) => {
		const els = document.querySelectorAll(".msg.assistant .text");
		const t = els.length ? els[els.length - 1].textContent : "";
		return t.length > a.prev && t.length < a.story.length;
	}, { prev: resumed.length, story });
	check(true, "... and it grows on as the model writes");
	await until("the story to finish after the reload", (s) => [...document
	    .querySelectorAll(".msg.assistant .text")].some((e) => e.textContent === s),
	    story, 20000);
	check(seen.length < story.length, "reloaded mid-answer (" + seen.length +
	    " of " + story.length + " characters in)");
	check(true, "after a reload the running answer goes on to its end");
	await idle();
	const users = await texts(".msg.user .text");
	const answers = await texts(".msg.assistant .text");
	check(users.filter((t) => t === "Tell me a story").length === 1 &&
	    answers.filter((t) => t === story).length === 1,
	    "... shown once, after its question", JSON.stringify({ users, answers }));
	check(await page.$eval("#chat-title", (e) => e.textContent) ===
	    "Add a task to buy milk", "... in the conversation that was open");
});

await scenario("stop-and-scroll", async () => {
	const lines = Array.from({ length: 150 }, (_, i) =>
	    `Line ${i + 1} of a long answer.`).join("\n");
	await script([{ reply: { content: lines }, piece_chars: 30,
	    chunk_delay_ms: 50 }]);
	await say("Write a long answer");
	await until("a screenful of the answer", () => /Line 30 /.test(
	    document.querySelector(".msg.assistant:last-child .text")?.textContent ?? ""));
	check(await page.$eval("#log", (l) => l.scrollHeight - l.scrollTop -
	    l.clientHeight < 60), "a growing answer keeps the newest line in view");
	await page.$eval("#log", (l) => { l.scrollTop = 0; l.dispatchEvent(new Event("scroll")); });
	await until("more of the answer", () => /Line 45 /.test(
	    document.querySelector(".msg.assistant:last-child .text")?.textContent ?? ""));
	check(await page.$eval("#log", (l) => l.scrollTop) < 5 &&
	    await page.$eval("#jump", (j) => !j.hidden),
	    "scrolled up, the view stays put and offers a way down");
	await (await button("Stop")).click();
	await idle();
	const text = await lastAnswer();
	check(/Line 45 /.test(text) && !/Line 150 /.test(text),
	    "Stop ends the answer where it was", text.slice(-60));
	await (await button("Jump to the newest message")).click();
	check(await page.$eval("#log", (l) => l.scrollHeight - l.scrollTop -
	    l.clientHeight < 60), "... and the jump button goes to the newest line");
});

await scenario("retry", async () => {
	await (await button("New conversation")).click();
	await script([{ status: 400, body: { error: { message: "mock refuses",
	    type: "invalid_request_error" } } },
	    { reply: { content: "Second time lucky." }, piece_chars: 50 }]);
	await say("Please retry me");
	await until("the error in words", () => document.querySelector(
	    ".msg.error")?.textContent.length > 10);
	const said = await page.$eval(".msg.error .text", (e) => e.textContent);
	check(said.length > 10 && !/^\s*\{/.test(said), "an error shows in words",
	    said);
	await (await button("Retry")).click();
	await until("the retried answer", () => [...document.querySelectorAll(
	    ".msg.assistant .text")].some((e) => e.textContent === "Second time lucky."));
	await idle();
	check(!(await page.$(".msg.error")), "the retry answers; the error is gone");
	await page.reload({ waitUntil: "load" });
	await until("the conversation again", () => document.querySelectorAll(
	    ".msg.assistant").length > 0);
	const users = await texts(".msg.user .text");
	check(users.length === 1 && users[0] === "Please retry me",
	    "the retry reused the turn's key: the message is stored once",
	    JSON.stringify(users));
});

await scenario("network", async () => {
	const story = Array.from({ length: 30 }, (_, i) => `step${i + 1}`).join(" ");
	const begun = () => until("the answer to begin", () => {
		const els = document.querySelectorAll(".msg.assistant .text");
		return els.length && els[els.length - 1].textContent.startsWith("step1 ");
	});
	const whole = () => until("the whole answer", (s) => [...document
	    .querySelectorAll(".msg.assistant .text")].some((e) => e.textContent === s),
	    story, 20000);

	// A connection cut mid-answer: the page follows the turn again from
	// its last event, and the text goes on without a gap or a repeat.
	await script([{ reply: { content: story }, piece_chars: 5,
	    chunk_delay_ms: 100 }]);
	await say("Count the steps");
	await begun();
	cutConnections();
	await whole();
	await idle();
	check(!(await page.$(".msg.error")), "a connection cut mid-answer: the "
	    + "page follows the turn again, the answer whole and unbroken");

	// The network down: the page says so; Retry, with the turn's key,
	// takes up the attempt that ran on meanwhile.
	await script([{ reply: { content: story }, piece_chars: 5,
	    chunk_delay_ms: 100 }]);
	await say("Count them again");
	await begun();
	net_.blocked = true;
	cutConnections();
	await until("the error in words", () => /could not be reached|cut off/
	    .test(document.querySelector(".msg.error")?.textContent ?? ""));
	check(true, "with the network down, an error in words");
	net_.blocked = false;
	await (await button("Retry")).click();
	await whole();
	await idle();
	check(!(await page.$(".msg.error")), "... Retry brings the answer");
	await page.reload({ waitUntil: "load" });
	await until("the conversation again", () => document.querySelectorAll(
	    ".msg.assistant").length >= 2);
	const users = await texts(".msg.user .text");
	const answers = await texts(".msg.assistant .text");
	check(users.filter((t) => /^Count (the steps|them again)$/.test(t)).length
	    === 2 && answers.filter((t) => t === story).length === 2,
	    "each turn stored once, with its whole answer",
	    JSON.stringify({ users, answers }));
});

await scenario("paging", async () => {
	const before = await page.$$eval("#conversation-list li", (l) => l.length);
	await page.$eval("#conversations", (a) => { a.scrollTop = a.scrollHeight; });
	await until("the next page of conversations", (n) => document
	    .querySelectorAll("#conversation-list li").length > n, before);
	const all = cfg.many_conversations + 2;
	await until("every conversation", (n) => {
		const a = document.getElementById("conversations");
		a.scrollTop = a.scrollHeight;
		return document.querySelectorAll("#conversation-list li").length >= n &&
		    document.getElementById("more-conversations").hidden;
	}, all);
	check(true, "the conversation list pages as it scrolls");
	const open = await page.evaluateHandle(() => [...document.querySelectorAll(
	    "#conversation-list button")].find((b) => b.textContent.includes(
	    "A long conversation")));
	await open.asElement().click();
	await until("the newest messages", () => document.querySelector(
	    "#messages li:last-child .text")?.textContent === "seeded 300");
	const first = await page.$$eval("#messages li", (l) => l.length);
	check(first > 0 && first < 300, "opening it shows the newest page (" +
	    first + " messages)");
	await until("the first message after scrolling up", () => {
		document.getElementById("log").scrollTop = 0;
		return document.querySelector("#messages li:first-child .text")
		    ?.textContent === "seeded 1";
	}, undefined, 20000);
	const all300 = await texts("#messages .text");
	check(all300.length === 300 && all300.every((t, i) => t === `seeded ${i + 1}`),
	    "scrolling up pages back through all 300 messages, in order",
	    all300.length + " shown");
});

await scenario("delete", async () => {
	const name = "Please retry me";
	const open = await page.evaluateHandle((n) => [...document.querySelectorAll(
	    "#conversation-list button")].find((b) => b.querySelector(
	    ".conversation-title").textContent === n), name);
	await open.asElement().click();
	await until("that conversation", (n) => document.getElementById(
	    "chat-title").textContent === n && document.querySelectorAll(
	    ".msg.assistant").length > 0, name);
	await (await button("Delete conversation")).click();
	await until("the confirmation", () => document.getElementById(
	    "confirm-delete").open);
	await (await button("Cancel")).click();
	check(await page.evaluate((n) => [...document.querySelectorAll(
	    ".conversation-title")].some((e) => e.textContent === n), name),
	    "Cancel keeps the conversation");
	// Then with the keyboard alone: Escape cancels, Tab and Enter delete.
	await page.focus("#delete-conversation");
	await page.keyboard.press("Enter");
	await until("the confirmation", () => document.getElementById(
	    "confirm-delete").open);
	check(await page.evaluate(() => document.activeElement.textContent === "Cancel"),
	    "the confirmation opens on Cancel, the safe choice");
	await page.keyboard.press("Escape");
	await until("the confirmation to close", () => !document.getElementById(
	    "confirm-delete").open);
	check(await page.evaluate(() => document.activeElement.id ===
	    "delete-conversation"), "Escape closes it, the focus back where it was");
	await page.keyboard.press("Enter");
	await until("the confirmation", () => document.getElementById(
	    "confirm-delete").open);
	await page.keyboard.press("Tab");
	check(await page.evaluate(() => {
		const a = document.activeElement;
		const o = getComputedStyle(a);
		return a.textContent === "Delete" && o.outlineStyle !== "none" &&
		    parseFloat(o.outlineWidth) >= 2;
	}), "Tab reaches Delete, with a visible focus ring");
	await page.keyboard.press("Enter");
	await until("the conversation to leave the list", (n) => ![...document
	    .querySelectorAll(".conversation-title")].some((e) => e.textContent === n),
	    name);
	check(await page.$eval("#chat-title", (e) => e.textContent) ===
	    "New conversation" && (await page.$$("#messages li")).length === 0,
	    "deleting leaves an empty new conversation");
	await page.reload({ waitUntil: "load" });
	await until("the list after a reload", () => document.querySelectorAll(
	    "#conversation-list li").length > 0);
	check(!(await page.evaluate((n) => [...document.querySelectorAll(
	    ".conversation-title")].some((e) => e.textContent === n), name)),
	    "... and it stays gone after a reload");
});

await scenario("injection", async () => {
	const evil = "<img src=x onerror=alert(1)>";
	await (await button("New conversation")).click();
	await script([
	    { reply: { content: null, tool_calls: [{ name: "add_task",
		arguments: { title: evil } }] } },
	    { reply: { content: `Added ${evil} <script>alert(2)</script>` } },
	]);
	await say(evil);
	await until("the answer", () => [...document.querySelectorAll(
	    ".msg.assistant .text")].some((e) => e.textContent.startsWith("Added <img")));
	await idle();
	await until("the task", (t) => [...document.querySelectorAll(
	    "#pending .task-title")].some((e) => e.textContent === t), evil);
	check((await texts(".msg.user .text")).includes(evil),
	    "the message shows as the characters typed");
	check(await page.evaluate((t) => [...document.querySelectorAll(
	    ".conversation-title")].some((e) => e.textContent === t), evil),
	    "... as does the conversation's title, and the task's");
	check(await page.evaluate(() => document.querySelectorAll(
	    "img, #messages script, #tasks script").length === 0),
	    "no element was made from it");
	await page.reload({ waitUntil: "load" });
	await until("the stored conversation", (t) => [...document.querySelectorAll(
	    ".msg.user .text")].some((e) => e.textContent === t), evil);
	check(dialogs.length === 0, "nothing ran: no alert", dialogs.join("; "));
});

await scenario("phone", async () => {
	await page.setViewport({ width: 390, height: 780, isMobile: true,
	    hasTouch: true });
	await page.reload({ waitUntil: "load" });
	await until("the chat", () => !document.getElementById("app").hidden &&
	    document.getElementById("message").offsetParent !== null);
	check(await page.evaluate(() => document.documentElement.scrollWidth <=
	    window.innerWidth), "on a phone the page fits the width");
	await (await button("Tasks")).click();
	await until("the task panel", () => document.getElementById("tasks")
	    .offsetParent !== null);
	check(await page.evaluate(() => [...document.querySelectorAll(
	    "#pending .task-title")].some((e) => e.textContent === "Buy milk")),
	    "... the tasks are a tap away");
	await axe("phone, tasks open");
	await page.keyboard.press("Escape");
	await page.setViewport({ width: 1280, height: 800 });
});

await scenario("sign-in", async () => {
	// A token the service refuses: the field, and why.
	await page.goto(`${origin}/#token=${cfg.bad_token}`, { waitUntil: "load" });
	await until("the sign-in field", () => !document.getElementById("sign-in")
	    .hidden && document.getElementById("token").offsetParent !== null);
	check(/refused/.test(await page.$eval("#sign-in-reason", (e) =>
	    e.textContent)), "a refused token shows the sign-in field and says why");
	check(await page.evaluate(() => location.hash === ""),
	    "... the bad token left the address bar too");
	await axe("sign-in");
	// Pasting a good one signs in.
	await page.focus("#token");
	await page.keyboard.type(cfg.token);
	await (await button("Sign in")).click();
	await until("the chat after signing in", () =>
	    !document.getElementById("app").hidden);
	check(true, "pasting a good token signs in");
	await (await button("Sign out")).click();
	await until("the sign-in field", () => !document.getElementById("sign-in").hidden);
	check(await page.evaluate(() => localStorage.getItem("todo-chat.token") === null),
	    "sign-out forgets the token");
	await page.reload({ waitUntil: "load" });
	await until("the sign-in field", () => !document.getElementById("sign-in").hidden);
	check(/not signed in/.test(await page.$eval("#sign-in-reason",
	    (e) => e.textContent)), "with no token, the page says so");
});

check(dialogs.length === 0, "no dialog opened during the whole run",
    dialogs.join("; "));
check(pageErrors.length === 0, "no script error in the page",
    pageErrors.join("\n"));
finish();

async function finish() {
	clearTimeout(overall);
	await browser.close().catch(() => {});
	proxy.close();
	cutConnections();
	rmSync(userDataDir, { recursive: true, force: true });
	console.log(JSON.stringify({ done: true, failures }));
	process.exit(0);
}
