// t/js/mcp-client.mjs: an agent's side of MCP, written with the official
// TypeScript SDK's Client and its Streamable HTTP transport, no code of
// ours in the way: it connects to the URL with the bearer token, lists
// the tools, calls each of the five (the SDK checks every
// structuredContent against the tool's outputSchema), then tries again
// without a token, twice: plainly, and with an auth provider, which makes
// the SDK read the WWW-Authenticate header and fetch the resource
// metadata it names.
//
//   echo '{"url": "http://127.0.0.1:PORT/mcp", "token": "..."}' |
//       node mcp-client.mjs
//
// Prints one JSON line: {server, protocol, tools, calls, no_token,
// discovery}. Exits non-zero only when it cannot run at all.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from
    '@modelcontextprotocol/sdk/client/streamableHttp.js';

const input = JSON.parse(await new Promise((resolve) => {
	let s = '';
	process.stdin.on('data', (d) => { s += d; });
	process.stdin.on('end', () => resolve(s));
}));
const url = new URL(input.url);
// Every wait bounded: a test must end, whatever the server does.
const timeout = 15000;

function client() {
	return new Client({ name: 'todo-chat-test', version: '1.0.0' });
}

function failure(e) {
	return { name: e?.constructor?.name, code: e?.code,
	    message: String(e?.message ?? e) };
}

async function withToken() {
	const c = client();
	const transport = new StreamableHTTPClientTransport(url, {
		requestInit: { headers: { Authorization: `Bearer ${input.token}` } },
	});
	await c.connect(transport, { timeout });
	const out = { server: c.getServerVersion(),
	    capabilities: c.getServerCapabilities(),
	    protocol: transport.protocolVersion, calls: [] };
	const listed = await c.listTools({}, { timeout });
	out.tools = listed.tools.map((t) => ({ name: t.name,
	    output_type: t.outputSchema?.type, input_type: t.inputSchema?.type }));
	const call = async (name, args) => {
		try {
			const r = await c.callTool({ name, arguments: args },
			    undefined, { timeout });
			out.calls.push({ name, args, result: r });
			return r;
		} catch (e) {
			out.calls.push({ name, args, error: failure(e) });
			return {};
		}
	};
	// The agent names another user: the token's user is the one served.
	const milk = await call('add_task', { title: 'Buy milk',
	    user_id: 'someone-else' });
	const mom = await call('add_task', { title: 'Call mom',
	    description: 'Sunday' });
	await call('list_tasks', {});
	await call('complete_task', { task_id: milk.structuredContent?.task_id });
	await call('update_task', { task_id: mom.structuredContent?.task_id,
	    title: 'Call mom tonight' });
	await call('delete_task', { task_id: milk.structuredContent?.task_id });
	await call('list_tasks', { status: 'pending' });
	await call('complete_task', { task_id: 999999 });
	await call('no_such_tool', {});
	await c.close();
	return out;
}

async function withoutToken() {
	const c = client();
	try {
		await c.connect(new StreamableHTTPClientTransport(url), { timeout });
		await c.close();
		return { connected: true };
	} catch (e) {
		return failure(e);
	}
}

// An auth provider that stops the OAuth flow once discovery is done: the
// SDK has read resource_metadata from our 401 and fetched that document.
async function discovery() {
	const seen = {};
	const provider = {
		get redirectUrl() { return 'http://127.0.0.1:9/callback'; },
		get clientMetadata() {
			return { client_name: 'todo-chat-test',
			    redirect_uris: ['http://127.0.0.1:9/callback'] };
		},
		clientInformation() { return undefined; },
		tokens() { return undefined; },
		saveTokens() {},
		redirectToAuthorization() {},
		saveCodeVerifier() {},
		codeVerifier() { return ''; },
		saveDiscoveryState(state) {
			seen.resource_metadata_url = state.resourceMetadataUrl;
			seen.resource_metadata = state.resourceMetadata;
			throw new Error('discovery done');
		},
	};
	const c = client();
	try {
		await c.connect(new StreamableHTTPClientTransport(url,
		    { authProvider: provider }), { timeout });
		seen.connected = true;
	} catch (e) {
		seen.error = failure(e);
	}
	return seen;
}

const out = await withToken();
out.no_token = await withoutToken();
out.discovery = await discovery();
process.stdout.write(JSON.stringify(out) + '\n');
