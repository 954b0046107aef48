import pg from 'pg';
import t from 'tap';
import { cleanupRedisPrefix, createTestDatabase, SHARED_REDIS_URL, uniqueRedisPrefix, type TestDatabase } from '../support/databases.js';
import { freePort } from '../support/free-port.js';
import { enrollAgent, eventually, insertAgents, once, startAgent } from '../support/agents.js';
import { CONTROL_PLANE_BIN, startProgram, waitForHealthy, type RunningProcess } from '../support/processes.js';
import { TestClient } from '../support/test-client.js';
import type { HubClient } from '../../agent/hub-client/hub-client.js';

interface Replica {
  process: RunningProcess;
  url: string;
  client: TestClient;
}

async function startReplica(t: { teardown(fn: () => unknown): void }, db: TestDatabase, prefix: string, name: string, port?: number): Promise<Replica> {
  const listen = port ?? (await freePort());
  const process = startProgram(CONTROL_PLANE_BIN, [], {
    SIKKER_DATABASE_URL: db.url, SIKKER_REDIS_URL: SHARED_REDIS_URL, SIKKER_REDIS_PREFIX: prefix, SIKKER_LISTEN: `127.0.0.1:${listen}`,
    SIKKER_REPLICA_ID: name, SIKKER_LOG_LEVEL: 'warn', SIKKER_AGENT_HEARTBEAT_SECONDS: '5',
  });
  t.teardown(() => process.kill());
  const url = `http://127.0.0.1:${listen}`;
  await waitForHealthy(`${url}/healthz`);
  return { process, url, client: TestClient.fresh(url) };
}

async function unseal(replica: Replica, shares: string[]): Promise<void> {
  for (const share of shares) await replica.client.ok('POST', '/v1/sys/unseal', { share }, { signed: false });
}

async function freshVault(t: { teardown(fn: () => unknown): void }, label: string): Promise<{ db: TestDatabase; prefix: string }> {
  const db = await createTestDatabase(label);
  const prefix = uniqueRedisPrefix(label);
  t.teardown(async () => {
    await db.drop();
    await cleanupRedisPrefix(SHARED_REDIS_URL, prefix);
  });
  return { db, prefix };
}

t.test('e2e – two replicas: a command issued on A reaches the agent held by B', async (t) => {
  const { db, prefix } = await freshVault(t, 'e2e_replicas');
  const a = await startReplica(t, db, prefix, 'replica-a');
  const b = await startReplica(t, db, prefix, 'replica-b');
  const init = await a.client.ok('POST', '/v1/sys/init', { shares: 2, threshold: 2, publicKey: a.client.publicKeyText, name: 'admin' });
  a.client.identityId = init.identityId;
  await unseal(b, init.shares);
  await a.client.ok('POST', '/v1/projects', { name: 'p' });
  const identity = await enrollAgent(a.client, 'p');
  const agent = startAgent(b.url, identity);
  t.teardown(() => agent.stop(500));
  await once(agent, 'connected');
  const shown = await eventually(async () => {
    const r = await a.client.ok('GET', `/v1/agents/${identity.identityId}`);
    return r.online ? r : undefined;
  }, 10_000, 'online seen from A');
  t.equal(shown.replica, 'replica-b', 'A sees that B holds the socket');
  const issued = await a.client.ok('POST', `/v1/agents/${identity.identityId}/commands`, { kind: 'agent.probe' });
  const done = await eventually(async () => {
    const c = await a.client.ok('GET', `/v1/agents/${identity.identityId}/commands/${issued.commandId}`);
    return c.state === 'succeeded' ? c : undefined;
  }, 10_000, 'command answered through replica B');
  t.equal(done.deliveries, 1, 'delivered once');

  await a.client.ok('POST', '/v1/sys/seal');
  const sealedB = await eventually(async () => {
    const s = await b.client.ok('GET', '/v1/sys/status', undefined, { signed: false });
    return s.sealed ? s : undefined;
  }, 5000, 'B sealed too');
  t.equal(sealedB.sealed, true, 'sealing one replica seals every replica');
});

t.test('e2e – 1,000 agents reconnect to a restarted control plane, spread out', async (t) => {
  const { db, prefix } = await freshVault(t, 'e2e_storm');
  const port = await freePort();
  let cp = await startReplica(t, db, prefix, 'storm', port);
  const init = await cp.client.ok('POST', '/v1/sys/init', { shares: 2, threshold: 2, publicKey: cp.client.publicKeyText, name: 'admin' });
  cp.client.identityId = init.identityId;
  await cp.client.ok('POST', '/v1/projects', { name: 'p' });
  const pool = new pg.Pool({ connectionString: db.url, max: 2 });
  const identities = await insertAgents(pool, 'p', 1000);
  await pool.end();

  const agents: HubClient[] = identities.map((identity) => startAgent(cp.url, identity, { startingDelayMs: 1000, maxDelayMs: 4000 }));
  t.teardown(async () => {
    await Promise.all(agents.map((a) => a.stop(200)));
  });
  await eventually(async () => (agents.every((a) => a.connected) ? true : undefined), 60_000, 'all 1,000 connected');
  t.pass('1,000 agents connected');

  await cp.process.kill('SIGKILL');
  await eventually(async () => (agents.every((a) => !a.connected) ? true : undefined), 20_000, 'all noticed the loss');
  const reconnectedAt: number[] = [];
  for (const a of agents) a.once('connected', () => reconnectedAt.push(Date.now()));
  cp = await startReplica(t, db, prefix, 'storm', port);
  await unseal(cp, init.shares);
  const unsealedAt = Date.now();
  await eventually(async () => (reconnectedAt.length === agents.length ? true : undefined), 60_000, 'all 1,000 back');
  reconnectedAt.sort((x, y) => x - y);
  const spanMs = reconnectedAt[reconnectedAt.length - 1]! - reconnectedAt[0]!;
  let busiest = 0;
  for (let i = 0, j = 0; i < reconnectedAt.length; i += 1) {
    while (reconnectedAt[i]! - reconnectedAt[j]! > 100) j += 1;
    busiest = Math.max(busiest, i - j + 1);
  }
  t.comment(`reconnects spread over ${spanMs} ms after unseal (+${reconnectedAt[0]! - unsealedAt} ms to the first); busiest 100 ms: ${busiest}`);
  t.equal(reconnectedAt.length, 1000, 'every agent came back');
  t.ok(spanMs >= 500, 'reconnects are spread over at least half a second');
  t.ok(busiest <= 300, 'no 100 ms window holds more than 30% of them');
});
