/**
 * Rotation runs end to end on the machine's MariaDB (127.0.0.1:3306, root without
 * password as the agent's admin connection): control plane, real agent (HubClient),
 * real accounts. MariaDB checks the passwords of the accounts made here, so every
 * "accepted" or "refused" below is a fresh login that means something. Accounts are
 * uniquely named (`sk_rot_<hex>_<n>`@`%`) and dropped at teardown.
 */
import t, { type Test } from 'tap';
import mysql from 'mysql2/promise';
import { randomBytes } from 'node:crypto';
import { leakByNameAndValue, scheduledOnTime, testedTarget } from '../support/engine-scenarios.js';
import { randomPassword } from '../support/applier-fixtures.js';
import { engineRotationFixture, FINISHED_RUN_STATES, type EngineRotationFixture, type RotationDatabase } from '../support/rotation-fixture.js';

const ROOT_URL = process.env['SIKKER_TEST_MYSQL_ADMIN_URL'] || 'mysql://root@127.0.0.1:3306';
const HOST = new URL(ROOT_URL).hostname;
const PORT = Number(new URL(ROOT_URL).port || 3306);
/** MySQL error codes of a refused login (wrong password; empty password for a user that has one). */
const LOGIN_REFUSED = new Set(['ER_ACCESS_DENIED_ERROR', 'ER_ACCESS_DENIED_NO_PASSWORD_ERROR']);

const root = await mysql.createConnection({ uri: ROOT_URL });
root.on('error', () => undefined);
t.teardown(() => root.end());

const prefix = `sk_rot_${randomBytes(3).toString('hex')}`;
let counter = 0;

const mariadb: RotationDatabase = {
  adminConnections: new Map([['mysql', { url: ROOT_URL }]]),
  connection: (user) => ({ engine: 'mysql', host: HOST, port: PORT, user, tls: { mode: 'disable' }, privilege: { mode: 'admin', adminConnection: 'mysql' } }),
  async createUser(t: Test, password: string) {
    const name = `${prefix}_${counter++}`;
    await root.query('CREATE USER ?@? IDENTIFIED BY ?', [name, '%', password]);
    t.teardown(() => root.query('DROP USER IF EXISTS ?@?', [name, '%']));
    return name;
  },
  async logsIn(user: string, password: string) {
    let connection: mysql.Connection;
    try {
      connection = await mysql.createConnection({ host: HOST, port: PORT, user, password, connectTimeout: 5000 });
    } catch (err) {
      if (LOGIN_REFUSED.has((err as { code?: string }).code ?? '')) return false;
      throw err;
    }
    connection.on('error', () => undefined);
    try {
      await connection.query('SELECT 1');
      return true;
    } finally {
      connection.destroy();
    }
  },
};

const stepNames = (run: { steps: Array<{ step: string }> }): string[] => run.steps.map((s) => s.step);

t.test('mariadb replace – rotate now: committed, the new password logs in, the old one is refused', async (t) => {
  const fx = await engineRotationFixture(t, mariadb);
  const canary = `canary-${randomBytes(4).toString('hex')}`;
  const oldPassword = `Old-Pass-1-${canary}`;
  const user = await fx.createUser(oldPassword);
  t.equal(await fx.logsIn(user, oldPassword), true, 'precondition: the adopted password logs in');
  await fx.addTarget('orders', user, { adoptPassword: oldPassword });
  const tested = await fx.h.admin.ok('POST', '/v1/projects/p/targets/orders/test', {});
  t.equal(tested.finished, true, 'the preflight finished');
  t.equal(tested.target.preflight.ok, true, `preflight passes ${tested.target.preflight.problems}`);
  t.same(tested.target.preflight.strategies, ['replace'], 'MariaDB offers replace only');
  t.match(tested.target.preflight.server, /^mariadb .*MariaDB/, 'the server is described');

  const started = await fx.h.admin.ok('POST', '/v1/projects/p/targets/orders/rotate', {});
  t.equal(started.joined, false);
  const run = await fx.waitRun(started.run.runId, FINISHED_RUN_STATES);
  t.equal(run.state, 'done', `run ended ${run.state} ${run.errorCode ?? ''} ${run.errorMessage ?? ''}`);
  t.same(stepNames(run), ['created', 'pending stored', 'dispatched to agent', 'applied and verified by agent', 'committed (verified)'], 'steps in order');
  const newPassword = await fx.secretValue('orders-password');
  t.not(newPassword, oldPassword);
  t.equal(newPassword.length, 32, 'default rules: 32 characters');
  t.equal(await fx.logsIn(user, newPassword), true, 'the new password logs in');
  t.equal(await fx.logsIn(user, oldPassword), false, 'the old password is refused');

  const versions = await fx.h.admin.ok('GET', '/v1/projects/p/secrets/orders-password/versions');
  t.match(versions.versions, [{ version: 1, label: 'previous', state: 'revoked' }, { version: 2, label: 'current', state: 'active' }]);
  const audit = await fx.h.admin.ok('GET', '/v1/audit?limit=200');
  const actions = audit.records.map((r: { action: string }) => r.action);
  const expected = ['target.add', 'target.test', 'rotation.start', 'rotation.pending', 'rotation.dispatch', 'rotation.commit'];
  t.same(actions.filter((a: string) => expected.includes(a)).reverse(), expected, 'audited in order');
  const logs = fx.h.logs.text();
  t.notOk(logs.includes(newPassword), 'the new password is in no control-plane log line');
  t.notOk(logs.includes(canary), 'the old password is in no control-plane log line');
});

t.test('mariadb dual – refused: the server keeps one password per account', async (t) => {
  const fx = await engineRotationFixture(t, mariadb);
  const { user, password, tested } = await testedTarget(fx, 'twin');
  t.equal(tested.target.preflight.ok, true, 'the replace preflight passes');
  const policy = { schedule: { kind: 'every', seconds: 3600 }, strategy: 'dual', graceSeconds: 60 };
  const refused = await fx.h.admin.call('PUT', '/v1/projects/p/targets/twin/policy', { policy });
  t.equal(refused.status, 409);
  t.match(refused.body, { error: { code: 'ERR_PREFLIGHT_FAILED', message: /server does not support strategy dual/ } }, 'the offered strategies rule dual out');

  // with a (paused) dual policy the preflight asks the server about dual itself, and says why not
  await fx.h.admin.ok('PUT', '/v1/projects/p/targets/twin/policy', { policy, paused: true });
  const dualTested = await fx.h.admin.ok('POST', '/v1/projects/p/targets/twin/test', {});
  t.equal(dualTested.target.preflight.ok, false, 'the dual preflight fails');
  t.match(dualTested.target.preflight.problems, /ERR_APPLIER_UNSUPPORTED .*MariaDB.*RETAIN CURRENT PASSWORD/, 'it names the missing feature');
  const again = await fx.h.admin.call('PUT', '/v1/projects/p/targets/twin/policy', { policy });
  t.match(again.body, { error: { code: 'ERR_PREFLIGHT_FAILED', message: /RETAIN CURRENT PASSWORD/ } }, 'enabling it is refused with the server\'s reason');
  const runs = (await fx.h.admin.ok('GET', '/v1/projects/p/runs?target=twin')).runs;
  t.same(runs, [], 'no run was started');
  t.equal(await fx.logsIn(user, password), true, 'the password was left alone');
});

t.test('mariadb alternate – the resting account gets the new password; the previous works through the grace period, then is refused', async (t) => {
  const fx = await engineRotationFixture(t, mariadb);
  const first = randomPassword('blue');
  const blue = await fx.createUser(first);
  const green = await fx.createUser(randomPassword('green-unknown'));
  await fx.addTarget('alt', blue, { adoptPassword: first, alternateUser: green });
  const tested = await fx.h.admin.ok('POST', '/v1/projects/p/targets/alt/test', {});
  t.equal(tested.target.preflight.ok, true, `both accounts pass ${tested.target.preflight.problems}`);
  await fx.h.admin.ok('PUT', '/v1/projects/p/targets/alt/policy', { policy: { schedule: { kind: 'every', seconds: 3600 }, strategy: 'alternate', graceSeconds: 2 } });

  const started = await fx.h.admin.ok('POST', '/v1/projects/p/targets/alt/rotate', {});
  t.equal(started.run.user, green, 'the resting account is rotated');
  const committed = await fx.waitRun(started.run.runId, ['committed', 'revoking', ...FINISHED_RUN_STATES]);
  t.equal(committed.state, 'committed', 'committed, in its grace period');
  const greenPassword = await fx.secretValue('alt-password');
  t.equal(await fx.logsIn(green, greenPassword), true, 'during grace: the new account logs in');
  t.equal(await fx.logsIn(blue, first), true, 'during grace: the previous account still logs in');
  t.ok(Date.now() < new Date(committed.committedAt).getTime() + 2000, 'both logins were checked inside the grace period');

  const done = await fx.waitRun(started.run.runId, FINISHED_RUN_STATES);
  t.equal(done.state, 'done');
  t.same(stepNames(done).slice(-3), ['committed (verified)', 'grace over: revoking previous', 'previous revoked']);
  t.ok(new Date(done.finishedAt).getTime() >= new Date(done.committedAt).getTime() + 2000, 'revoked no earlier than the grace period allows');
  t.equal(await fx.logsIn(blue, first), false, 'after grace: the previous credential is refused');
  t.equal(await fx.logsIn(green, greenPassword), true, 'after grace: the current one still works');
  const target = await fx.h.admin.ok('GET', '/v1/projects/p/targets/alt');
  t.equal(target.activeUser, green, 'the target now names the new account as active');
});

t.test('mariadb scheduled – a policy every 2 s rotates on time, and the password works afterwards', async (t) => {
  await scheduledOnTime(t, await engineRotationFixture(t, mariadb));
});

t.test('mariadb leak – by name and by value: the leaked password is refused, the new one works', async (t) => {
  const fx = await engineRotationFixture(t, mariadb);
  const byName = await testedTarget(fx, 'leak-name');
  const byValue = await testedTarget(fx, 'leak-value');
  await leakByNameAndValue(t, fx, byName, byValue);
});
