/**
 * Per-test isolation on the shared PostgreSQL and Redis servers: a fresh
 * database per test file, a unique key prefix per test.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import pg from 'pg';

/**
 * Maintenance connection to the shared PostgreSQL server (trust auth).
 * Overridable with $SIKKER_TEST_PG_ADMIN_URL.
 */
export const SHARED_PG_ADMIN_URL =
  process.env['SIKKER_TEST_PG_ADMIN_URL'] || 'postgres://postgres@127.0.0.1:5432/postgres';

/** The shared Redis server. Overridable with $SIKKER_TEST_REDIS_URL. */
export const SHARED_REDIS_URL = process.env['SIKKER_TEST_REDIS_URL'] || 'redis://127.0.0.1:6379';

/** Every database made by {@link createTestDatabase} starts with this. */
export const TEST_DATABASE_PREFIX = 'sikker_test_';

/** A database created by {@link createTestDatabase}. */
export interface TestDatabase {
  /** Connection URL for the new database, as user postgres (trust auth). */
  url: string;
  /** The database's name: `sikker_test_<label>_<random>`. */
  name: string;
  /**
   * Terminate every connection to the database and drop it. Idempotent;
   * safe to call from t.teardown even if creation of tables failed.
   */
  drop(): Promise<void>;
}

/**
 * Reduce a free-form label to `[a-z0-9_]`, at most `max` characters, never
 * empty. Exported for tests and other helpers that build identifiers.
 */
export function sanitizeLabel(label: string, max: number): string {
  const cleaned = label
    .toLowerCase()
    .replace(/[^a-z0-9_]+/g, '_')
    .replace(/_+/g, '_')
    .replace(/^_|_$/g, '')
    .slice(0, max)
    .replace(/_$/, '');
  return cleaned === '' ? 'x' : cleaned;
}

/**
 * Create a uniquely named, empty database on the shared PostgreSQL server.
 *
 * Contract: the name is `sikker_test_<label>_<12 hex>` where the label is
 * lower-cased, reduced to `[a-z0-9_]` and truncated so that the name fits
 * PostgreSQL's 63-byte identifier limit; it therefore never needs quoting.
 * The database is owned by `postgres`, created from template0 with UTF8
 * encoding, and carries a `COMMENT` with its creation time so that
 * {@link sweepStaleTestDatabases} can remove ones leaked by killed runs.
 * Call `drop()` in t.teardown.
 *
 * Failure modes: rejects if the shared server is unreachable (run
 * ensureServices first) or refuses CREATE DATABASE; nothing is left behind
 * in that case.
 */
export async function createTestDatabase(label: string): Promise<TestDatabase> {
  const random = randomBytes(6).toString('hex');
  const maxLabel = 63 - TEST_DATABASE_PREFIX.length - 1 - random.length;
  const name = `${TEST_DATABASE_PREFIX}${sanitizeLabel(label, maxLabel)}_${random}`;
  const comment = JSON.stringify({ createdAt: new Date().toISOString(), pid: process.pid, label });
  await withAdminClient(async (client) => {
    await client.query(`CREATE DATABASE "${name}" TEMPLATE template0 ENCODING 'UTF8'`);
    try {
      await client.query(`COMMENT ON DATABASE "${name}" IS ${client.escapeLiteral(comment)}`);
    } catch (err) {
      await dropDatabase(client, name).catch(() => undefined);
      throw err;
    }
  });
  const url = new URL(SHARED_PG_ADMIN_URL);
  url.pathname = `/${name}`;
  let dropped: Promise<void> | undefined;
  return {
    url: url.toString(),
    name,
    drop() {
      dropped ??= withAdminClient((client) => dropDatabase(client, name));
      return dropped;
    },
  };
}

/**
 * Drop test databases (name prefix `sikker_test_`) whose creation comment is
 * older than `maxAgeMs` (default 6 h), i.e. leaked by runs that were killed
 * before their teardown ran. Young databases are left alone because another
 * test run may be using them. Returns the names dropped.
 *
 * Failure modes: rejects if the shared server is unreachable; a database that
 * cannot be dropped is skipped (reported through the returned list's absence).
 */
export async function sweepStaleTestDatabases(maxAgeMs = 6 * 60 * 60 * 1000): Promise<string[]> {
  return withAdminClient(async (client) => {
    const { rows } = await client.query<{ datname: string; comment: string | null }>(
      `SELECT datname, shobj_description(oid, 'pg_database') AS comment
         FROM pg_database WHERE datname LIKE 'sikker\\_test\\_%'`,
    );
    const dropped: string[] = [];
    for (const row of rows) {
      let createdAt = Number.NaN;
      try {
        const parsed: unknown = JSON.parse(row.comment ?? '');
        if (typeof parsed === 'object' && parsed !== null && 'createdAt' in parsed) {
          createdAt = Date.parse(String(parsed.createdAt));
        }
      } catch {
        // no or foreign comment: treat as unknown age, keep it
      }
      if (!Number.isFinite(createdAt) || Date.now() - createdAt < maxAgeMs) continue;
      if (!/^[a-z0-9_]+$/.test(row.datname)) continue;
      try {
        await dropDatabase(client, row.datname);
        dropped.push(row.datname);
      } catch {
        // in use by something we could not terminate, or already gone
      }
    }
    return dropped;
  });
}

async function withAdminClient<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: SHARED_PG_ADMIN_URL, connectionTimeoutMillis: 10_000 });
  client.on('error', () => {
    // surfaced through the awaited query instead
  });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function dropDatabase(client: pg.Client, name: string): Promise<void> {
  const { rows } = await client.query<{ v: string }>(`SELECT current_setting('server_version_num') AS v`);
  if (Number(rows[0]?.v ?? 0) >= 130000) {
    await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    return;
  }
  await client.query(`UPDATE pg_database SET datallowconn = false WHERE datname = $1`, [name]);
  await client.query(
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
    [name],
  );
  await client.query(`DROP DATABASE IF EXISTS "${name}"`);
}

/**
 * A Redis key prefix unique to this call: `sikker-test:<label>:<12 hex>:`.
 * The label is reduced to `[a-z0-9_-]` (max 40 chars), so the prefix holds no
 * glob characters. With BullMQ, which appends its own `:`, pass the prefix
 * without the trailing colon; {@link cleanupRedisPrefix} matches either way.
 */
export function uniqueRedisPrefix(label: string): string {
  const cleaned = label.toLowerCase().replace(/[^a-z0-9_-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 40) || 'x';
  return `sikker-test:${cleaned}:${randomBytes(6).toString('hex')}:`;
}

/**
 * Delete every key that starts with `prefix` on the Redis server at `url`,
 * using SCAN MATCH (glob characters in the prefix are escaped) and UNLINK in
 * batches, so it never blocks the server. Returns the number of keys removed.
 *
 * Failure modes: rejects if Redis cannot be reached within 5 s or a command
 * fails; refuses (throws) an empty prefix, which would wipe the server.
 */
export async function cleanupRedisPrefix(url: string, prefix: string): Promise<number> {
  if (prefix === '') throw new Error('cleanupRedisPrefix: refusing an empty prefix');
  const pattern = `${prefix.replace(/[\\*?[\]^]/g, (c) => `\\${c}`)}*`;
  const redis = new Redis(url, {
    lazyConnect: true,
    connectTimeout: 5000,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  redis.on('error', () => {
    // surfaced through the awaited commands
  });
  let removed = 0;
  try {
    await redis.connect();
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) removed += await redis.unlink(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
  return removed;
}

/** Every value stored under `prefix` (strings, hashes, lists, sets, sorted sets, streams) as one text, for canary checks. */
export async function dumpRedisPrefix(url: string, prefix: string): Promise<string> {
  const { Redis } = await import('ioredis');
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  try {
    const parts: string[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
      cursor = next;
      for (const key of keys) {
        const type = await redis.type(key);
        let value: unknown;
        if (type === 'string') value = await redis.getBuffer(key).then((b) => b?.toString('latin1'));
        else if (type === 'hash') value = await redis.hgetall(key);
        else if (type === 'list') value = await redis.lrange(key, 0, -1);
        else if (type === 'set') value = await redis.smembers(key);
        else if (type === 'zset') value = await redis.zrange(key, 0, -1, 'WITHSCORES');
        else if (type === 'stream') value = await redis.xrange(key, '-', '+');
        parts.push(`${key} ${JSON.stringify(value)}`);
      }
    } while (cursor !== '0');
    return parts.join('\n');
  } finally {
    redis.disconnect();
  }
}
