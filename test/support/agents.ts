import type { AdminCredentials } from '../../agent/appliers/target.js';
import type { ApplierFactory } from '../../agent/commands/rotation-context.js';
import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { HubClient } from '../../agent/hub-client/hub-client.js';
import type { AgentIdentity } from '../../agent/hub-client/hub-client-options.js';
import { MemoryCommandJournal } from '../../agent/journal/memory-command-journal.js';
import type { SinkConfig } from '../../agent/sinks/sink-config.js';
import { exportBoxPublicKey, generateBoxKeyPair } from '../../shared/crypto/sealed-box.js';
import { exportPublicKey, generateIdentityKeyPair, importPublicKey } from '../../shared/signing/ed25519-keys.js';
import { createLogger, type Logger } from '../../shared/logging/logger.js';
import type { TestClient } from './test-client.js';

/** Enrolls one agent through the real join-token API; returns the keys a HubClient needs. */
export async function enrollAgent(admin: TestClient, project: string, name = `agent-${randomUUID().slice(0, 8)}`): Promise<AgentIdentity> {
  const { token } = await admin.ok('POST', '/v1/tokens', { project, role: 'agent' });
  const keys = generateIdentityKeyPair();
  const box = generateBoxKeyPair();
  const { TestClient: Client } = await import('./test-client.js');
  const client = new Client(admin.baseUrl, keys.privateKey, keys.publicKey);
  const enrolled = await client.ok('POST', '/v1/enroll', { token, publicKey: exportPublicKey(keys.publicKey), boxPublicKey: exportBoxPublicKey(box.publicKey), name });
  return { identityId: enrolled.identityId, privateKey: keys.privateKey, boxPrivateKey: box.privateKey, serverPublicKey: importPublicKey(enrolled.serverPublicKey) };
}

/**
 * Registers many agents at once straight in the database (what enrollment would
 * write), for tests that need hundreds of them. The server key comes from the vault.
 */
export async function insertAgents(pool: Pool, projectName: string, count: number): Promise<AgentIdentity[]> {
  const project = (await pool.query<{ project_id: string }>('SELECT project_id FROM projects WHERE name = $1', [projectName])).rows[0];
  if (project === undefined) throw new Error(`no project ${projectName}`);
  const serverKey = (await pool.query<{ public_key: string }>('SELECT public_key FROM server_keys ORDER BY key_version DESC LIMIT 1')).rows[0]!.public_key;
  const serverPublicKey = importPublicKey(serverKey);
  const agents = Array.from({ length: count }, () => {
    const keys = generateIdentityKeyPair();
    const box = generateBoxKeyPair();
    return { identityId: randomUUID(), privateKey: keys.privateKey, publicKeyText: exportPublicKey(keys.publicKey), boxPrivateKey: box.privateKey, boxText: exportBoxPublicKey(box.publicKey) };
  });
  const ids = agents.map((a) => a.identityId);
  await pool.query('INSERT INTO identities (identity_id, name, public_key) SELECT id, \'sim-\' || left(id::text, 8), pk FROM unnest($1::uuid[], $2::text[]) AS u(id, pk)', [ids, agents.map((a) => a.publicKeyText)]);
  await pool.query("INSERT INTO grants (identity_id, project_id, role) SELECT id, $2, 'agent' FROM unnest($1::uuid[]) AS u(id)", [ids, project.project_id]);
  await pool.query('INSERT INTO agents (agent_id, project_id, box_public_key) SELECT id, $2, bk FROM unnest($1::uuid[], $3::text[]) AS u(id, bk)', [ids, project.project_id, agents.map((a) => a.boxText)]);
  return agents.map((a) => ({ identityId: a.identityId, privateKey: a.privateKey, boxPrivateKey: a.boxPrivateKey, serverPublicKey }));
}

const quietLogger: Logger = createLogger({ name: 'test-agent', level: 'silent' });

/** An in-process agent (the real HubClient) with an in-memory journal. */
export function startAgent(serverUrl: string, identity: AgentIdentity, options: {
  sinks?: SinkConfig[]; startingDelayMs?: number; maxDelayMs?: number; heartbeatMs?: number; logger?: Logger;
  adminConnections?: ReadonlyMap<string, AdminCredentials>; createApplier?: ApplierFactory;
} = {}): HubClient {
  const client = new HubClient({
    serverUrl, identity, journal: new MemoryCommandJournal(), logger: options.logger ?? quietLogger, sinks: options.sinks ?? [],
    adminConnections: options.adminConnections ?? new Map(), createApplier: options.createApplier,
    backoff: { startingDelayMs: options.startingDelayMs ?? 200, maxDelayMs: options.maxDelayMs ?? 1000 },
    ...(options.heartbeatMs === undefined ? {} : { heartbeatMs: options.heartbeatMs }),
  });
  client.start();
  return client;
}

/** Resolves when `client` emits `event` (bounded). */
export function once<T = unknown>(client: HubClient, event: 'connected' | 'disconnected' | 'command-finished' | 'connect-failed', timeoutMs = 10_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${timeoutMs} ms`)), timeoutMs);
    client.once(event, ((value: T) => {
      clearTimeout(timer);
      resolve(value);
    }) as never);
  });
}

/** Polls `check` until it returns a value (not undefined), bounded. */
export async function eventually<T>(check: () => Promise<T | undefined>, timeoutMs = 10_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
