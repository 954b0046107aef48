/**
 * Redis applier on private redis-servers (ACL and CONFIG changes are
 * server-wide, so the shared server is never touched): the shared conformance
 * suite for an ACL user (admin mode, dual natively) and for the default user's
 * requirepass (self mode, replace only), plus what is Redis-specific —
 * passwords sent as hashes, persistence warnings, ending sessions.
 */
import t, { type Test } from 'tap';
import { Redis } from 'ioredis';
import { createHash, randomBytes } from 'node:crypto';
import { createApplier } from '../../agent/appliers/index.js';
import type { TargetConnection } from '../../agent/appliers/target.js';
import { applierConformance, randomPassword, type ApplierFixture } from '../support/applier-fixtures.js';
import { freePort } from '../support/free-port.js';
import { startPrivateRedis } from '../support/private-redis.js';

/** A connection for the test itself, authenticated as a fixture-only superuser. */
async function fixtureClient(port: number, user?: string, password?: string): Promise<Redis> {
  const redis = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null, ...(user ? { username: user, password } : {}) });
  redis.on('error', () => undefined);
  await redis.connect();
  return redis;
}

const aclServer = await startPrivateRedis();
t.teardown(() => aclServer.stop());
const passServer = await startPrivateRedis();
t.teardown(() => passServer.stop());

// ACL server: the applier's admin is an ACL user with a password; the default user stays for fixtures
const ADMIN_PASSWORD = randomPassword('admin');
const acl = await fixtureClient(aclServer.port);
t.teardown(() => acl.disconnect());
await acl.call('ACL', 'SETUSER', 'sk_admin', 'on', `>${ADMIN_PASSWORD}`, '~*', '&*', '+@all');

// requirepass server: the fixture works through its own ACL superuser, since default gets a password
const FIXTURE_PASSWORD = randomPassword('fixture');
const bootstrap = await fixtureClient(passServer.port);
await bootstrap.call('ACL', 'SETUSER', 'sk_fixture', 'on', `>${FIXTURE_PASSWORD}`, '~*', '&*', '+@all');
bootstrap.disconnect();
const pass = await fixtureClient(passServer.port, 'sk_fixture', FIXTURE_PASSWORD);
t.teardown(() => pass.disconnect());

const prefix = `sk_app_${randomBytes(3).toString('hex')}`;
let counter = 0;
const userName = (label: string) => `${prefix}_${label}_${counter++}`;

function target(port: number, mode: 'admin' | 'self', passwordMode: 'acl' | 'requirepass', user = `${prefix}_target`): TargetConnection {
  return {
    engine: 'redis',
    host: '127.0.0.1',
    port,
    user: passwordMode === 'requirepass' ? 'default' : user,
    tls: { mode: 'disable' },
    privilege: mode === 'admin' ? { mode: 'admin', adminConnection: 'local' } : { mode: 'self' },
    redisPasswordMode: passwordMode,
  };
}

/** An ACL user with `password` that may PING only; deleted in teardown. */
async function createAclUser(t: Test, client: Redis, label: string, password: string): Promise<string> {
  const name = userName(label);
  await client.call('ACL', 'SETUSER', name, 'on', `>${password}`, '+ping');
  t.teardown(() => client.call('ACL', 'DELUSER', name));
  return name;
}

const aclFixture: ApplierFixture = {
  name: 'redis acl (admin)',
  mode: 'admin',
  strategies: ['replace', 'dual'],
  createUser: (t, password) => createAclUser(t, acl, 'user', password),
  unknownUser: () => userName('missing'),
  unknownUserApplyCode: 'ERR_APPLIER_UNKNOWN_USER',
  applier: () => createApplier(target(aclServer.port, 'admin', 'acl'), { url: `redis://sk_admin:${encodeURIComponent(ADMIN_PASSWORD)}@127.0.0.1:${aclServer.port}` }),
  async unprivilegedApplier(t, _user, loginPassword) {
    const weak = await createAclUser(t, acl, 'weak', loginPassword);
    return createApplier(target(aclServer.port, 'admin', 'acl'), { user: weak, password: loginPassword });
  },
  unreachableApplier: async (loginPassword) => createApplier(target(await freePort(), 'admin', 'acl'), { user: 'sk_admin', password: loginPassword }),
  refusedLoginApplier: (loginPassword) => createApplier(target(aclServer.port, 'admin', 'acl'), { user: 'sk_admin', password: loginPassword }),
};

const requirepassFixture: ApplierFixture = {
  name: 'redis requirepass (self)',
  mode: 'self',
  strategies: ['replace'],
  fixedUser: 'default',
  async createUser(t, password) {
    await pass.call('CONFIG', 'SET', 'requirepass', password);
    t.teardown(() => pass.call('CONFIG', 'SET', 'requirepass', ''));
    return 'default';
  },
  unknownUser: () => userName('missing'),
  unknownUserApplyCode: 'ERR_APPLIER_UNKNOWN_USER',
  applier: () => createApplier(target(passServer.port, 'self', 'requirepass'), undefined),
  async unprivilegedApplier(t, _user, loginPassword) {
    const weak = await createAclUser(t, pass, 'weak', loginPassword);
    return createApplier(target(passServer.port, 'admin', 'requirepass'), { user: weak, password: loginPassword });
  },
  unreachableApplier: async () => createApplier(target(await freePort(), 'self', 'requirepass'), undefined),
};

applierConformance(t, aclFixture);
applierConformance(t, requirepassFixture);

t.test('redis acl: apply – passwords travel as SHA-256 hashes, never in clear', async (t) => {
  const applier = await aclFixture.applier();
  t.teardown(() => applier.close());
  const user = await createAclUser(t, acl, 'hash', randomPassword('old'));
  const monitor = await fixtureClient(aclServer.port);
  t.teardown(() => monitor.disconnect());
  const seen: string[] = [];
  const feed = await monitor.monitor();
  feed.on('monitor', (_time: string, args: string[]) => seen.push(args.join(' ')));
  t.teardown(() => feed.disconnect());
  const next = randomPassword('new');
  await applier.apply({ user, newPassword: next, strategy: 'dual' });
  await new Promise((r) => setTimeout(r, 100));
  const digest = createHash('sha256').update(next).digest('hex');
  const [, , , passwords] = (await acl.call('ACL', 'GETUSER', user)) as unknown[];
  t.ok((passwords as string[]).includes(digest), 'the user holds the new password\'s hash');
  t.ok(seen.length > 0, 'MONITOR saw the applier\'s commands');
  t.notOk(seen.some((line) => line.includes(next)), 'no command carried the plaintext');
});

t.test('redis acl: preflight – warns when changes would not survive a restart', async (t) => {
  const applier = await aclFixture.applier();
  t.teardown(() => applier.close());
  const user = await createAclUser(t, acl, 'persist', randomPassword('p'));
  const result = await applier.preflight({ user, strategy: 'dual' });
  t.equal(result.ok, true, 'ok');
  t.same(result.warnings.map((w) => w.code), ['WARN_APPLIER_NOT_PERSISTED'], 'no aclfile or config file: WARN_APPLIER_NOT_PERSISTED');
  const applied = await applier.apply({ user, newPassword: randomPassword('n'), strategy: 'replace' });
  t.equal(applied.persisted, false, 'apply reports persisted: false');
});

t.test('redis acl: preflight – a user that is off, or nopass with dual, is a problem', async (t) => {
  const applier = await aclFixture.applier();
  t.teardown(() => applier.close());
  const user = await createAclUser(t, acl, 'flags', randomPassword('p'));
  await acl.call('ACL', 'SETUSER', user, 'off');
  t.same((await applier.preflight({ user, strategy: 'replace' })).problems.map((p) => p.code), ['ERR_APPLIER_LOGIN_DISABLED'], 'off: ERR_APPLIER_LOGIN_DISABLED');
  await acl.call('ACL', 'SETUSER', user, 'on', 'nopass');
  t.same((await applier.preflight({ user, strategy: 'dual' })).problems.map((p) => p.code), ['ERR_APPLIER_UNSUPPORTED'], 'nopass + dual: ERR_APPLIER_UNSUPPORTED');
  t.equal((await applier.preflight({ user, strategy: 'replace' })).ok, true, 'nopass + replace: ok (replace clears nopass)');
});

t.test('redis acl: terminateSessions – ends the user\'s live connections', async (t) => {
  const applier = await aclFixture.applier();
  t.teardown(() => applier.close());
  const password = randomPassword('p');
  const user = await createAclUser(t, acl, 'sessions', password);
  const session = await fixtureClient(aclServer.port, user, password);
  const closed = new Promise<void>((resolve) => session.once('end', () => resolve()));
  t.teardown(() => {
    if (session.status !== 'end') session.disconnect();
  });
  t.same(await applier.terminateSessions({ user }), { terminated: 1 }, 'one connection ended');
  await closed;
  t.pass('the client saw its connection end');
});
