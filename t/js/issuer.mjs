// t/js/issuer.mjs: a token issuer for the tests, built on jose. It holds
// one signing key per algorithm (EdDSA, ES256, RS256, PS256; RS256 and
// PS256 keys are separate, each naming its alg, as Better Auth's are),
// publishes their public halves as a JWKS, and signs whatever token a
// test asks for, so that a test can make every token a real provider
// would, and the ones a forger would.
//
//   node issuer.mjs [--port N] [--publish EdDSA,ES256,RS256,PS256]
//       [--jwks-file PATH] [--once] [--max-seconds 600]
//
// --publish   the keys in the JWKS at start (default all four); also
//             RSA1024 (a 1024-bit RSA key, too weak to use), oct (a
//             symmetric key) and P-384 (a curve nobody asked for):
//             keys a verifier must ignore
// --jwks-file the JWKS is also written there, at start and on each
//             rotation (the file-path form of CHAT_JWT_JWKS)
// --once      write --jwks-file and exit: no server
//
// Prints one JSON line on stdout once it listens: {port, pid, jwks_url,
// jwks_file, kids: {alg: kid}}. Nothing else goes to stdout. It exits
// after --max-seconds, or when its parent process goes away, so a test
// that dies leaves nothing running.
//
// HTTP, on 127.0.0.1 only:
//   GET  /jwks          the JWKS (503, or a dropped connection, when down)
//   GET  /stats         {jwks_gets}: how often /jwks was asked for
//   POST /mint          {alg, claims, kid, key, key_of} -> {token, kid}
//          alg     EdDSA | ES256 | RS256 | PS256 | HS256 (HS256 needs
//                  "secret": the HMAC key as a string)
//          claims  the payload; iat and exp (15 minutes, as Better Auth)
//                  are added unless given; a claim given as null is left
//                  out
//          kid     true (default: the key's kid), false (no kid header)
//                  or a string (that kid, whatever the key)
//          key     current (default) | rotated (the newest key published
//                  by /rotate) | foreign (a key never published) | weak
//                  (the RSA1024 key, for RS256)
//          key_of  sign with the key held for this alg instead (RS256
//                  with the PS256 key: an alg its JWK does not name;
//                  ES384 with the P-384 key)
//          header  more header parameters ({crit: ["x"], x: 1}: jose
//                  is told it understands them, so it signs)
//   POST /rotate        {alg} -> {kid}: a new key for alg, published
//                  alongside the old ones, and used by key "rotated"
//   POST /down          {mode: "503" | "close"}: /jwks fails from now on
//   POST /up            /jwks answers again
//   GET  /public?alg=A&key=current  {kid, pem, jwk}: the public key as
//                  SPKI PEM text, and its JWK exactly as /jwks serves it
//                  (the bytes a forger would try as an HMAC secret)
import http from 'node:http';
import crypto from 'node:crypto';
import fs from 'node:fs';
import * as jose from 'jose';

// Nothing but the one JSON line may reach stdout: the test reads it.
console.log = console.error;

const args = parseArgs(process.argv.slice(2));
const ASYM = ['EdDSA', 'ES256', 'RS256', 'PS256'];
const publish = (args.publish ?? ASYM.join(',')).split(',').filter(Boolean);
const maxSeconds = Number(args['max-seconds'] ?? 600);

function parseArgs(argv) {
	const out = {};
	for (let i = 0; i < argv.length; i++) {
		const m = /^--([\w-]+)$/.exec(argv[i]);
		if (!m) die(`unknown argument ${argv[i]}`);
		if (m[1] === 'once') out.once = true;
		else out[m[1]] = argv[++i];
	}
	return out;
}

function die(msg) {
	process.stderr.write(`issuer.mjs: ${msg}\n`);
	process.exit(2);
}

// A key: {kid, alg, kty, privateKey (for signing), publicJwk (as
// published), pem}. Weak and oct keys come from node:crypto: jose
// rightly refuses to make them.
async function makeKey(alg) {
	const kid = crypto.randomBytes(12).toString('base64url');
	if (alg === 'RSA1024') {
		const { publicKey, privateKey } = crypto.generateKeyPairSync('rsa',
		    { modulusLength: 1024 });
		const jwk = publicKey.export({ format: 'jwk' });
		return { kid, alg: 'RS256', weak: true, privateKey,
		    publicJwk: { kty: 'RSA', alg: 'RS256', use: 'sig', kid,
		    n: jwk.n, e: jwk.e },
		    pem: publicKey.export({ type: 'spki', format: 'pem' }) };
	}
	if (alg === 'oct') {
		return { kid, alg: 'HS256', publicJwk: { kty: 'oct', alg: 'HS256',
		    kid, k: crypto.randomBytes(32).toString('base64url') } };
	}
	const genAlg = alg === 'P-384' ? 'ES384' : alg;
	const { publicKey, privateKey } = await jose.generateKeyPair(genAlg,
	    { extractable: true });
	const pub = await jose.exportJWK(publicKey);
	return { kid, alg: genAlg, privateKey,
	    privateJwk: await jose.exportJWK(privateKey),
	    publicJwk: { alg: genAlg, use: 'sig', ...pub, kid },
	    pem: await jose.exportSPKI(publicKey) };
}

const current = {};	// alg -> key, published
const rotated = {};	// alg -> newest key added by /rotate, published
const foreign = {};	// alg -> key never published
const published = [];	// keys in the JWKS, in order
for (const alg of ASYM) {
	current[alg] = await makeKey(alg);
	foreign[alg] = await makeKey(alg);
}
current.RSA1024 = await makeKey('RSA1024');
for (const name of publish) {
	if (!current[name]) current[name] = await makeKey(name);
	published.push(current[name]);
}

function jwks() {
	return { keys: published.map((k) => k.publicJwk) };
}

function writeJwksFile() {
	if (!args['jwks-file']) return;
	// Renamed into place: a worker never reads half a file.
	const tmp = `${args['jwks-file']}.tmp-${process.pid}`;
	fs.writeFileSync(tmp, JSON.stringify(jwks()));
	fs.renameSync(tmp, args['jwks-file']);
}
writeJwksFile();
if (args.once) process.exit(0);

async function mint(req) {
	const alg = req.alg ?? 'EdDSA';
	const now = Math.floor(Date.now() / 1000);
	const claims = { iat: now, exp: now + 900, ...(req.claims ?? {}) };
	for (const k of Object.keys(claims)) if (claims[k] === null) delete claims[k];
	if (alg === 'HS256') {
		if (typeof req.secret !== 'string') throw new Error('HS256 needs secret');
		const header = { alg, typ: 'JWT' };
		if (typeof req.kid === 'string') header.kid = req.kid;
		const token = await new jose.SignJWT(claims).setProtectedHeader(header)
		    .sign(new TextEncoder().encode(req.secret));
		return { token, kid: header.kid ?? null };
	}
	const pool = { current, rotated, foreign, weak: { RS256: current.RSA1024 } }[
	    req.key ?? 'current'];
	if (!pool) throw new Error(`unknown key ${req.key}`);
	const key = pool[req.key_of ?? alg];
	if (!key) throw new Error(`no ${req.key ?? 'current'} key for ${req.key_of ?? alg}`);
	const kid = req.kid === false ? undefined
	    : typeof req.kid === 'string' ? req.kid : key.kid;
	const header = { alg, typ: 'JWT', ...(kid !== undefined ? { kid } : {}),
	    ...(req.header ?? {}) };
	const crit = Object.fromEntries((header.crit ?? []).map((k) => [k, true]));
	let token;
	if (key.weak) {
		// jose will not sign with a 1024-bit key; node:crypto will.
		const input = `${b64(JSON.stringify(header))}.${b64(JSON.stringify(claims))}`;
		const sig = crypto.sign('sha256', Buffer.from(input), key.privateKey);
		token = `${input}.${sig.toString('base64url')}`;
	} else {
		// The key re-imported for alg, so that key_of may sign with
		// another alg's key (a CryptoKey is bound to one algorithm).
		const priv = alg === key.alg ? key.privateKey
		    : await jose.importJWK(key.privateJwk, alg);
		token = await new jose.SignJWT(claims).setProtectedHeader(header)
		    .sign(priv, { crit });
	}
	return { token, kid: kid ?? null };
}

function b64(s) { return Buffer.from(s).toString('base64url'); }

let jwksGets = 0;
let down = null;	// null, '503' or 'close'

function send(res, status, body) {
	const text = JSON.stringify(body);
	res.writeHead(status, { 'content-type': 'application/json',
	    'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
	res.end(text);
}

async function readJson(req) {
	let body = '';
	for await (const chunk of req) body += chunk;
	return body.length ? JSON.parse(body) : {};
}

const server = http.createServer(async (req, res) => {
	try {
		const url = new URL(req.url, 'http://127.0.0.1');
		const route = `${req.method} ${url.pathname}`;
		if (route === 'GET /jwks') {
			jwksGets++;
			if (down === 'close') return req.socket.destroy();
			if (down === '503') return send(res, 503, { error: 'down' });
			return send(res, 200, jwks());
		}
		if (route === 'GET /stats') return send(res, 200, { jwks_gets: jwksGets });
		if (route === 'POST /mint') return send(res, 200, await mint(await readJson(req)));
		if (route === 'POST /rotate') {
			const { alg = 'EdDSA' } = await readJson(req);
			if (!ASYM.includes(alg)) throw new Error(`cannot rotate ${alg}`);
			rotated[alg] = await makeKey(alg);
			published.push(rotated[alg]);
			writeJwksFile();
			return send(res, 200, { kid: rotated[alg].kid });
		}
		if (route === 'POST /down') {
			const { mode = '503' } = await readJson(req);
			if (mode !== '503' && mode !== 'close') throw new Error(`mode ${mode}`);
			down = mode;
			return send(res, 200, { down });
		}
		if (route === 'POST /up') {
			down = null;
			return send(res, 200, { down });
		}
		if (route === 'GET /public') {
			const alg = url.searchParams.get('alg') ?? 'EdDSA';
			const which = url.searchParams.get('key') ?? 'current';
			const key = ({ current, rotated, foreign })[which]?.[alg];
			if (!key) throw new Error(`no ${which} key for ${alg}`);
			return send(res, 200, { kid: key.kid, pem: key.pem,
			    jwk: JSON.stringify(key.publicJwk) });
		}
		return send(res, 404, { error: 'not found' });
	} catch (e) {
		return send(res, 400, { error: String(e?.message ?? e) });
	}
});

// Bounded in time, and gone with the test that started it.
const parent = process.ppid;
setTimeout(() => process.exit(0), maxSeconds * 1000).unref();
setInterval(() => { if (process.ppid !== parent) process.exit(0); }, 500).unref();
process.on('SIGTERM', () => process.exit(0));

server.listen(Number(args.port ?? 0), '127.0.0.1', () => {
	const { port } = server.address();
	const kids = {};
	for (const [alg, k] of Object.entries(current)) {
		if (published.includes(k)) kids[alg] = k.kid;
	}
	process.stdout.write(JSON.stringify({ port, pid: process.pid,
	    jwks_url: `http://127.0.0.1:${port}/jwks`,
	    jwks_file: args['jwks-file'] ?? null, kids }) + '\n');
});
