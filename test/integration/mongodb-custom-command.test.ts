/**
 * Custom MongoDB rotation commands: a template from the agent's own config runs instead
 * of the default updateUser, with "$user" and "$password" bound as BSON values. Against
 * the fake mongod with the real driver; every accepted/refused is a fresh login.
 */
import t from 'tap';
import { inspect } from 'node:util';
import { createApplier } from '../../agent/appliers/index.js';
import type { MongodbCommandTemplate, TargetConnection } from '../../agent/appliers/target.js';
import { fillTemplate } from '../../agent/appliers/mongodb.js';
import { toTargetConnection } from '../../agent/commands/rotation-context.js';
import { compileAgentConfig } from '../../agent/config/agent-config.js';
import { randomPassword } from '../support/applier-fixtures.js';
import { fakeServer } from '../fakes/mongodb/deployments.js';

const server = await fakeServer();
t.teardown(() => server.close());
const DB = 'appdb';

function target(user: string, mongodbCommand: MongodbCommandTemplate): TargetConnection {
  return { engine: 'mongodb', host: server.host, port: server.port, user, authDatabase: DB, tls: server.tls, privilege: { mode: 'admin', adminConnection: 'mongo' }, mongodbCommand };
}

async function logsIn(user: string, password: string): Promise<boolean> {
  try {
    await (await server.connectAs(user, password, DB)).close();
    return true;
  } catch {
    return false;
  }
}

t.test('a custom template rotates the password: new accepted, old refused', async (t) => {
  const old = randomPassword('old');
  const user = await server.createUser(t, DB, 'custom', old, [{ role: 'readWrite', db: DB }]);
  const template: MongodbCommandTemplate = { name: 'with-data', database: undefined, command: { updateUser: '$user', pwd: '$password', mechanisms: ['SCRAM-SHA-256'], customData: { rotatedBy: 'sikker' } } };
  const applier = await createApplier(target(user, template), { url: server.adminUrl });
  t.teardown(() => applier.close());
  const next = randomPassword('new');
  await applier.apply({ user, newPassword: next, strategy: 'replace' });
  t.equal(await logsIn(user, next), true, 'the new password logs in');
  t.equal(await logsIn(user, old), false, 'the old one is refused');
  t.same(template.command, { updateUser: '$user', pwd: '$password', mechanisms: ['SCRAM-SHA-256'], customData: { rotatedBy: 'sikker' } }, 'the template itself is not changed');
});

t.test('a template the server does not know fails cleanly, with no password in the error', async (t) => {
  const old = randomPassword('old');
  const user = await server.createUser(t, DB, 'unknown', old, [{ role: 'readWrite', db: DB }]);
  const applier = await createApplier(target(user, { name: 'bogus', database: DB, command: { rotateSecretPlease: '$user', value: '$password' } }), { url: server.adminUrl });
  t.teardown(() => applier.close());
  const next = `canary-${randomPassword('x')}`;
  const err = await applier.apply({ user, newPassword: next, strategy: 'replace' }).then(() => null, (e: unknown) => e);
  t.ok(err !== null, 'refused');
  t.notOk(inspect(err, { depth: 10 }).includes(next) || JSON.stringify(err).includes(next), 'the password is in no part of the error');
  t.equal(await logsIn(user, old), true, 'nothing changed');
});

t.test('templates: "$password" bound as a whole value; the agent config insists on it; targets must name a configured one', async (t) => {
  t.same(fillTemplate({ a: '$user', b: ['$password', 'x$password'], c: { d: '$password' } }, 'u', 'p'), { a: 'u', b: ['p', 'x$password'], c: { d: 'p' } });
  const base = { server: 'http://127.0.0.1:8200', stateDir: '/var/lib/sikker-agent' };
  t.throws(() => compileAgentConfig({ ...base, mongodbCommands: [{ name: 'x', command: { updateUser: '$user' } }] }, 'test'), { code: 'ERR_CONFIG_INVALID', message: /\$password/ });
  const config = compileAgentConfig({ ...base, mongodbCommands: [{ name: 'x', database: 'admin', command: { updateUser: '$user', pwd: '$password' } }] }, 'test');
  t.same([...config.mongodbCommands.keys()], ['x']);
  const spec = { engine: 'mongodb' as const, host: '127.0.0.1', port: 27017, user: 'u', tls: { mode: 'disable' as const }, privilege: { mode: 'admin' as const, adminConnection: 'm' } };
  t.throws(() => toTargetConnection({ ...spec, mongodbCommand: 'missing' }, config.mongodbCommands), { code: 'ERR_APPLIER_CONFIG', message: /missing/ });
  t.equal(toTargetConnection({ ...spec, mongodbCommand: 'x' }, config.mongodbCommands).mongodbCommand?.database, 'admin');
});
