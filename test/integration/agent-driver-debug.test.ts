/**
 * The daemon drops DEBUG before any driver loads (agent/cli/driver-debug.ts): with
 * `DEBUG=ioredis:*`, ioredis would print the AUTH command's password. Both halves run
 * in a child process against the shared Redis, so the test shows the leak it prevents.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { SHARED_REDIS_URL } from '../support/databases.js';

const CANARY = 'canary-debug-auth-9c41e';
const dropModule = fileURLToPath(new URL('../../agent/cli/driver-debug.js', import.meta.url));

/** A child that sends AUTH with the canary (refused: no such user), after dropping DEBUG or not; its stderr. */
function authWithDebug(t: Test, drop: boolean): string {
  const script = `
    const { dropDriverDebug } = await import(${JSON.stringify(dropModule)});
    if (${drop}) dropDriverDebug(process.env);
    const { default: Redis } = await import('ioredis');
    const redis = new Redis(${JSON.stringify(SHARED_REDIS_URL)}, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: true });
    await redis.connect();
    await redis.auth('sikker-no-such-user', ${JSON.stringify(CANARY)}).catch(() => undefined);
    redis.disconnect();
  `;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, DEBUG: 'ioredis:*' }, encoding: 'utf8', timeout: 20_000 });
  t.equal(child.status, 0, `the child ran (${child.stderr.slice(-300)})`);
  return child.stderr;
}

t.test('with DEBUG=ioredis:* the driver prints AUTH\'s password; the daemon drops DEBUG first, and nothing is printed', async (t) => {
  t.match(authWithDebug(t, false), CANARY, 'without dropping DEBUG the password is on stderr (what the daemon prevents)');
  t.notMatch(authWithDebug(t, true), CANARY, 'with DEBUG dropped, no trace of it');
});
