// stream.js: a streamed turn as the page reads it: server-sent events
// cut from the fetch body as it arrives, and their data decoded into the
// parts of the UI message stream (start, steps, tool calls, text, error,
// finish, then [DONE]).

// The events of an event-stream body: { id, data } each, comments and
// other fields skipped. Lines may end in \n, \r\n or \r, and a chunk may
// end anywhere, even inside a UTF-8 character or a line ending.
export async function* sseEvents(body) {
	const reader = body.getReader();
	const decoder = new TextDecoder("utf-8");
	let buffer = "";
	let data = [];
	let id = null;
	try {
		for (;;) {
			const { value, done } = await reader.read();
			buffer += done ? decoder.decode() :
			    decoder.decode(value, { stream: true });
			// A \r last may be half of \r\n: wait for the next chunk.
			let end;
			while ((end = buffer.search(/\r\n|\r(?!$)|\n/)) !== -1 ||
			    (done && buffer.endsWith("\r") &&
			    (end = buffer.length - 1) !== -1)) {
				const line = buffer.slice(0, end);
				buffer = buffer.slice(end +
				    (buffer.startsWith("\r\n", end) ? 2 : 1));
				if (line === "") {
					if (data.length > 0)
						yield { id, data: data.join("\n") };
					data = [];
					continue;
				}
				if (line.startsWith(":"))
					continue;
				const colon = line.indexOf(":");
				const field = colon === -1 ? line : line.slice(0, colon);
				let value = colon === -1 ? "" : line.slice(colon + 1);
				if (value.startsWith(" "))
					value = value.slice(1);
				if (field === "data")
					data.push(value);
				else if (field === "id" && !value.includes("\0"))
					id = value;
			}
			if (done)
				return;
		}
	} finally {
		reader.releaseLock();
	}
}

// Reads a turn's stream to its end, calling onPart(part, id) for each
// part. Resolves { done, lastId }: done when [DONE] came, lastId the id
// of the last event read (for Last-Event-ID when a cut stream is
// followed again).
export async function readTurn(res, onPart) {
	let lastId = null;
	for await (const ev of sseEvents(res.body)) {
		if (ev.id !== null)
			lastId = ev.id;
		if (ev.data === "[DONE]")
			return { done: true, lastId };
		let part;
		try {
			part = JSON.parse(ev.data);
		} catch {
			continue;	// not ours to show
		}
		if (part && typeof part.type === "string")
			onPart(part, ev.id);
	}
	return { done: false, lastId };
}
