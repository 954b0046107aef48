/**
 * A scheduled and a manual rotation, and a leak, of a SQL Server login through the
 * real agent: against the fake TDS server (test/fakes/tds/) with the real tedious
 * driver, or a real SQL Server when SIKKER_TEST_MSSQL_URL is set. Every "accepted" or
 * "refused" is a fresh login through the driver.
 */
import t, { type Test } from 'tap';
import { MssqlDriverError, MssqlSession } from '../../agent/appliers/mssql-session.js';
import { eventually } from '../support/agents.js';
import { randomPassword } from '../support/applier-fixtures.js';
import { engineRotationFixture, type RotationDatabase } from '../support/rotation-fixture.js';
import { fakeServer, realServer } from '../fakes/tds/servers.js';

const realUrl = process.env['SIKKER_TEST_MSSQL_URL'];
const server = realUrl === undefined || realUrl === '' ? await fakeServer() : await realServer(realUrl);
t.teardown(() => server.close());

const mssql: RotationDatabase = {
  adminConnections: new Map([['mssql', { url: server.adminUrl }]]),
  connection: (user) => ({ engine: 'mssql', host: server.host, port: server.port, user, tls: server.tls, privilege: { mode: 'admin', adminConnection: 'mssql' } }),
  createUser: (t: Test, password: string) => server.createLogin(t, 'rot', password),
  async logsIn(user, password) {
    let session: MssqlSession;
    try {
      session = await MssqlSession.open({ host: server.host, port: server.port, user, password, database: undefined, tls: server.tls, connectTimeoutMs: 5000, statementTimeoutMs: 5000 });
    } catch (err) {
      if (err instanceof MssqlDriverError && err.numbers.includes(18456)) return false;
      throw err;
    }
    await session.close();
    return true;
  },
};

t.test(`${server.label}: manual and scheduled rotations through the agent; old refused, new accepted; a leak neutralised`, async (t) => {
  const fx = await engineRotationFixture(t, mssql);
  const old = randomPassword('Old1');
  const user = await fx.createUser(old);
  await fx.addTarget('ledger', user, { adoptPassword: old });
  const tested = await fx.h.admin.ok('POST', '/v1/projects/p/targets/ledger/test', {});
  t.equal(tested.target.preflight.ok, true, tested.target.preflight.problems);
  const refusedDual = await fx.h.admin.call('PUT', '/v1/projects/p/targets/ledger/policy', { policy: { schedule: { kind: 'every', seconds: 3600 }, strategy: 'dual', graceSeconds: 60 } });
  t.match(refusedDual.body, { error: { code: 'ERR_PREFLIGHT_FAILED' } }, 'dual is refused: one password per login');

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
