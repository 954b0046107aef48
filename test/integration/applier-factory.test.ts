/**
 * createApplier: drivers load lazily (an agent without a target of an engine
 * never loads its driver), and target / admin-credential mistakes are refused
 * once, at creation, without echoing a secret.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createApplier } from '../../agent/appliers/index.js';
import type { TargetConnection } from '../../agent/appliers/target.js';
import { assertCleanError, canaryPassword, rejection } from '../support/applier-fixtures.js';

const INDEX = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'agent', 'appliers', 'index.js');

const base: TargetConnection = {
  engine: 'postgres',
  host: '127.0.0.1',
  port: 5432,
  database: 'postgres',
  user: 'app',
  tls: { mode: 'disable' },
  privilege: { mode: 'admin', adminConnection: 'local' },
};

t.test('createApplier – loads only the driver of the engine it builds', async (t) => {
  // a fresh process: the test runner itself has loaded pg and ioredis long ago
  const script = `
    import { createRequire } from 'node:module';
    const cache = createRequire(import.meta.url).cache;
    const drivers = () => [...new Set(Object.keys(cache).flatMap((k) => /node_modules\\/(pg|mysql2|ioredis)\\//.exec(k)?.[1] ?? []))].sort();
    const { createApplier } = await import(${JSON.stringify(INDEX)});
    const afterImport = drivers();
    const redis = await createApplier({ engine: 'redis', host: '127.0.0.1', port: 6379, user: 'default', tls: { mode: 'disable' }, privilege: { mode: 'self' }, redisPasswordMode: 'requirepass' }, undefined);
    const afterRedis = drivers();
    await redis.close();
    console.log(JSON.stringify({ afterImport, afterRedis }));
  `;
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { timeout: 30_000 });
  const result = JSON.parse(stdout) as { afterImport: string[]; afterRedis: string[] };
  t.same(result.afterImport, [], 'importing the factory loads no driver');
  t.same(result.afterRedis, ['ioredis'], 'a Redis applier loads ioredis, and neither pg nor mysql2');
});

t.test('createApplier – admin credentials missing in admin mode', async (t) => {
  const err = await rejection(t, createApplier(base, undefined), 'create');
  assertCleanError(t, err, 'ERR_APPLIER_CONFIG', [], 'missing admin');
});

t.test('createApplier – admin credentials given in self mode', async (t) => {
  const canary = canaryPassword();
  const err = await rejection(t, createApplier({ ...base, privilege: { mode: 'self' } }, { user: 'postgres', password: canary.password }), 'create');
  assertCleanError(t, err, 'ERR_APPLIER_CONFIG', [canary], 'admin in self mode');
});

t.test('createApplier – malformed admin URLs are refused without echoing them', async (t) => {
  const canary = canaryPassword();
  const token = canary.token;
  for (const url of [`postgres://admin:${token}@127.0.0.1:notaport/db`, `mysql://admin:${token}@127.0.0.1/db`, `postgres://admin:${token}%zz@127.0.0.1/db`]) {
    const err = await rejection(t, createApplier(base, { url }), 'create');
    assertCleanError(t, err, 'ERR_APPLIER_CONFIG', [canary], url.split(':')[0] ?? 'url');
  }
});

t.test('createApplier – invalid targets and options', async (t) => {
  const cases: [string, TargetConnection][] = [
    ['port 0', { ...base, port: 0 }],
    ['empty user', { ...base, user: '' }],
    ['unknown engine', { ...base, engine: 'oracle' as never }],
    ['unknown tls mode', { ...base, tls: { mode: 'maybe' as never } }],
    ['requirepass for another user', { ...base, engine: 'redis', user: 'app', redisPasswordMode: 'requirepass' }],
    ['mysqlAccountHost on postgres', { ...base, mysqlAccountHost: '%' }],
  ];
  for (const [what, target] of cases) {
    const err = await rejection(t, createApplier(target, { user: 'a', password: 'b' }), what);
    assertCleanError(t, err, 'ERR_APPLIER_CONFIG', [], what);
  }
  const err = await rejection(t, createApplier(base, { user: 'a', password: 'b' }, { connectTimeoutMs: -1 }), 'options');
  assertCleanError(t, err, 'ERR_APPLIER_CONFIG', [], 'negative timeout');
});

t.test('createApplier – opens no connection until first use', async (t) => {
  // nothing listens on port 1: creation still succeeds, the first call reports it
  const applier = await createApplier({ ...base, port: 1 }, { user: 'postgres', password: 'x' });
  t.teardown(() => applier.close());
  const result = await applier.preflight({ user: 'app', strategy: 'replace' });
  t.same(result.problems.map((p) => p.code), ['ERR_APPLIER_UNREACHABLE'], 'first use: ERR_APPLIER_UNREACHABLE');
});
