/**
 * A scheduled and a manual rotation, and a leak, of a SQL Server login through the
 * real agent: against the fake TDS server (test/fakes/tds/) with the real tedious
 * driver, or a real SQL Server when SIKKER_TEST_MSSQL_URL is set. Every "accepted" or
 * "refused" is a fresh login through the driver.
 */
import t, { type Test } from 'tap';
import { MssqlDriverError, MssqlSession } from '../../agent/appliers/mssql-session.js';
import { rotateScheduleAndLeak } from '../support/engine-scenarios.js';
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
  await rotateScheduleAndLeak(t, await engineRotationFixture(t, mssql));
});
