import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { sealTo } from '../../shared/crypto/sealed-box.js';
import { MAX_MESSAGE_BYTES, type AgentToHub } from '../../shared/protocol/agent-messages.js';
import { FileCommandJournal } from '../../agent/journal/file-command-journal.js';
import { MemoryCommandJournal } from '../../agent/journal/memory-command-journal.js';
import type { SinkConfig } from '../../agent/sinks/sink-config.js';
import { commandFrame, envelope, FakeHub, makeKeys, startClient, type HubSide } from './agent-test-hub.js';

const isResult = (id: string) => (m: AgentToHub): boolean => m.type === 'result' && m.commandId === id;
const isRejected = (id: string) => (m: AgentToHub): boolean => m.type === 'rejected' && m.commandId === id;
const isAccepted = (id: string) => (m: AgentToHub): boolean => m.type === 'accepted' && m.commandId === id;

async function connected(t: Test, extra: Parameters<typeof startClient>[3] = {}) {
  const keys = makeKeys();
  const hub = await FakeHub.start(t, {}, keys.agentPublicKey);
  const started = startClient(t, hub, keys, extra);
  const side = await hub.nextConnection(0);
  await side.next((m) => m.type === 'hello');
  return { keys, hub, side, ...started };
}

function count(side: HubSide, type: AgentToHub['type'], commandId: string): number {
  return side.received.filter((m) => m.type === type && 'commandId' in m && m.commandId === commandId).length;
}

t.test('hub client – the upgrade is signed and hello comes first', async (t) => {
  const { hub, side, keys } = await connected(t);
  t.same(hub.upgradeSignatureValid, [true]);
  t.equal(side.request.headers['x-sikker-identity'], keys.identity.identityId);
  const hello = side.received[0];
  t.match(hello, { type: 'hello', protocol: 1, highestGeneration: 0, results: [], inProgress: [] });
});

t.test('hub client – signed probe is accepted, then answered', async (t) => {
  const { side, keys } = await connected(t);
  const e = envelope(keys.identity.identityId);
  side.send(commandFrame(keys.serverPrivateKey, e));
  const result = await side.next(isResult(e.commandId));
  t.match(result, { outcome: 'succeeded', error: null, result: { agentVersion: String, hostname: String, uptimeSeconds: Number } });
  const types = side.received.filter((m) => 'commandId' in m && m.commandId === e.commandId).map((m) => m.type);
  t.same(types, ['accepted', 'result'], 'accepted is sent before the result');
});

t.test('hub client – a bad signature is rejected and nothing runs', async (t) => {
  const { side, keys, client } = await connected(t);
  const e = envelope(keys.identity.identityId);
  const frame = commandFrame(keys.serverPrivateKey, e);
  side.send({ ...frame, envelope: { ...e, generation: e.generation + 1 } });
  t.match(await side.next(isRejected(e.commandId)), { code: 'ERR_COMMAND_SIGNATURE' });
  t.equal(count(side, 'accepted', e.commandId), 0);
  t.equal(client.inFlight, 0);
});

t.test('hub client – a command for another agent is rejected', async (t) => {
  const { side, keys } = await connected(t);
  const e = envelope('00000000-0000-4000-8000-000000000001');
  side.send(commandFrame(keys.serverPrivateKey, e));
  t.match(await side.next(isRejected(e.commandId)), { code: 'ERR_COMMAND_WRONG_AGENT' });
  t.equal(count(side, 'accepted', e.commandId), 0);
});

t.test('hub client – an expired command is rejected', async (t) => {
  const { side, keys } = await connected(t);
  // Well past: the agent's estimate of the control plane's clock (from the welcome) lags by the welcome's
  // transit time, so a command expired by a millisecond may still count as valid on a loaded machine.
  const e = envelope(keys.identity.identityId, { expiresAt: Date.now() - 30_000 });
  side.send(commandFrame(keys.serverPrivateKey, e));
  t.match(await side.next(isRejected(e.commandId)), { code: 'ERR_COMMAND_EXPIRED' });
  t.equal(count(side, 'accepted', e.commandId), 0);
});

t.test('hub client – expiry is judged on the control plane\'s clock, not the host\'s', async (t) => {
  const keys = makeKeys();
  // The control plane's clock is 10 minutes behind this host's.
  const hub = await FakeHub.start(t, { welcome: { heartbeatMs: 15_000, serverTimeOffsetMs: -600_000 } }, keys.agentPublicKey);
  startClient(t, hub, keys);
  const side = await hub.nextConnection(0);
  await side.next((m) => m.type === 'hello');
  const serverNow = Date.now() - 600_000;
  const valid = envelope(keys.identity.identityId, { issuedAt: serverNow, expiresAt: serverNow + 60_000 });
  side.send(commandFrame(keys.serverPrivateKey, valid));
  await side.next(isAccepted(valid.commandId));
  t.pass('a command valid by the control plane\'s clock is accepted although the host clock says it expired');
  const expired = envelope(keys.identity.identityId, { issuedAt: serverNow - 120_000, expiresAt: serverNow - 30_000 });
  side.send(commandFrame(keys.serverPrivateKey, expired));
  t.match(await side.next(isRejected(expired.commandId)), { code: 'ERR_COMMAND_EXPIRED' });
});

t.test('hub client – a generation not above the highest is rejected as stale', async (t) => {
  const { side, keys, journal } = await connected(t);
  const first = envelope(keys.identity.identityId);
  side.send(commandFrame(keys.serverPrivateKey, first));
  await side.next(isResult(first.commandId));
  const replay = envelope(keys.identity.identityId, { generation: first.generation });
  side.send(commandFrame(keys.serverPrivateKey, replay));
  t.match(await side.next(isRejected(replay.commandId)), { code: 'ERR_COMMAND_STALE' });
  t.equal(count(side, 'accepted', replay.commandId), 0);
  t.equal(journal.highestGeneration, first.generation);
});

t.test('hub client – the same command twice runs once; the result is sent again', async (t) => {
  const { side, keys, client } = await connected(t);
  let finished = 0;
  client.on('command-finished', () => {
    finished += 1;
  });
  const e = envelope(keys.identity.identityId);
  side.send(commandFrame(keys.serverPrivateKey, e));
  const first = await side.next(isResult(e.commandId));
  side.send(commandFrame(keys.serverPrivateKey, e));
  await new Promise<void>((resolve) => {
    const poll = setInterval(() => {
      if (count(side, 'result', e.commandId) === 2) {
        clearInterval(poll);
        resolve();
      }
    }, 5);
  });
  const results = side.received.filter(isResult(e.commandId));
  t.same(results[1], first, 'the journaled result is re-sent unchanged');
  t.equal(finished, 1, 'executed once');
  t.equal(count(side, 'accepted', e.commandId), 1);
});

t.test('hub client – results stay in hello until acknowledged', async (t) => {
  const { side, keys, hub, journal } = await connected(t);
  const e = envelope(keys.identity.identityId);
  side.send(commandFrame(keys.serverPrivateKey, e));
  await side.next(isResult(e.commandId));
  side.socket.terminate();
  const second = await hub.nextConnection(1);
  const hello = await second.next((m) => m.type === 'hello');
  t.match(hello, { highestGeneration: e.generation, results: [{ commandId: e.commandId, outcome: 'succeeded' }] });
  second.send({ type: 'result-ack', commandId: e.commandId });
  await new Promise((r) => setTimeout(r, 50));
  t.same(journal.unacknowledgedResults(10), []);
});

t.test('hub client – an invalid frame closes the socket with 1008', async (t) => {
  const { side } = await connected(t);
  const closed = new Promise<number>((resolve) => side.socket.once('close', (code) => resolve(code)));
  side.send({ type: 'command', envelope: { nonsense: true }, signature: 'AAAA' });
  t.equal(await closed, 1008);
});

t.test('hub client – secret.deliver writes the sink 0600 and never logs the value', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sikker-agent-sink-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const sink: SinkConfig = { name: 'db', path: join(dir, 'db-password'), format: 'raw', envName: 'SECRET', mode: 0o600, reloadCommand: null, reloadTimeoutMs: 1000 };
  const keys = makeKeys();
  const hub = await FakeHub.start(t, {}, keys.agentPublicKey);
  const journal = FileCommandJournal.open(join(dir, 'journal.json'));
  const { lines } = startClient(t, hub, keys, { sinks: [sink], journal });
  const side = await hub.nextConnection(0);
  await side.next((m) => m.type === 'hello');
  const canary = 'canary-Zq8!x$value';
  const commandId = '7b0c2f5e-5d7f-4c9a-8f1e-2a3b4c5d6e7f';
  const payload = { sink: 'db', project: 'shop', secret: 'db-password', version: 3 };
  const sealed = sealTo(keys.boxPublicKey, Buffer.from(canary), { commandId, agentId: keys.identity.identityId }).toString('base64');
  const e = envelope(keys.identity.identityId, { commandId, kind: 'secret.deliver', payload, sealed });
  side.send(commandFrame(keys.serverPrivateKey, e));
  const result = await side.next(isResult(commandId));
  t.match(result, { outcome: 'succeeded', result: { sink: 'db', path: sink.path, bytes: canary.length, version: 3 } });
  t.equal(readFileSync(sink.path, 'utf8'), canary);
  t.equal(statSync(sink.path).mode & 0o777, 0o600);
  t.ok(lines.some((l) => l.includes('secret delivered')), 'the delivery is logged');
  t.notOk(lines.some((l) => l.includes(canary)), 'no log line holds the value');
  t.notOk(JSON.stringify(side.received).includes(canary), 'no message holds the value');
  t.notOk(readFileSync(journal.path, 'utf8').includes(canary), 'the journal does not hold the value');
});

t.test('hub client – delivery to an unknown sink fails with ERR_SINK_WRITE', async (t) => {
  const { side, keys } = await connected(t);
  const commandId = '1a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d';
  const sealed = sealTo(keys.boxPublicKey, Buffer.from('x'), { commandId, agentId: keys.identity.identityId }).toString('base64');
  const e = envelope(keys.identity.identityId, { commandId, kind: 'secret.deliver', payload: { sink: 'nope', project: 'p', secret: 's', version: 1 }, sealed });
  side.send(commandFrame(keys.serverPrivateKey, e));
  t.match(await side.next(isResult(commandId)), { outcome: 'failed', error: { code: 'ERR_SINK_WRITE', message: 'no sink named nope' } });
});

t.test('hub client – stopping finishes in-flight commands and leaves new ones unanswered', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sikker-agent-stop-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const sink: SinkConfig = { name: 'slow', path: join(dir, 'out'), format: 'raw', envName: 'SECRET', mode: 0o600, reloadCommand: ['sleep', '0.3'], reloadTimeoutMs: 5000 };
  const { side, keys, client } = await connected(t, { sinks: [sink] });
  const commandId = '2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e';
  const sealed = sealTo(keys.boxPublicKey, Buffer.from('v'), { commandId, agentId: keys.identity.identityId }).toString('base64');
  side.send(commandFrame(keys.serverPrivateKey, envelope(keys.identity.identityId, { commandId, kind: 'secret.deliver', payload: { sink: 'slow', project: 'p', secret: 's', version: 1 }, sealed })));
  await side.next(isAccepted(commandId));
  const closed = new Promise<number>((resolve) => side.socket.once('close', (code) => resolve(code)));
  const stopped = client.stop(5000);
  t.equal(client.state, 'STOPPING');
  const late = envelope(keys.identity.identityId);
  side.send(commandFrame(keys.serverPrivateKey, late));
  t.same(await stopped, { drained: true });
  t.equal(await closed, 1001);
  t.equal(client.state, 'STOPPED');
  t.match(side.received.find(isResult(commandId)), { outcome: 'succeeded' }, 'the in-flight command finished and reported');
  t.notOk(side.received.some((m) => 'commandId' in m && m.commandId === late.commandId), 'the late command got no answer at all');
});

t.test('hub client – a refused upgrade is a failed attempt with the server code', async (t) => {
  const keys = makeKeys();
  const hub = await FakeHub.start(t, { refuse: { status: 401, code: 'ERR_AUTH_BAD_SIGNATURE' } });
  const { client } = startClient(t, hub, keys);
  const failed = await new Promise<{ code: string; status: unknown }>((resolve) => client.once('connect-failed', ({ error }) => resolve({ code: error.code, status: error.details?.status })));
  t.same(failed, { code: 'ERR_AUTH_BAD_SIGNATURE', status: 401 });
  hub.options.refuse = undefined;
  await new Promise((resolve) => client.once('connected', resolve));
  t.pass('connects once the hub accepts');
});

t.test('hub client – a result is sent before it is journaled; when journaling fails (a crash there), the command runs again after a restart and reports again', async (t) => {
  const keys = makeKeys();
  // A journal that loses the final record, as a crash right after the send would.
  class LosingJournal extends MemoryCommandJournal {
    override recordFinal(): void {
      throw new Error('disk gone');
    }
  }
  const journal = new LosingJournal();
  const hub = await FakeHub.start(t, {}, keys.agentPublicKey);
  const first = startClient(t, hub, keys, { journal });
  const side = await hub.nextConnection(0);
  await side.next((m) => m.type === 'hello');
  const e = envelope(keys.identity.identityId);
  side.send(commandFrame(keys.serverPrivateKey, e));
  t.match(await side.next(isResult(e.commandId)), { outcome: 'succeeded' }, 'the result was sent although it could not be journaled');
  t.same(journal.inProgress().map((x) => x.commandId), [e.commandId], 'the journal still has the command in progress');
  await first.client.stop(100);
  // "Restart": a new client on the same journal runs it again at start and reports it.
  const restarted = new MemoryCommandJournal();
  for (const entry of journal.inProgress()) restarted.recordAccepted(entry.envelope!, entry.signature!);
  startClient(t, hub, keys, { journal: restarted });
  const again = await hub.nextConnection(1);
  await again.next((m) => (m.type === 'hello' && m.results.some((r) => r.commandId === e.commandId)) || isResult(e.commandId)(m));
  t.equal(restarted.get(e.commandId)?.status, 'final', 'run again and journaled this time');
});

t.test('hub client – a hello never exceeds one frame; left-over results follow it', async (t) => {
  const keys = makeKeys();
  const journal = new MemoryCommandJournal();
  const ids: string[] = [];
  for (let i = 0; i < 300; i += 1) {
    const e = envelope(keys.identity.identityId);
    journal.recordAccepted(e, 'sig');
    journal.recordFinal({ commandId: e.commandId, outcome: 'succeeded', result: { note: 'é'.repeat(500) }, error: null });
    ids.push(e.commandId);
  }
  const hub = await FakeHub.start(t);
  startClient(t, hub, keys, { journal });
  const side = await hub.nextConnection(0);
  const last = ids[ids.length - 1] ?? '';
  await side.next((m) => (m.type === 'result' && m.commandId === last) || (m.type === 'hello' && m.results.some((r) => r.commandId === last)));
  const hello = side.received[0];
  t.equal(hello?.type, 'hello');
  t.ok(Buffer.byteLength(JSON.stringify(hello)) <= MAX_MESSAGE_BYTES, 'the hello fits in one frame');
  const reported = side.received.flatMap((m) => (m.type === 'hello' ? m.results.map((r) => r.commandId) : m.type === 'result' ? [m.commandId] : []));
  t.same(reported, ids, 'every unacknowledged result is reported once, oldest first');
});
