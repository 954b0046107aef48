/**
 * The rotation e2e for MongoDB and SQL Server: the real control plane, agent and CLI as
 * processes, the managed user on the wire-protocol test server (or a real server when
 * SIKKER_TEST_MONGODB_URL / SIKKER_TEST_MSSQL_URL is set): `sikker rotate --wait`,
 * then the old password is refused and the new one accepted through the real driver.
 */
import t, { type Test } from 'tap';
import { MssqlDriverError, MssqlSession } from '../../agent/appliers/mssql-session.js';
import * as mongo from '../fakes/mongodb/deployments.js';
import * as tds from '../fakes/tds/servers.js';
import { startRotationStack, type ProcessDatabase } from '../support/rotation-processes.js';

async function mongodbDatabase(t: Test): Promise<ProcessDatabase> {
  const url = process.env['SIKKER_TEST_MONGODB_URL'];
  const server = url === undefined || url === '' ? await mongo.fakeServer() : await mongo.realServer(url);
  const db = 'appdb';
  return {
    adminUrl: server.adminUrl,
    createUser: (password) => server.createUser(t, db, 'e2e', password, [{ role: 'readWrite', db }]),
    targetArgs: (user) => ['--engine', 'mongodb', '--host', server.host, '--port', String(server.port), '--user', user, '--auth-database', db],
    async logsIn(user, password) {
      try {
        await (await server.connectAs(user, password, db)).close();
        return true;
      } catch (err) {
        if ((err as { code?: number }).code === 18 || /Authentication failed/i.test((err as Error).message)) return false;
        throw err;
      }
    },
    cleanup: () => server.close(),
  };
}

async function mssqlDatabase(t: Test): Promise<ProcessDatabase> {
  const url = process.env['SIKKER_TEST_MSSQL_URL'];
  const server = url === undefined || url === '' ? await tds.fakeServer() : await tds.realServer(url);
  return {
    adminUrl: server.adminUrl,
    createUser: (password) => server.createLogin(t, 'e2e', password),
    targetArgs: (user) => ['--engine', 'mssql', '--host', server.host, '--port', String(server.port), '--user', user, '--tls', server.tls.mode],
    async logsIn(user, password) {
      try {
        await (await MssqlSession.open({ host: server.host, port: server.port, user, password, database: undefined, tls: server.tls, connectTimeoutMs: 5000, statementTimeoutMs: 5000 })).close();
        return true;
      } catch (err) {
        if (err instanceof MssqlDriverError && err.numbers.includes(18456)) return false;
        throw err;
      }
    },
    cleanup: () => server.close(),
  };
}

for (const [engine, make] of [['mongodb', mongodbDatabase], ['mssql', mssqlDatabase]] as const) {
  t.test(`e2e ${engine}: sikker rotate --wait through the agent process; old refused, new accepted`, async (t) => {
    const stack = await startRotationStack(t, await make(t));
    const run = await stack.sikker(['rotate', 'shop/orders', '--wait', '30s']);
    t.match(run, { state: 'done', trigger: 'manual' });
    t.match(run.steps.map((s: { step: string }) => s.step), ['created', 'pending stored', 'dispatched to agent', 'applied and verified by agent', 'committed (verified)']);
    const current = await stack.sikker(['secret', 'get', 'shop/orders-db']);
    t.equal(await stack.logsIn(null, current.value), true, 'the new password logs in');
    t.equal(await stack.logsIn(null, stack.initialPassword), false, 'the old one is refused');
  });
}
