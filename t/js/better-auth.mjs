// t/js/better-auth.mjs: Better Auth itself, as a site would run it, so
// that the tests check the workers against the tokens a real provider
// makes rather than against our idea of them: email and password
// sign-in, the jwt plugin, the in-memory adapter (no database to build),
// served by node:http on 127.0.0.1.
//
//   node better-auth.mjs [--alg EdDSA|ES256|RS256] [--port N]
//       [--max-seconds 600]
//
// It signs a user up and in over HTTP, asks the jwt plugin for a token
// (GET /api/auth/token with the session cookie, what a site's front end
// does), checks the token against its own JWKS with jose, then prints
// one JSON line on stdout:
//   {port, pid, jwks_url, token, user_id, iss, aud, alg, kid, exp}
// (iss, aud, alg, kid and exp as they are in the token) and keeps serving
// /api/auth/* (the JWKS at /api/auth/jwks) until killed, --max-seconds
// pass, or its parent process goes away.
import http from 'node:http';
import crypto from 'node:crypto';
import * as jose from 'jose';
import { betterAuth } from 'better-auth';
import { jwt } from 'better-auth/plugins/jwt';
import { memoryAdapter } from 'better-auth/adapters/memory';
import { toNodeHandler } from 'better-auth/node';

// Nothing but the one JSON line may reach stdout: the test reads it.
console.log = console.error;
console.info = console.error;

const args = {};
for (let i = 2; i < process.argv.length; i += 2) {
	const m = /^--([\w-]+)$/.exec(process.argv[i]);
	if (!m) fail(`unknown argument ${process.argv[i]}`);
	args[m[1]] = process.argv[i + 1];
}
const alg = args.alg ?? 'EdDSA';
// The plugin's keyPairConfig: what a site writes to pick its algorithm.
const keyPairConfig = {
	EdDSA: { alg: 'EdDSA', crv: 'Ed25519' },
	ES256: { alg: 'ES256' },
	RS256: { alg: 'RS256', modulusLength: 2048 },
}[alg] ?? fail(`--alg ${alg}: EdDSA, ES256 or RS256`);
const maxSeconds = Number(args['max-seconds'] ?? 600);

function fail(msg) {
	process.stderr.write(`better-auth.mjs: ${msg}\n`);
	process.exit(2);
}

// The port first: Better Auth's baseURL names it, and the plugin puts
// the baseURL in iss and aud.
let handler = (req, res) => { res.writeHead(503); res.end(); };
const server = http.createServer((req, res) => handler(req, res));
await new Promise((resolve) =>
    server.listen(Number(args.port ?? 0), '127.0.0.1', resolve));
const { port } = server.address();
const baseURL = `http://127.0.0.1:${port}`;

const auth = betterAuth({
	baseURL,
	secret: crypto.randomBytes(32).toString('hex'),
	database: memoryAdapter({ user: [], session: [], account: [],
	    verification: [], jwks: [] }),
	emailAndPassword: { enabled: true },
	telemetry: { enabled: false },
	plugins: [jwt({ jwks: { keyPairConfig } })],
});
handler = toNodeHandler(auth);

// Bounded in time, and gone with the test that started it.
const parent = process.ppid;
setTimeout(() => process.exit(0), maxSeconds * 1000).unref();
setInterval(() => { if (process.ppid !== parent) process.exit(0); }, 500).unref();
process.on('SIGTERM', () => process.exit(0));

// As a browser would: same origin, JSON bodies, the session cookie back.
async function call(method, path, body, cookie) {
	const r = await fetch(`${baseURL}/api/auth${path}`, {
		method,
		headers: { origin: baseURL, 'content-type': 'application/json',
		    ...(cookie ? { cookie } : {}) },
		body: body ? JSON.stringify(body) : undefined,
		signal: AbortSignal.timeout(10000),
	});
	const text = await r.text();
	if (!r.ok) fail(`${method} ${path}: ${r.status} ${text}`);
	return { r, json: text ? JSON.parse(text) : null };
}

const email = `user-${crypto.randomBytes(4).toString('hex')}@example.com`;
const password = crypto.randomBytes(12).toString('hex');
const up = await call('POST', '/sign-up/email',
    { email, password, name: 'Test User' });
const userId = up.json.user.id;
const signin = await call('POST', '/sign-in/email', { email, password });
const cookie = signin.r.headers.getSetCookie()
    .map((c) => c.split(';')[0]).join('; ');
if (!cookie) fail('sign-in set no cookie');
const { json: { token } } = await call('GET', '/token', null, cookie);

// The token must verify with the published keys before a test relies
// on it: a failure here is Better Auth's or ours, not the workers'.
const jwks = jose.createRemoteJWKSet(new URL(`${baseURL}/api/auth/jwks`));
const { payload, protectedHeader } = await jose.jwtVerify(token, jwks,
    { issuer: baseURL, audience: baseURL });
if (payload.sub !== userId) fail(`sub ${payload.sub} is not ${userId}`);

process.stdout.write(JSON.stringify({
	port, pid: process.pid, jwks_url: `${baseURL}/api/auth/jwks`, token,
	user_id: userId, iss: payload.iss, aud: payload.aud,
	alg: protectedHeader.alg, kid: protectedHeader.kid, exp: payload.exp,
	iat: payload.iat,
}) + '\n');
