/**
 * The database work of a password change with nothing around it: `ALTER ROLE … PASSWORD`
 * on already open admin connections, as fast as `connections` of them can go, over a
 * list of roles (round robin). The figure a fleet of agents is compared with.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { scramSha256Verifier } from '../../agent/appliers/postgres-scram-verifier.js';
import { benchAbortSignal } from './cleanup.js';

export interface AlterRoleRateOptions {
  /** Superuser URL of the cluster. */
  url: string;
  roles: readonly string[];
  /** Open connections, one statement in flight on each. */
  connections: number;
  /** Keep going until both are reached. */
  minSeconds: number;
  minAlters: number;
  /**
   * `plaintext`: a fresh random password (the server derives the SCRAM verifier);
   * `verifier`: SCRAM-SHA-256 verifiers computed before the clock starts (what the
   * agent sends, minus its cost of computing one).
   */
  password: 'plaintext' | 'verifier';
  /** Statements per connection before the clock starts (not counted). */
  warmupPerConnection?: number;
  /**
   * After each ALTER, a fresh login as the role with the new password and SELECT 1 (plaintext
   * mode only): the least database work a *verified* rotation does. Needs the cluster at
   * `port` on 127.0.0.1.
   */
  verifyLoginPort?: number;
}

export interface AlterRoleRate {
  mode: 'plaintext' | 'verifier' | 'plaintext+login';
  connections: number;
  alters: number;
  seconds: number;
  perSecond: number;
}

/** Verifiers prepared for the `verifier` mode (one per role, reused round robin). */
async function verifiers(count: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < count; i += 1) out.push(await scramSha256Verifier(randomBytes(24).toString('base64url')));
  return out;
}

/**
 * Runs the ALTER ROLE loop and returns its rate. Rejects if any statement fails (the
 * roles must exist and the URL must be a superuser's).
 */
export async function alterRoleRate(o: AlterRoleRateOptions): Promise<AlterRoleRate> {
  if (o.roles.length === 0) throw new Error('alterRoleRate: no roles');
  if (o.verifyLoginPort !== undefined && o.password !== 'plaintext') throw new Error('alterRoleRate: a verifying login needs the plaintext');
  const prepared = o.password === 'verifier' ? await verifiers(o.roles.length) : null;
  const clients: pg.Client[] = [];
  try {
    for (let c = 0; c < o.connections; c += 1) {
      const client = new pg.Client({ connectionString: o.url, connectionTimeoutMillis: 10_000 });
      client.on('error', () => undefined); // surfaced through the awaited queries
      await client.connect();
      clients.push(client);
    }
    let next = 0;
    const alterNext = async (client: pg.Client): Promise<void> => {
      const i = next;
      next += 1;
      const role = o.roles[i % o.roles.length] as string;
      const value = prepared === null ? randomBytes(24).toString('base64url') : (prepared[i % prepared.length] as string);
      await client.query(`ALTER ROLE ${client.escapeIdentifier(role)} PASSWORD ${client.escapeLiteral(value)}`);
      if (o.verifyLoginPort !== undefined) await freshLogin(o.verifyLoginPort, role, value);
    };
    const warmup = o.warmupPerConnection ?? 10;
    await Promise.all(clients.map(async (client) => {
      for (let i = 0; i < warmup; i += 1) await alterNext(client);
    }));
    let alters = 0;
    const t0 = performance.now();
    const deadline = t0 + o.minSeconds * 1000;
    await Promise.all(clients.map(async (client) => {
      while (performance.now() < deadline || alters < o.minAlters) {
        benchAbortSignal.throwIfAborted();
        await alterNext(client);
        alters += 1;
      }
    }));
    const seconds = (performance.now() - t0) / 1000;
    return { mode: o.verifyLoginPort === undefined ? o.password : 'plaintext+login', connections: o.connections, alters, seconds, perSecond: alters / seconds };
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  }
}

/** Logs in as `user` with `password` on a new connection, runs SELECT 1, closes; rejects if refused. */
async function freshLogin(port: number, user: string, password: string): Promise<void> {
  const client = new pg.Client({ host: '127.0.0.1', port, database: 'postgres', user, password, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined); // surfaced through connect/query
  try {
    await client.connect();
    await client.query('SELECT 1');
  } finally {
    await client.end().catch(() => undefined);
  }
}
