/**
 * The set-up of the `leak` benchmark: a private SCRAM cluster holding N login roles
 * (the leaked credentials) and M more for the baseline, a control plane on a fresh
 * database, several enrolled agents with the cluster's superuser as admin connection
 * "pg", and N targets spread round robin over the agents, each adopted with its role's
 * password and carrying a passing preflight. Everything is registered for cleanup.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { cleanupRedisPrefix, createTestDatabase, uniqueRedisPrefix, type TestDatabase } from '../../test/support/databases.js';
import { startScramPostgres, type ScramPostgres } from '../../test/support/scram-postgres.js';
import { REDIS_PORT, SERVICE_HOST } from '../../test/support/services.js';
import type { TestClient } from '../../test/support/test-client.js';
import { startAgentProcess, type AgentProcess } from './agent-process.js';
import { initBenchVault, withTimeout } from './bench-vault.js';
import { benchAbortSignal, type CleanupStack } from './cleanup.js';
import { restartWithMaxConnections } from './cluster-limits.js';
import { startControlPlaneProcess, type ControlPlaneProcess } from './control-plane-process.js';

const REDIS_URL = `redis://${SERVICE_HOST}:${REDIS_PORT}`;
/** Targets registered at once over HTTP (set-up only). */
const REGISTER_CONCURRENCY = 8;

export interface LeakFleetOptions {
  project: string;
  credentials: number;
  agents: number;
  baselineRoles: number;
  /** Experiment: `synchronous_commit` for the control plane's database (null: the server's setting). */
  controlPlaneSynchronousCommit: 'on' | 'off' | null;
  /** null: the cluster as test/support/scram-postgres.ts makes it (max_connections 50). */
  maxConnections: number | null;
  agentNodeArgs: string[];
  progress: (message: string) => void;
}

export interface FleetTarget {
  name: string;
  secret: string;
  role: string;
  /** The role's password before the leak (adopted as version 1: the leaked value). */
  adopted: string;
  agentIndex: number;
}

export interface LeakFleet {
  cluster: ScramPostgres;
  maxConnections: number;
  db: TestDatabase;
  cp: ControlPlaneProcess;
  admin: TestClient;
  agents: AgentProcess[];
  /** Each agent's home (its state directory is home/state). */
  agentHomes: string[];
  projectId: string;
  targets: FleetTarget[];
  baselineRoles: string[];
  /** Targets whose preflight ran for real through the agent (one per agent); the others got a copy of it in SQL. */
  preflightProven: string[];
}

/** Builds the whole fleet; rejects (after registering what it made for cleanup) when any part fails. */
export async function setUpLeakFleet(cleanups: CleanupStack, o: LeakFleetOptions): Promise<LeakFleet> {
  o.progress('starting a private PostgreSQL cluster that checks SCRAM passwords');
  const cluster = await startScramPostgres();
  cleanups.defer('stop the SCRAM cluster', () => cluster.stop());
  if (o.maxConnections !== null) {
    o.progress(`restarting it with max_connections = ${o.maxConnections}`);
    await restartWithMaxConnections(cluster.superuserUrl, o.maxConnections);
  }
  const suffix = randomBytes(3).toString('hex');
  const targets = Array.from({ length: o.credentials }, (_, i): FleetTarget => {
    const n = String(i + 1).padStart(4, '0');
    return { name: `leak-${n}`, secret: `leak-${n}-password`, role: `bench_leak_${suffix}_${n}`, adopted: randomBytes(24).toString('base64url'), agentIndex: i % o.agents };
  });
  const baselineRoles = Array.from({ length: o.baselineRoles }, (_, i) => `bench_leak_base_${suffix}_${String(i + 1).padStart(4, '0')}`);
  const maxConnections = await createRoles(cluster.superuserUrl, targets, baselineRoles, o.progress);

  const db = await createTestDatabase('bench_leak');
  cleanups.defer(`drop database ${db.name}`, () => db.drop());
  if (o.controlPlaneSynchronousCommit !== null) await setSynchronousCommit(db, o.controlPlaneSynchronousCommit, o.progress);
  const redisPrefix = uniqueRedisPrefix('bench_leak');
  cleanups.defer(`remove Redis keys ${redisPrefix}*`, () => cleanupRedisPrefix(REDIS_URL, redisPrefix));
  o.progress(`starting the control plane on database ${db.name}`);
  const cp = await startControlPlaneProcess({
    env: { SIKKER_DATABASE_URL: db.url, SIKKER_REDIS_URL: REDIS_URL, SIKKER_REDIS_PREFIX: redisPrefix, SIKKER_LOG_LEVEL: 'warn' },
  });
  cleanups.defer(`stop the control plane (pid ${cp.pid})`, () => cp.stop());
  const admin = await initBenchVault(cp.baseUrl, o.project);

  o.progress(`enrolling and starting ${o.agents} agents`);
  const agents: AgentProcess[] = [];
  const agentHomes: string[] = [];
  for (let a = 0; a < o.agents; a += 1) {
    const home = mkdtempSync(join(tmpdir(), `sikker-bench-leak-${a}-`));
    agentHomes.push(home);
    cleanups.defer(`remove ${home}`, () => rmSync(home, { recursive: true, force: true }));
    const agent = await startAgentProcess({
      baseUrl: cp.baseUrl, admin, project: o.project, home, name: `bench-leak-agent-${a}`,
      config: { logLevel: 'warn', adminConnections: [{ name: 'pg', url: cluster.superuserUrl }] }, nodeArgs: o.agentNodeArgs,
    });
    cleanups.defer(`stop agent ${a} (pid ${agent.pid})`, () => agent.stop());
    agents.push(agent);
  }

  o.progress(`registering ${targets.length} targets (${REGISTER_CONCURRENCY} at a time), adopting each role's password`);
  const t0 = Date.now();
  const register = async (t: FleetTarget): Promise<void> => {
    const agent = agents[t.agentIndex] as AgentProcess;
    await withTimeout(admin.ok('POST', `/v1/projects/${o.project}/targets`, {
      name: t.name, secret: t.secret, agentId: agent.agentId, adoptPassword: t.adopted,
      connection: { engine: 'postgres', host: '127.0.0.1', port: cluster.port, database: 'postgres', user: t.role, tls: { mode: 'disable' }, privilege: { mode: 'admin', adminConnection: 'pg' } },
    }), `add target ${t.name}`);
  };
  // The first one alone: concurrent first versions of a fresh project deadlock while creating its
  // fingerprint key (control-plane/vault/keyring.ts, UPDATE projects inside each caller's transaction).
  if (targets[0] !== undefined) await register(targets[0]);
  await inLanes(targets.slice(1), REGISTER_CONCURRENCY, register);
  o.progress(`  registered in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const preflightProven = await preflight(db.url, admin, o.project, targets.slice(0, o.agents), o.progress);
  const projectId = await projectIdOf(db.url, o.project);
  return { cluster, maxConnections, db, cp, admin, agents, agentHomes, projectId, targets, baselineRoles, preflightProven };
}

/** One SQL batch on the cluster: the target roles with their passwords, the baseline roles without one. Returns max_connections. */
async function createRoles(url: string, targets: readonly FleetTarget[], baselineRoles: readonly string[], progress: (m: string) => void): Promise<number> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined); // surfaced through the awaited queries
  await client.connect();
  try {
    const t0 = Date.now();
    const statements = [
      ...targets.map((t) => `CREATE ROLE ${client.escapeIdentifier(t.role)} LOGIN PASSWORD ${client.escapeLiteral(t.adopted)};`),
      // the baseline sets their passwords itself
      ...baselineRoles.map((r) => `CREATE ROLE ${client.escapeIdentifier(r)} LOGIN;`),
    ];
    await client.query(statements.join('\n'));
    progress(`created ${targets.length} target roles and ${baselineRoles.length} baseline roles in one batch (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    return Number((await client.query<{ max_connections: string }>('SHOW max_connections')).rows[0]?.max_connections);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * A real preflight (POST …/test, through the agent) for `proven` — one target per
 * agent —, then the same passing report copied in SQL onto every other target of the
 * project: 1,000 preflights through the API would dominate the set-up.
 */
async function preflight(dbUrl: string, admin: TestClient, project: string, proven: readonly FleetTarget[], progress: (m: string) => void): Promise<string[]> {
  for (const t of proven) {
    benchAbortSignal.throwIfAborted();
    const tested = (await withTimeout(admin.ok('POST', `/v1/projects/${project}/targets/${t.name}/test`, {}), `preflight of ${t.name}`, 30_000)) as { finished: boolean; target: { preflight: { ok: boolean; problems: string } | null } };
    if (!tested.finished || tested.target.preflight?.ok !== true) throw new Error(`the preflight of ${t.name} did not pass: ${JSON.stringify(tested.target.preflight)}`);
  }
  const client = new pg.Client({ connectionString: dbUrl, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const copied = await client.query(
      `UPDATE targets t SET preflight_ok = p.preflight_ok, preflight = p.preflight, preflight_at = now()
         FROM targets p WHERE p.name = $1 AND p.project_id = t.project_id AND NOT t.preflight_ok AND p.preflight_ok`, [proven[0]?.name],
    );
    progress(`preflight passed for real on ${proven.map((t) => t.name).join(', ')} (one per agent); its report copied in SQL onto the other ${copied.rowCount ?? 0} targets`);
  } finally {
    await client.end().catch(() => undefined);
  }
  return proven.map((t) => t.name);
}

/** Experiment only: ALTER DATABASE … SET synchronous_commit (the control plane's connections are opened after this). */
async function setSynchronousCommit(db: TestDatabase, value: 'on' | 'off', progress: (m: string) => void): Promise<void> {
  const client = new pg.Client({ connectionString: db.url, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    await client.query(`ALTER DATABASE ${client.escapeIdentifier(db.name)} SET synchronous_commit = ${value === 'off' ? 'off' : 'on'}`);
    progress(`experiment: synchronous_commit = ${value} on the control plane's database`);
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function projectIdOf(dbUrl: string, project: string): Promise<string> {
  const client = new pg.Client({ connectionString: dbUrl, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const id = (await client.query<{ project_id: string }>('SELECT project_id FROM projects WHERE name = $1', [project])).rows[0]?.project_id;
    if (id === undefined) throw new Error(`project ${project} is missing`);
    return id;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Runs `fn` over `items` with at most `lanes` in flight; rejects with the first failure. */
export async function inLanes<T>(items: readonly T[], lanes: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) {
      benchAbortSignal.throwIfAborted();
      const i = next;
      next += 1;
      await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(lanes, items.length) }, lane));
}
