/**
 * The real programs for rotation e2e tests: a `sikker-control-plane` process (restartable,
 * with fault-injection env), a `sikker-agent run` process with an admin connection to a
 * private SCRAM PostgreSQL cluster, the `sikker` CLI, and one managed role registered as
 * target `shop/orders` (password adopted, preflight passed).
 */
import { postgresLogsIn } from './postgres-login.js';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { Test } from 'tap';
import { SignedClient } from '../../shared/http-client/signed-client.js';
import { ReadSecretResponse } from '../../shared/protocol/api.js';
import { loadIdentityFile } from '../../shared/signing/identity-file.js';
import { eventually } from './agents.js';
import { cleanupRedisPrefix, createTestDatabase, SHARED_REDIS_URL, uniqueRedisPrefix, type TestDatabase } from './databases.js';
import { freePort } from './free-port.js';
import { CLI_BIN, CONTROL_PLANE_BIN, REPO_ROOT, runProgram, startProgram, waitForHealthy, type RunningProcess } from './processes.js';
import type { ScramPostgres } from './scram-postgres.js';

export const AGENT_BIN = join(REPO_ROOT, 'dist', 'agent', 'sikker-agent.cjs');

/** The managed database of a process stack: how to make the user, how to log in, how `target add` names it. */
export interface ProcessDatabase {
  /** The agent's admin connection `db` (written to a 0600 urlFile). */
  adminUrl: string;
  /** Creates a login user with `password`; returns its name. Dropped by `cleanup`. */
  createUser(password: string): Promise<string>;
  /** `sikker target add` arguments after the target name, without --secret/--agent/--admin-connection. */
  targetArgs(user: string): string[];
  /** A fresh login: true accepted, false refused; throws otherwise. */
  logsIn(user: string, password: string): Promise<boolean>;
  cleanup(): Promise<void>;
}

/** The private SCRAM PostgreSQL cluster as a {@link ProcessDatabase}. */
export async function scramPostgresDatabase(cluster: ScramPostgres): Promise<ProcessDatabase> {
  const superuser = new pg.Client({ connectionString: cluster.superuserUrl });
  superuser.on('error', () => undefined);
  await superuser.connect();
  const roles: string[] = [];
  return {
    adminUrl: cluster.superuserUrl,
    async createUser(password) {
      const role = `sk_e2e_${randomBytes(4).toString('hex')}`;
      await superuser.query(`CREATE ROLE ${role} LOGIN PASSWORD '${password.replace(/'/g, "''")}'`);
      roles.push(role);
      return role;
    },
    targetArgs: (user) => ['--engine', 'postgres', '--host', '127.0.0.1', '--port', String(cluster.port), '--database', 'postgres', '--user', user],
    logsIn: (user, password) => postgresLogsIn(cluster.port, user, password),
    async cleanup() {
      for (const role of roles) await superuser.query(`DROP ROLE IF EXISTS ${role}`).catch(() => undefined);
      await superuser.end();
    },
  };
}

export interface RotationStack {
  /** The operator's home directory and identity file (for running the CLI directly). */
  home: string;
  identityPath: string;
  db: TestDatabase;
  /** The control plane's database, for reading run state while it is down. */
  dbPool: pg.Pool;
  server: string;
  role: string;
  initialPassword: string;
  secretId: string;
  controlPlane: RunningProcess;
  agent: RunningProcess;
  sikker(args: string[], stdin?: string): Promise<any>;
  /** Starts the control plane (after a crash) and unseals it. */
  restartControlPlane(env?: Record<string, string>): Promise<void>;
  startAgent(env?: Record<string, string>): RunningProcess;
  logsIn(user: string | null, password: string): Promise<boolean>;
  fetchValue(version: number): Promise<string>;
  /** Polls until the run reaches one of `states`. */
  waitRun(runId: string, states: string[], timeoutMs?: number): Promise<any>;
}

export async function startRotationStack(t: Test, target: ScramPostgres | ProcessDatabase, options: { controlPlaneEnv?: Record<string, string>; agentEnv?: Record<string, string> } = {}): Promise<RotationStack> {
  const database = 'adminUrl' in target ? target : await scramPostgresDatabase(target);
  const db = await createTestDatabase('e2e_rot');
  const prefix = uniqueRedisPrefix('e2e-rot');
  const home = mkdtempSync(join(tmpdir(), 'sikker-rot-e2e-'));
  chmodSync(home, 0o755);
  const port = await freePort();
  const server = `http://127.0.0.1:${port}`;
  const cliEnv = { SIKKER_SERVER: server, SIKKER_IDENTITY: join(home, 'operator.json'), HOME: home };
  const running: RunningProcess[] = [];
  const dbPool = new pg.Pool({ connectionString: db.url, max: 2 });
  t.teardown(async () => {
    for (const p of running) await p.kill();
    await dbPool.end();
    await database.cleanup();
    rmSync(home, { recursive: true, force: true });
    await db.drop();
    await cleanupRedisPrefix(SHARED_REDIS_URL, prefix);
  });
  const sikker = async (args: string[], stdin?: string): Promise<any> => {
    const r = await runProgram(CLI_BIN, [...args, '--json'], { env: cliEnv, ...(stdin === undefined ? {} : { stdin }) });
    if (r.code !== 0) throw new Error(`sikker ${args.join(' ')}: ${r.stdout} ${r.stderr}`);
    return JSON.parse(r.stdout);
  };
  const cpEnv = { SIKKER_DATABASE_URL: db.url, SIKKER_REDIS_URL: SHARED_REDIS_URL, SIKKER_REDIS_PREFIX: prefix, SIKKER_LISTEN: `127.0.0.1:${port}`, SIKKER_AGENT_HEARTBEAT_SECONDS: '2', SIKKER_ROTATION_SWEEP_MS: '200', SIKKER_ROTATION_COMMAND_SECONDS: '10' };
  const startControlPlane = async (env: Record<string, string>): Promise<RunningProcess> => {
    const p = startProgram(CONTROL_PLANE_BIN, [], { ...cpEnv, ...env });
    running.push(p);
    await waitForHealthy(`${server}/healthz`);
    return p;
  };

  const stack = { home, identityPath: join(home, 'operator.json'), db, dbPool, server, initialPassword: `Init-${randomBytes(6).toString('hex')}-Aa1` } as RotationStack;
  stack.controlPlane = await startControlPlane(options.controlPlaneEnv ?? {});
  const init = await sikker(['operator', 'init', '--shares', '2', '--threshold', '2']);
  const shares: string[] = init.shares;
  await sikker(['project', 'create', 'shop']);
  const { token } = await sikker(['identity', 'token', '--project', 'shop', '--role', 'agent']);
  const stateDir = join(home, 'agent-state');
  const enroll = await runProgram(AGENT_BIN, ['enroll', '--server', server, '--token', '-', '--state-dir', stateDir, '--name', 'db-host-1'], { stdin: token, env: { HOME: home } });
  if (enroll.code !== 0) throw new Error(`enroll failed: ${enroll.stderr}`);
  const adminUrlFile = join(home, 'pg-admin.url');
  writeFileSync(adminUrlFile, database.adminUrl, { mode: 0o600 });
  const configPath = join(home, 'agent.json');
  writeFileSync(configPath, JSON.stringify({ server, stateDir, heartbeatSeconds: 5, shutdownGraceSeconds: 5, adminConnections: [{ name: 'db', urlFile: adminUrlFile }] }));
  stack.startAgent = (env = {}) => {
    const p = startProgram(AGENT_BIN, ['run', '--config', configPath], { HOME: home, ...env });
    running.push(p);
    stack.agent = p;
    return p;
  };
  stack.startAgent(options.agentEnv);
  const agent = await eventually(async () => {
    const list = await sikker(['agent', 'list', '--project', 'shop']);
    return list.agents[0]?.online === true ? list.agents[0] : undefined;
  }, 15_000, 'agent online');

  stack.role = await database.createUser(stack.initialPassword);
  const added = await sikker(['target', 'add', 'shop/orders', ...database.targetArgs(stack.role), '--secret', 'orders-db', '--agent', agent.agentId, '--admin-connection', 'db', '--adopt'], stack.initialPassword);
  const tested = await sikker(['target', 'test', 'shop/orders']);
  if (tested.target.preflight?.ok !== true) throw new Error(`preflight failed: ${JSON.stringify(tested.target.preflight)}`);
  stack.secretId = (await dbPool.query<{ secret_id: string }>('SELECT secret_id FROM targets WHERE target_id = $1', [added.targetId])).rows[0]?.secret_id as string;

  stack.sikker = sikker;
  stack.restartControlPlane = async (env = {}) => {
    stack.controlPlane = await startControlPlane(env);
    for (const share of shares) await sikker(['operator', 'unseal'], share);
  };
  const client = new SignedClient({ server, identity: loadIdentityFile(join(home, 'operator.json')), timeoutMs: 2000 });
  stack.fetchValue = async (version) => (await client.request('GET', `/v1/projects/shop/secrets/orders-db?version=${version}`, undefined, ReadSecretResponse)).value;
  stack.logsIn = (user, password) => database.logsIn(user ?? stack.role, password);
  stack.waitRun = async (runId, states, timeoutMs = 30_000) => {
    try {
      return await eventually(async () => {
        const row = (await dbPool.query<{ state: string }>('SELECT state FROM rotation_runs WHERE run_id = $1', [runId])).rows[0];
        return row !== undefined && states.includes(row.state) ? row : undefined;
      }, timeoutMs, `run to reach ${states.join('/')}`);
    } catch (err) {
      // Say where it stood: the run, its steps and its commands (ids, kinds, states; no secrets).
      const run = (await dbPool.query('SELECT state, attempt, error_code, next_action_at, command_id FROM rotation_runs WHERE run_id = $1', [runId])).rows[0];
      const steps = (await dbPool.query('SELECT seq, step, at FROM rotation_steps WHERE run_id = $1 ORDER BY seq', [runId])).rows;
      const commands = (await dbPool.query('SELECT command_id, kind, state, deliveries, issued_at, expires_at, completed_at FROM agent_commands ORDER BY generation')).rows;
      const agents = (await dbPool.query('SELECT agent_id, last_heartbeat_at, replica_id FROM agents')).rows;
      throw new Error(`${(err as Error).message}\nrun: ${JSON.stringify(run)}\nsteps: ${JSON.stringify(steps)}\ncommands: ${JSON.stringify(commands)}\nagents: ${JSON.stringify(agents)}\nnow: ${new Date().toISOString()}`);
    }
  };
  return stack;
}

/** Resolves with the signal (or exit code) when the process ends on its own. */
export function exited(p: RunningProcess, timeoutMs = 30_000): Promise<NodeJS.Signals | number | null> {
  return new Promise((resolve, reject) => {
    if (p.child.exitCode !== null || p.child.signalCode !== null) {
      resolve(p.child.signalCode ?? p.child.exitCode);
      return;
    }
    const timer = setTimeout(() => reject(new Error('the process did not exit')), timeoutMs);
    p.child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(signal ?? code);
    });
  });
}
