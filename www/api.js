// api.js: the todo-chat HTTP API as the page uses it: the bearer token
// (kept in localStorage), JSON calls, and errors turned into words.

const TOKEN_KEY = "todo-chat.token";

export function getToken() {
	try {
		return localStorage.getItem(TOKEN_KEY);
	} catch {
		return null;	// storage refused (a privacy mode): no token
	}
}

export function setToken(token) {
	localStorage.setItem(TOKEN_KEY, token);
}

export function forgetToken() {
	localStorage.removeItem(TOKEN_KEY);
}

// A #token=... fragment (the link `make run` prints, or a site that
// signs people in) becomes the stored token and leaves the address bar,
// so it is neither bookmarked nor shown over a shoulder. True if one
// was there.
export function takeTokenFromFragment() {
	const params = new URLSearchParams(location.hash.slice(1));
	const token = params.get("token");
	if (token === null)
		return false;
	history.replaceState(null, "", location.pathname + location.search);
	if (token.trim() !== "")
		setToken(token.trim());
	return true;
}

// An error the page can show: status 0 is "no answer at all".
export class ApiError extends Error {
	constructor(status, code, message, body) {
		super(message);
		this.status = status;
		this.code = code;
		this.body = body || {};
		this.retryAfter = null;
	}
	// Worth trying again as it was: the network, a 5xx, or a 429.
	get retryable() {
		return this.status === 0 || this.status >= 500 ||
		    this.status === 429;
	}
}

// What a person reads for an error the service (or nginx) answered.
export function describe(err) {
	if (!(err instanceof ApiError))
		return "Something went wrong: " + String(err && err.message);
	if (err.status === 0)
		return "The service could not be reached. Check the connection " +
		    "and try again.";
	let text = err.message || "The service answered " + err.status + ".";
	if (err.retryAfter !== null)
		text += " Try again in " + err.retryAfter + " s.";
	return text;
}

// The error of an answer that is not 2xx, from its JSON body if it has
// one ({"error": {"code", "message"}}, maybe "conversation_id").
export async function errorOf(res) {
	let body = null;
	try {
		body = await res.json();
	} catch {
		body = null;
	}
	const e = body && body.error ? body.error : {};
	const err = new ApiError(res.status, e.code || "http_" + res.status,
	    e.message || "The service answered " + res.status + " " +
	    res.statusText + ".", body);
	const after = res.headers.get("Retry-After");
	if (after !== null && /^\d+$/.test(after))
		err.retryAfter = Number(after);
	return err;
}

// Listeners told when the service refuses the token (401), so the page
// can ask for another.
const unauthorized = new Set();
export function onUnauthorized(fn) {
	unauthorized.add(fn);
}

function refused(err) {
	if (err.status === 401)
		for (const fn of unauthorized)
			fn(err);
}

// fetch with the token; throws ApiError for a network failure or a
// non-2xx answer. The Response itself, for streams.
export async function request(method, path, { body, headers, signal } = {}) {
	const h = new Headers(headers || {});
	const token = getToken();
	if (token)
		h.set("Authorization", "Bearer " + token);
	if (body !== undefined)
		h.set("Content-Type", "application/json");
	let res;
	try {
		res = await fetch(path, { method, headers: h, signal,
		    body: body === undefined ? undefined : JSON.stringify(body),
		    cache: "no-store", credentials: "omit" });
	} catch (e) {
		if (e && e.name === "AbortError")
			throw e;
		throw new ApiError(0, "network", "No answer: " + e.message);
	}
	if (!res.ok) {
		const err = await errorOf(res);
		refused(err);
		throw err;
	}
	return res;
}

// A JSON call: the decoded body, or null for a 204.
export async function call(method, path, options) {
	const res = await request(method, path, options);
	if (res.status === 204)
		return null;
	return res.json();
}

// A key for one turn, sent again with every retry of it: the service
// then answers the first attempt's outcome instead of running it twice.
export function newIdempotencyKey() {
	const bytes = new Uint8Array(16);
	crypto.getRandomValues(bytes);
	return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
