/**
 * Rotation runs end to end on Redis: control plane, real agent (HubClient), real
 * redis-servers. Every "accepted" or "refused" below is a fresh connection that
 * sends AUTH.
 *
 * Both servers are private to this file (test/support/private-redis.ts), not the
 * shared one the control plane uses: an ACL applier saves its change with
 * CONFIG REWRITE when the server has a config file, which would write this file's
 * users into a shared server's config; a private server without one also makes
 * the persistence warning certain. ACL users are uniquely named and deleted at
 * teardown; the requirepass server changes a server-wide setting, so it has a
 * server of its own.
 */
import t, { type Test } from 'tap';
import { Redis } from 'ioredis';
import { randomBytes } from 'node:crypto';
import { leakByNameAndValue, scheduledOnTime, testedTarget } from '../support/engine-scenarios.js';
import { randomPassword } from '../support/applier-fixtures.js';
import { startPrivateRedis } from '../support/private-redis.js';
import { engineRotationFixture, FINISHED_RUN_STATES, type EngineRotationFixture, type RotationDatabase } from '../support/rotation-fixture.js';

/**
 * A connection that authenticates only when told to, and never reconnects. No ready
 * check: its INFO would meet NOAUTH on a requirepass server and ioredis would hang up.
 */
async function connect(port: number): Promise<Redis> {
  const redis = new Redis({ host: '127.0.0.1', port, lazyConnect: true, enableReadyCheck: false, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
  redis.on('error', () => undefined);
  await redis.connect();
  return redis;
}

/** A fresh connection sending `AUTH [user] password`: true when accepted, false on WRONGPASS. */
async function auths(port: number, user: string | undefined, password: string): Promise<boolean> {
  const redis = await connect(port);
  try {
    await redis.call('AUTH', ...(user === undefined ? [] : [user]), password);
    await redis.call('PING');
    return true;
  } catch (err) {
    if (/^WRONGPASS/.test((err as Error).message)) return false;
    throw err;
  } finally {
    redis.disconnect();
  }
}

// ACL server: the agent's admin is an ACL user with a password; the test itself works as `default`
const aclServer = await startPrivateRedis();
t.teardown(() => aclServer.stop());
const ADMIN_PASSWORD = randomPassword('admin');
const acl = await connect(aclServer.port);
t.teardown(() => acl.disconnect());
await acl.call('ACL', 'SETUSER', 'sk_admin', 'on', `>${ADMIN_PASSWORD}`, '~*', '&*', '+@all');

const prefix = `sk_rot_${randomBytes(3).toString('hex')}`;
let counter = 0;

const redisAcl: RotationDatabase = {
  adminConnections: new Map([['redis', { url: `redis://sk_admin:${encodeURIComponent(ADMIN_PASSWORD)}@127.0.0.1:${aclServer.port}` }]]),
  connection: (user) => ({ engine: 'redis', host: '127.0.0.1', port: aclServer.port, user, tls: { mode: 'disable' }, privilege: { mode: 'admin', adminConnection: 'redis' }, redisPasswordMode: 'acl' }),
  async createUser(t: Test, password: string) {
    const name = `${prefix}_${counter++}`;
    await acl.call('ACL', 'SETUSER', name, 'on', `>${password}`, '+ping');
    t.teardown(() => acl.call('ACL', 'DELUSER', name));
    return name;
  },
  logsIn: (user, password) => auths(aclServer.port, user, password),
};

const stepNames = (run: { steps: Array<{ step: string }> }): string[] => run.steps.map((s) => s.step);

t.test('redis acl replace – rotate now: committed, the new password logs in, the old one is refused', async (t) => {
  const fx = await engineRotationFixture(t, redisAcl);
  const { user, password, tested } = await testedTarget(fx, 'cache');
  t.equal(tested.target.preflight.ok, true, `preflight passes ${tested.target.preflight.problems}`);
  t.same(tested.target.preflight.strategies, ['replace', 'dual'], 'ACL users hold many passwords: replace and dual');
  t.match(tested.target.preflight.server, /^redis \d+\./, 'the server is described');

  const started = await fx.h.admin.ok('POST', '/v1/projects/p/targets/cache/rotate', {});
  const run = await fx.waitRun(started.run.runId, FINISHED_RUN_STATES);
  t.equal(run.state, 'done', `run ended ${run.state} ${run.errorCode ?? ''} ${run.errorMessage ?? ''}`);
  t.same(stepNames(run), ['created', 'pending stored', 'dispatched to agent', 'applied and verified by agent', 'committed (verified)'], 'steps in order');
  t.match(run.steps[3].detail, { verified: true, oldPasswordRetained: false, persisted: false }, 'the agent reports the change is not persisted');
  const newPassword = await fx.secretValue('cache-password');
  t.not(newPassword, password);
  t.equal(await fx.logsIn(user, newPassword), true, 'the new password logs in');
  t.equal(await fx.logsIn(user, password), false, 'the old password is refused');
  const [, , , hashes] = (await acl.call('ACL', 'GETUSER', user)) as unknown[];
  t.equal((hashes as string[]).length, 1, 'the user holds one password');
  const versions = await fx.h.admin.ok('GET', '/v1/projects/p/secrets/cache-password/versions');
  t.match(versions.versions, [{ version: 1, label: 'previous', state: 'revoked' }, { version: 2, label: 'current', state: 'active' }]);
  const actions = (await fx.h.admin.ok('GET', '/v1/audit?limit=200')).records.map((r: { action: string }) => r.action);
  const expected = ['target.add', 'target.test', 'rotation.start', 'rotation.pending', 'rotation.dispatch', 'rotation.commit'];
  t.same(actions.filter((a: string) => expected.includes(a)).reverse(), expected, 'audited in order');
  t.notOk(fx.h.logs.text().includes(newPassword), 'the new password is in no control-plane log line');
});

t.test('redis acl preflight – a change that does not survive a restart is a warning shown on the target', async (t) => {
  const fx = await engineRotationFixture(t, redisAcl);
  const { tested } = await testedTarget(fx, 'volatile');
  t.equal(tested.target.preflight.ok, true, 'a warning does not fail the preflight');
  // the private server runs without a config file or aclfile, so the applier always warns here
  t.match(tested.target.preflight.warnings, /WARN_APPLIER_NOT_PERSISTED/, 'the test answer carries the warning');
  const shown = await fx.h.admin.ok('GET', '/v1/projects/p/targets/volatile');
  t.match(shown.preflight.warnings, /WARN_APPLIER_NOT_PERSISTED .*lost on restart/, 'the stored target shows it, with the reason');
  t.equal(shown.preflight.problems, '', 'and no problem');
});

t.test('redis acl dual – during grace the old and the new password log in; afterwards only the new one', async (t) => {
  const fx = await engineRotationFixture(t, redisAcl);
  const { user, password } = await testedTarget(fx, 'twin', {}, 'dual');
  await fx.h.admin.ok('PUT', '/v1/projects/p/targets/twin/policy', { policy: { schedule: { kind: 'every', seconds: 3600 }, strategy: 'dual', graceSeconds: 2 } });

  const started = await fx.h.admin.ok('POST', '/v1/projects/p/targets/twin/rotate', {});
  t.equal(started.run.strategy, 'dual');
  t.equal(started.run.user, user, 'the same user gets a second password');
  const committed = await fx.waitRun(started.run.runId, ['committed', 'revoking', ...FINISHED_RUN_STATES]);
  t.equal(committed.state, 'committed', 'committed, in its grace period');
  t.match(committed.steps.find((s: { step: string }) => s.step === 'applied and verified by agent')?.detail, { oldPasswordRetained: true });
  const newPassword = await fx.secretValue('twin-password');
  t.equal(await fx.logsIn(user, newPassword), true, 'during grace: the new password logs in');
  t.equal(await fx.logsIn(user, password), true, 'during grace: the old password still logs in');
  t.ok(Date.now() < new Date(committed.committedAt).getTime() + 2000, 'both logins were checked inside the grace period');
  const during = await fx.h.admin.ok('GET', '/v1/projects/p/secrets/twin-password/versions');
  t.match(during.versions, [{ version: 1, label: 'previous', state: 'active' }, { version: 2, label: 'current', state: 'active' }], 'the previous version stays active in grace');

  const done = await fx.waitRun(started.run.runId, FINISHED_RUN_STATES);
  t.equal(done.state, 'done');
  t.same(stepNames(done).slice(-3), ['committed (verified)', 'grace over: revoking previous', 'previous revoked']);
  t.match(done.steps.at(-1).detail, { outcome: 'removed' }, 'the agent removed the old password');
  t.equal(await fx.logsIn(user, password), false, 'after grace: the old password is refused');
  t.equal(await fx.logsIn(user, newPassword), true, 'after grace: the new password still logs in');
  const after = await fx.h.admin.ok('GET', '/v1/projects/p/secrets/twin-password/versions');
  t.match(after.versions, [{ version: 1, state: 'revoked' }, { version: 2, label: 'current', state: 'active' }]);
});

t.test('redis acl alternate – the resting user gets the new password; the previous works through the grace period, then is refused', async (t) => {
  const fx = await engineRotationFixture(t, redisAcl);
  const first = randomPassword('blue');
  const blue = await fx.createUser(first);
  const green = await fx.createUser(randomPassword('green-unknown'));
  await fx.addTarget('alt', blue, { adoptPassword: first, alternateUser: green });
  const tested = await fx.h.admin.ok('POST', '/v1/projects/p/targets/alt/test', {});
  t.equal(tested.target.preflight.ok, true, `both users pass ${tested.target.preflight.problems}`);
  await fx.h.admin.ok('PUT', '/v1/projects/p/targets/alt/policy', { policy: { schedule: { kind: 'every', seconds: 3600 }, strategy: 'alternate', graceSeconds: 2 } });

  const started = await fx.h.admin.ok('POST', '/v1/projects/p/targets/alt/rotate', {});
  t.equal(started.run.user, green, 'the resting user is rotated');
  const committed = await fx.waitRun(started.run.runId, ['committed', 'revoking', ...FINISHED_RUN_STATES]);
  t.equal(committed.state, 'committed', 'committed, in its grace period');
  const greenPassword = await fx.secretValue('alt-password');
  t.equal(await fx.logsIn(green, greenPassword), true, 'during grace: the new user logs in');
  t.equal(await fx.logsIn(blue, first), true, 'during grace: the previous user still logs in');
  t.ok(Date.now() < new Date(committed.committedAt).getTime() + 2000, 'both logins were checked inside the grace period');

  const done = await fx.waitRun(started.run.runId, FINISHED_RUN_STATES);
  t.equal(done.state, 'done');
  t.same(stepNames(done).slice(-3), ['committed (verified)', 'grace over: revoking previous', 'previous revoked']);
  t.equal(await fx.logsIn(blue, first), false, 'after grace: the previous credential is refused');
  t.equal(await fx.logsIn(green, greenPassword), true, 'after grace: the current one still works');
});

t.test('redis acl scheduled – a policy every 2 s rotates on time, and the password works afterwards', async (t) => {
  await scheduledOnTime(t, await engineRotationFixture(t, redisAcl));
});

t.test('redis requirepass replace – the default user\'s adopted password is rotated: AUTH with the old fails, the new works', async (t) => {
  const server = await startPrivateRedis();
  t.teardown(() => server.stop());
  const initial = randomPassword('requirepass');
  const bootstrap = await connect(server.port);
  await bootstrap.call('CONFIG', 'SET', 'requirepass', initial);
  bootstrap.disconnect();
  t.equal(await auths(server.port, undefined, initial), true, 'precondition: AUTH with the configured requirepass works');

  const fx = await engineRotationFixture(t, redisAcl);
  await fx.addTarget('main', 'default', {
    adoptPassword: initial,
    connection: { engine: 'redis', host: '127.0.0.1', port: server.port, user: 'default', tls: { mode: 'disable' }, privilege: { mode: 'self' }, redisPasswordMode: 'requirepass' },
  });
  const tested = await fx.h.admin.ok('POST', '/v1/projects/p/targets/main/test', {});
  t.equal(tested.target.preflight.ok, true, `preflight passes ${tested.target.preflight.problems}`);
  t.same(tested.target.preflight.strategies, ['replace'], 'requirepass holds one password: replace only');

  const started = await fx.h.admin.ok('POST', '/v1/projects/p/targets/main/rotate', {});
  const run = await fx.waitRun(started.run.runId, FINISHED_RUN_STATES);
  t.equal(run.state, 'done', `run ended ${run.state} ${run.errorCode ?? ''} ${run.errorMessage ?? ''}`);
  t.same(stepNames(run), ['created', 'pending stored', 'dispatched to agent', 'applied and verified by agent', 'committed (verified)'], 'steps in order');
  const newPassword = await fx.secretValue('main-password');
  t.not(newPassword, initial);
  t.equal(await auths(server.port, undefined, initial), false, 'AUTH with the old password fails');
  t.equal(await auths(server.port, undefined, newPassword), true, 'AUTH with the new password works');
  t.equal(await auths(server.port, 'default', newPassword), true, 'so does AUTH default <new>');
});

t.test('redis acl leak – by name and by value: the leaked password is refused, the new one works', async (t) => {
  const fx = await engineRotationFixture(t, redisAcl);
  const byName = await testedTarget(fx, 'leak-name');
  const byValue = await testedTarget(fx, 'leak-value');
  await leakByNameAndValue(t, fx, byName, byValue);
});
