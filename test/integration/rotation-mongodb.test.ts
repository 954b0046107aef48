/**
 * A scheduled and a manual rotation, and a leak, of a MongoDB user (in a non-admin
 * authentication database) through the real agent: against the fake server
 * (test/fakes/mongodb/) with the real driver, or a real mongod when
 * SIKKER_TEST_MONGODB_URL is set. Every "accepted" or "refused" is a fresh login.
 */
import t, { type Test } from 'tap';
import { rotateScheduleAndLeak } from '../support/engine-scenarios.js';
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
  await rotateScheduleAndLeak(t, await engineRotationFixture(t, mongodb));
});
