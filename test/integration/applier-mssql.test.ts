/**
 * SQL Server applier with the real driver (tedious) against the fake TDS server
 * in test/fakes/tds — always — and against a real SQL Server when
 * SIKKER_TEST_MSSQL_URL is set. The shared conformance suite runs for logins and
 * contained users, in admin and self mode (one password per principal, so
 * `dual` is refused); then the password policy, session termination, TLS
 * downgrade refusal, how the password travels, odd names, and errors that never
 * carry a password.
 */
import t, { type Test } from 'tap';
import { createApplier } from '../../agent/appliers/index.js';
import type { Applier } from '../../agent/appliers/applier.js';
import type { ApplierError } from '../../agent/appliers/applier-errors.js';
import { MssqlDriverError, MssqlSession } from '../../agent/appliers/mssql-session.js';
import { alterPasswordStatement, passwordProblem, quoteName, quoteNString } from '../../agent/appliers/mssql-sql.js';
import type { TargetConnection } from '../../agent/appliers/target.js';
import { DEFAULT_PASSWORD_RULES, generatePassword } from '../../control-plane/rotation/password-generator.js';
import { fakeServer, realServer, type MssqlTestServer } from '../fakes/tds/servers.js';
import { applierConformance, assertCleanError, canaryPassword, randomPassword, rejection, renderings, type ApplierFixture } from '../support/applier-fixtures.js';
import { freePort } from '../support/free-port.js';

const REAL_URL = process.env['SIKKER_TEST_MSSQL_URL'] || undefined;
const SKIP_REAL = 'SIKKER_TEST_MSSQL_URL is not set (an admin URL, e.g. mssql://sa:…@127.0.0.1:1433?tls=require): '
  + 'no SQL Server on this machine, so only the fake-backed tests ran';
const CONTAINED_DB = 'sk_contained';

const fake = await fakeServer();
t.teardown(() => fake.close());
const real = REAL_URL === undefined ? undefined : await realServer(REAL_URL);
if (real !== undefined) t.teardown(() => real.close());
const servers = real === undefined ? [fake] : [fake, real];
const fakeTds = fake.fake!;

function target(server: MssqlTestServer, mode: 'admin' | 'self', overrides: Partial<TargetConnection> = {}): TargetConnection {
  return {
    engine: 'mssql',
    host: server.host,
    port: server.port,
    user: 'the_requests_name_their_user',
    tls: server.tls,
    privilege: mode === 'admin' ? { mode: 'admin', adminConnection: 'local-sa' } : { mode: 'self' },
    ...overrides,
  };
}

async function adminApplier(t: Test, server: MssqlTestServer, overrides: Partial<TargetConnection> = {}): Promise<Applier> {
  const applier = await createApplier(target(server, 'admin', overrides), { url: server.adminUrl });
  t.teardown(() => applier.close());
  return applier;
}

function loginFixture(server: MssqlTestServer, mode: 'admin' | 'self'): ApplierFixture {
  return {
    name: `mssql ${server.label} login (${mode})`,
    mode,
    strategies: ['replace'],
    // CHECK_POLICY OFF, as SQL Server allows per login: HOSTILE_PASSWORDS are not all "complex"
    createUser: (t, password) => server.createLogin(t, 'user', password),
    unknownUser: () => server.uniqueName('missing'),
    unknownUserApplyCode: mode === 'admin' ? 'ERR_APPLIER_UNKNOWN_USER' : 'ERR_APPLIER_AUTH_FAILED',
    applier: () => createApplier(target(server, mode), mode === 'admin' ? { url: server.adminUrl } : undefined),
    async unprivilegedApplier(t, _user, loginPassword) {
      const weak = await server.createLogin(t, 'weak', loginPassword);
      return createApplier(target(server, 'admin'), { user: weak, password: loginPassword });
    },
    async unreachableApplier(loginPassword) {
      return createApplier(target(server, mode, { port: await freePort() }), mode === 'admin' ? { user: 'sa', password: loginPassword } : undefined);
    },
    async refusedLoginApplier(loginPassword) {
      // a throwaway login, so that failed logins never count against a real server's sa lockout
      const name = await server.createLogin(t, 'admin', randomPassword('Real1'));
      return createApplier(target(server, 'admin'), { user: name, password: loginPassword });
    },
  };
}

/** Contained users of CONTAINED_DB on the fake (a real server would need a contained database set up). */
function containedFixture(mode: 'admin' | 'self'): ApplierFixture {
  const contained = (overrides: Partial<TargetConnection> = {}) => target(fake, mode, { mssqlPrincipal: 'contained-user', database: CONTAINED_DB, ...overrides });
  const createUser = (label: string, password: string, alterAnyUser = false) => {
    const name = fake.uniqueName(label);
    fakeTds.addContainedUser(CONTAINED_DB, name, password, { checkPolicy: false, alterAnyUser });
    return name;
  };
  return {
    name: `mssql fake-tds contained user (${mode})`,
    mode,
    strategies: ['replace'],
    createUser: async (_t, password) => createUser('cuser', password),
    unknownUser: () => fake.uniqueName('missing'),
    unknownUserApplyCode: mode === 'admin' ? 'ERR_APPLIER_UNKNOWN_USER' : 'ERR_APPLIER_AUTH_FAILED',
    applier: () => createApplier(contained(), mode === 'admin' ? { url: fake.adminUrl } : undefined),
    async unprivilegedApplier(_t, _user, loginPassword) {
      const weak = createUser('weak', loginPassword);
      return createApplier(contained({ privilege: { mode: 'admin', adminConnection: 'db-admin' } }), { user: weak, password: loginPassword });
    },
    async unreachableApplier(loginPassword) {
      return createApplier(contained({ port: await freePort() }), mode === 'admin' ? { user: 'sa', password: loginPassword } : undefined);
    },
    async refusedLoginApplier(loginPassword) {
      const admin = createUser('admin', randomPassword('Real1'), true);
      return createApplier(contained({ privilege: { mode: 'admin', adminConnection: 'db-admin' } }), { user: admin, password: loginPassword });
    },
  };
}

applierConformance(t, loginFixture(fake, 'admin'));
applierConformance(t, loginFixture(fake, 'self'));
applierConformance(t, containedFixture('admin'));
applierConformance(t, containedFixture('self'));
if (real !== undefined) {
  applierConformance(t, loginFixture(real, 'admin'));
  applierConformance(t, loginFixture(real, 'self'));
} else {
  t.test('mssql sql-server (real): conformance, policy and sessions', { skip: SKIP_REAL }, async () => undefined);
}

for (const server of servers) {
  const label = `mssql ${server.label}`;

  t.test(`${label}: dual – refused at preflight with the reason`, async (t) => {
    const user = await server.createLogin(t, 'dual', randomPassword('Cur1'));
    const result = await (await adminApplier(t, server)).preflight({ user, strategy: 'dual' });
    const problem = result.problems.find((p) => p.code === 'ERR_APPLIER_UNSUPPORTED');
    t.match(problem?.message, /one password per login.*alternate/, 'says why, and what to use instead');
    t.same(result.strategies, ['replace'], 'only replace is supported');
  });

  t.test(`${label}: password policy – refusals are ERR_APPLIER_REJECTED_PASSWORD, a generated password passes`, async (t) => {
    const current = randomPassword('Cur1');
    const user = await server.createLogin(t, 'policy', current, { checkPolicy: true });
    const applier = await adminApplier(t, server);
    const report = await applier.preflight({ user, strategy: 'replace' });
    t.same(report.problems, [], 'preflight: no problems');
    t.ok(report.warnings.some((w) => w.code === 'WARN_APPLIER_PASSWORD_POLICY'), 'preflight: CHECK_POLICY is a warning');
    const weak: [string, string][] = [['too short', 'Ab1-x'], ['two classes', 'only-lowercase-and-dashes'], ['holds the login name', `${user.toUpperCase()}-x1`]];
    for (const [what, password] of weak) {
      const err = await rejection(t, applier.apply({ user, newPassword: password, strategy: 'replace' }), what);
      t.equal((err as ApplierError).code, 'ERR_APPLIER_REJECTED_PASSWORD', `${what}: ERR_APPLIER_REJECTED_PASSWORD`);
      t.equal((err as ApplierError).retryable, false, `${what}: not retried as is (the control plane generates a new one)`);
    }
    t.equal((await applier.verify({ user, password: current })).outcome, 'ok', 'the current password still logs in');
    const generated = generatePassword(DEFAULT_PASSWORD_RULES, 'mssql');
    await applier.apply({ user, newPassword: generated, strategy: 'replace' });
    t.equal((await applier.verify({ user, password: generated })).outcome, 'ok', 'the generator\'s mssql password meets the policy');
  });

  t.test(`${label}: terminateSessions – ends another client's session, not its own`, async (t) => {
    const password = randomPassword('Ses1');
    const user = await server.createLogin(t, 'sessions', password);
    const victim = await openAs(server, user, password);
    t.teardown(() => victim.close());
    await victim.batch('SELECT 1');
    const applier = await adminApplier(t, server);
    t.same(await applier.terminateSessions({ user }), { terminated: 1 }, 'one session ended');
    const err = await rejection(t, victim.batch('SELECT 1'), 'the killed client');
    t.ok(err instanceof MssqlDriverError, 'the killed client\'s next request fails');
    t.same(await applier.terminateSessions({ user }), { terminated: 0 }, 'nothing left to end');
    t.equal((await applier.preflight({ user, strategy: 'replace' })).ok, true, 'the applier\'s own session still works');
  });

  t.test(`${label}: terminateSessions – self mode ends its other sessions, never the one it acts from`, async (t) => {
    const password = randomPassword('Ses1');
    const user = await server.createLogin(t, 'selfkill', password, { permissions: ['VIEW SERVER STATE', 'ALTER ANY CONNECTION'] });
    const others = [await openAs(server, user, password), await openAs(server, user, password)];
    t.teardown(() => Promise.all(others.map((s) => s.close())));
    const applier = await createApplier(target(server, 'self'), undefined);
    t.teardown(() => applier.close());
    t.same(await applier.terminateSessions({ user, currentPassword: password }), { terminated: 2 }, 'both other sessions ended');
  });

  t.test(`${label}: terminateSessions – without VIEW SERVER STATE / ALTER ANY CONNECTION is ERR_APPLIER_PRIVILEGE`, async (t) => {
    const password = randomPassword('Ses1');
    const user = await server.createLogin(t, 'nokill', password);
    const applier = await createApplier(target(server, 'self'), undefined);
    t.teardown(() => applier.close());
    const err = await rejection(t, applier.terminateSessions({ user, currentPassword: password }), 'terminate');
    t.equal((err as ApplierError).code, 'ERR_APPLIER_PRIVILEGE', 'ERR_APPLIER_PRIVILEGE rather than "0 ended"');
  });

  t.test(`${label}: odd login names are quoted, not interpreted`, async (t) => {
    const old = randomPassword('Old1');
    const user = await server.createLogin(t, `odd]na[me 'q" -- x`, old);
    const applier = await adminApplier(t, server);
    const next = randomPassword('New1');
    await applier.apply({ user, newPassword: next, strategy: 'replace' });
    t.equal((await applier.verify({ user, password: next })).outcome, 'ok', 'new password logs in');
    t.equal((await applier.verify({ user, password: old })).outcome, 'refused', 'old password refused');
  });

  t.test(`${label}: policy refusal of a canary password carries no password`, async (t) => {
    const canaries = [canaryPassword()];
    const user = await server.createLogin(t, 'canary', randomPassword('Cur1'), { checkPolicy: true });
    const weak = `${user}${canaries[0]!.token}`; // contains the login name: refused by CHECK_POLICY
    canaries.push({ password: weak, token: weak });
    const err = await rejection(t, (await adminApplier(t, server)).apply({ user, newPassword: weak, strategy: 'replace' }), 'apply');
    assertCleanError(t, err, 'ERR_APPLIER_REJECTED_PASSWORD', canaries, 'policy refusal');
  });
}

/** A client session as `user`, outside any applier. */
function openAs(server: MssqlTestServer, user: string, password: string, database?: string): Promise<MssqlSession> {
  return MssqlSession.open({ host: server.host, port: server.port, user, password, database, tls: server.tls, connectTimeoutMs: 5000, statementTimeoutMs: 5000 });
}

t.test('mssql fake-tds: the password statement travels alone as a SQL batch; lookups as sp_executesql', async (t) => {
  const user = await fake.createLogin(t, 'travel', randomPassword('Old1'));
  const applier = await adminApplier(t, fake);
  await applier.preflight({ user, strategy: 'replace' });
  const mark = fakeTds.statements.length;
  await applier.preflight({ user, strategy: 'replace' });
  await applier.apply({ user, newPassword: randomPassword('New1'), strategy: 'replace' });
  t.same(fakeTds.statements.slice(mark), [{ transport: 'rpc', kind: 'query' }, { transport: 'batch', kind: 'alter-password' }], 'facts by RPC, ALTER LOGIN by batch');
});

t.test('mssql fake-tds: TLS asked for but not offered – refused before the login is sent', async (t) => {
  const user = await fake.createLogin(t, 'tls', randomPassword('Cur1'));
  for (const mode of ['require', 'verify-full'] as const) {
    const before = fakeTds.loginAttempts;
    const applier = await adminApplier(t, fake, { tls: { mode } });
    const report = await applier.preflight({ user, strategy: 'replace' });
    t.same(report.problems.map((p) => p.code), ['ERR_APPLIER_TLS'], `${mode}: preflight reports ERR_APPLIER_TLS`);
    const err = await rejection(t, applier.verify({ user, password: randomPassword('p') }), 'verify');
    t.equal((err as ApplierError).code, 'ERR_APPLIER_TLS', `${mode}: verify throws ERR_APPLIER_TLS`);
    t.equal(fakeTds.loginAttempts, before, `${mode}: no LOGIN7 (with its scrambled password) reached the server`);
  }
});

t.test('mssql fake-tds: preflight – disabled, locked and expiring logins', async (t) => {
  const applier = await adminApplier(t, fake);
  const cases: [string, Parameters<typeof fakeTds.addLogin>[2], string[], string[]][] = [
    ['disabled', { disabled: true, checkPolicy: false }, ['ERR_APPLIER_LOGIN_DISABLED'], []],
    ['locked', { locked: true }, ['ERR_APPLIER_LOGIN_DISABLED'], ['WARN_APPLIER_PASSWORD_POLICY']],
    ['expiring', { checkExpiration: true }, [], ['WARN_APPLIER_PASSWORD_EXPIRES', 'WARN_APPLIER_PASSWORD_POLICY']],
  ];
  for (const [what, options, problems, warnings] of cases) {
    const user = fake.uniqueName(what);
    const password = randomPassword('Cur1');
    fakeTds.addLogin(user, password, options);
    const report = await applier.preflight({ user, strategy: 'replace' });
    t.same(report.problems.map((p) => p.code), problems, `${what}: problems`);
    t.same(report.warnings.map((w) => w.code), warnings, `${what}: warnings`);
    if (problems.length > 0) t.equal((await applier.verify({ user, password })).outcome, 'refused', `${what}: verify says refused`);
  }
});

t.test('mssql fake-tds: one admin login serves many calls, and a killed admin session is replaced', async (t) => {
  const user = await fake.createLogin(t, 'reuse', randomPassword('Cur1'));
  const applier = await adminApplier(t, fake);
  const before = fakeTds.loginAttempts;
  await applier.preflight({ user, strategy: 'replace' });
  await applier.apply({ user, newPassword: randomPassword('New1'), strategy: 'replace' });
  await applier.terminateSessions({ user });
  t.equal(fakeTds.loginAttempts - before, 1, 'three calls, one admin login');
  const other = await adminApplier(t, fake);
  await other.terminateSessions({ user: 'sikker_admin' });
  await new Promise((resolve) => setTimeout(resolve, 50));
  await applier.apply({ user, newPassword: randomPassword('New1'), strategy: 'replace' });
  t.pass('the next call logged in again');
});

t.test('mssql fake-tds: a contained user is verified in its own database', async (t) => {
  const password = randomPassword('Cur1');
  const user = fake.uniqueName('cverify');
  fakeTds.addContainedUser(CONTAINED_DB, user, password, { checkPolicy: false });
  const inDb = await adminApplier(t, fake, { mssqlPrincipal: 'contained-user', database: CONTAINED_DB });
  t.equal((await inDb.verify({ user, password })).outcome, 'ok', 'logs in to its database');
  const asLogin = await adminApplier(t, fake);
  t.equal((await asLogin.verify({ user, password })).outcome, 'refused', 'is no server login');
  const report = await inDb.preflight({ user, strategy: 'replace' });
  t.same(report.problems, [], 'preflight in its database: ok');
});

t.test('mssql fake-tds: a server error quoting the statement reaches no error object', async (t) => {
  const canary = canaryPassword();
  const url = new URL(fake.adminUrl);
  const session = await openAs(fake, url.username, decodeURIComponent(url.password));
  t.teardown(() => session.close());
  // a broken statement: the server answers "Incorrect syntax near '<the token>'"
  const err = await rejection(t, session.batch(`ALTER LOGIN [x] WITH PASSWORD = ${canary.token}`), 'broken statement');
  t.ok(err instanceof MssqlDriverError && err.numbers.includes(102), 'the server answered 102');
  t.same(renderings(err).filter((text) => text.includes(canary.token)), [], 'the driver error does not carry it');
});

t.test('mssql: passwords SQL Server cannot take are refused before anything is sent', async (t) => {
  const user = await fake.createLogin(t, 'limits', randomPassword('Cur1'));
  const applier = await adminApplier(t, fake);
  const mark = fakeTds.statements.length;
  const refused: [string, string][] = [['129 characters', `Aa1-${'x'.repeat(125)}`], ['backslash before a line break', 'Aa1-line\\\ncontinued']];
  for (const [what, password] of refused) {
    const err = await rejection(t, applier.apply({ user, newPassword: password, strategy: 'replace' }), what);
    t.equal((err as ApplierError).code, 'ERR_APPLIER_REJECTED_PASSWORD', `${what}: ERR_APPLIER_REJECTED_PASSWORD`);
  }
  t.equal(fakeTds.statements.length, mark, 'no statement reached the server');
  t.equal(passwordProblem(`Aa1-${'x'.repeat(124)}`), undefined, '128 characters are fine');
});

t.test('mssql: quoting', async (t) => {
  t.equal(quoteName('a]b[c'), '[a]]b[c]', 'QUOTENAME: ] doubled');
  t.equal(quoteNString(`it's`), `N'it''s'`, 'N-literal: quote doubled');
  t.equal(alterPasswordStatement('login', 'a]b', `p'1`), `ALTER LOGIN [a]]b] WITH PASSWORD = N'p''1'`, 'admin: ALTER LOGIN');
  t.equal(alterPasswordStatement('contained-user', 'u', 'n', `o'`), `ALTER USER [u] WITH PASSWORD = N'n' OLD_PASSWORD = N'o'''`, 'self, contained: ALTER USER … OLD_PASSWORD');
});
