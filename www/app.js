// app.js: the chat page's start: the token (from the #token= link, the
// browser's storage or the sign-in field), then the three panels:
// conversations, the chat, tasks.

import { describe, forgetToken, getToken, onUnauthorized, setToken,
    takeTokenFromFragment } from "./api.js";
import { createChat } from "./conversation.js";
import { $ } from "./dom.js";
import { createConversations, createTasks } from "./panels.js";

const status = $("status");
let lastAnnounced = "";

// Words for screen readers (a polite live region); the same sentence
// twice is still said twice.
function announce(text) {
	status.textContent = text === lastAnnounced ? text + "\u00a0" : text;
	lastAnnounced = status.textContent;
}

const tasks = createTasks();
let chat = null;
const conversations = createConversations({
	onOpen: (id, title) => {
		closePanels();
		chat.open(id, title).catch(showError);
	},
});
chat = createChat({ conversations, tasks, announce });

function showError(err) {
	announce(describe(err));
}

// ------------------------------------------------------------ signing in

function signInView(reason) {
	chat.reset();
	$("app").hidden = true;
	$("sign-out").hidden = true;
	$("show-conversations").hidden = true;
	$("show-tasks").hidden = true;
	$("sign-in").hidden = false;
	$("sign-in-reason").textContent = reason;
	$("token").value = "";
	$("token").focus();
}

function appView() {
	$("sign-in").hidden = true;
	$("app").hidden = false;
	$("sign-out").hidden = false;
	$("show-conversations").hidden = false;
	$("show-tasks").hidden = false;
}

// Shows the chat if the service takes the stored token, else the field.
async function start() {
	if (!getToken()) {
		signInView("You are not signed in. Paste a token to start.");
		return;
	}
	try {
		// The first page of conversations doubles as the token's check.
		await conversations.reload();
		$("conversations-error").hidden = true;
	} catch (err) {
		if (err.status === 401)
			return;		// onUnauthorized shows the field
		// Not the token's fault (the service is down, say): the page,
		// with the reason where the list would be.
		$("conversations-error").textContent = "The conversations could " +
		    "not be read: " + describe(err);
		$("conversations-error").hidden = false;
	}
	appView();
	tasks.refresh();
	await chat.restore();
	$("message").focus();
}

onUnauthorized((err) => {
	signInView("The service refused the token (" + err.message +
	    "). Paste a valid one to sign in again.");
});

$("sign-in-form").addEventListener("submit", (e) => {
	e.preventDefault();
	const token = $("token").value.trim();
	if (token === "")
		return;
	setToken(token);
	start().catch(showError);
});

$("sign-out").addEventListener("click", () => {
	forgetToken();
	try {
		sessionStorage.clear();
	} catch {
		// nothing kept
	}
	signInView("You signed out. Paste a token to sign in again.");
});

$("new-conversation").addEventListener("click", () => {
	closePanels();
	chat.newConversation();
});

$("refresh-tasks").addEventListener("click", () => tasks.refresh());

// ---------------------------------------------- panels on a narrow screen

const toggles = [["show-conversations", "conversations"],
    ["show-tasks", "tasks"]];

function closePanels() {
	for (const [button, panel] of toggles) {
		$(button).setAttribute("aria-expanded", "false");
		$(panel).classList.remove("open");
	}
}

for (const [button, panel] of toggles) {
	$(button).addEventListener("click", () => {
		const opening = !$(panel).classList.contains("open");
		closePanels();
		if (opening) {
			$(button).setAttribute("aria-expanded", "true");
			$(panel).classList.add("open");
			$(panel).querySelector("button, [tabindex]").focus();
		}
	});
}

document.addEventListener("keydown", (e) => {
	if (e.key === "Escape" && document.querySelector(".side.open")) {
		const open = toggles.find(([, p]) => $(p).classList.contains("open"));
		closePanels();
		if (open)
			$(open[0]).focus();
	}
});

// A token in the link wins over a stored one: it is what was just opened.
takeTokenFromFragment();
window.addEventListener("hashchange", () => {
	if (takeTokenFromFragment())
		start().catch(showError);
});
start().catch(showError);
