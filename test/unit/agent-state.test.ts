import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { exportPublicKey, importPublicKey } from '../../shared/signing/ed25519-keys.js';
import { writeIdentityFile } from '../../shared/signing/identity-file.js';
import { SIGNATURE_HEADERS, verifySignature } from '../../shared/signing/request-signature.js';
import { loadAgentIdentity } from '../../agent/state/agent-identity.js';
import { FakeHub, makeKeys } from './agent-test-hub.js';

const MAIN = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'agent', 'sikker-agent.cjs');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runAgent(args: string[], options: { stdin?: string; onStart?: (pid: number) => void } = {}): Promise<Run> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ code, stdout, stderr }));
    child.stdin.end(options.stdin ?? '');
    if (child.pid !== undefined) options.onStart?.(child.pid);
  });
}

/** A 0700 state dir with an enrolled identity, and a config file pointing at `server`. */
function enrolledState(t: Test, server = 'http://127.0.0.1:9'): { root: string; stateDir: string; identity: string; config: string; keys: ReturnType<typeof makeKeys> } {
  const root = mkdtempSync(join(tmpdir(), 'sikker-agent-state-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const stateDir = join(root, 'state');
  mkdirSync(stateDir, { mode: 0o700 });
  chmodSync(stateDir, 0o700);
  const keys = makeKeys();
  const identity = join(stateDir, 'identity.json');
  writeIdentityFile(identity, {
    privateKey: keys.identity.privateKey,
    identityId: keys.identity.identityId,
    serverPublicKey: exportPublicKey(keys.identity.serverPublicKey),
    boxPrivateKey: keys.identity.boxPrivateKey,
  });
  const config = join(root, 'agent.json');
  writeFileSync(config, JSON.stringify({ server, stateDir, logLevel: 'info', shutdownGraceSeconds: 2 }));
  return { root, stateDir, identity, config, keys };
}

t.test('agent run – identity.json with mode 0644 stops the agent, naming the file and the fix', async (t) => {
  const s = enrolledState(t);
  chmodSync(s.identity, 0o644);
  const run = await runAgent(['run', '--config', s.config]);
  t.equal(run.code, 1);
  t.match(run.stderr, s.identity);
  t.match(run.stderr, `chmod 600 ${s.identity}`);
});

t.test('agent run – a state directory with mode 0755 is refused', async (t) => {
  const s = enrolledState(t);
  chmodSync(s.stateDir, 0o755);
  const run = await runAgent(['run', '--config', s.config]);
  t.equal(run.code, 1);
  t.match(run.stderr, `state directory ${s.stateDir} has mode 755`);
  t.match(run.stderr, `chmod 700 ${s.stateDir}`);
});

t.test('agent run – a bad config exits 2 naming the field', async (t) => {
  const s = enrolledState(t);
  writeFileSync(s.config, JSON.stringify({ server: 'http://127.0.0.1:9', stateDir: s.stateDir, heartbeatSeconds: 1 }));
  const run = await runAgent(['run', '--config', s.config]);
  t.equal(run.code, 2);
  t.match(run.stderr, 'heartbeatSeconds');
});

t.test('agent run – connects, then SIGTERM closes with 1001 and exits 0', async (t) => {
  const keysHolder = enrolledState(t);
  const hub = await FakeHub.start(t);
  writeFileSync(keysHolder.config, JSON.stringify({ server: hub.url, stateDir: keysHolder.stateDir }));
  let pid = 0;
  const exited = runAgent(['run', '--config', keysHolder.config], { onStart: (p) => (pid = p) });
  const side = await hub.nextConnection(0);
  await side.next((m) => m.type === 'hello', 10_000);
  const closed = new Promise<number>((r) => side.socket.once('close', (code) => r(code)));
  process.kill(pid, 'SIGTERM');
  const run = await exited;
  t.equal(run.code, 0);
  t.equal(await closed, 1001);
  t.match(run.stdout, 'agent stopped');
});

/** Plays POST /v1/enroll: checks the enrolling signature and answers like the control plane. */
async function enrollServer(t: Test, serverPublicKey: string): Promise<{ url: string; bodies: Record<string, unknown>[] }> {
  const bodies: Record<string, unknown>[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const body = JSON.parse(raw.toString()) as { publicKey: string };
      bodies.push(body);
      const h = (n: string): string => String(req.headers[n] ?? '');
      const ok = req.method === 'POST' && req.url === '/v1/enroll' && h(SIGNATURE_HEADERS.identity) === 'enrolling' &&
        verifySignature(importPublicKey(body.publicKey), { method: 'POST', pathWithQuery: '/v1/enroll', body: raw, timestampMs: Number(h(SIGNATURE_HEADERS.timestamp)), nonce: h(SIGNATURE_HEADERS.nonce), identityId: 'enrolling' }, h(SIGNATURE_HEADERS.signature));
      res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' });
      res.end(JSON.stringify(ok ? { identityId: randomUUID(), project: 'shop', role: 'agent', serverPublicKey } : { error: { code: 'ERR_AUTH_BAD_SIGNATURE', message: 'bad' } }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, bodies };
}

t.test('agent enroll – keys made here, identity saved 0600 in a new 0700 dir, second enroll refused', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'sikker-agent-enroll-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const serverKey = exportPublicKey(makeKeys().identity.serverPublicKey);
  const server = await enrollServer(t, serverKey);
  const stateDir = join(root, 'state');
  const token = 'join-token-0123456789abcdef';
  const run = await runAgent(['enroll', '--server', server.url, '--token', '-', '--state-dir', stateDir, '--name', 'web-1'], { stdin: `${token}\n` });
  t.equal(run.code, 0, run.stderr);
  t.match(server.bodies[0], { token, name: 'web-1', publicKey: /^[A-Za-z0-9_-]{43}$/, boxPublicKey: /^[A-Za-z0-9_-]{43}$/ });
  t.equal(statSync(stateDir).mode & 0o777, 0o700);
  t.equal(statSync(join(stateDir, 'identity.json')).mode & 0o777, 0o600);
  const identity = loadAgentIdentity(stateDir);
  t.match(run.stdout, identity.identityId);
  t.match(run.stdout, '"stateDir"');
  t.equal(exportPublicKey(identity.serverPublicKey), serverKey, 'the server key is pinned');
  const again = await runAgent(['enroll', '--server', server.url, '--token', token, '--state-dir', stateDir]);
  t.equal(again.code, 1);
  t.match(again.stderr, 'already exists');
  t.equal(server.bodies.length, 1, 'no second request');
});

t.test('agent enroll – a token on stdin larger than 4096 bytes is refused before anything is created or sent', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'sikker-agent-enroll-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const server = await enrollServer(t, exportPublicKey(makeKeys().identity.serverPublicKey));
  const stateDir = join(root, 'state');
  const canary = 'canary-token-7f3a';
  const run = await runAgent(['enroll', '--server', server.url, '--token', '-', '--state-dir', stateDir], { stdin: canary + 'x'.repeat(5000) });
  t.equal(run.code, 1);
  t.match(run.stderr, 'join token on stdin is larger than 4096 bytes');
  t.notOk(run.stderr.includes(canary), 'the token is not echoed in the error');
  t.equal(server.bodies.length, 0, 'nothing sent');
  t.notOk(existsSync(stateDir), 'no state directory made');
});

t.test('agent enroll – an existing state directory with group bits is refused', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'sikker-agent-enroll-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const stateDir = join(root, 'state');
  mkdirSync(stateDir);
  chmodSync(stateDir, 0o750);
  const run = await runAgent(['enroll', '--server', 'http://127.0.0.1:9', '--token', 'join-token-0123456789abcdef', '--state-dir', stateDir]);
  t.equal(run.code, 1);
  t.match(run.stderr, 'chmod 700');
});
