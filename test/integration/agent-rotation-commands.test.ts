/**
 * The agent's rotation executors (target.preflight, rotation.apply, rotation.check,
 * rotation.revoke) called directly with envelopes sealed here, against a private
 * PostgreSQL cluster that really checks SCRAM passwords (and a private Redis for
 * `dual`). Every "accepted / refused" is a fresh login made by the test itself.
 * Where a server cannot be made to fail on cue, a fake or wrapped applier is
 * injected through the executors' `createApplier` dependency.
 */
import t, { type Test } from 'tap';
import pg from 'pg';
import { Redis } from 'ioredis';
import { execFile } from 'node:child_process';
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { sealTo } from '../../shared/crypto/sealed-box.js';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { createLogger, type Logger } from '../../shared/logging/logger.js';
import type { CommandEnvelope, CommandKind } from '../../shared/protocol/agent-messages.js';
import type { TargetSpec } from '../../shared/protocol/rotation-commands.js';
import { createApplier } from '../../agent/appliers/index.js';
import type { Applier } from '../../agent/appliers/applier.js';
import { ApplierError } from '../../agent/appliers/applier-errors.js';
import { createApplyExecutor } from '../../agent/commands/apply-command.js';
import { createCheckExecutor } from '../../agent/commands/check-command.js';
import type { CommandExecutor, ResultFacts } from '../../agent/commands/command-executor.js';
import { createPreflightExecutor } from '../../agent/commands/preflight-command.js';
import { createRevokeExecutor } from '../../agent/commands/revoke-command.js';
import type { ApplierFactory, RotationExecutorDeps } from '../../agent/commands/rotation-context.js';
import { canaryPassword, randomPassword, renderings } from '../support/applier-fixtures.js';
import { freePort } from '../support/free-port.js';
import { startPrivateRedis } from '../support/private-redis.js';
import { startScramPostgresWithSuperuser } from '../support/scram-postgres.js';

const { server, superuser } = await startScramPostgresWithSuperuser(t);

const agentId = randomUUID();
const box = generateKeyPairSync('x25519');
const ADMIN = 'local-superuser';
/** An admin connection to a port where nothing listens (an admin URL's host and port win over the target's). */
const AWAY = 'nowhere';
const awayPort = await freePort();
const prefix = `sk_cmd_${randomBytes(3).toString('hex')}`;
let counter = 0;
let generation = 0;

/** A LOGIN role with `password`, dropped in teardown. */
async function createRole(t: Test, password: string, label = 'user'): Promise<string> {
  const name = `${prefix}_${label}_${counter++}`;
  await superuser.query(`CREATE ROLE ${superuser.escapeIdentifier(name)} LOGIN PASSWORD ${superuser.escapeLiteral(password)}`);
  t.teardown(async () => {
    await superuser.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1', [name]);
    await superuser.query(`DROP ROLE IF EXISTS ${superuser.escapeIdentifier(name)}`);
  });
  return name;
}

/**
 * `user` is let in from 127.0.0.1 without a password (a pg_hba.conf `trust` line for that
 * role alone, ahead of the scram-sha-256 ones) until the test ends.
 */
async function trustRole(t: Test, user: string): Promise<void> {
  const hba = (await superuser.query<{ file: string }>('SELECT setting AS file FROM pg_settings WHERE name = \'hba_file\'')).rows[0]!.file;
  const original = (await superuser.query<{ text: string }>('SELECT pg_read_file($1) AS text', [hba])).rows[0]!.text;
  // COPY … TO: the server writes the file (as its own user); one line per row
  const write = async (lines: string[]): Promise<void> => {
    await superuser.query(`COPY (SELECT unnest(ARRAY[${lines.map((l) => superuser.escapeLiteral(l)).join(', ')}]::text[])) TO ${superuser.escapeLiteral(hba)}`);
    await superuser.query('SELECT pg_reload_conf()');
  };
  const lines = original.split('\n').filter((l) => l !== '');
  t.teardown(() => write(lines));
  await write([`host all ${user} 127.0.0.1/32 trust`, ...lines]);
  // the reload is asynchronous: wait until a wrong password gets in
  for (let i = 0; i < 50 && (await login(user, 'certainly-not-the-password')) !== 'ok'; i += 1) await new Promise((r) => setTimeout(r, 50));
}

/** A fresh TCP login as `user`: what a database client would see. */
async function login(user: string, password: string): Promise<'ok' | 'refused'> {
  const client = new pg.Client({ host: '127.0.0.1', port: server.port, user, password, database: 'postgres', connectionTimeoutMillis: 5000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    if ((err as { code?: string }).code === '28P01') return 'refused';
    throw err;
  }
  await client.query('SELECT 1');
  await client.end();
  return 'ok';
}

/** A target on a port where nothing listens, through an admin connection to that port. */
function awayTarget(user: string): TargetSpec {
  return pgTarget(user, { port: awayPort, privilege: { mode: 'admin', adminConnection: AWAY } });
}

function pgTarget(user: string, overrides: Partial<TargetSpec> = {}): TargetSpec {
  return {
    engine: 'postgres',
    host: '127.0.0.1',
    port: server.port,
    database: 'postgres',
    user,
    tls: { mode: 'disable' },
    privilege: { mode: 'admin', adminConnection: ADMIN },
    ...overrides,
  };
}

/** An envelope as the processor hands it over after checking the signature; `secrets` sealed to this agent. */
function envelope(kind: CommandKind, payload: Record<string, unknown>, secrets?: unknown): CommandEnvelope {
  const commandId = randomUUID();
  const now = Date.now();
  generation += 1;
  const sealed = secrets === undefined ? null : sealTo(box.publicKey, Buffer.from(JSON.stringify(secrets)), { commandId, agentId }).toString('base64');
  return { commandId, agentId, kind, generation, issuedAt: now, expiresAt: now + 60_000, payload, sealed };
}

/** A pino logger (the project's, with redaction) whose JSON lines land in `lines`. */
function captureLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter((l) => l !== ''));
      done();
    },
  });
  return { logger: createLogger({ name: 'rotation-test', level: 'trace', destination }), lines };
}

interface Executors {
  preflight: CommandExecutor;
  apply: CommandExecutor;
  check: CommandExecutor;
  revoke: CommandExecutor;
  lines: string[];
  /** checkPayload, prepare (when the executor has one), then execute: what the command processor does. */
  run(executor: CommandExecutor, e: CommandEnvelope): Promise<ResultFacts>;
  /** execute alone: a command resumed after a restart. */
  runUnprepared(executor: CommandExecutor, e: CommandEnvelope): Promise<ResultFacts>;
}

function executors(extra: Partial<RotationExecutorDeps> = {}): Executors {
  const deps: RotationExecutorDeps = {
    agentId,
    boxPrivateKey: box.privateKey,
    adminConnections: new Map([
      [ADMIN, { url: server.superuserUrl }],
      [AWAY, { url: `postgres://postgres:${encodeURIComponent(server.superuserPassword)}@127.0.0.1:${awayPort}/postgres` }],
    ]),
    ...extra,
  };
  const { logger, lines } = captureLogger();
  return {
    preflight: createPreflightExecutor(deps),
    apply: createApplyExecutor(deps),
    check: createCheckExecutor(deps),
    revoke: createRevokeExecutor(deps),
    lines,
    async run(executor, e) {
      const payload = executor.checkPayload(e.payload);
      const prepared = executor.prepare?.(e, payload, { ahead: 0 });
      return executor.execute({ envelope: e, logger: logger.child({ commandId: e.commandId, kind: e.kind }), prepared });
    },
    async runUnprepared(executor, e) {
      return executor.execute({ envelope: e, logger: logger.child({ commandId: e.commandId, kind: e.kind }) });
    },
  };
}

/** Resolves to what `promise` rejects with; fails the test if it resolves. */
async function rejection(t: Test, promise: Promise<unknown>): Promise<SikkerError> {
  try {
    await promise;
  } catch (err) {
    t.ok(err instanceof SikkerError, 'a SikkerError');
    return err as SikkerError;
  }
  t.fail('expected an error');
  return new SikkerError('ERR_INTERNAL', 'no error');
}

function applyEnvelope(target: TargetSpec, user: string, secrets: Record<string, string>, strategy: 'replace' | 'dual' = 'replace'): CommandEnvelope {
  return envelope('rotation.apply', { runId: randomUUID(), attempt: 1, target, user, strategy }, secrets);
}

/** Delegates to `real`, with a few methods replaced; records every call's method and user. */
function wrapApplier(real: Applier, calls: string[], overrides: Partial<Pick<Applier, 'apply' | 'verify'>> = {}): Applier {
  return {
    engine: real.engine,
    preflight: (req) => real.preflight(req),
    apply: (req) => {
      calls.push(`apply ${req.strategy}`);
      return (overrides.apply ?? real.apply.bind(real))(req);
    },
    verify: (req) => {
      calls.push('verify');
      return (overrides.verify ?? real.verify.bind(real))(req);
    },
    revoke: (req) => real.revoke(req),
    terminateSessions: (req) => real.terminateSessions(req),
    close: () => {
      calls.push('close');
      return real.close();
    },
  };
}

/** An applier that changes nothing; `verify` answers from `accepts`. */
function fakeApplier(calls: string[], accepts: (password: string) => 'ok' | 'refused', applyError?: Error): Applier {
  return {
    engine: 'postgres',
    preflight: () => Promise.reject(new Error('not used')),
    async apply(req) {
      calls.push(`apply ${req.strategy} ${req.newPassword}`);
      if (applyError !== undefined) throw applyError;
      return { strategy: req.strategy, oldPasswordRetained: false, unchanged: false, persisted: true };
    },
    async verify(req) {
      calls.push(`verify ${req.password}`);
      return { outcome: accepts(req.password) };
    },
    revoke: () => Promise.reject(new Error('not used')),
    terminateSessions: () => Promise.reject(new Error('not used')),
    async close() {
      calls.push('close');
    },
  };
}

t.test('rotation.apply – sets the new password and proves it: new accepted, old refused', async (t) => {
  const x = executors();
  const old = randomPassword('old');
  const next = randomPassword('new');
  const user = await createRole(t, old);
  const facts = await x.run(x.apply, applyEnvelope(pgTarget(user), user, { newPassword: next }));
  t.same(facts, { verified: true, unchanged: false, oldPasswordRetained: false, persisted: true }, 'facts');
  t.equal(await login(user, next), 'ok', 'a fresh login with the new password works');
  t.equal(await login(user, old), 'refused', 'the old password is refused');
  const resumed = randomPassword('resumed');
  t.same(await x.runUnprepared(x.apply, applyEnvelope(pgTarget(user), user, { newPassword: resumed })), facts, 'unprepared (resumed after a restart): the same');
  t.equal(await login(user, resumed), 'ok', 'that password logs in');
  t.equal(await login(user, next), 'refused', 'the one before does not');
});

t.test('rotation.apply – running the same command again succeeds and changes nothing', async (t) => {
  const x = executors();
  const old = randomPassword('old');
  const next = randomPassword('new');
  const user = await createRole(t, old);
  const e = applyEnvelope(pgTarget(user), user, { newPassword: next, restorePassword: old });
  await x.run(x.apply, e);
  t.match(await x.run(x.apply, e), { verified: true }, 'the second run is verified too');
  t.equal(await login(user, next), 'ok', 'new password logs in');
  t.equal(await login(user, old), 'refused', 'old password stays refused');
});

t.test('rotation.apply – self-rotation logs in with the current password', async (t) => {
  const x = executors();
  const old = randomPassword('old');
  const next = randomPassword('new');
  const user = await createRole(t, old);
  const target = pgTarget(user, { privilege: { mode: 'self' } });
  t.match(await x.run(x.apply, applyEnvelope(target, user, { newPassword: next, currentPassword: old })), { verified: true });
  t.equal(await login(user, next), 'ok', 'new password logs in');
  const err = await rejection(t, x.run(x.apply, applyEnvelope(target, user, { newPassword: randomPassword('n') })));
  t.match(err, { code: 'ERR_VALIDATION', message: /needs the current password/ }, 'self mode without a current password is malformed');
});

t.test('rotation.apply – an applier error is rethrown unchanged', async (t) => {
  const x = executors();
  const missing = `${prefix}_missing_${counter++}`;
  const unknown = await rejection(t, x.run(x.apply, applyEnvelope(pgTarget(missing), missing, { newPassword: randomPassword('n') })));
  t.ok(unknown instanceof ApplierError, 'the applier\'s own error');
  t.equal(unknown.code, 'ERR_APPLIER_UNKNOWN_USER', 'ERR_APPLIER_UNKNOWN_USER');
  const old = randomPassword('old');
  const user = await createRole(t, old);
  const away = await rejection(t, x.run(x.apply, applyEnvelope(awayTarget(user), user, { newPassword: randomPassword('n') })));
  t.equal(away.code, 'ERR_APPLIER_UNREACHABLE', 'ERR_APPLIER_UNREACHABLE');
  t.equal(away.retryable, true, 'retryable');
  t.equal(await login(user, old), 'ok', 'nothing changed');
  const rejected = new ApplierError('ERR_APPLIER_REJECTED_PASSWORD', 'postgres apply: the server refused the password', { engine: 'postgres', operation: 'apply' });
  const calls: string[] = [];
  const fake = executors({ createApplier: async () => fakeApplier(calls, () => 'ok', rejected) });
  t.equal(await rejection(t, fake.run(fake.apply, applyEnvelope(pgTarget(user), user, { newPassword: 'pw-new' }))), rejected, 'the same object');
  t.same(calls, ['apply replace pw-new', 'close'], 'nothing verified after a failed apply; the applier closed');
});

t.test('rotation.apply – verify refused: the previous password is put back, then ERR_ROTATION_VERIFY_FAILED', async (t) => {
  const calls: string[] = [];
  const x = executors({ createApplier: async () => fakeApplier(calls, (p) => (p === 'pw-old' ? 'ok' : 'refused')) });
  const err = await rejection(t, x.run(x.apply, applyEnvelope(pgTarget('app'), 'app', { newPassword: 'pw-new', restorePassword: 'pw-old' })));
  t.match(err, { code: 'ERR_ROTATION_VERIFY_FAILED', message: /previous password was restored/, details: { restored: true } });
  t.same(calls, ['apply replace pw-new', 'verify pw-new', 'apply replace pw-old', 'verify pw-old', 'close'], 'apply, verify, restore, verify the restore, close — in that order');
});

t.test('rotation.apply – verify refused without a restore password: says it could not be restored', async (t) => {
  const calls: string[] = [];
  const x = executors({ createApplier: async () => fakeApplier(calls, () => 'refused') });
  const err = await rejection(t, x.run(x.apply, applyEnvelope(pgTarget('app'), 'app', { newPassword: 'pw-new' })));
  t.match(err, { code: 'ERR_ROTATION_VERIFY_FAILED', message: /previous password could not be restored/, details: { restored: false } });
  t.same(calls, ['apply replace pw-new', 'verify pw-new', 'close'], 'nothing else was tried');
});

t.test('rotation.apply – verify refused on a real server: the restore really logs in again', async (t) => {
  const old = randomPassword('old');
  const next = randomPassword('new');
  const user = await createRole(t, old);
  const calls: string[] = [];
  let verifies = 0;
  const factory: ApplierFactory = async (target, admin) => {
    const real = await createApplier(target, admin);
    // the first fresh login (the new password's proof) is reported as refused
    return wrapApplier(real, calls, { verify: async (req) => (++verifies === 1 ? { outcome: 'refused' } : real.verify(req)) });
  };
  const x = executors({ createApplier: factory });
  const err = await rejection(t, x.run(x.apply, applyEnvelope(pgTarget(user), user, { newPassword: next, restorePassword: old })));
  t.match(err, { code: 'ERR_ROTATION_VERIFY_FAILED', details: { restored: true } });
  t.same(calls, ['apply replace', 'verify', 'apply replace', 'verify', 'close'], 'order of effects');
  t.equal(await login(user, old), 'ok', 'the previous password logs in again');
  t.equal(await login(user, next), 'refused', 'the new password no longer does');
});

t.test('rotation.apply – a role past its VALID UNTIL: verification fails, the restore is reported as not logging in', async (t) => {
  const x = executors();
  const old = randomPassword('old');
  const next = randomPassword('new');
  const user = await createRole(t, old);
  await superuser.query(`ALTER ROLE ${superuser.escapeIdentifier(user)} VALID UNTIL '2000-01-01'`);
  const err = await rejection(t, x.run(x.apply, applyEnvelope(pgTarget(user), user, { newPassword: next, restorePassword: old })));
  t.match(err, { code: 'ERR_ROTATION_VERIFY_FAILED', message: /put back but does not log in either/, details: { restored: false } });
  await superuser.query(`ALTER ROLE ${superuser.escapeIdentifier(user)} VALID UNTIL 'infinity'`);
  t.equal(await login(user, old), 'ok', 'the previous password is the one in place');
  t.equal(await login(user, next), 'refused', 'the new one is not');
});

t.test('target.preflight – ok for an existing user', async (t) => {
  const x = executors();
  const user = await createRole(t, randomPassword('p'));
  const facts = await x.run(x.preflight, envelope('target.preflight', { target: pgTarget(user), strategy: 'replace', users: [user] }));
  t.match(facts, { ok: true, problems: '', warnings: '', flavour: 'postgresql', serverVersion: /^\d+/, strategies: 'replace' });
});

t.test('target.preflight – an unknown user and an unsupported strategy are problems, and the command succeeds', async (t) => {
  const x = executors();
  const user = await createRole(t, randomPassword('p'));
  const missing = `${prefix}_missing_${counter++}`;
  const facts = await x.run(x.preflight, envelope('target.preflight', { target: pgTarget(user), strategy: 'replace', users: [user, missing] }));
  t.equal(facts.ok, false, 'not ok');
  t.equal(facts.problems, `${missing}: ERR_APPLIER_UNKNOWN_USER role "${missing}" does not exist`, 'the problem names the user');
  const dual = await x.run(x.preflight, envelope('target.preflight', { target: pgTarget(user), strategy: 'dual', users: [user] }));
  t.match(dual, { ok: false, problems: new RegExp(`^${user}: ERR_APPLIER_UNSUPPORTED`) }, 'dual on PostgreSQL');
});

t.test('target.preflight – self-rotation uses the sealed current passwords, and needs one per user', async (t) => {
  const x = executors();
  const current = randomPassword('cur');
  const user = await createRole(t, current);
  const target = pgTarget(user, { privilege: { mode: 'self' } });
  const payload = { target, strategy: 'replace', users: [user] };
  t.match(await x.run(x.preflight, envelope('target.preflight', payload, { currentPasswords: { [user]: current } })), { ok: true });
  const wrong = await x.run(x.preflight, envelope('target.preflight', payload, { currentPasswords: { [user]: randomPassword('wrong') } }));
  t.match(wrong, { ok: false, problems: /ERR_APPLIER_AUTH_FAILED/ }, 'a refused current password is a problem');
  const err = await rejection(t, x.run(x.preflight, envelope('target.preflight', payload)));
  t.equal(err.code, 'ERR_VALIDATION', 'no sealed password: malformed');
});

t.test('rotation.check – one ok or refused per label', async (t) => {
  const x = executors();
  const current = randomPassword('cur');
  const user = await createRole(t, current);
  const other = await createRole(t, randomPassword('other'));
  const e = envelope('rotation.check', {
    runId: randomUUID(),
    target: pgTarget(user),
    candidates: [{ label: 'v1', user }, { label: 'v2', user }, { label: 'v3', user: other }],
  }, { passwords: { v1: randomPassword('stale'), v2: current, v3: current } });
  t.same(await x.run(x.check, e), { v1: 'refused', v2: 'ok', v3: 'refused' });
});

t.test('a server that lets the user in without a password (pg_hba trust): preflight says so, verify and check prove nothing and fail', async (t) => {
  const x = executors();
  const current = randomPassword('cur');
  const user = await createRole(t, current);
  const pre = await x.run(x.preflight, envelope('target.preflight', { target: pgTarget(user), strategy: 'replace', users: [user] }));
  t.match(pre, { ok: true }, 'passes while the server checks passwords');
  await trustRole(t, user);
  t.equal(await login(user, 'any-password-at-all'), 'ok', 'the server really lets any password in now');
  const trusted = await x.run(x.preflight, envelope('target.preflight', { target: pgTarget(user), strategy: 'replace', users: [user] }));
  t.match(trusted, { ok: false, problems: /wrong password.*trust/ }, 'preflight refuses the target and says why');
  const check = await rejection(t, x.run(x.check, envelope('rotation.check', { runId: randomUUID(), target: pgTarget(user), candidates: [{ label: 'v1', user }] }, { passwords: { v1: randomPassword('stale') } })));
  t.match(check, { code: 'ERR_APPLIER_CONFIG', message: /without asking for its password/ }, 'a check cannot call a stale password "ok"');
  const next = randomPassword('new');
  const applied = await rejection(t, x.run(x.apply, applyEnvelope(pgTarget(user), user, { newPassword: next, restorePassword: current })));
  t.match(applied, { code: 'ERR_ROTATION_UNCERTAIN', details: { applied: true, verifyCode: 'ERR_APPLIER_CONFIG' } }, 'applied, but not proved: uncertain, never "nothing changed"');
  t.notMatch(applied.message, next, 'no password in the message');
});

t.test('rotation.apply – a verify that fails after the apply is ERR_ROTATION_UNCERTAIN, not the applier\'s code', async (t) => {
  const calls: string[] = [];
  const unreachable = new ApplierError('ERR_APPLIER_UNREACHABLE', 'postgres verify: connection refused', { engine: 'postgres', operation: 'verify', retryable: true });
  const x = executors({
    createApplier: async () => ({ ...fakeApplier(calls, () => 'ok'), verify: async () => {
      calls.push('verify');
      throw unreachable;
    } }),
  });
  const err = await rejection(t, x.run(x.apply, applyEnvelope(pgTarget('app'), 'app', { newPassword: 'pw-new', restorePassword: 'pw-old' })));
  t.match(err, { code: 'ERR_ROTATION_UNCERTAIN', message: /applied, but the login that should prove it failed \(ERR_APPLIER_UNREACHABLE/, details: { applied: true, verifyCode: 'ERR_APPLIER_UNREACHABLE' } });
  t.equal((err as Error).cause, unreachable, 'the applier\'s error is its cause');
  t.same(calls, ['apply replace pw-new', 'verify', 'close'], 'no restore: whether the new password works is unknown, so the run is reconciled');
});

t.test('rotation.check – a label without a password, or given twice, is malformed', async (t) => {
  const x = executors();
  const base = { runId: randomUUID(), target: pgTarget('app') };
  const missing = await rejection(t, x.run(x.check, envelope('rotation.check', { ...base, candidates: [{ label: 'v1', user: 'app' }, { label: 'v2', user: 'app' }] }, { passwords: { v1: 'x' } })));
  t.match(missing, { code: 'ERR_VALIDATION', message: 'rotation.check carries no sealed password for v2' });
  const twice = await rejection(t, x.run(x.check, envelope('rotation.check', { ...base, candidates: [{ label: 'v1', user: 'app' }, { label: 'v1', user: 'app' }] }, { passwords: { v1: 'x' } })));
  t.match(twice, { code: 'ERR_VALIDATION', message: /label twice/ });
});

t.test('rotation.check – an unreachable server fails the command (retried later)', async (t) => {
  const x = executors();
  const e = envelope('rotation.check', { runId: randomUUID(), target: awayTarget('app'), candidates: [{ label: 'v1', user: 'app' }] }, { passwords: { v1: 'x' } });
  const err = await rejection(t, x.run(x.check, e));
  t.match(err, { code: 'ERR_APPLIER_UNREACHABLE', retryable: true });
});

t.test('rotation.revoke scramble – the old password is refused, and a second run says absent', async (t) => {
  const scrambled: string[] = [];
  const calls: string[] = [];
  const x = executors({
    createApplier: async (target, admin) => {
      const real = await createApplier(target, admin);
      return wrapApplier(real, calls, {
        apply: (req) => {
          scrambled.push(req.newPassword);
          return real.apply(req);
        },
      });
    },
  });
  const old = randomPassword('old');
  const user = await createRole(t, old, 'resting');
  const e = envelope('rotation.revoke', { runId: randomUUID(), target: pgTarget(user), user, method: 'scramble' }, { password: old });
  const facts = await x.run(x.revoke, e);
  t.same(facts, { outcome: 'removed' });
  t.same(calls, ['verify', 'apply replace', 'verify', 'close'], 'verify old, replace, verify old refused, close');
  t.equal(await login(user, old), 'refused', 'the old password is refused');
  t.match(scrambled, [/^[A-Za-z0-9_-]{48}$/], 'a 48-character random password was applied');
  t.equal(await login(user, scrambled[0] ?? ''), 'ok', 'the user now holds that random password');
  t.notOk(x.lines.some((l) => l.includes(scrambled[0] ?? '')), 'it is in no log line');
  t.notOk(JSON.stringify(facts).includes(scrambled[0] ?? ''), 'nor in the facts');
  t.same(await x.run(x.revoke, e), { outcome: 'absent' }, 'running it again');
  t.same(calls.slice(4), ['verify', 'close'], 'the second run only checked');
});

t.test('rotation.revoke dual – PostgreSQL refuses to drop its only password', async (t) => {
  const x = executors();
  const current = randomPassword('cur');
  const user = await createRole(t, current);
  const e = envelope('rotation.revoke', { runId: randomUUID(), target: pgTarget(user), user, method: 'dual' }, { password: current });
  t.match(await rejection(t, x.run(x.revoke, e)), { code: 'ERR_APPLIER_REVOKE_CURRENT' });
  t.equal(await login(user, current), 'ok', 'the password still logs in');
});

t.test('rotation commands – malformed input is refused without echoing it', async (t) => {
  const x = executors();
  const canary = canaryPassword();
  const payload = { runId: randomUUID(), attempt: 1, target: pgTarget('app'), user: 'app', strategy: 'replace' };
  t.throws(() => x.apply.checkPayload({ ...payload, strategy: 'triple' }), { code: 'ERR_VALIDATION', message: 'rotation.apply payload is invalid at strategy' });
  t.throws(() => x.revoke.checkPayload({ runId: 'nope' }), { code: 'ERR_VALIDATION' });
  const cases: [CommandEnvelope, string, RegExp][] = [
    [envelope('rotation.apply', payload), 'ERR_VALIDATION', /carries no sealed secrets/],
    [envelope('rotation.apply', payload, { newPassword: canary.password, extra: canary.password }), 'ERR_VALIDATION', /^sealed secrets are malformed$/],
    [envelope('rotation.apply', payload, { newPassword: '' }), 'ERR_VALIDATION', /^sealed secrets are malformed$/],
    [{ ...envelope('rotation.apply', payload), sealed: sealTo(box.publicKey, Buffer.from(`{"newPassword":"${canary.password}`), { commandId: randomUUID(), agentId }).toString('base64') }, 'ERR_CRYPTO_DECRYPT', /./],
  ];
  const notJson = envelope('rotation.apply', payload);
  cases.push([{ ...notJson, sealed: sealTo(box.publicKey, Buffer.from(`{"newPassword":"${canary.password}`), { commandId: notJson.commandId, agentId }).toString('base64') }, 'ERR_VALIDATION', /^sealed secrets are malformed$/]);
  for (const [e, code, message] of cases) {
    const err = await rejection(t, x.run(x.apply, e));
    t.match(err, { code, message }, `${code} ${String(message)}`);
    t.same(renderings(err).filter((text) => text.includes(canary.token)), [], 'nothing of the secrets in the error');
    t.match(await rejection(t, x.runUnprepared(x.apply, e)), { code, message }, 'the same without prepare (a resumed command)');
  }
});

t.test('rotation commands – an admin connection this agent does not have is named', async (t) => {
  const x = executors({ adminConnections: new Map() });
  const e = envelope('rotation.check', { runId: randomUUID(), target: pgTarget('app'), candidates: [{ label: 'v1', user: 'app' }] }, { passwords: { v1: 'x' } });
  t.match(await rejection(t, x.run(x.check, e)), { code: 'ERR_APPLIER_CONFIG', message: new RegExp(`admin connection "${ADMIN}" is not configured`) });
});

t.test('rotation commands – the applier is closed whatever happens', async (t) => {
  const calls: string[] = [];
  const failed = new ApplierError('ERR_APPLIER_FAILED', 'postgres apply: the server or driver reported an error', { engine: 'postgres', operation: 'apply' });
  const x = executors({ createApplier: async () => fakeApplier(calls, () => 'ok', failed) });
  const e = envelope('rotation.revoke', { runId: randomUUID(), target: pgTarget('app'), user: 'app', method: 'scramble' }, { password: 'pw-old' });
  t.equal(await rejection(t, x.run(x.revoke, e)), failed, 'the applier error');
  t.equal(calls.at(-1), 'close', 'closed after a failure');
  t.equal(calls.filter((c) => c === 'close').length, 1, 'once');
});

t.test('rotation commands – no password in any error, cause or log line', async (t) => {
  const x = executors();
  const canaries = Array.from({ length: 8 }, () => canaryPassword());
  const [c0, c1, c2, c3, c4, c5, c6, c7] = canaries.map((c) => c.password) as [string, string, string, string, string, string, string, string];
  const errors: unknown[] = [];
  const collect = async (promise: Promise<unknown>) => {
    try {
      await promise;
    } catch (err) {
      errors.push(err);
    }
  };
  const user = await createRole(t, c0);
  const missing = `${prefix}_missing_${counter++}`;
  const away = awayTarget(user);
  // successes: apply, check, scramble
  await x.run(x.apply, applyEnvelope(pgTarget(user), user, { newPassword: c1, restorePassword: c0 }));
  await x.run(x.check, envelope('rotation.check', { runId: randomUUID(), target: pgTarget(user), candidates: [{ label: 'a', user }, { label: 'b', user }] }, { passwords: { a: c0, b: c1 } }));
  await x.run(x.preflight, envelope('target.preflight', { target: pgTarget(user, { privilege: { mode: 'self' } }), strategy: 'replace', users: [user] }, { currentPasswords: { [user]: c2 } }));
  // failures: unknown user, unreachable, revoke of the current password, malformed sealed JSON, verify refused (real VALID UNTIL)
  await collect(x.run(x.apply, applyEnvelope(pgTarget(missing), missing, { newPassword: c2, restorePassword: c3 })));
  await collect(x.run(x.apply, applyEnvelope(away, user, { newPassword: c3 })));
  await collect(x.run(x.check, envelope('rotation.check', { runId: randomUUID(), target: away, candidates: [{ label: 'a', user }] }, { passwords: { a: c4 } })));
  await collect(x.run(x.revoke, envelope('rotation.revoke', { runId: randomUUID(), target: pgTarget(user), user, method: 'dual' }, { password: c1 })));
  await collect(x.run(x.revoke, envelope('rotation.revoke', { runId: randomUUID(), target: away, user, method: 'scramble' }, { password: c5 })));
  await collect(x.run(x.apply, applyEnvelope(pgTarget(user), user, { newPassword: c6, currentPassword: 7 } as unknown as Record<string, string>)));
  const expiring = await createRole(t, c6, 'expired');
  await superuser.query(`ALTER ROLE ${superuser.escapeIdentifier(expiring)} VALID UNTIL '2000-01-01'`);
  await collect(x.run(x.apply, applyEnvelope(pgTarget(expiring), expiring, { newPassword: c7, restorePassword: c6 })));
  t.same(errors.map((e) => (e as SikkerError).code), [
    'ERR_APPLIER_UNKNOWN_USER', 'ERR_APPLIER_UNREACHABLE', 'ERR_APPLIER_UNREACHABLE', 'ERR_APPLIER_REVOKE_CURRENT', 'ERR_APPLIER_UNREACHABLE', 'ERR_VALIDATION', 'ERR_ROTATION_VERIFY_FAILED',
  ], 'every failure happened, with its code');
  const leaks = [...errors.flatMap((e) => renderings(e)), ...x.lines].filter((text) => canaries.some((c) => text.includes(c.token)));
  t.same(leaks, [], 'no canary in any error rendering or log line');
  t.ok(x.lines.some((l) => l.includes('rotationRunId')), 'the log lines were captured (and carry the run id)');
});

t.test('rotation executors – importing them with the hub client loads no database driver', async (t) => {
  const hubClient = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'agent', 'hub-client', 'hub-client.js');
  const script = `
    import { createRequire } from 'node:module';
    const cache = createRequire(import.meta.url).cache;
    await import(${JSON.stringify(hubClient)});
    console.log(JSON.stringify([...new Set(Object.keys(cache).flatMap((k) => /node_modules\\/(pg|mysql2|ioredis)\\//.exec(k)?.[1] ?? []))]));
  `;
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { timeout: 30_000 });
  t.same(JSON.parse(stdout), [], 'no pg, mysql2 or ioredis');
});

t.test('rotation.revoke dual – Redis ACL: the old password is dropped, the new one stays', async (t) => {
  const redis = await startPrivateRedis();
  t.teardown(() => redis.stop());
  const adminPassword = randomPassword('admin');
  const fixture = new Redis({ host: '127.0.0.1', port: redis.port, lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
  fixture.on('error', () => undefined);
  await fixture.connect();
  t.teardown(() => fixture.disconnect());
  await fixture.call('ACL', 'SETUSER', 'sk_admin', 'on', `>${adminPassword}`, '~*', '&*', '+@all');
  const old = randomPassword('old');
  const next = randomPassword('new');
  const user = `${prefix}_redis`;
  await fixture.call('ACL', 'SETUSER', user, 'on', `>${old}`, '+ping');
  const accepts = async (password: string): Promise<'ok' | 'refused'> => {
    const client = new Redis({ host: '127.0.0.1', port: redis.port, username: user, password, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.ping();
      return 'ok';
    } catch {
      return 'refused';
    } finally {
      client.disconnect();
    }
  };
  const x = executors({ adminConnections: new Map([['redis-admin', { url: `redis://sk_admin:${encodeURIComponent(adminPassword)}@127.0.0.1:${redis.port}` }]]) });
  const target: TargetSpec = { engine: 'redis', host: '127.0.0.1', port: redis.port, user, tls: { mode: 'disable' }, privilege: { mode: 'admin', adminConnection: 'redis-admin' }, redisPasswordMode: 'acl' };
  t.match(await x.run(x.apply, applyEnvelope(target, user, { newPassword: next }, 'dual')), { verified: true, oldPasswordRetained: true });
  t.same([await accepts(old), await accepts(next)], ['ok', 'ok'], 'both log in during the grace period');
  const e = envelope('rotation.revoke', { runId: randomUUID(), target, user, method: 'dual' }, { password: old });
  t.same(await x.run(x.revoke, e), { outcome: 'removed' });
  t.same([await accepts(old), await accepts(next)], ['refused', 'ok'], 'old refused, new still logs in');
  t.same(await x.run(x.revoke, e), { outcome: 'absent' }, 'running it again');
});
