/**
 * A scheduled and a manual rotation, and a leak, of a MongoDB user (in a non-admin
 * authentication database) through the real agent: against the fake server
 * (test/fakes/mongodb/) with the real driver, or a real mongod when
 * SIKKER_TEST_MONGODB_URL is set. Every "accepted" or "refused" is a fresh login.
 */
import t, { type Test } from 'tap';
import { eventually } from '../support/agents.js';
import { randomPassword } from '../support/applier-fixtures.js';
import { engineRotationFixture, type RotationDatabase } from '../support/rotation-fixture.js';
import { fakeServer, realServer } from '../fakes/mongodb/deployments.js';

const realUrl = process.env['SIKKER_TEST_MONGODB_URL'];
const server = realUrl === undefined || realUrl === '' ? await fakeServer() : await realServer(realUrl);
t.teardown(() => server.close());
const AUTH_DB = 'appdb';

const mongodb: RotationDatabase = {
  adminConnections: new Map([['mongo', { url: server.adminUrl }]]),
  connection: (user) => ({ engine: 'mongodb', host: server.host, port: server.port, user, authDatabase: AUTH_DB, tls: server.tls, privilege: { mode: 'admin', adminConnection: 'mongo' } }),
  createUser: (t: Test, password: string) => server.createUser(t, AUTH_DB, 'rot', password, [{ role: 'readWrite', db: AUTH_DB }]),
  async logsIn(user, password) {
    try {
      const client = await server.connectAs(user, password, AUTH_DB);
      await client.close();
      return true;
    } catch (err) {
      if ((err as { code?: number }).code === 18 || /Authentication failed/i.test((err as Error).message)) return false;
      throw err;
    }
  },
};

t.test(`${server.label}: manual and scheduled rotations through the agent; old refused, new accepted; a leak neutralised`, async (t) => {
  const fx = await engineRotationFixture(t, mongodb);
  const old = randomPassword('Old1');
  const user = await fx.createUser(old);
  await fx.addTarget('ledger', user, { adoptPassword: old });
  const tested = await fx.h.admin.ok('POST', '/v1/projects/p/targets/ledger/test', {});
  t.equal(tested.target.preflight.ok, true, tested.target.preflight.problems);
  const refusedDual = await fx.h.admin.call('PUT', '/v1/projects/p/targets/ledger/policy', { policy: { schedule: { kind: 'every', seconds: 3600 }, strategy: 'dual', graceSeconds: 60 } });
  t.match(refusedDual.body, { error: { code: 'ERR_PREFLIGHT_FAILED' } }, 'dual is refused: MongoDB holds one password per user');

  const manual = await fx.h.admin.ok('POST', '/v1/projects/p/targets/ledger/rotate', {});
  const run = await fx.waitRun(manual.run.runId, ['done', 'failed', 'parked']);
  t.equal(run.state, 'done', `${run.errorCode ?? ''} ${run.errorMessage ?? ''}`);
  const first = await fx.secretValue('ledger-password');
  t.equal(await fx.logsIn(user, first), true, 'the new password logs in');
  t.equal(await fx.logsIn(user, old), false, 'the old one is refused');

  await fx.h.admin.ok('PUT', '/v1/projects/p/targets/ledger/policy', { policy: { schedule: { kind: 'every', seconds: 2 } } });
  const scheduled = await eventually(async () => {
    const runs = (await fx.h.admin.ok('GET', '/v1/projects/p/runs?target=ledger')).runs;
    return runs.find((r: { trigger: string; state: string }) => r.trigger === 'schedule' && r.state === 'done');
  }, 20_000, 'a scheduled rotation');
  t.ok(new Date(scheduled.createdAt).getTime() - new Date(scheduled.scheduledFor).getTime() < 1000, 'on time');
  await fx.h.admin.ok('POST', '/v1/projects/p/targets/ledger/policy/pause', {});
  await fx.waitIdle('ledger');
  const current = await fx.secretValue('ledger-password');
  t.equal(await fx.logsIn(user, current), true);

  const leak = await fx.h.admin.ok('POST', '/v1/leaks/by-value', { value: current });
  t.match(leak, { matched: true, leaks: [{ secret: 'ledger-password' }] });
  const report = await eventually(async () => {
    const r = await fx.h.admin.ok('GET', `/v1/projects/p/leaks/${leak.leaks[0].leakId}`);
    return r.state === 'open' ? undefined : r;
  }, 20_000, 'the leak');
  t.equal(report.state, 'neutralised');
  t.equal(await fx.logsIn(user, current), false, 'the leaked password is refused');
});
