/**
 * PostgreSQL applier on a private cluster that really checks SCRAM passwords
 * (the machine's shared server trusts any password on 127.0.0.1): the shared
 * conformance suite in admin and self mode, plus what is PostgreSQL-specific —
 * the stored verifier, and ending a user's sessions.
 */
import t, { type Test } from 'tap';
import pg from 'pg';
import { randomBytes } from 'node:crypto';
import { createApplier } from '../../agent/appliers/index.js';
import type { Applier } from '../../agent/appliers/applier.js';
import type { TargetConnection } from '../../agent/appliers/target.js';
import { PasswordDerivation } from '../../agent/appliers/password-derivation.js';
import { parseScramVerifier } from '../../agent/appliers/postgres-scram-verifier.js';
import { WarmSocket } from '../../agent/appliers/postgres-warm-socket.js';
import { createServer, connect as netConnect, type Socket } from 'node:net';
import { eventually } from '../support/agents.js';
import { applierConformance, randomPassword, type ApplierFixture } from '../support/applier-fixtures.js';
import { freePort } from '../support/free-port.js';
import { postgresLogsIn } from '../support/postgres-login.js';
import { startScramPostgresWithSuperuser } from '../support/scram-postgres.js';

const { server, superuser } = await startScramPostgresWithSuperuser(t);

const prefix = `sk_app_${randomBytes(3).toString('hex')}`;
let counter = 0;
const roleName = (label: string) => `${prefix}_${label}_${counter++}`;

function target(mode: 'admin' | 'self', port = server.port): TargetConnection {
  return {
    engine: 'postgres',
    host: '127.0.0.1',
    port,
    database: 'postgres',
    user: `${prefix}_target`,
    tls: { mode: 'disable' },
    privilege: mode === 'admin' ? { mode: 'admin', adminConnection: 'local-superuser' } : { mode: 'self' },
  };
}

/** A LOGIN role whose password PostgreSQL itself hashed; dropped in teardown. */
async function createRole(t: Test, label: string, password: string): Promise<string> {
  const name = roleName(label);
  await superuser.query(`CREATE ROLE ${superuser.escapeIdentifier(name)} LOGIN PASSWORD ${superuser.escapeLiteral(password)}`);
  t.teardown(async () => {
    await superuser.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1', [name]);
    await superuser.query(`DROP ROLE IF EXISTS ${superuser.escapeIdentifier(name)}`);
  });
  return name;
}

/**
 * A TCP proxy in front of the cluster that counts the connections it gets and forwards them,
 * except the n-th (from 1) when `cut(n)`: that one is cut as soon as it speaks.
 */
async function proxyToCluster(t: Test, cut: (n: number) => boolean = () => false): Promise<{ port: number; seen: () => number }> {
  let seen = 0;
  const open = new Set<Socket>();
  const proxy = createServer((inbound) => {
    seen += 1;
    open.add(inbound);
    inbound.on('error', () => undefined);
    if (cut(seen)) {
      inbound.once('data', () => inbound.destroy());
      return;
    }
    const outbound = netConnect(server.port, '127.0.0.1');
    open.add(outbound);
    outbound.on('error', () => inbound.destroy());
    inbound.pipe(outbound).pipe(inbound);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => {
    for (const s of open) s.destroy();
    proxy.close();
  });
  return { port: (proxy.address() as { port: number }).port, seen: () => seen };
}

function fixture(mode: 'admin' | 'self'): ApplierFixture {
  return {
    name: `postgres (${mode})`,
    mode,
    strategies: ['replace'],
    createUser: (t, password) => createRole(t, 'user', password),
    unknownUser: () => roleName('missing'),
    unknownUserApplyCode: mode === 'admin' ? 'ERR_APPLIER_UNKNOWN_USER' : 'ERR_APPLIER_AUTH_FAILED',
    applier: () => createApplier(target(mode), mode === 'admin' ? { url: server.superuserUrl } : undefined),
    async unprivilegedApplier(t, _user, loginPassword) {
      const weak = await createRole(t, 'weak', loginPassword);
      return createApplier(target('admin'), { user: weak, password: loginPassword });
    },
    async unreachableApplier(loginPassword) {
      return createApplier(target(mode, await freePort()), mode === 'admin' ? { user: 'postgres', password: loginPassword } : undefined);
    },
    refusedLoginApplier: (loginPassword) => createApplier(target('admin'), { user: 'postgres', password: loginPassword }),
  };
}

applierConformance(t, fixture('admin'));
applierConformance(t, fixture('self'));

async function adminApplier(t: Test): Promise<Applier> {
  const applier = await createApplier(target('admin'), { url: server.superuserUrl });
  t.teardown(() => applier.close());
  return applier;
}

t.test('postgres: apply – stores a SCRAM verifier computed by the agent', async (t) => {
  const applier = await adminApplier(t);
  const user = await createRole(t, 'scram', randomPassword('old'));
  const next = randomPassword('new');
  await applier.apply({ user, newPassword: next, strategy: 'replace' });
  const { rows } = await superuser.query<{ rolpassword: string }>('SELECT rolpassword FROM pg_authid WHERE rolname = $1', [user]);
  const stored = rows[0]?.rolpassword ?? '';
  const parsed = parseScramVerifier(stored);
  t.ok(parsed, 'stored value is a SCRAM-SHA-256 verifier');
  t.equal(parsed?.iterations, 4096, '4096 iterations');
  t.equal(parsed?.salt.length, 16, '16-byte salt');
  t.notOk(stored.includes(next), 'not the plaintext');
});

t.test('postgres: apply – stores the verifier derived ahead of time, only for the password it was derived from', async (t) => {
  const storedVerifier = async (user: string): Promise<string> =>
    (await superuser.query<{ rolpassword: string }>('SELECT rolpassword FROM pg_authid WHERE rolname = $1', [user])).rows[0]?.rolpassword ?? '';
  const applier = await adminApplier(t);
  const user = await createRole(t, 'derived', randomPassword('old'));
  const next = randomPassword('new');
  const derived = PasswordDerivation.start('postgres', next);
  const expected = await derived?.scramCredential(next)?.then((c) => c.verifier);
  t.ok(expected !== undefined, 'derived');
  await applier.apply({ user, newPassword: next, strategy: 'replace', derived });
  t.equal(await storedVerifier(user), expected, 'the derived verifier is what the server stores');
  t.ok(await postgresLogsIn(server.port, user, next), 'and the new password logs in');
  // a derivation for another password is not used: the applier computes the right verifier itself
  const other = randomPassword('other');
  const third = randomPassword('third');
  const mismatched = PasswordDerivation.start('postgres', other);
  await applier.apply({ user, newPassword: third, strategy: 'replace', derived: mismatched });
  t.not(await storedVerifier(user), await mismatched?.scramCredential(other)?.then((c) => c.verifier), 'not the other password\'s verifier');
  t.ok(await postgresLogsIn(server.port, user, third), 'the applied password logs in');
  t.notOk(await postgresLogsIn(server.port, user, other), 'the one the derivation was for does not');
});

t.test('postgres: a socket opened ahead carries a full, real login (the password is checked on it)', async (t) => {
  const password = randomPassword('warm');
  const user = await createRole(t, 'warm', password);
  const login = async (pw: string): Promise<string> => {
    const warm = WarmSocket.open('127.0.0.1', server.port);
    await new Promise((r) => setTimeout(r, 30)); // the server has accepted it and is waiting for the startup packet
    const stream = warm?.take() ?? null;
    t.not(stream, null, 'the socket is still usable');
    const client = new pg.Client({ host: '127.0.0.1', port: server.port, user, password: pw, database: 'postgres', ...(stream === null ? {} : { stream }) });
    client.on('error', () => undefined);
    try {
      await client.connect();
      return (await client.query<{ u: string }>('SELECT current_user AS u')).rows[0]?.u ?? '';
    } catch (err) {
      return `refused ${(err as { code?: string }).code ?? ''}`;
    } finally {
      await client.end().catch(() => undefined);
    }
  };
  t.equal(await login(password), user, 'the right password logs in on it');
  t.equal(await login(randomPassword('wrong')), 'refused 28P01', 'a wrong one is refused on it');
});

t.test('postgres: a socket opened ahead that could not connect is not used', async (t) => {
  const warm = WarmSocket.open('127.0.0.1', await freePort());
  await new Promise((r) => setTimeout(r, 100));
  t.equal(warm?.take(), null, 'nothing to take: the login opens its own connection');
  t.equal(WarmSocket.open('/var/run/postgresql', 5432), null, 'no early socket for a Unix socket path');
});

t.test('postgres: verify after apply – when the early socket breaks during the login, a new connection gives the answer', async (t) => {
  // cuts the first connection as soon as it speaks (the startup packet on the socket apply opened)
  const proxy = await proxyToCluster(t, (n) => n === 1);
  const { port } = proxy;
  const applier = await createApplier(target('admin', port), { url: server.superuserUrl });
  t.teardown(() => applier.close());
  const user = await createRole(t, 'proxied', randomPassword('old'));
  const next = randomPassword('new');
  await applier.apply({ user, newPassword: next, strategy: 'replace' });
  t.same(await applier.verify({ user, password: next }), { outcome: 'ok' }, 'verified on a second connection');
  t.equal(proxy.seen(), 2, 'the early socket was cut, then one more connection made');
  t.same(await applier.verify({ user, password: randomPassword('wrong') }), { outcome: 'refused' }, 'and a wrong password is still refused');
});

t.test('postgres: apply takes the socket opened when the command was accepted (ApplyRequest.warm) for its verify', async (t) => {
  // the verify's connection is the only one that goes through the proxy (admin connects directly)
  const proxy = await proxyToCluster(t);
  const { port } = proxy;
  const applier = await createApplier(target('admin', port), { url: server.superuserUrl });
  t.teardown(() => applier.close());
  const user = await createRole(t, 'early', randomPassword('old'));
  const next = randomPassword('new');
  const warm = WarmSocket.open('127.0.0.1', port);
  await eventually(async () => (proxy.seen() === 1 ? true : undefined), 5000, 'the early socket reaching the proxy');
  await applier.apply({ user, newPassword: next, strategy: 'replace', warm });
  t.same(await applier.verify({ user, password: next }), { outcome: 'ok' }, 'verified');
  t.equal(proxy.seen(), 1, 'on the early socket: no other connection was made');
  t.equal(warm?.take(), null, 'the applier took it');
  warm?.close(); // what the command does when it ends: a no-op for a taken socket
  t.ok(await postgresLogsIn(server.port, user, next), 'the applied password logs in');
  t.same(await applier.verify({ user, password: randomPassword('wrong') }), { outcome: 'refused' }, 'a wrong password is refused (on a new connection)');
  t.equal(proxy.seen(), 2);
});

t.test('postgres: preflight – NOLOGIN role is a problem', async (t) => {
  const applier = await adminApplier(t);
  const user = await createRole(t, 'nologin', randomPassword('p'));
  await superuser.query(`ALTER ROLE ${superuser.escapeIdentifier(user)} NOLOGIN`);
  const result = await applier.preflight({ user, strategy: 'replace' });
  t.same(result.problems.map((p) => p.code), ['ERR_APPLIER_LOGIN_DISABLED'], 'ERR_APPLIER_LOGIN_DISABLED only');
});

t.test('postgres: preflight – CREATEROLE may change a non-superuser, not a superuser', async (t) => {
  const weakPassword = randomPassword('cr');
  const manager = await createRole(t, 'manager', weakPassword);
  await superuser.query(`ALTER ROLE ${superuser.escapeIdentifier(manager)} CREATEROLE`);
  const applier = await createApplier(target('admin'), { user: manager, password: weakPassword });
  t.teardown(() => applier.close());
  const plain = await createRole(t, 'plain', randomPassword('p'));
  t.equal((await applier.preflight({ user: plain, strategy: 'replace' })).ok, true, 'plain role: ok');
  const boss = await createRole(t, 'boss', randomPassword('p'));
  await superuser.query(`ALTER ROLE ${superuser.escapeIdentifier(boss)} SUPERUSER`);
  const result = await applier.preflight({ user: boss, strategy: 'replace' });
  t.same(result.problems.map((p) => p.code), ['ERR_APPLIER_PRIVILEGE'], 'superuser role: ERR_APPLIER_PRIVILEGE');
});

t.test('postgres: terminateSessions – ends the user\'s live sessions', async (t) => {
  const applier = await adminApplier(t);
  const password = randomPassword('p');
  const user = await createRole(t, 'sessions', password);
  const session = new pg.Client({ host: '127.0.0.1', port: server.port, user, password, database: 'postgres' });
  const broken = new Promise<void>((resolve) => session.on('error', () => resolve()));
  await session.connect();
  t.teardown(() => session.end().catch(() => undefined));
  t.same(await applier.terminateSessions({ user }), { terminated: 1 }, 'one session ended');
  await broken;
  t.pass('the session saw its connection end');
  // pg_terminate_backend only signals: the backend stays in pg_stat_activity until it has exited.
  await eventually(async () => ((await superuser.query('SELECT 1 FROM pg_stat_activity WHERE usename = $1', [user])).rowCount === 0 ? true : undefined), 10_000, 'the backend to exit');
  t.same(await applier.terminateSessions({ user }), { terminated: 0 }, 'nothing left to end');
});
