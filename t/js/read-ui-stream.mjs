// t/js/read-ui-stream.mjs: reads a streamed chat turn the way a browser
// running the AI SDK's useChat does, so that the tests judge our event
// stream with the AI SDK's own code rather than with our idea of it.
//
// The request goes out through the ai package's DefaultChatTransport
// (the transport useChat uses), told by prepareSendMessagesRequest to
// send our body ({message, conversation_id}) instead of its own; the
// body comes back through the transport's processResponseStream
// (parseJsonEventStream with uiMessageChunkSchema: a chunk the schema
// rejects, or a data line that is not JSON, ends the stream with an
// error, as it does in useChat), then through readUIMessageStream (the
// state machine that builds the assistant UIMessage from the chunks:
// a delta for a text part never started, an output for an unknown tool
// call, are errors there).
//
//   node read-ui-stream.mjs URL [HEADERS_JSON [BODY_JSON]]
//   node read-ui-stream.mjs --file PATH      the bytes of PATH as a body
//   node read-ui-stream.mjs < request.json   {url, headers, body,
//                                             timeout_ms} or {file}
//
// Prints one JSON line:
//   {status, headers (lower-case names), raw (the body as text),
//    chunks: [type, ...], chunk_ms: [ms after the request, ...],
//    values: [chunk, ...] (as the schema parsed them),
//    message: the last UIMessage snapshot ({id, role, parts, metadata})
//             or null,
//    error_texts: [errorText of each "error" chunk, as useChat's onError
//                  gets it],
//    errors: [{name, message, value}]: everything else that went wrong: the
//            schema or JSON rejecting a chunk, the state machine
//            rejecting a chunk, an HTTP error status (the transport
//            refuses the response), a timeout}
// and exits 1 when errors is not empty, 0 otherwise. timeout_ms (60000
// by default) bounds the whole read.
import fs from 'node:fs';
import { DefaultChatTransport, readUIMessageStream } from 'ai';

// Nothing but the one JSON line may reach stdout: the test reads it.
console.log = console.error;

const started = performance.now();
const out = {
	status: null, headers: {}, raw: '', chunks: [], chunk_ms: [],
	values: [], message: null, error_texts: [], errors: [],
};
const decoder = new TextDecoder();

// An error as {name, message, value}: the message cut to its first
// 500 characters (a union's rejection lists every member), value the
// chunk a schema rejected or the text that was not JSON.
function fail(error) {
	const e = { name: error?.name ?? 'Error',
	    message: String(error?.message ?? error).slice(0, 500) };
	if (error?.value !== undefined) e.value = error.value;
	else if (error?.text !== undefined) e.value = error.text;
	out.errors.push(e);
}

async function request() {
	const argv = process.argv.slice(2);
	if (argv[0] === '--file') return { file: argv[1] };
	if (argv.length) return { url: argv[0],
	    headers: argv[1] ? JSON.parse(argv[1]) : {},
	    body: argv[2] ? JSON.parse(argv[2]) : undefined };
	let text = '';
	for await (const piece of process.stdin) text += piece;
	return JSON.parse(text);
}

// The body as it arrives, copied into out.raw on its way to the parser.
function recorded(stream) {
	return stream.pipeThrough(new TransformStream({
		transform(bytes, controller) {
			out.raw += decoder.decode(bytes, { stream: true });
			controller.enqueue(bytes);
		},
		flush() { out.raw += decoder.decode(); },
	}));
}

// The chunks as the transport parsed them, copied into out on their way
// to the state machine.
function noted(chunks) {
	return chunks.pipeThrough(new TransformStream({
		transform(chunk, controller) {
			out.chunks.push(chunk.type);
			out.chunk_ms.push(Math.round(performance.now() - started));
			out.values.push(chunk);
			if (chunk.type === 'error') pending.push(chunk.errorText);
			controller.enqueue(chunk);
		},
	}));
}

// errorTexts of "error" chunks not yet seen by onError: such a chunk
// reaches onError as a plain Error with its errorText as the message.
const pending = [];

function onError(error) {
	if (error?.constructor === Error && pending.length
	    && error.message === pending[0]) {
		out.error_texts.push(pending.shift());
		return;
	}
	fail(error);
}

async function read(chunks) {
	for await (const message of readUIMessageStream({ stream: noted(chunks),
	    onError, terminateOnError: false }))
		out.message = message;
}

async function main() {
	const req = await request();
	const transport = new DefaultChatTransport({
		api: req.url,
		headers: req.headers ?? {},
		prepareSendMessagesRequest: () => ({ body: req.body ?? {} }),
		// The response as the transport sees it, its body recorded.
		fetch: async (url, init) => {
			const response = await fetch(url, init);
			out.status = response.status;
			for (const [k, v] of response.headers) out.headers[k] = v;
			return new Response(response.body && recorded(response.body),
			    { status: response.status, headers: response.headers });
		},
	});
	if (req.file) {
		const bytes = fs.readFileSync(req.file);
		const body = new ReadableStream({ start(c) {
			c.enqueue(new Uint8Array(bytes));
			c.close();
		} });
		await read(transport.processResponseStream(recorded(body)));
		return;
	}
	const abort = AbortSignal.timeout(req.timeout_ms ?? 60000);
	let chunks;
	try {
		chunks = await transport.sendMessages({ chatId: 'todo-chat-test',
		    messages: [], trigger: 'submit-message', messageId: undefined,
		    abortSignal: abort });
	} catch (error) {
		// An error status: the transport read the body for its message.
		fail(error);
		return;
	}
	await read(chunks);
	if (abort.aborted) fail(new Error(`no end within ${req.timeout_ms ?? 60000} ms`));
}

try {
	await main();
} catch (error) {
	fail(error);
}
process.stdout.write(JSON.stringify(out) + '\n');
for (const e of out.errors)
	console.error(`read-ui-stream: ${e.name}: ${e.message.split('\n')[0]}`);
process.exitCode = out.errors.length ? 1 : 0;
