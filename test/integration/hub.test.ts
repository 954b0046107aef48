import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PoolClient } from 'pg';
import t from 'tap';
import { WebSocket } from 'ws';
import { exportBoxPublicKey, generateBoxKeyPair, openSealed } from '../../shared/crypto/sealed-box.js';
import { signRequest } from '../../shared/signing/request-signature.js';
import { AGENT_CONNECT_PATH } from '../../shared/protocol/agent-messages.js';
import type { CommandRow } from '../../control-plane/hub/command-dal.js';
import { startHarness, type Harness } from '../support/control-plane-harness.js';
import { enrollAgent, eventually, once, startAgent } from '../support/agents.js';

const CANARY = 'canary-hub-delivery-3e7d';

async function withProject(t: { teardown(fn: () => unknown): void }, label: string, env: Record<string, string> = {}): Promise<Harness> {
  const h = await startHarness(t, { label, env });
  await h.admin.ok('POST', '/v1/projects', { name: 'p' });
  return h;
}

/** Opens a raw WebSocket with a signed upgrade; resolves with the socket or the HTTP status that refused it. */
function rawConnect(h: Harness, identityId: string, key: Parameters<typeof signRequest>[0], mutate?: (headers: Record<string, string>) => void): Promise<{ ws?: WebSocket; status?: number }> {
  const headers = signRequest(key, { method: 'GET', pathWithQuery: AGENT_CONNECT_PATH, body: Buffer.alloc(0), identityId });
  mutate?.(headers);
  const ws = new WebSocket(h.baseUrl.replace('http', 'ws') + AGENT_CONNECT_PATH, { headers, perMessageDeflate: false, maxPayload: 1 << 20 });
  return new Promise((resolve) => {
    ws.on('open', () => resolve({ ws }));
    ws.on('unexpected-response', (_req, res) => resolve({ status: res.statusCode ?? 0 }));
    ws.on('error', () => resolve({ status: -1 }));
  });
}

t.test('hub – an enrolled agent is online, answers a probe, and shows in the list', async (t) => {
  const h = await withProject(t, 'hub-online');
  const identity = await enrollAgent(h.admin, 'p', 'web-1');
  const agent = startAgent(h.baseUrl, identity);
  t.teardown(() => agent.stop(1000));
  await once(agent, 'connected');
  const list = await eventually(async () => {
    const r = await h.admin.ok('GET', '/v1/agents?project=p');
    return r.agents[0]?.agentVersion !== null && r.agents[0]?.online ? r : undefined;
  }, 10_000, 'agent online with a version');
  t.match(list.agents[0], { name: 'web-1', online: true, replica: h.config.replicaId, address: '127.0.0.1' });
  const issued = await h.admin.ok('POST', `/v1/agents/${identity.identityId}/commands`, { kind: 'agent.probe' });
  const done = await eventually(async () => {
    const c = await h.admin.ok('GET', `/v1/agents/${identity.identityId}/commands/${issued.commandId}`);
    return c.state === 'succeeded' ? c : undefined;
  }, 10_000, 'probe answered');
  t.equal(done.deliveries, 1);
  t.ok(typeof done.result.agentVersion === 'string');
});

t.test('hub – a command queued while the agent is away is delivered once when it connects', async (t) => {
  const h = await withProject(t, 'hub-queued');
  const dir = mkdtempSync(join(tmpdir(), 'sikker-sink-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const identity = await enrollAgent(h.admin, 'p');
  await h.admin.ok('PUT', '/v1/projects/p/secrets/db', { value: CANARY });
  const issued = await h.admin.ok('POST', `/v1/agents/${identity.identityId}/commands`, { kind: 'secret.deliver', secret: 'db', sink: 'app' });
  t.equal(issued.state, 'pending');
  const stored = (await h.plane.pool.query<{ sealed: Buffer }>('SELECT sealed FROM agent_commands WHERE command_id = $1', [issued.commandId])).rows[0]!;
  t.notOk(stored.sealed.includes(Buffer.from(CANARY)), 'the stored command holds only a sealed box');
  const path = join(dir, 'db-password');
  const agent = startAgent(h.baseUrl, identity, { sinks: [{ name: 'app', path, format: 'raw', envName: 'SECRET', mode: 0o600, reloadCommand: null, reloadTimeoutMs: 5000 }] });
  t.teardown(() => agent.stop(1000));
  const finished = await eventually(async () => {
    const c = await h.admin.ok('GET', `/v1/agents/${identity.identityId}/commands/${issued.commandId}`);
    return c.state === 'succeeded' || c.state === 'failed' ? c : undefined;
  }, 10_000, 'delivery finished');
  t.equal(finished.state, 'succeeded', JSON.stringify(finished.error));
  t.equal(readFileSync(path, 'utf8'), CANARY, 'the sink file holds the value');
  t.equal(statSync(path).mode & 0o777, 0o600);
  t.equal(finished.deliveries, 1, 'sent once');
  const audit = await h.admin.ok('GET', '/v1/audit?action=secret.deliver');
  t.equal(audit.records.length, 1, 'the delivery is audited with its version');
  t.equal(audit.records[0].secretVersion, 1);
  t.notOk(h.logs.text().includes(CANARY), 'the value is in no log line');
});

t.test('hub – a hello the hub fails to record closes the socket; the agent connects again and gets its commands', async (t) => {
  const h = await withProject(t, 'hub-hello-fails');
  const identity = await enrollAgent(h.admin, 'p');
  const issued = await h.admin.ok('POST', `/v1/agents/${identity.identityId}/commands`, { kind: 'agent.probe' });
  // the first hello's UPDATE of the agent's row fails (a sequence counts the tries, surviving the rollback)
  await h.plane.pool.query(`CREATE SEQUENCE hello_fails_seq;
    CREATE FUNCTION hello_fails() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF nextval('hello_fails_seq') = 1 THEN RAISE EXCEPTION 'test: the first hello is not recorded'; END IF; RETURN NEW; END $$;
    CREATE TRIGGER hello_fails BEFORE UPDATE OF agent_version ON agents FOR EACH ROW EXECUTE FUNCTION hello_fails();`);
  const agent = startAgent(h.baseUrl, identity);
  t.teardown(() => agent.stop(1000));
  const finished = await eventually(async () => {
    const c = await h.admin.ok('GET', `/v1/agents/${identity.identityId}/commands/${issued.commandId}`);
    return c.state === 'succeeded' ? c : undefined;
  }, 20_000, 'the probe answered after the agent reconnected');
  t.equal(finished.state, 'succeeded');
  const tries = Number((await h.plane.pool.query<{ n: string }>('SELECT last_value AS n FROM hello_fails_seq')).rows[0]!.n);
  t.ok(tries >= 2, `the agent said hello again (${tries} hellos)`);
});

t.test('hub – an agent\'s result is stored only with its audit record; one that failed is stored and audited once when the agent sends it again', async (t) => {
  const h = await withProject(t, 'hub-result-audit');
  const identity = await enrollAgent(h.admin, 'p');
  // the first audit record of a command result fails to insert
  await h.plane.pool.query(`CREATE SEQUENCE result_audit_fails_seq;
    CREATE FUNCTION result_audit_fails() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF nextval('result_audit_fails_seq') = 1 THEN RAISE EXCEPTION 'test: the result''s audit record is not written'; END IF; RETURN NEW; END $$;
    CREATE TRIGGER result_audit_fails BEFORE INSERT ON audit_records FOR EACH ROW WHEN (NEW.action = 'agent.command.result') EXECUTE FUNCTION result_audit_fails();`);
  const agent = startAgent(h.baseUrl, identity);
  t.teardown(() => agent.stop(1000));
  await once(agent, 'connected');
  const issued = await h.admin.ok('POST', `/v1/agents/${identity.identityId}/commands`, { kind: 'agent.probe' });
  const triedOnce = async () => Number((await h.plane.pool.query<{ n: string }>('SELECT last_value AS n FROM result_audit_fails_seq')).rows[0]!.n) >= 1 || undefined;
  await eventually(triedOnce, 10_000, 'the result arrived and its audit record failed');
  const state = async () => (await h.admin.ok('GET', `/v1/agents/${identity.identityId}/commands/${issued.commandId}`)).state as string;
  t.not(await state(), 'succeeded', 'the result is not stored without its audit record');
  // the agent says hello again on a new socket, with the result it was never acknowledged for
  h.plane.hub.dropIfHere(identity.identityId);
  await eventually(async () => ((await state()) === 'succeeded' ? true : undefined), 15_000, 'the result stored after the agent reconnected');
  const records = (await h.plane.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_records WHERE action = 'agent.command.result' AND detail->>'commandId' = $1`, [issued.commandId])).rows[0]!.n;
  t.equal(records, 1, 'audited exactly once');
});

t.test('hub – a bad signature, an unknown key or a non-agent gets 401/403 before 101', async (t) => {
  const h = await withProject(t, 'hub-401');
  const identity = await enrollAgent(h.admin, 'p');
  const bad = await rawConnect(h, identity.identityId, identity.privateKey, (headers) => { headers['x-sikker-nonce'] = 'ZZZZZZZZZZZZZZZZZZZZZZZZ'; });
  t.equal(bad.status, 401, 'altered nonce');
  const { generateIdentityKeyPair } = await import('../../shared/signing/ed25519-keys.js');
  const stranger = await rawConnect(h, identity.identityId, generateIdentityKeyPair().privateKey);
  t.equal(stranger.status, 401, 'another key');
  const admin = await rawConnect(h, h.admin.identityId, h.admin.privateKey);
  t.equal(admin.status, 403, 'an identity that is not an agent');
  const good = await rawConnect(h, identity.identityId, identity.privateKey);
  t.ok(good.ws, 'the real key upgrades');
  good.ws?.terminate();
});

t.test('hub – disabling an agent closes its socket within seconds and keeps it out', async (t) => {
  const h = await withProject(t, 'hub-disable');
  const identity = await enrollAgent(h.admin, 'p');
  const agent = startAgent(h.baseUrl, identity);
  t.teardown(() => agent.stop(500));
  await once(agent, 'connected');
  const started = Date.now();
  const dropped = once(agent, 'disconnected', 5000);
  await h.admin.ok('POST', `/v1/identities/${identity.identityId}/disable`);
  await dropped;
  t.ok(Date.now() - started < 5000, `dropped after ${Date.now() - started} ms`);
  const failure = await once<{ error: { code: string } }>(agent, 'connect-failed', 5000);
  t.match(failure.error.code, /ERR_AUTH_IDENTITY_DISABLED|ERR_SERVER_UNREACHABLE|ERR_AUTH/, 'reconnects are refused');
  t.notOk(h.plane.hub.isConnected(identity.identityId));
});

t.test('hub – a 16 MiB frame and 100,000 tiny fragments close the socket; memory stays bounded', async (t) => {
  const h = await withProject(t, 'hub-frames');
  const identity = await enrollAgent(h.admin, 'p');
  const big = await rawConnect(h, identity.identityId, identity.privateKey);
  const bigClosed = new Promise<number>((r) => big.ws!.on('close', (code) => r(code)));
  big.ws!.send(Buffer.alloc(16 * 1024 * 1024, 0x61));
  t.equal(await bigClosed, 1009, 'message too big');

  const before = process.memoryUsage().rss;
  const frag = await rawConnect(h, identity.identityId, identity.privateKey);
  const fragClosed = new Promise<number>((r) => frag.ws!.on('close', (code) => r(code)));
  const one = Buffer.from('a');
  for (let i = 0; i < 100_000 && frag.ws!.readyState === WebSocket.OPEN; i += 1) frag.ws!.send(one, { fin: false, binary: false });
  const fragCode = await fragClosed;
  t.equal(fragCode, 1008, 'too many fragments: closed (ws WS_ERR_TOO_MANY_BUFFERED_PARTS)');
  const grown = process.memoryUsage().rss - before;
  t.ok(grown < 64 * 1024 * 1024, `memory grew by ${(grown / 1048576).toFixed(1)} MiB`);
  await eventually(async () => (h.plane.hub.connectedCount === 0 ? true : undefined), 5000, 'sockets gone');
  t.equal(h.plane.hub.connectedCount, 0, 'both sockets are gone');
});

t.test('hub – deliveries that could never be sent or go to the wrong project are refused when issued', async (t) => {
  const h = await withProject(t, 'hub-refuse');
  await h.admin.ok('POST', '/v1/projects', { name: 'other' });
  const identity = await enrollAgent(h.admin, 'p');
  await h.admin.ok('PUT', '/v1/projects/p/secrets/huge', { value: 'x'.repeat(60_000) });
  const huge = await h.admin.call('POST', `/v1/agents/${identity.identityId}/commands`, { kind: 'secret.deliver', secret: 'huge', sink: 'app' });
  t.equal(huge.body.error?.code, 'ERR_VALIDATION');
  t.match(huge.body.error?.message, /too large to deliver/);
  // a version number PostgreSQL's int cannot hold is a validation error, not a database error
  for (const path of [`/v1/agents/${identity.identityId}/commands`, '/v1/projects/p/leaks']) {
    const body = path.endsWith('commands') ? { kind: 'secret.deliver', secret: 'huge', sink: 'app', version: 2 ** 40 } : { secret: 'huge', version: 2 ** 40 };
    const outOfRange = await h.admin.call('POST', path, body);
    t.equal(outOfRange.status, 400, `${path}: version 2^40 refused`);
    t.equal(outOfRange.body.error?.code, 'ERR_VALIDATION');
  }
  const wrong = await h.admin.call('POST', `/v1/agents/${identity.identityId}/commands`, { kind: 'secret.deliver', project: 'other', secret: 'huge', sink: 'app' });
  t.match(wrong.body.error?.message, /belongs to project "p"/);
  const { rows } = await h.plane.pool.query('SELECT 1 FROM agent_commands');
  t.equal(rows.length, 0, 'nothing was queued');
});

t.test('hub – sealing drops every agent socket; agents come back after unseal', async (t) => {
  const h = await withProject(t, 'hub-seal');
  const identity = await enrollAgent(h.admin, 'p');
  const agent = startAgent(h.baseUrl, identity);
  t.teardown(() => agent.stop(500));
  await once(agent, 'connected');
  const dropped = once(agent, 'disconnected', 5000);
  await h.admin.ok('POST', '/v1/sys/seal');
  await dropped;
  t.equal(h.plane.hub.connectedCount, 0, 'no socket held while sealed');
  await h.admin.ok('POST', '/v1/sys/unseal', { share: h.shares[0] }, { signed: false });
  await h.admin.ok('POST', '/v1/sys/unseal', { share: h.shares[1] }, { signed: false });
  await once(agent, 'connected', 10_000);
  t.ok(h.plane.hub.isConnected(identity.identityId), 'reconnected after unseal');
});

t.test('hub – commands are sealed to the agent\'s box key as stored now, even after it changed', async (t) => {
  const h = await withProject(t, 'hub-box-key');
  const identity = await enrollAgent(h.admin, 'p');
  await h.admin.ok('PUT', '/v1/projects/p/secrets/db', { value: CANARY });
  const sealedOf = async (commandId: string) => (await h.plane.pool.query<{ sealed: Buffer; generation: string }>('SELECT sealed, generation FROM agent_commands WHERE command_id = $1', [commandId])).rows[0]!;
  const first = await h.admin.ok('POST', `/v1/agents/${identity.identityId}/commands`, { kind: 'secret.deliver', secret: 'db', sink: 'app' });
  const second = await h.admin.ok('POST', `/v1/agents/${identity.identityId}/commands`, { kind: 'secret.deliver', secret: 'db', sink: 'app' });
  const opened = openSealed(identity.boxPrivateKey, (await sealedOf(second.commandId)).sealed, { commandId: second.commandId, agentId: identity.identityId });
  t.equal(opened.toString('utf8').includes(CANARY), true, 'the second command (key remembered from the first) opens with the agent\'s key');
  const fresh = generateBoxKeyPair();
  await h.plane.pool.query('UPDATE agents SET box_public_key = $2 WHERE agent_id = $1', [identity.identityId, exportBoxPublicKey(fresh.publicKey)]);
  const third = await h.admin.ok('POST', `/v1/agents/${identity.identityId}/commands`, { kind: 'secret.deliver', secret: 'db', sink: 'app' });
  const stored = await sealedOf(third.commandId);
  t.equal(openSealed(fresh.privateKey, stored.sealed, { commandId: third.commandId, agentId: identity.identityId }).toString('utf8').includes(CANARY), true, 'after the change, sealed to the new key');
  t.throws(() => openSealed(identity.boxPrivateKey, stored.sealed, { commandId: third.commandId, agentId: identity.identityId }), 'not to the old one');
  const generations = await Promise.all([first, second, third].map(async (c) => Number((await sealedOf(c.commandId)).generation)));
  t.same(generations, [generations[0], generations[0]! + 1, generations[0]! + 2], 'generations stay gap-free');
});

t.test('hub – a command cancelled after the hub read it is not counted as delivered, so it is not sent', async (t) => {
  const { markDelivered } = await import('../../control-plane/hub/command-dal.js');
  const h = await withProject(t, 'hub-cancelled');
  const identity = await enrollAgent(h.admin, 'p', 'offline-2');
  const kept = await h.admin.ok('POST', `/v1/agents/${identity.identityId}/commands`, { kind: 'agent.probe' });
  const cancelled = await h.admin.ok('POST', `/v1/agents/${identity.identityId}/commands`, { kind: 'agent.probe' });
  // as the rotation engine cancels an apply it gives up on before it was delivered
  await h.plane.pool.query(`UPDATE agent_commands SET state = 'expired', completed_at = now(), sealed = NULL WHERE command_id = $1`, [cancelled.commandId]);
  const counted = await markDelivered(h.plane.pool, [kept.commandId, cancelled.commandId]);
  t.same([...counted], [kept.commandId], 'only the open command is counted (and so sent)');
  const rows = (await h.plane.pool.query<{ command_id: string; state: string; deliveries: number }>('SELECT command_id, state, deliveries FROM agent_commands WHERE agent_id = $1 ORDER BY generation', [identity.identityId])).rows;
  t.same(rows, [{ command_id: kept.commandId, state: 'delivered', deliveries: 1 }, { command_id: cancelled.commandId, state: 'expired', deliveries: 0 }], 'the cancelled one stays never delivered');
});

t.test('hub – an agent\'s "accepted" is recorded after a short delay, and not at all when its result comes first', async (t) => {
  const h = await withProject(t, 'hub-accepted');
  const identity = await enrollAgent(h.admin, 'p', 'raw-1');
  const { ws } = await rawConnect(h, identity.identityId, identity.privateKey);
  if (ws === undefined) throw new Error('no socket');
  t.teardown(() => ws.terminate());
  const commands: string[] = [];
  const arrived: Array<() => void> = [];
  ws.on('message', (data) => {
    const m = JSON.parse(data.toString()) as { type: string; envelope?: { commandId: string } };
    if (m.type === 'command' && m.envelope !== undefined) {
      commands.push(m.envelope.commandId);
      arrived.shift()?.();
    }
  });
  const next = (): Promise<void> => new Promise((r) => arrived.push(r));
  ws.send(JSON.stringify({ type: 'hello', protocol: 1, agentVersion: 'test', highestGeneration: 0, results: [], inProgress: [] }));
  const state = async (id: string): Promise<string> => (await h.plane.pool.query<{ state: string }>('SELECT state FROM agent_commands WHERE command_id = $1', [id])).rows[0]?.state ?? '';

  // A quick command: accepted, then its result at once — the accepted mark is never written.
  let got = next();
  const quick = await h.admin.ok('POST', `/v1/agents/${identity.identityId}/commands`, { kind: 'agent.probe' });
  await got;
  ws.send(JSON.stringify({ type: 'accepted', commandId: quick.commandId }));
  ws.send(JSON.stringify({ type: 'result', commandId: quick.commandId, outcome: 'succeeded', result: { note: 'quick' }, error: null }));
  await eventually(async () => ((await state(quick.commandId)) === 'succeeded' ? true : undefined), 5000, 'quick result stored');
  await new Promise((r) => setTimeout(r, 1500));
  t.equal(await state(quick.commandId), 'succeeded', 'the late accepted mark did not overwrite the result');

  // A slow command: accepted and still running — recorded as accepted within about a second.
  got = next();
  const slow = await h.admin.ok('POST', `/v1/agents/${identity.identityId}/commands`, { kind: 'agent.probe' });
  await got;
  t.equal(await state(slow.commandId), 'delivered', 'counted as delivered once sent');
  ws.send(JSON.stringify({ type: 'accepted', commandId: slow.commandId }));
  await eventually(async () => ((await state(slow.commandId)) === 'accepted' ? true : undefined), 5000, 'accepted recorded');
  t.pass('a running command is recorded as accepted');
  ws.send(JSON.stringify({ type: 'result', commandId: slow.commandId, outcome: 'succeeded', result: { note: 'slow' }, error: null }));
  await eventually(async () => ((await state(slow.commandId)) === 'succeeded' ? true : undefined), 5000, 'slow result stored');
  t.same(commands, [quick.commandId, slow.commandId]);
});

t.test('hub – storing a command and claiming the agent\'s open ones in one statement: all in generation order, or nothing when the box key changed', async (t) => {
  const { claimedWith, commandRowFromJson, insertCommandAndClaimWrite } = await import('../../control-plane/hub/command-dal.js');
  const { standalone } = await import('../../control-plane/db/queryable.js');
  type NewCommand = Parameters<typeof insertCommandAndClaimWrite>[1];
  const insertCommandAndClaim = async (db: PoolClient, boxKey: string, c: NewCommand, except: string[]) =>
    claimedWith(c.commandId, (await db.query<CommandRow>(standalone(insertCommandAndClaimWrite(boxKey, c, except)))).rows);
  const { randomUUID } = await import('node:crypto');
  const h = await withProject(t, 'hub-claim');
  const identity = await enrollAgent(h.admin, 'p', 'offline-1');
  // an older command waiting for the agent (it is offline: stored as pending)
  const older = await h.admin.ok('POST', `/v1/agents/${identity.identityId}/commands`, { kind: 'agent.probe' });
  const key = (await h.plane.pool.query<{ box_public_key: string }>('SELECT box_public_key FROM agents WHERE agent_id = $1', [identity.identityId])).rows[0]!.box_public_key;
  const command = (id: string) => ({ commandId: id, agentId: identity.identityId, kind: 'agent.probe', payload: {}, sealed: null, issuedBy: null, expiresAt: new Date(Date.now() + 60_000) });
  const client = await h.plane.pool.connect();
  t.teardown(() => client.release());
  await client.query('BEGIN');
  const stale = randomUUID();
  t.equal(await insertCommandAndClaim(client, exportBoxPublicKey(generateBoxKeyPair().publicKey), command(stale), []), null, 'another key: nothing stored');
  const fresh = randomUUID();
  const rows = await insertCommandAndClaim(client, key, command(fresh), []);
  await client.query('COMMIT');
  t.same(rows?.map((r) => r.command_id), [older.commandId, fresh], 'the older open command and the new one, oldest generation first');
  t.ok(rows?.every((r) => r.state === 'delivered' && r.deliveries === 1), 'both counted as delivered');
  const stored = (await h.plane.pool.query<{ command_id: string; state: string; deliveries: number }>('SELECT command_id, state, deliveries FROM agent_commands WHERE agent_id = $1 ORDER BY generation', [identity.identityId])).rows;
  t.same(stored, [{ command_id: older.commandId, state: 'delivered', deliveries: 1 }, { command_id: fresh, state: 'delivered', deliveries: 1 }], 'as stored; the refused one is not there');
  // with the new one already sent on the socket (except), only what is left is claimed
  await client.query('BEGIN');
  const third = randomUUID();
  const again = await insertCommandAndClaim(client, key, command(third), [older.commandId, fresh]);
  await client.query('ROLLBACK');
  t.same(again?.map((r) => r.command_id), [third], 'commands already sent are not claimed again');
  // the rows as a combined statement returns them (json_agg) read back as the rows themselves
  const typed = (await h.plane.pool.query<CommandRow>('SELECT * FROM agent_commands WHERE agent_id = $1 ORDER BY generation', [identity.identityId])).rows;
  const sealed = (await h.admin.ok('POST', `/v1/agents/${identity.identityId}/commands`, { kind: 'agent.probe' })) as { commandId: string };
  await h.plane.pool.query(`UPDATE agent_commands SET sealed = '\\x00ff10'::bytea, result = '{"a": 1}', error = '{"code": "ERR_X", "message": "m"}', completed_at = now() WHERE command_id = $1`, [sealed.commandId]);
  const all = (await h.plane.pool.query<CommandRow>('SELECT * FROM agent_commands WHERE agent_id = $1 ORDER BY generation', [identity.identityId])).rows;
  const json = (await h.plane.pool.query<{ rows: Array<Record<string, unknown>> }>('SELECT json_agg(c ORDER BY generation) AS rows FROM agent_commands c WHERE agent_id = $1', [identity.identityId])).rows[0]!.rows;
  t.equal(all.length, typed.length + 1);
  const truncated = (r: CommandRow) => ({ ...r, issued_at: r.issued_at.getTime(), expires_at: r.expires_at.getTime(), delivered_at: r.delivered_at?.getTime() ?? null, completed_at: r.completed_at?.getTime() ?? null });
  t.same(json.map(commandRowFromJson).map(truncated), all.map(truncated), 'every field as the driver reads it (timestamps to the millisecond)');
  t.same(commandRowFromJson(json[json.length - 1]!).sealed, Buffer.from([0, 0xff, 0x10]), 'bytea');
  t.throws(() => commandRowFromJson({ ...json[0], generation: '1' }), /generation/, 'a field of another type is refused');
  // The claim finds open commands through the partial index of open ones, even as a prepared
  // statement's generic plan: it does not scan every command the agent ever had.
  const { text } = standalone(insertCommandAndClaimWrite(key, command(randomUUID()), []));
  await client.query('BEGIN');
  try {
    await client.query("SET LOCAL plan_cache_mode = 'force_generic_plan'");
    await client.query('SET LOCAL enable_seqscan = off');
    await client.query(`PREPARE claim_plan AS ${text}`);
    const plan = (await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN EXECUTE claim_plan('${randomUUID()}', '${identity.identityId}', 'agent.probe', '{}', NULL, NULL, now(), 'key', '{}')`)).rows.map((r) => r['QUERY PLAN']).join('\n');
    t.match(plan, /agent_commands_open_idx/, 'the open commands are read through agent_commands_open_idx');
  } finally {
    await client.query('ROLLBACK');
    await client.query('DEALLOCATE claim_plan');
  }
});
