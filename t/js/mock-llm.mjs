// t/js/mock-llm.mjs CONFIG [MAX_SECONDS]: @dwmkerr/mock-llm, an
// OpenAI-compatible mock server written elsewhere, on 127.0.0.1 at a port
// the kernel picks (no race for a free one), with the rules of CONFIG (its
// own YAML or JSON format: rules, streaming). Prints one JSON line,
// {"port", "version"}, once it listens; everything the package logs goes
// to stderr, so nothing fills a stdout no one reads after that line.
//
// Its CLI (dist/main.js) takes the port and host only from PORT and HOST,
// which Stack::Node does not pass, and listens on 0.0.0.0 by default:
// hence its createServer and loadConfig, used as main.js uses them.
//
// It exits by itself after MAX_SECONDS (300), or when the process that
// started it is gone, whichever comes first: a test that dies leaves
// nothing listening.
import { createRequire } from 'node:module';
import http from 'node:http';

const require = createRequire(import.meta.url);
const { createServer } = require('@dwmkerr/mock-llm/dist/server.js');
const { loadConfig } = require('@dwmkerr/mock-llm/dist/config.js');
const { version } = require('@dwmkerr/mock-llm/package.json');

const [configPath, maxArg] = process.argv.slice(2);
if (!configPath) {
	console.error('usage: mock-llm.mjs CONFIG [MAX_SECONDS]');
	process.exit(2);
}
const maxSeconds = Number(maxArg ?? 300);

console.log = console.error;	// the package's request log, to stderr

const config = loadConfig(configPath);
const host = '127.0.0.1';
const server = http.createServer();
server.on('error', (err) => {
	console.error(err);
	process.exit(1);
});
server.listen(0, host, () => {
	const { port } = server.address();
	// Its OAuth, A2A and MCP metadata name host and port: the real ones.
	server.on('request', createServer(config, host, port));
	process.stdout.write(JSON.stringify({ port, version }) + '\n');
});

const parent = process.ppid;
setInterval(() => {
	if (process.ppid !== parent) {
		console.error('mock-llm.mjs: the parent is gone, exiting');
		process.exit(0);
	}
}, 500).unref();
setTimeout(() => {
	console.error(`mock-llm.mjs: ${maxSeconds} s are up, exiting`);
	process.exit(0);
}, maxSeconds * 1000).unref();
