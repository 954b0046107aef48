/**
 * MySQL/MariaDB applier on the machine's MariaDB (127.0.0.1:3306, root without
 * password): the shared conformance suite in admin and self mode (MariaDB has no
 * secondary passwords, so `dual` must be refused), plus account-host
 * resolution, session termination, and the version / grants parsing that decides
 * what a MySQL 8 server would support. Every user is uniquely named and dropped.
 */
import t, { type Test } from 'tap';
import mysql from 'mysql2/promise';
import { randomBytes } from 'node:crypto';
import { createApplier } from '../../agent/appliers/index.js';
import type { Applier } from '../../agent/appliers/applier.js';
import type { ApplierError } from '../../agent/appliers/applier-errors.js';
import { describeMysqlServer, grantsAllowPasswordChange } from '../../agent/appliers/mysql-server.js';
import type { TargetConnection } from '../../agent/appliers/target.js';
import { applierConformance, assertCleanError, canaryPassword, randomPassword, rejection, type ApplierFixture } from '../support/applier-fixtures.js';
import { freePort } from '../support/free-port.js';

const ROOT_URL = process.env['SIKKER_TEST_MYSQL_ADMIN_URL'] || 'mysql://root@127.0.0.1:3306';

const root = await mysql.createConnection({ uri: ROOT_URL });
root.on('error', () => undefined);
t.teardown(() => root.end());
const [[versionRow]] = await root.query<mysql.RowDataPacket[]>('SELECT VERSION() AS version');
const server = describeMysqlServer(String(versionRow?.['version']));

const prefix = `sk_app_${randomBytes(3).toString('hex')}`;
let counter = 0;
const userName = (label: string) => `${prefix}_${label}_${counter++}`;

function target(mode: 'admin' | 'self', port = Number(new URL(ROOT_URL).port || 3306)): TargetConnection {
  return {
    engine: 'mysql',
    host: new URL(ROOT_URL).hostname,
    port,
    user: `${prefix}_target`,
    tls: { mode: 'disable' },
    privilege: mode === 'admin' ? { mode: 'admin', adminConnection: 'local-root' } : { mode: 'self' },
  };
}

/** An account `name`@`host` logging in with `password`; dropped in teardown. */
async function createAccount(t: Test, label: string, password: string, host = '%', name = userName(label)): Promise<string> {
  await root.query('CREATE USER ?@? IDENTIFIED BY ?', [name, host, password]);
  t.teardown(() => root.query('DROP USER IF EXISTS ?@?', [name, host]));
  return name;
}

function fixture(mode: 'admin' | 'self'): ApplierFixture {
  return {
    name: `${server.flavour} (${mode})`,
    mode,
    strategies: server.dual ? ['replace', 'dual'] : ['replace'],
    createUser: (t, password) => createAccount(t, 'user', password),
    unknownUser: () => userName('missing'),
    unknownUserApplyCode: mode === 'admin' ? 'ERR_APPLIER_UNKNOWN_USER' : 'ERR_APPLIER_AUTH_FAILED',
    applier: () => createApplier(target(mode), mode === 'admin' ? { url: ROOT_URL } : undefined),
    async unprivilegedApplier(t, _user, loginPassword) {
      const weak = await createAccount(t, 'weak', loginPassword);
      return createApplier(target('admin'), { user: weak, password: loginPassword });
    },
    async unreachableApplier(loginPassword) {
      return createApplier(target(mode, await freePort()), mode === 'admin' ? { user: 'root', password: loginPassword } : undefined);
    },
    refusedLoginApplier: async (loginPassword) => {
      // root@127.0.0.1 has no password here: use a real account with a different one
      const name = userName('admin');
      await root.query('CREATE USER ?@? IDENTIFIED BY ?', [name, '%', randomPassword('real')]);
      t.teardown(() => root.query('DROP USER IF EXISTS ?@?', [name, '%']));
      return createApplier(target('admin'), { user: name, password: loginPassword });
    },
  };
}

applierConformance(t, fixture('admin'));
applierConformance(t, fixture('self'));

async function adminApplier(t: Test, overrides: Partial<TargetConnection> = {}): Promise<Applier> {
  const applier = await createApplier({ ...target('admin'), ...overrides }, { url: ROOT_URL });
  t.teardown(() => applier.close());
  return applier;
}

t.test('mysql: account host – ambiguous unless configured', async (t) => {
  const name = userName('multi');
  const password = randomPassword('p');
  await createAccount(t, 'multi', password, '%', name);
  await createAccount(t, 'multi', randomPassword('other'), '10.254.254.254', name);
  const guessing = await adminApplier(t);
  const result = await guessing.preflight({ user: name, strategy: 'replace' });
  t.same(result.problems.map((p) => p.code), ['ERR_APPLIER_AMBIGUOUS_USER'], 'preflight: ERR_APPLIER_AMBIGUOUS_USER');
  const err = await rejection(t, guessing.apply({ user: name, newPassword: randomPassword('n'), strategy: 'replace' }), 'apply');
  t.equal((err as ApplierError).code, 'ERR_APPLIER_AMBIGUOUS_USER', 'apply: ERR_APPLIER_AMBIGUOUS_USER');
  const told = await adminApplier(t, { mysqlAccountHost: '%' });
  const next = randomPassword('n');
  await told.apply({ user: name, newPassword: next, strategy: 'replace' });
  t.equal((await told.verify({ user: name, password: next })).outcome, 'ok', 'with mysqlAccountHost: the new password logs in');
});

t.test('mysql: errors of ALTER USER itself carry no password (mysql2 attaches the SQL text)', async (t) => {
  const canaries = [canaryPassword(), canaryPassword(), canaryPassword()];
  const [unknownPw, weakLogin, deniedPw] = canaries.map((c) => c.password) as [string, string, string];
  // a configured account host skips the lookup, so the server itself rejects the statement
  const applier = await adminApplier(t, { mysqlAccountHost: '%' });
  const unknown = await rejection(t, applier.apply({ user: userName('missing'), newPassword: unknownPw, strategy: 'replace' }), 'unknown');
  assertCleanError(t, unknown, 'ERR_APPLIER_UNKNOWN_USER', canaries, 'ALTER USER for an unknown account');
  const user = await createAccount(t, 'victim', randomPassword('p'));
  const weak = await createAccount(t, 'weak', weakLogin);
  const denied = await createApplier({ ...target('admin'), mysqlAccountHost: '%' }, { user: weak, password: weakLogin });
  t.teardown(() => denied.close());
  const refusal = await rejection(t, denied.apply({ user, newPassword: deniedPw, strategy: 'replace' }), 'denied');
  assertCleanError(t, refusal, 'ERR_APPLIER_PRIVILEGE', canaries, 'ALTER USER without CREATE USER');
});

t.test('mysql: preflight – locked account is a problem', async (t) => {
  const user = await createAccount(t, 'locked', randomPassword('p'));
  await root.query('ALTER USER ?@? ACCOUNT LOCK', [user, '%']);
  const result = await (await adminApplier(t)).preflight({ user, strategy: 'replace' });
  t.same(result.problems.map((p) => p.code), ['ERR_APPLIER_LOGIN_DISABLED'], 'ERR_APPLIER_LOGIN_DISABLED only');
});

t.test('mysql: terminateSessions – ends the user\'s live sessions', async (t) => {
  const password = randomPassword('p');
  const user = await createAccount(t, 'sessions', password);
  const session = await mysql.createConnection({ host: target('admin').host, port: target('admin').port, user, password });
  session.on('error', () => undefined);
  t.teardown(() => session.destroy());
  const applier = await adminApplier(t);
  t.same(await applier.terminateSessions({ user }), { terminated: 1 }, 'one session ended');
  await t.rejects(session.query('SELECT 1'), 'the session is gone');
  t.same(await applier.terminateSessions({ user }), { terminated: 0 }, 'nothing left to end');
});

t.test('mysql: server description – flavour and dual support from VERSION()', async (t) => {
  t.match(describeMysqlServer('10.11.19-MariaDB-0+deb12u1'), { flavour: 'mariadb', dual: false }, 'MariaDB 10.11');
  t.match(describeMysqlServer('5.5.5-10.6.12-MariaDB'), { flavour: 'mariadb', dual: false }, 'MariaDB behind the 5.5.5- prefix');
  t.match(describeMysqlServer('8.0.13'), { flavour: 'mysql', dual: false, replaceClause: true }, 'MySQL 8.0.13: no RETAIN yet');
  t.match(describeMysqlServer('8.0.14'), { flavour: 'mysql', dual: true }, 'MySQL 8.0.14: RETAIN CURRENT PASSWORD');
  t.match(describeMysqlServer('8.4.2-commercial'), { flavour: 'mysql', dual: true }, 'MySQL 8.4');
  t.match(describeMysqlServer('5.7.44-log'), { flavour: 'mysql', dual: false }, 'MySQL 5.7');
  t.match(describeMysqlServer('garbage'), { dual: false, replaceClause: false }, 'unparsable: nothing optional');
});

t.test('mysql: grants – who may change passwords', async (t) => {
  const to = ' TO `a`@`%`';
  t.ok(grantsAllowPasswordChange([`GRANT ALL PRIVILEGES ON *.*${to} WITH GRANT OPTION`], 'alter-others'), 'ALL on *.*');
  t.ok(grantsAllowPasswordChange([`GRANT SELECT, CREATE USER ON *.*${to}`], 'alter-others'), 'CREATE USER');
  t.ok(grantsAllowPasswordChange([`GRANT USAGE ON *.*${to}`, `GRANT UPDATE ON \`mysql\`.*${to}`], 'alter-others'), 'UPDATE on mysql.*');
  t.notOk(grantsAllowPasswordChange([`GRANT USAGE ON *.*${to}`, `GRANT ALL PRIVILEGES ON \`app\`.*${to}`], 'alter-others'), 'ALL on another schema');
  t.ok(grantsAllowPasswordChange([`GRANT USAGE ON *.*${to}`, `GRANT APPLICATION_PASSWORD_ADMIN ON *.*${to}`], 'dual-self'), 'APPLICATION_PASSWORD_ADMIN');
  t.notOk(grantsAllowPasswordChange([`GRANT USAGE ON *.*${to}`], 'dual-self'), 'USAGE only');
  t.ok(grantsAllowPasswordChange([], 'none'), 'own password: nothing needed');
});
