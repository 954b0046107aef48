import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import t, { type Test } from 'tap';
import { runCli } from '../../control-plane/cli/run-cli.js';
import { rekeyProofText } from '../../shared/protocol/api.js';
import { exportPublicKey, importPublicKey } from '../../shared/signing/ed25519-keys.js';
import { createIdentityFile, loadIdentityFile, writeIdentityFile } from '../../shared/signing/identity-file.js';
import { ENROLLING_IDENTITY, SIGNATURE_HEADERS, verifySignature } from '../../shared/signing/request-signature.js';

const ADMIN_ID = '0b7d3c9e-8a51-4f2e-9c1d-2a6b5e4f3d21';
const NEW_ID = '9e8d7c6b-5a49-4382-9170-6f5e4d3c2b1a';
const SECRET_ID = '11111111-2222-4333-8444-555555555555';

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: Buffer;
  json: Record<string, unknown>;
}
type Handler = (seen: Seen) => { status: number; body?: unknown };

/** A fake control plane on 127.0.0.1: routes by "METHOD /path" (query ignored) and records requests. */
async function fakeServer(t: Test, routes: Record<string, Handler>): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const request: Seen = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body, json: body.length ? JSON.parse(body.toString()) : {} };
      seen.push(request);
      const handler = routes[`${request.method} ${request.url.split('?')[0]}`];
      const reply = handler ? handler(request) : { status: 404, body: { error: { code: 'ERR_NOT_FOUND', message: 'no route' } } };
      res.writeHead(reply.status, { 'content-type': 'application/json' });
      res.end(reply.body === undefined ? undefined : JSON.stringify(reply.body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

function signedBy(seen: Seen, publicKey: KeyObject, identityId: string): boolean {
  const header = (name: string): string => String(seen.headers[name] ?? '');
  const parts = {
    method: seen.method,
    pathWithQuery: seen.url,
    body: seen.body,
    timestampMs: Number(header(SIGNATURE_HEADERS.timestamp)),
    nonce: header(SIGNATURE_HEADERS.nonce),
    identityId,
  };
  return header(SIGNATURE_HEADERS.identity) === identityId && verifySignature(publicKey, parts, header(SIGNATURE_HEADERS.signature));
}

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'sikker-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** An identity file already enrolled as ADMIN_ID; returns its path and public key. */
function enrolledIdentity(t: Test): { path: string; publicKey: KeyObject } {
  const path = join(tempDir(t), 'identity.json');
  const created = createIdentityFile(path);
  writeIdentityFile(path, { privateKey: created.privateKey, identityId: ADMIN_ID, serverPublicKey: 'server-key' });
  return { path, publicKey: createPublicKey(created.privateKey) };
}

async function run(argv: string[], env: Record<string, string>, stdin = ''): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const sink = (append: (text: string) => void): Writable =>
    new Writable({ write: (chunk: Buffer, _e, done) => { append(chunk.toString()); done(); } });
  const code = await runCli(argv, {
    stdin: Readable.from(stdin === '' ? [] : [Buffer.from(stdin)]),
    stdout: sink((text) => (stdout += text)),
    stderr: sink((text) => (stderr += text)),
    env,
  });
  return { code, stdout, stderr };
}

const STATUS = { initialised: true, sealed: true, threshold: 2, shares: 3, progress: 1, serverPublicKey: null };

t.test('operator init – signs as enrolling with the new key, saves the id, prints shares once', async (t) => {
  const server = await fakeServer(t, {
    'POST /v1/sys/init': (seen) => {
      const key = importPublicKey(String(seen.json['publicKey']));
      if (!signedBy(seen, key, ENROLLING_IDENTITY)) return { status: 401, body: { error: { code: 'ERR_AUTH_BAD_SIGNATURE', message: 'bad' } } };
      return { status: 200, body: { shares: ['share-one', 'share-two', 'share-three'], identityId: ADMIN_ID, serverPublicKey: 'srv' } };
    },
  });
  const path = join(tempDir(t), 'sub', 'identity.json');
  const result = await run(['operator', 'init', '--shares', '3', '--threshold', '2', '--name', 'alice'], { SIKKER_SERVER: server.url, SIKKER_IDENTITY: path });
  t.equal(result.code, 0, result.stderr);
  t.match(server.seen[0]!.json, { shares: 3, threshold: 2, name: 'alice' });
  t.match(result.stdout, /share 1: share-one\n {2}share 2: share-two\n {2}share 3: share-three/);
  t.match(result.stderr, /WARNING: .*shown only this once/);
  const saved = loadIdentityFile(path);
  t.equal(saved.identityId, ADMIN_ID);
  t.equal(saved.serverPublicKey, 'srv');
  t.equal(exportPublicKey(createPublicKey(saved.privateKey)), server.seen[0]!.json['publicKey']);
});

t.test('operator init – an enrolled identity file is refused without contacting the server', async (t) => {
  const server = await fakeServer(t, {});
  const { path } = enrolledIdentity(t);
  const result = await run(['operator', 'init', '--shares', '3', '--threshold', '2'], { SIKKER_SERVER: server.url, SIKKER_IDENTITY: path });
  t.equal(result.code, 1);
  t.match(result.stderr, /^error ERR_CONFLICT: .*already enrolled/);
  t.equal(server.seen.length, 0);
});

t.test('operator unseal – sends one trimmed share, unsigned', async (t) => {
  const server = await fakeServer(t, { 'POST /v1/sys/unseal': () => ({ status: 200, body: STATUS }) });
  const result = await run(['operator', 'unseal', '--json'], { SIKKER_SERVER: server.url }, '  share-abc\n');
  t.equal(result.code, 0, result.stdout);
  t.same(server.seen[0]!.json, { share: 'share-abc' });
  t.equal(server.seen[0]!.headers[SIGNATURE_HEADERS.signature], undefined);
  t.same(JSON.parse(result.stdout), STATUS);
});

t.test('operator unseal – empty stdin and several shares are refused', async (t) => {
  const server = await fakeServer(t, {});
  t.match((await run(['operator', 'unseal'], { SIKKER_SERVER: server.url }, '\n')).stderr, /ERR_VALIDATION: no unseal share/);
  t.match((await run(['operator', 'unseal'], { SIKKER_SERVER: server.url }, 'a\nb\n')).stderr, /ERR_VALIDATION: stdin must hold exactly ONE/);
  t.equal(server.seen.length, 0);
});

t.test('secret put – strips one newline, signs, never echoes the value', async (t) => {
  const { path, publicKey } = enrolledIdentity(t);
  const server = await fakeServer(t, {
    'PUT /v1/projects/payments/secrets/db.pass': () => ({ status: 200, body: { secretId: SECRET_ID, version: 4, label: 'pending' } }),
  });
  const env = { SIKKER_SERVER: server.url, SIKKER_IDENTITY: path };
  const result = await run(['secret', 'put', 'payments/db.pass', '--pending'], env, 'hunter2\n\n');
  t.equal(result.code, 0, result.stderr);
  t.same(server.seen[0]!.json, { value: 'hunter2\n', label: 'pending' });
  t.ok(signedBy(server.seen[0]!, publicKey, ADMIN_ID));
  t.notMatch(result.stdout + result.stderr, /hunter2/);
  t.match(result.stdout, /version 4 \(pending\)/);
});

t.test('secret put – empty value is refused before sending', async (t) => {
  const { path } = enrolledIdentity(t);
  const server = await fakeServer(t, {});
  const result = await run(['secret', 'put', 'payments/x'], { SIKKER_SERVER: server.url, SIKKER_IDENTITY: path }, '\n');
  t.match(result.stderr, /ERR_VALIDATION: secret value on stdin is empty/);
  t.equal(server.seen.length, 0);
});

t.test('secret get – human mode prints only the value; query carries the version', async (t) => {
  const { path } = enrolledIdentity(t);
  const server = await fakeServer(t, {
    'GET /v1/projects/payments/secrets/db': () => ({ status: 200, body: { project: 'payments', name: 'db', version: 2, label: 'previous', value: 'pw-2' } }),
  });
  const result = await run(['secret', 'get', 'payments/db', '--version', '2'], { SIKKER_SERVER: server.url, SIKKER_IDENTITY: path });
  t.equal(result.stdout, 'pw-2\n');
  t.equal(server.seen[0]!.url, '/v1/projects/payments/secrets/db?version=2');
});

t.test('secret grant – 204 succeeds and sends the identity id', async (t) => {
  const { path } = enrolledIdentity(t);
  const server = await fakeServer(t, { 'POST /v1/projects/p/secrets/s/grants': () => ({ status: 204 }) });
  const result = await run(['--identity', path, 'secret', 'grant', 'p/s', '--identity', NEW_ID, '--json'], { SIKKER_SERVER: server.url });
  t.equal(result.code, 0, result.stdout);
  t.same(server.seen[0]!.json, { identityId: NEW_ID });
  t.match(JSON.parse(result.stdout), { granted: true, identityId: NEW_ID });
});

t.test('server error – mapped code is printed as one JSON document', async (t) => {
  const { path } = enrolledIdentity(t);
  const server = await fakeServer(t, { 'GET /v1/projects': () => ({ status: 503, body: { error: { code: 'ERR_VAULT_SEALED', message: 'vault is sealed' } } }) });
  const result = await run(['project', 'list', '--json'], { SIKKER_SERVER: server.url, SIKKER_IDENTITY: path });
  t.equal(result.code, 1);
  t.same(JSON.parse(result.stdout), { error: { code: 'ERR_VAULT_SEALED', message: 'vault is sealed' } });
});

t.test('identity enroll – redeems the token with a fresh key and saves the id', async (t) => {
  const server = await fakeServer(t, {
    'POST /v1/enroll': (seen) => {
      const ok = signedBy(seen, importPublicKey(String(seen.json['publicKey'])), ENROLLING_IDENTITY);
      return ok ? { status: 200, body: { identityId: NEW_ID, project: 'payments', role: 'agent', serverPublicKey: 'srv' } } : { status: 401 };
    },
  });
  const path = join(tempDir(t), 'identity.json');
  const result = await run(['identity', 'enroll', '--token', '-', '--name', 'db-host'], { SIKKER_SERVER: server.url, SIKKER_IDENTITY: path }, 'tok_abcdefghijklmnopqrstuvwxyz\n');
  t.equal(result.code, 0, result.stderr);
  t.match(server.seen[0]!.json, { token: 'tok_abcdefghijklmnopqrstuvwxyz', name: 'db-host' });
  t.equal(loadIdentityFile(path).identityId, NEW_ID);
});

t.test('identity rekey – old key signs, new key proves over the header nonce, file replaced after acceptance', async (t) => {
  const { path, publicKey: oldKey } = enrolledIdentity(t);
  const server = await fakeServer(t, {
    'POST /v1/identities/self/rekey': (seen) => {
      const nonce = String(seen.headers[SIGNATURE_HEADERS.nonce]);
      const newPublicKey = String(seen.json['publicKey']);
      const proofOk = verify(null, rekeyProofText(ADMIN_ID, newPublicKey, nonce), importPublicKey(newPublicKey), Buffer.from(String(seen.json['proof']), 'base64'));
      return signedBy(seen, oldKey, ADMIN_ID) && proofOk ? { status: 204 } : { status: 401, body: { error: { code: 'ERR_AUTH_BAD_SIGNATURE', message: 'bad' } } };
    },
  });
  const result = await run(['identity', 'rekey'], { SIKKER_SERVER: server.url, SIKKER_IDENTITY: path });
  t.equal(result.code, 0, result.stderr);
  const saved = loadIdentityFile(path);
  t.equal(exportPublicKey(createPublicKey(saved.privateKey)), server.seen[0]!.json['publicKey']);
  t.equal(saved.identityId, ADMIN_ID);
  t.notOk(existsSync(`${path}.rekey-pending`));
});

t.test('identity rekey – a refusal leaves the identity file untouched', async (t) => {
  const { path, publicKey: oldKey } = enrolledIdentity(t);
  const server = await fakeServer(t, { 'POST /v1/identities/self/rekey': () => ({ status: 403, body: { error: { code: 'ERR_AUTH_FORBIDDEN', message: 'no' } } }) });
  const result = await run(['identity', 'rekey'], { SIKKER_SERVER: server.url, SIKKER_IDENTITY: path });
  t.equal(result.code, 1);
  t.match(result.stderr, /^error ERR_AUTH_FORBIDDEN: no/);
  t.equal(exportPublicKey(createPublicKey(loadIdentityFile(path).privateKey)), exportPublicKey(oldKey));
  t.notOk(existsSync(`${path}.rekey-pending`));
});

t.test('audit list – filters go in the query; one aligned line per record', async (t) => {
  const { path } = enrolledIdentity(t);
  const record = (seq: number, ip: string) => ({
    seq, occurredAt: '2024-05-01T10:00:00Z', identityId: ADMIN_ID, sourceIp: ip, action: 'secret.read',
    projectId: null, secretId: null, secretVersion: 3, outcome: 'ok', detail: {}, projectName: 'payments', secretName: 'db',
  });
  const server = await fakeServer(t, { 'GET /v1/audit': () => ({ status: 200, body: { records: [record(9, '10.0.0.1'), record(10, '192.168.100.200')] } }) });
  const argv = ['--identity', path, 'audit', 'list', '--project', 'payments', '--version', '3', '--identity', ADMIN_ID];
  const result = await run(argv, { SIKKER_SERVER: server.url });
  t.equal(result.code, 0, result.stderr);
  t.equal(server.seen[0]!.url, `/v1/audit?identity=${ADMIN_ID}&project=payments&version=3&limit=100`);
  const lines = result.stdout.trimEnd().split('\n');
  t.equal(lines.length, 3);
  t.match(lines[1], /^2024-05-01T10:00:00Z +9 +\S+ +10\.0\.0\.1 +secret\.read +payments\/db@3 +ok$/);
  t.equal(lines[1]!.indexOf('secret.read'), lines[2]!.indexOf('secret.read'));
});

t.test('audit verify – a broken chain exits 1 naming the first bad record', async (t) => {
  const { path } = enrolledIdentity(t);
  const verdict = { ok: false, checked: 40, checkpoints: 2, firstBadSeq: 17, problem: 'hash mismatch', latestCheckpoint: null };
  const server = await fakeServer(t, { 'POST /v1/audit/verify': () => ({ status: 200, body: verdict }) });
  const result = await run(['audit', 'verify'], { SIKKER_SERVER: server.url, SIKKER_IDENTITY: path });
  t.equal(result.code, 1);
  t.match(result.stdout, /BROKEN: hash mismatch/);
  t.match(result.stdout, /seq 17/);
});

t.test('usage errors exit 2, so scripts tell them from a failed request (1) or a finding (scan: 1)', async (t) => {
  const unknown = await run(['scan', '--bogus'], {});
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, /^error ERR_VALIDATION: unknown option '--bogus'/);
  const missing = await run(['policy', 'show'], {});
  t.equal(missing.code, 2, 'a missing argument');
});
