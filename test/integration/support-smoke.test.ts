/**
 * Smoke test of the test-support helpers themselves: if these fail, every
 * integration test that relies on them would fail for the wrong reason.
 */
import t from 'tap';
import pg from 'pg';
import { Redis } from 'ioredis';
import { connect } from 'node:net';
import { randomBytes } from 'node:crypto';
import {
  cleanupRedisPrefix,
  createTestDatabase,
  SHARED_REDIS_URL,
  uniqueRedisPrefix,
} from '../support/databases.js';
import { freePort } from '../support/free-port.js';
import { startPrivateRedis } from '../support/private-redis.js';
import { startScramPostgres } from '../support/scram-postgres.js';

/** Resolves true if something accepts TCP connections on 127.0.0.1:port. */
function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function withClient<T>(config: pg.ClientConfig, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionTimeoutMillis: 5000, ...config });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

t.test('freePort returns a bindable port', async (t) => {
  const port = await freePort();
  t.ok(port > 0 && port < 65536, `port ${port} is in range`);
  t.notOk(await portAnswers(port), 'nothing listens on it');
});

t.test('createTestDatabase creates an isolated database and drop removes it', async (t) => {
  const db = await createTestDatabase('smoke: Ünïcode & spaces');
  t.teardown(() => db.drop());
  t.match(db.name, /^sikker_test_smoke_n_code_spaces_[0-9a-f]{12}$/, 'name is a safe identifier');
  t.ok(db.name.length <= 63, 'name fits the identifier limit');
  const long = await createTestDatabase('x'.repeat(100));
  t.teardown(() => long.drop());
  t.ok(long.name.length <= 63, `long label is truncated (${long.name.length} chars)`);

  // a connection is left open on purpose: drop() must terminate it
  const lingering = new pg.Client({ connectionString: db.url });
  lingering.on('error', () => undefined);
  await lingering.connect();
  t.teardown(() => lingering.end().catch(() => undefined));
  await lingering.query('CREATE TABLE smoke (id int PRIMARY KEY, v text)');
  await lingering.query(`INSERT INTO smoke VALUES (1, 'one')`);
  const { rows } = await lingering.query<{ v: string }>('SELECT v FROM smoke WHERE id = 1');
  t.equal(rows[0]?.v, 'one', 'the new database is usable');

  await db.drop();
  await db.drop(); // idempotent
  const exists = await withClient({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres' }, (c) =>
    c.query('SELECT 1 FROM pg_database WHERE datname = $1', [db.name]),
  );
  t.equal(exists.rowCount, 0, 'the database is gone even though a client was connected');
});

t.test('uniqueRedisPrefix and cleanupRedisPrefix', async (t) => {
  const prefix = uniqueRedisPrefix('smoke test*[x]');
  t.match(prefix, /^sikker-test:smoke-test-x:[0-9a-f]{12}:$/, 'prefix is safe and unique');
  t.not(prefix, uniqueRedisPrefix('smoke test*[x]'), 'two calls differ');
  const other = uniqueRedisPrefix('smoke-other');
  const redis = new Redis(SHARED_REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  redis.on('error', () => undefined);
  t.teardown(async () => {
    await cleanupRedisPrefix(SHARED_REDIS_URL, prefix).catch(() => undefined);
    await cleanupRedisPrefix(SHARED_REDIS_URL, other).catch(() => undefined);
    redis.disconnect();
  });
  await redis.connect();
  const pipeline = redis.pipeline();
  for (let i = 0; i < 1500; i++) pipeline.set(`${prefix}k${i}`, 'v');
  pipeline.set(`${other}keep`, 'v');
  await pipeline.exec();
  t.equal(await cleanupRedisPrefix(SHARED_REDIS_URL, prefix), 1500, 'removes every key under the prefix');
  t.equal(await redis.exists(`${prefix}k0`), 0, 'keys are gone');
  t.equal(await redis.get(`${other}keep`), 'v', 'keys under another prefix are untouched');
  await t.rejects(cleanupRedisPrefix(SHARED_REDIS_URL, ''), /empty prefix/, 'an empty prefix is refused');
});

t.test('startPrivateRedis starts a server and stop() shuts it down', async (t) => {
  const server = await startPrivateRedis();
  t.teardown(() => server.stop());
  t.equal(server.url, `redis://127.0.0.1:${server.port}`);
  const redis = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  redis.on('error', () => undefined);
  t.teardown(() => redis.disconnect());
  await redis.connect();
  t.equal(await redis.ping(), 'PONG', 'answers PING');
  await redis.set('k', 'v');
  t.equal(await redis.get('k'), 'v', 'stores data');
  redis.disconnect();

  await server.stop();
  await server.stop(); // idempotent
  t.notOk(await portAnswers(server.port), 'the port refuses connections after stop()');
});

t.test('startScramPostgres checks passwords', async (t) => {
  const cluster = await startScramPostgres();
  t.teardown(() => cluster.stop());
  const role = `smoke_${randomBytes(4).toString('hex')}`;
  const password = randomBytes(12).toString('base64url');

  await withClient({ connectionString: cluster.superuserUrl }, async (c) => {
    const { rows } = await c.query<{ password_encryption: string }>('SHOW password_encryption');
    t.equal(rows[0]?.password_encryption, 'scram-sha-256', 'passwords are stored as SCRAM verifiers');
    await c.query(`CREATE ROLE ${role} LOGIN PASSWORD ${c.escapeLiteral(password)}`);
  });

  const connectAs = (user: string, pw: string) =>
    withClient({ host: '127.0.0.1', port: cluster.port, database: 'postgres', user, password: pw }, (c) =>
      c.query<{ u: string }>('SELECT current_user AS u'),
    );
  const ok = await connectAs(role, password);
  t.equal(ok.rows[0]?.u, role, 'the right password is accepted');
  await t.rejects(connectAs(role, `${password}x`), /password authentication failed/, 'a wrong password is refused');
  await t.rejects(
    connectAs('postgres', 'not-the-password'),
    /password authentication failed/,
    'the superuser needs its password too',
  );

  await cluster.stop();
  t.notOk(await portAnswers(cluster.port), 'the cluster is down after stop()');
});
