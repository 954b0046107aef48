/**
 * A control plane, one in-process agent with admin connections, and a database
 * server that really checks passwords: everything a rotation test needs, with
 * helpers to make users and to try logins on a fresh connection.
 *
 * The engine-neutral part is {@link engineRotationFixture}, driven by a
 * {@link RotationDatabase} that says how to reach one server (PostgreSQL,
 * MariaDB/MySQL, Redis …). {@link rotationFixture} is that fixture on a private
 * SCRAM PostgreSQL cluster ({@link startScramCluster}).
 */
import { postgresLogsIn } from './postgres-login.js';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { Test } from 'tap';
import type { AdminCredentials } from '../../agent/appliers/target.js';
import type { ApplierFactory } from '../../agent/commands/rotation-context.js';
import type { HubClient } from '../../agent/hub-client/hub-client.js';
import type { SinkConfig } from '../../agent/sinks/sink-config.js';
import type { AgentIdentity } from '../../agent/hub-client/hub-client-options.js';
import type { TargetSpec } from '../../shared/protocol/rotation-commands.js';
import { enrollAgent, eventually, once, startAgent } from './agents.js';
import { startHarness, type Harness } from './control-plane-harness.js';
import { startScramPostgres, type ScramPostgres } from './scram-postgres.js';

/** Run states after which nothing changes any more. */
export const FINISHED_RUN_STATES = ['done', 'failed', 'parked'] as const;

/**
 * One database server a rotation test rotates users on: how targets reach it, and
 * how the test itself makes users and tries logins (never through the agent).
 */
export interface RotationDatabase {
  /** Admin logins the in-process agent gets, by the name targets give in `privilege.adminConnection`. */
  adminConnections: ReadonlyMap<string, AdminCredentials>;
  /** The `connection` of `target add` for `user` (normally admin mode through one of `adminConnections`). */
  connection(user: string): TargetSpec;
  /** Makes a uniquely named user that logs in with `password`; removed when `t` ends. Returns its name. */
  createUser(t: Test, password: string): Promise<string>;
  /** A fresh login as `user` with `password`: true when accepted, false when refused; throws for anything else. */
  logsIn(user: string, password: string): Promise<boolean>;
}

/** A control plane with an agent for one {@link RotationDatabase}. */
export interface EngineRotationFixture {
  h: Harness;
  agent: HubClient;
  agentIdentity: AgentIdentity;
  project: string;
  database: RotationDatabase;
  /** Creates a user with `password`, removed at teardown. */
  createUser(password: string): Promise<string>;
  /** A fresh connection as `user` with `password`: true when the server accepts the login. */
  logsIn(user: string, password: string): Promise<boolean>;
  /** `target add` for `user` (secret `<name>-password`) with the database's connection; `extra` overrides any field. */
  addTarget(name: string, user: string, extra?: Record<string, unknown>): Promise<any>;
  /** Waits for the run to reach one of `states` (bounded). */
  waitRun(runId: string, states: readonly string[], timeoutMs?: number): Promise<any>;
  /** Waits until the target has no run in flight (bounded); returns its runs, newest first. */
  waitIdle(target: string, timeoutMs?: number): Promise<any[]>;
  secretValue(secret: string, version?: number): Promise<string>;
}

/** The PostgreSQL fixture of rotation-engine.test.ts: the generic one plus the cluster and `createRole`. */
export interface RotationFixture extends EngineRotationFixture {
  pg: ScramPostgres;
  /** Creates a login role with `password`, dropped at teardown. */
  createRole(password: string): Promise<string>;
}

export interface RotationFixtureOptions {
  env?: Record<string, string>;
  createApplier?: ApplierFactory;
  /** Sinks configured on the agent. */
  sinks?: SinkConfig[];
}

/** One per test file: the private cluster is shared by its tests. */
export async function startScramCluster(t: Test): Promise<ScramPostgres> {
  const server = await startScramPostgres();
  t.teardown(() => server.stop());
  return server;
}

/** A control plane (project `p`), one enrolled agent with `database`'s admin connections, connected. */
export async function engineRotationFixture(t: Test, database: RotationDatabase, options: RotationFixtureOptions = {}): Promise<EngineRotationFixture> {
  const h = await startHarness(t, { label: 'rotation', env: { SIKKER_ROTATION_SWEEP_MS: '100', ...options.env } });
  const project = 'p';
  await h.admin.ok('POST', '/v1/projects', { name: project });
  const agentIdentity = await enrollAgent(h.admin, project);
  const agent = startAgent(h.baseUrl, agentIdentity, {
    adminConnections: database.adminConnections,
    ...(options.createApplier === undefined ? {} : { createApplier: options.createApplier }),
    ...(options.sinks === undefined ? {} : { sinks: options.sinks }),
  });
  t.teardown(() => agent.stop(2000));
  await once(agent, 'connected');
  const runsOf = async (target: string): Promise<any[]> => (await h.admin.ok('GET', `/v1/projects/${project}/runs?target=${target}&limit=100`)).runs;
  return {
    h, agent, agentIdentity, project, database,
    createUser: (password) => database.createUser(t, password),
    logsIn: (user, password) => database.logsIn(user, password),
    async addTarget(name, user, extra = {}) {
      return h.admin.ok('POST', `/v1/projects/${project}/targets`, {
        name, secret: `${name}-password`, agentId: agentIdentity.identityId, connection: database.connection(user), ...extra,
      });
    },
    async waitRun(runId, states, timeoutMs = 15_000) {
      return eventually(async () => {
        const run = await h.admin.ok('GET', `/v1/projects/${project}/runs/${runId}`);
        return states.includes(run.state) ? run : undefined;
      }, timeoutMs, `run ${runId} to reach ${states.join('/')}`);
    },
    async waitIdle(target, timeoutMs = 15_000) {
      return eventually(async () => {
        const runs = await runsOf(target);
        return runs.every((r) => (FINISHED_RUN_STATES as readonly string[]).includes(r.state)) ? runs : undefined;
      }, timeoutMs, `target ${target} to have no run in flight`);
    },
    async secretValue(secret, version) {
      const query = version === undefined ? '' : `?version=${version}`;
      return (await h.admin.ok('GET', `/v1/projects/${project}/secrets/${secret}${query}`)).value;
    },
  };
}

/**
 * A {@link RotationDatabase} on the private SCRAM cluster: admin connection `pg`
 * (the superuser), roles `sk_rot_<hex>`. The superuser session used to make roles
 * ends, and every role is dropped, when `t` ends.
 */
export async function scramPostgresDatabase(t: Test, server: ScramPostgres): Promise<RotationDatabase> {
  const superuser = new pg.Client({ connectionString: server.superuserUrl });
  superuser.on('error', () => undefined);
  await superuser.connect();
  const roles: string[] = [];
  t.teardown(async () => {
    for (const role of roles) await superuser.query(`DROP ROLE IF EXISTS ${role}`).catch(() => undefined);
    await superuser.end();
  });
  return {
    adminConnections: new Map([['pg', { url: server.superuserUrl }]]),
    connection: (user) => ({ engine: 'postgres', host: '127.0.0.1', port: server.port, database: 'postgres', user, tls: { mode: 'disable' }, privilege: { mode: 'admin', adminConnection: 'pg' } }),
    async createUser(_t, password) {
      // the fixture-level teardown drops it: roles outlive no test file
      const role = `sk_rot_${randomBytes(4).toString('hex')}`;
      await superuser.query(`CREATE ROLE ${role} LOGIN PASSWORD '${password.replace(/'/g, "''")}'`);
      roles.push(role);
      return role;
    },
    logsIn: (user, password) => postgresLogsIn(server.port, user, password),
  };
}

/** {@link engineRotationFixture} on the private SCRAM PostgreSQL cluster `server`. */
export async function rotationFixture(t: Test, server: ScramPostgres, options: RotationFixtureOptions = {}): Promise<RotationFixture> {
  const fx = await engineRotationFixture(t, await scramPostgresDatabase(t, server), options);
  return { ...fx, pg: server, createRole: fx.createUser };
}
