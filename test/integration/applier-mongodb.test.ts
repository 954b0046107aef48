/**
 * MongoDB applier with the real `mongodb` driver: against the fake server in
 * test/fakes/mongodb always, and against a real server too when
 * SIKKER_TEST_MONGODB_URL (a root admin URL) is set. The shared conformance
 * suite runs in admin and self mode for users in `admin` and in another
 * database; then what is MongoDB's own: dual refused with its reason, the
 * authentication database, SASLprep, and ending another client's sessions.
 */
import t, { type Test } from 'tap';
import saslprep from '@mongodb-js/saslprep';
import { MongoServerError, type FindCursor } from 'mongodb';
import { inspect } from 'node:util';
import { createApplier } from '../../agent/appliers/index.js';
import type { Applier } from '../../agent/appliers/applier.js';
import type { ApplierError } from '../../agent/appliers/applier-errors.js';
import type { TargetConnection } from '../../agent/appliers/target.js';
import {
  HOSTILE_PASSWORDS, applierConformance, assertCleanError, canaryPassword, randomPassword, rejection, type ApplierFixture,
} from '../support/applier-fixtures.js';
import { freePort } from '../support/free-port.js';
import { fakeServer, realServer, type MongodbTestServer } from '../fakes/mongodb/deployments.js';

const REAL_URL = process.env['SIKKER_TEST_MONGODB_URL'];
/** An unreachable server is only noticed when server selection gives up: keep that short in tests. */
const FAST_FAIL = { connectTimeoutMs: 1000 };

function target(s: MongodbTestServer, mode: 'admin' | 'self', authDb: string, port = s.port): TargetConnection {
  return {
    engine: 'mongodb',
    host: s.host,
    port,
    user: s.uniqueName('target'),
    tls: s.tls,
    privilege: mode === 'admin' ? { mode: 'admin', adminConnection: 'local-root' } : { mode: 'self' },
    // leave the default in play for `admin`
    ...(authDb === 'admin' ? {} : { authDatabase: authDb }),
  };
}

async function rootApplier(t: Test, s: MongodbTestServer, authDb = 'admin'): Promise<Applier> {
  const applier = await createApplier(target(s, 'admin', authDb), { url: s.adminUrl });
  t.teardown(() => applier.close());
  return applier;
}

async function outcome(applier: Applier, user: string, password: string): Promise<string> {
  return (await applier.verify({ user, password })).outcome;
}

function fixture(s: MongodbTestServer, mode: 'admin' | 'self', authDb: string): ApplierFixture {
  const admin = { user: s.adminUser.user, database: s.adminUser.db };
  return {
    name: `mongodb ${s.label} (${mode}, users in ${authDb})`,
    mode,
    strategies: ['replace'],
    async createUser(t, password) {
      const roles = mode === 'self' ? [await s.changeOwnPasswordRole(authDb)] : [];
      return s.createUser(t, authDb, 'user', password, roles);
    },
    unknownUser: () => s.uniqueName('missing'),
    unknownUserApplyCode: mode === 'admin' ? 'ERR_APPLIER_UNKNOWN_USER' : 'ERR_APPLIER_AUTH_FAILED',
    applier: () => createApplier(target(s, mode, authDb), mode === 'admin' ? { url: s.adminUrl } : undefined),
    async unprivilegedApplier(t, _user, loginPassword) {
      const weak = await s.createUser(t, authDb, 'weak', loginPassword, [{ role: 'read', db: authDb }]);
      return createApplier(target(s, 'admin', authDb), { user: weak, password: loginPassword, database: authDb });
    },
    unreachableApplier: async (loginPassword) => createApplier(
      target(s, mode, authDb, await freePort()),
      mode === 'admin' ? { ...admin, password: loginPassword } : undefined,
      FAST_FAIL,
    ),
    refusedLoginApplier: (loginPassword) => createApplier(target(s, 'admin', authDb), { ...admin, password: loginPassword }),
  };
}

const saslprepAccepts = (password: string): boolean => {
  try {
    saslprep(password);
    return true;
  } catch {
    // the answer is the point: such a password cannot be a MongoDB password
    return false;
  }
};

/**
 * The shared suite, with its hostile-password round trip replaced: MongoDB
 * cannot hold a password SASLprep refuses (the list's emoji is unassigned in
 * Unicode 3.2; mongod answers 50693 and drivers refuse to log in), so here
 * those must be refused before anything changes while the rest round-trip.
 */
function conformance(t: Test, fx: ApplierFixture): void {
  const replaced = `${fx.name}: hostile passwords – round-trip`;
  const suite = new Proxy(t, {
    get(target, property) {
      if (property === 'test') {
        return (name: string, fn: (t: Test) => Promise<void>) => (name === replaced
          ? target.test(name, { skip: 'replaced by "hostile passwords – SASLprep" (MongoDB cannot store what SASLprep refuses)' }, fn)
          : target.test(name, fn));
      }
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  applierConformance(suite, fx);

  t.test(`${fx.name}: hostile passwords – SASLprep`, async (t) => {
    const applier = await fx.applier();
    t.teardown(() => applier.close());
    let previous = randomPassword('start');
    const user = await fx.createUser(t, previous);
    for (const password of HOSTILE_PASSWORDS) {
      if (saslprepAccepts(password)) {
        await applier.apply({ user, newPassword: password, strategy: 'replace', currentPassword: previous });
        t.equal(await outcome(applier, user, password), 'ok', `accepted: ${JSON.stringify(password)}`);
        t.equal(await outcome(applier, user, previous), 'refused', 'previous refused');
        previous = password;
      } else {
        const err = await rejection(t, applier.apply({ user, newPassword: password, strategy: 'replace', currentPassword: previous }), 'apply');
        t.equal((err as ApplierError).code, 'ERR_APPLIER_REJECTED_PASSWORD', `refused up front: ${JSON.stringify(password)}`);
        t.equal(await outcome(applier, user, previous), 'ok', 'the previous password still logs in');
      }
    }
  });
}

/** A user of `admin` with an open cursor over 5 documents (first batch read, getMore pending). */
async function victimWithCursor(t: Test, s: MongodbTestServer): Promise<{ user: string; password: string; cursor: FindCursor }> {
  const data = s.uniqueName('data');
  const password = randomPassword('victim');
  const user = await s.createUser(t, 'admin', 'victim', password, [{ role: 'readWrite', db: data }]);
  await s.client.db(data).collection('docs').insertMany([1, 2, 3, 4, 5].map((n) => ({ n })));
  t.teardown(() => s.client.db(data).dropDatabase());
  const victim = await s.connectAs(user, password, 'admin');
  t.teardown(() => victim.close());
  const cursor = victim.db(data).collection('docs').find({}, { batchSize: 2 });
  t.ok(await cursor.next(), 'the victim reads its first batch');
  await cursor.next();
  return { user, password, cursor };
}

async function assertCursorKilled(t: Test, cursor: FindCursor): Promise<void> {
  const err = await rejection(t, cursor.next(), 'the next batch');
  t.ok(err instanceof MongoServerError && [43, 237].includes(Number(err.code)), 'getMore fails: CursorNotFound (43) or CursorKilled (237)');
}

function mongodbTests(t: Test, s: MongodbTestServer): void {
  const name = (what: string) => `mongodb ${s.label}: ${what}`;

  t.test(name('preflight – dual is refused with its reason'), async (t) => {
    const applier = await rootApplier(t, s);
    const user = await s.createUser(t, 'admin', 'user', randomPassword('cur'));
    const result = await applier.preflight({ user, strategy: 'dual' });
    t.equal(result.ok, false, 'not ok');
    t.same(result.strategies, ['replace'], 'replace only');
    t.match(result.problems, [{ code: 'ERR_APPLIER_UNSUPPORTED', message: /one password per user.*alternate with two users/ }], 'the reason names the way out');
  });

  t.test(name('authDatabase – only the user of that database changes'), async (t) => {
    const appDb = s.uniqueName('appdb');
    const [appOld, adminOld, appNew] = [randomPassword('app'), randomPassword('adm'), randomPassword('new')];
    const user = await s.createUser(t, appDb, 'twin', appOld);
    await s.createUser(t, 'admin', 'twin', adminOld, [], user);
    const inApp = await rootApplier(t, s, appDb);
    const inAdmin = await rootApplier(t, s, 'admin');
    t.match(await inApp.preflight({ user, strategy: 'replace' }), { ok: true }, `preflight finds ${user} in ${appDb}`);
    await inApp.apply({ user, newPassword: appNew, strategy: 'replace' });
    t.equal(await outcome(inApp, user, appNew), 'ok', 'the new password logs in against the application database');
    t.equal(await outcome(inApp, user, appOld), 'refused', 'its old one is refused');
    t.equal(await outcome(inAdmin, user, adminOld), 'ok', 'the same-named user in admin is untouched');
    t.equal(await outcome(inAdmin, user, appNew), 'refused', 'and did not get the new password');
  });

  t.test(name('alternate – two users take turns, each a plain replace'), async (t) => {
    const applier = await rootApplier(t, s);
    const blueOld = randomPassword('b0');
    const greenNew = randomPassword('g1');
    const blue = await s.createUser(t, 'admin', 'blue', blueOld);
    const green = await s.createUser(t, 'admin', 'green', randomPassword('g0'));
    await applier.apply({ user: green, newPassword: greenNew, strategy: 'replace' });
    t.equal(await outcome(applier, blue, blueOld), 'ok', 'the previous user still logs in during the grace period');
    t.equal(await outcome(applier, green, greenNew), 'ok', 'the new current user logs in');
    await applier.apply({ user: blue, newPassword: randomPassword('b1'), strategy: 'replace' });
    t.equal(await outcome(applier, blue, blueOld), 'refused', 'the next turn retires the old password');
    t.equal(await outcome(applier, green, greenNew), 'ok', 'the other user is untouched');
  });

  t.test(name('SASLprep – equivalent spellings are one password'), async (t) => {
    const applier = await rootApplier(t, s);
    const user = await s.createUser(t, 'admin', 'prep', randomPassword('old'));
    const tail = randomPassword('tail');
    await applier.apply({ user, newPassword: `\u2168\u00a0${tail}`, strategy: 'replace' });
    t.equal(await outcome(applier, user, `IX ${tail}`), 'ok', 'ROMAN NUMERAL NINE and NO-BREAK SPACE prepare to "IX "');
  });

  t.test(name('terminateSessions – ends another client\'s sessions and its open cursor'), async (t) => {
    const { user, cursor } = await victimWithCursor(t, s);
    const applier = await rootApplier(t, s);
    const { terminated } = await applier.terminateSessions({ user });
    t.ok(terminated >= 1, `the victim's session was counted (${terminated})`);
    await assertCursorKilled(t, cursor);
  });

  t.test(name('terminateSessions – self mode ends the user\'s other sessions, not its own'), async (t) => {
    const { user, password, cursor } = await victimWithCursor(t, s);
    const applier = await createApplier({ ...target(s, 'self', 'admin'), user }, undefined);
    t.teardown(() => applier.close());
    t.same(await applier.terminateSessions({ user, currentPassword: password }), { terminated: 1 }, 'one session: the victim\'s, not the applier\'s');
    await assertCursorKilled(t, cursor);
  });

  t.test(name('terminateSessions – a login that may rotate but not end sessions is refused'), async (t) => {
    const { user, cursor } = await victimWithCursor(t, s);
    const password = randomPassword('ua');
    const userAdmin = await s.createUser(t, 'admin', 'ua', password, [{ role: 'userAdmin', db: 'admin' }]);
    const applier = await createApplier(target(s, 'admin', 'admin'), { user: userAdmin, password, database: 'admin' });
    t.teardown(() => applier.close());
    t.equal((await applier.preflight({ user, strategy: 'replace' })).ok, true, 'userAdmin may rotate');
    const err = await rejection(t, applier.terminateSessions({ user }), 'terminate');
    t.equal((err as ApplierError).code, 'ERR_APPLIER_PRIVILEGE', 'ERR_APPLIER_PRIVILEGE (needs listSessions and killAnySession)');
    t.ok(await cursor.next(), 'the victim\'s cursor lives on');
  });

  for (const mode of ['admin', 'self'] as const) {
    for (const authDb of ['admin', s.uniqueName('appdb')]) conformance(t, fixture(s, mode, authDb));
  }
}

const fake = await fakeServer();
t.teardown(() => fake.close());
mongodbTests(t, fake);

t.test('mongodb fake: mongod\'s error codes over the wire', async (t) => {
  const password = randomPassword('w');
  const weak = await fake.createUser(t, 'admin', 'weak', password, [{ role: 'read', db: 'admin' }]);
  const refused = await rejection(t, fake.connectAs(weak, randomPassword('wrong'), 'admin'), 'wrong password');
  t.match(refused, { code: 18, codeName: 'AuthenticationFailed' }, 'AuthenticationFailed (18)');
  const root = fake.client.db('admin');
  t.match(await rejection(t, root.command({ updateUser: fake.uniqueName('missing'), pwd: 'x' }), 'missing'), { code: 11, codeName: 'UserNotFound' }, 'UserNotFound (11)');
  t.match(await rejection(t, root.command({ frobnicate: 1 }), 'unknown'), { code: 59, codeName: 'CommandNotFound' }, 'CommandNotFound (59)');
  const client = await fake.connectAs(weak, password, 'admin');
  t.teardown(() => client.close());
  t.match(await rejection(t, client.db('admin').command({ updateUser: fake.adminUser.user, pwd: 'x' }), 'unprivileged'), { code: 13, codeName: 'Unauthorized' }, 'Unauthorized (13)');
});

t.test('mongodb fake: the server\'s errmsg quotes the password, the applier\'s error does not', async (t) => {
  const canary = canaryPassword();
  const password = randomPassword('w');
  const victim = await fake.createUser(t, 'admin', 'victim', randomPassword('v'));
  const weak = await fake.createUser(t, 'admin', 'weak', password, [{ role: 'read', db: 'admin' }]);
  const client = await fake.connectAs(weak, password, 'admin');
  t.teardown(() => client.close());
  const raw = await rejection(t, client.db('admin').command({ updateUser: victim, pwd: canary.password }), 'raw');
  t.ok(inspect(raw, { depth: 10 }).includes(canary.token), 'positive control: the driver error quotes the password');
  const applier = await createApplier(target(fake, 'admin', 'admin'), { user: weak, password, database: 'admin' });
  t.teardown(() => applier.close());
  const err = await rejection(t, applier.apply({ user: victim, newPassword: canary.password, strategy: 'replace' }), 'apply');
  assertCleanError(t, err, 'ERR_APPLIER_PRIVILEGE', [canary], 'apply without privilege');
});

t.test('mongodb fake: the applier leaves no connection open', async (t) => {
  const server = fake.fake;
  if (server === undefined) throw new Error('the fake deployment has no fake');
  const before = server.connectionCount();
  /** The server sees a client's close a moment after the client resolves it: wait for that. */
  const settled = async (): Promise<number> => {
    for (let waited = 0; server.connectionCount() > before && waited < 2000; waited += 20) await new Promise((r) => setTimeout(r, 20));
    return server.connectionCount();
  };
  const password = randomPassword('p');
  const user = await fake.createUser(t, 'admin', 'conn', password, [await fake.changeOwnPasswordRole('admin')]);
  const admin = await createApplier(target(fake, 'admin', 'admin'), { url: fake.adminUrl });
  const self = await createApplier(target(fake, 'self', 'admin'), undefined);
  const next = randomPassword('n');
  await admin.preflight({ user, strategy: 'replace' });
  await self.apply({ user, newPassword: next, strategy: 'replace', currentPassword: password });
  await admin.verify({ user, password: next });
  await admin.revoke({ user, password });
  await self.terminateSessions({ user, currentPassword: next });
  await admin.close();
  await self.close();
  t.equal(await settled(), before, `back to ${before} connections (the test's own client)`);
});

t.test('mongodb fake: the driver\'s logger stays off whatever MONGODB_LOG_* says', async (t) => {
  const saved = { all: process.env['MONGODB_LOG_ALL'], path: process.env['MONGODB_LOG_PATH'] };
  const write = process.stderr.write.bind(process.stderr);
  const lines: string[] = [];
  const restore = () => {
    process.stderr.write = write;
    for (const [name, value] of [['MONGODB_LOG_ALL', saved.all], ['MONGODB_LOG_PATH', saved.path]] as const) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  };
  t.teardown(restore);
  const password = randomPassword('logged');
  const user = await fake.createUser(t, 'admin', 'logged', password);
  const canary = canaryPassword();
  const applier = await rootApplier(t, fake);
  process.env['MONGODB_LOG_ALL'] = 'trace';
  process.env['MONGODB_LOG_PATH'] = 'stderr';
  process.stderr.write = ((chunk: unknown) => lines.push(String(chunk)) > 0) as typeof process.stderr.write;
  let control: number;
  try {
    const client = await fake.connectAs(user, password, 'admin');
    await client.close();
    control = lines.length;
    lines.length = 0;
    await applier.apply({ user, newPassword: canary.password, strategy: 'replace' });
    await applier.verify({ user, password: canary.password });
    await applier.verify({ user, password: password });
  } finally {
    restore();
  }
  t.ok(control > 0, `positive control: a plain client logs under MONGODB_LOG_ALL (${control} lines)`);
  t.same(lines, [], 'the applier\'s clients log nothing');
});

if (REAL_URL) {
  const real = await realServer(REAL_URL);
  t.teardown(() => real.close());
  mongodbTests(t, real);
} else {
  t.test('mongodb real server: conformance and MongoDB-specific tests', {
    skip: 'SIKKER_TEST_MONGODB_URL is not set (a root admin URL, e.g. mongodb://root:…@host:27017/?authSource=admin): only the fake server was tested',
  }, async () => undefined);
}
