/**
 * One conformance suite that every database applier passes on a real server.
 * An engine's test file builds an {@link ApplierFixture} (how to make a user,
 * how to build appliers) and calls {@link applierConformance}; the same tap
 * tests then run for PostgreSQL, MariaDB/MySQL, Redis ACL and requirepass.
 *
 * Every check that a password is accepted or refused goes through a fresh
 * login on a server that really checks passwords (never the machine's
 * trust-everyone PostgreSQL): a test that would pass with a wrong password
 * proves nothing.
 */
import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import type { Test } from 'tap';
import type { Applier, RotationStrategy } from '../../agent/appliers/applier.js';
import { ApplierError, type ApplierErrorCode } from '../../agent/appliers/applier-errors.js';

/** How the suite drives one engine. */
export interface ApplierFixture {
  /** Prefix of every test name, e.g. `postgres (admin)`. */
  name: string;
  /** `admin`: the applier uses its own login; `self`: it logs in as the user with currentPassword. */
  mode: 'admin' | 'self';
  /** Strategies this server supports; the others must be refused at preflight and apply. */
  strategies: readonly RotationStrategy[];
  /** Make a user that logs in with `password`; drop it in t.teardown. Returns its name. */
  createUser(t: Test, password: string): Promise<string>;
  /** Engines that manage one fixed user (Redis requirepass: `default`) name it here; other tests use any name. */
  fixedUser?: string;
  /** A user name that does not exist on the server. */
  unknownUser(): string;
  /** The error code apply gives for an unknown user (self mode cannot log in: ERR_APPLIER_AUTH_FAILED). */
  unknownUserApplyCode: ApplierErrorCode;
  /** A privileged applier for the server. The suite closes it. */
  applier(): Promise<Applier>;
  /** An applier (admin mode) whose login, with password `loginPassword`, exists but may not change `user`'s password. */
  unprivilegedApplier(t: Test, user: string, loginPassword: string): Promise<Applier>;
  /** An applier aimed at a port where nothing listens, whose admin login has password `loginPassword`. */
  unreachableApplier(loginPassword: string): Promise<Applier>;
  /** Admin mode only: an applier whose admin login is refused (right user, password `loginPassword`). */
  refusedLoginApplier?(loginPassword: string): Promise<Applier>;
}

/**
 * Passwords that break naive quoting, escaping, format strings, shell or URL
 * handling. Each must round-trip: set by apply, accepted by a fresh login.
 */
export const HOSTILE_PASSWORDS: readonly string[] = [
  `it's a "quote"`,
  'back\\slash\\ and trailing\\',
  "\\'; DROP USER x; --",
  'dollar$$quote$$ $1 ${HOME}',
  '100% %s %d %% %n',
  'ünïcødé ✓ ☃ 密码 émoji-🔑',
  '  spaces  inside and around  ',
  '-leading-dash',
  '#hash >gt <lt !bang ~tilde',
  'semi;colon `backtick` |pipe &amp',
  'url:/?#[]@!&=+,',
  `long-${'x'.repeat(20)}-${randomBytes(32).toString('hex')}`,
];

/** A fresh random password with a readable prefix. */
export function randomPassword(label: string): string {
  return `${label}-${randomBytes(12).toString('base64url')}`;
}

/**
 * A password that must never show up in an error: random, hostile, and with a
 * random core token that is searched for on its own (so an error that quotes
 * only part of the password is still caught).
 */
export function canaryPassword(): { password: string; token: string } {
  const token = `CANARY${randomBytes(8).toString('hex')}`;
  return { password: `${token}'"\\$$%-x`, token };
}

/** Every way an error can be printed, logged or serialised. */
export function renderings(err: unknown): string[] {
  const out = [String(err), inspect(err, { depth: 10, showHidden: true }), safeJson(err)];
  if (err instanceof Error) {
    out.push(err.message, err.stack ?? '');
    const cause = (err as { cause?: unknown }).cause;
    out.push(String(cause), inspect(cause, { depth: 10, showHidden: true }), safeJson(cause));
    if (cause instanceof Error) out.push(cause.message, cause.stack ?? '');
  }
  return out;
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? '';
  } catch {
    return '';
  }
}

/** Asserts `err` is an ApplierError with `code` and that no rendering of it holds any of `canaries`. */
export function assertCleanError(t: Test, err: unknown, code: ApplierErrorCode, canaries: { password: string; token: string }[], what: string): void {
  t.ok(err instanceof ApplierError, `${what}: an ApplierError`);
  t.equal((err as ApplierError | undefined)?.code, code, `${what}: code ${code}`);
  const leaks = renderings(err).filter((text) => canaries.some((c) => text.includes(c.token) || text.includes(c.password)));
  t.same(leaks, [], `${what}: no password in message, String(), stack, cause or JSON`);
}

/** Resolves to the error `promise` rejects with; fails the test if it resolves. */
export async function rejection(t: Test, promise: Promise<unknown>, what: string): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  t.fail(`${what}: expected an error`);
  return undefined;
}

/** Registers the conformance tests for one engine on `t`. */
export function applierConformance(t: Test, fx: ApplierFixture): void {
  const open = async (t: Test): Promise<Applier> => {
    const applier = await fx.applier();
    t.teardown(() => applier.close());
    return applier;
  };
  const accepts = async (t: Test, applier: Applier, user: string, password: string, expected: 'ok' | 'refused', what: string) => {
    t.equal((await applier.verify({ user, password })).outcome, expected, what);
  };
  const unsupported = (['replace', 'dual'] as const).filter((s) => !fx.strategies.includes(s));

  t.test(`${fx.name}: preflight – ok for an existing user`, async (t) => {
    const applier = await open(t);
    const current = randomPassword('cur');
    const user = await fx.createUser(t, current);
    for (const strategy of fx.strategies) {
      const result = await applier.preflight({ user, strategy, currentPassword: current });
      t.same(result.problems, [], `${strategy}: no problems`);
      t.equal(result.ok, true, `${strategy}: ok`);
      t.ok(result.strategies.includes(strategy), `${strategy}: listed as supported`);
      t.ok(result.server?.version, 'server version reported');
    }
  });

  for (const strategy of unsupported) {
    t.test(`${fx.name}: ${strategy} – refused at preflight and apply, nothing changed`, async (t) => {
      const applier = await open(t);
      const current = randomPassword('cur');
      const user = await fx.createUser(t, current);
      const result = await applier.preflight({ user, strategy, currentPassword: current });
      t.equal(result.ok, false, 'preflight not ok');
      t.ok(result.problems.some((p) => p.code === 'ERR_APPLIER_UNSUPPORTED'), 'ERR_APPLIER_UNSUPPORTED problem');
      t.notOk(result.strategies.includes(strategy), 'not listed as supported');
      const err = await rejection(t, applier.apply({ user, newPassword: randomPassword('new'), strategy, currentPassword: current }), 'apply');
      t.equal((err as ApplierError).code, 'ERR_APPLIER_UNSUPPORTED', 'apply throws ERR_APPLIER_UNSUPPORTED');
      await accepts(t, applier, user, current, 'ok', 'the current password still logs in');
    });
  }

  t.test(`${fx.name}: preflight – unknown user`, async (t) => {
    const applier = await open(t);
    const result = await applier.preflight({ user: fx.unknownUser(), strategy: 'replace', currentPassword: randomPassword('x') });
    t.equal(result.ok, false, 'not ok');
    t.ok(result.problems.some((p) => p.code === fx.unknownUserApplyCode), `${fx.unknownUserApplyCode} problem`);
  });

  t.test(`${fx.name}: preflight – login without privilege`, async (t) => {
    const current = randomPassword('cur');
    const user = await fx.createUser(t, current);
    const applier = await fx.unprivilegedApplier(t, user, randomPassword('weak'));
    t.teardown(() => applier.close());
    const result = await applier.preflight({ user, strategy: 'replace' });
    t.equal(result.ok, false, 'not ok');
    t.ok(result.problems.some((p) => p.code === 'ERR_APPLIER_PRIVILEGE'), 'ERR_APPLIER_PRIVILEGE problem');
  });

  t.test(`${fx.name}: apply replace – new accepted, old refused`, async (t) => {
    const applier = await open(t);
    const old = randomPassword('old');
    const next = randomPassword('new');
    const user = await fx.createUser(t, old);
    await accepts(t, applier, user, old, 'ok', 'initial password logs in');
    const result = await applier.apply({ user, newPassword: next, strategy: 'replace', currentPassword: old });
    t.match(result, { strategy: 'replace', oldPasswordRetained: false }, 'apply result');
    await accepts(t, applier, user, next, 'ok', 'new password logs in');
    await accepts(t, applier, user, old, 'refused', 'old password is refused');
  });

  t.test(`${fx.name}: apply – idempotent re-apply`, async (t) => {
    const applier = await open(t);
    const old = randomPassword('old');
    const next = randomPassword('new');
    const user = await fx.createUser(t, old);
    await applier.apply({ user, newPassword: next, strategy: 'replace', currentPassword: old });
    // a redelivered command still carries the old current password
    await applier.apply({ user, newPassword: next, strategy: 'replace', currentPassword: old });
    await accepts(t, applier, user, next, 'ok', 'new password logs in after the second apply');
    await accepts(t, applier, user, old, 'refused', 'old password stays refused');
  });

  if (fx.strategies.includes('dual')) {
    t.test(`${fx.name}: apply dual – old keeps working until revoke`, async (t) => {
      const applier = await open(t);
      const old = randomPassword('old');
      const next = randomPassword('new');
      const user = await fx.createUser(t, old);
      const result = await applier.apply({ user, newPassword: next, strategy: 'dual', currentPassword: old });
      t.match(result, { strategy: 'dual', oldPasswordRetained: true }, 'apply result');
      await accepts(t, applier, user, next, 'ok', 'new password logs in');
      await accepts(t, applier, user, old, 'ok', 'old password still logs in during grace');
      const again = await applier.apply({ user, newPassword: next, strategy: 'dual', currentPassword: old });
      t.equal(again.unchanged, true, 're-apply changes nothing');
      await accepts(t, applier, user, old, 'ok', 'old password survives the re-apply');
      t.same(await applier.revoke({ user, password: old, currentPassword: next }), { outcome: 'removed' }, 'revoke removes it');
      await accepts(t, applier, user, old, 'refused', 'old password refused after revoke');
      await accepts(t, applier, user, next, 'ok', 'new password still logs in');
      t.same(await applier.revoke({ user, password: old, currentPassword: next }), { outcome: 'absent' }, 'second revoke: absent');
    });
  }

  t.test(`${fx.name}: revoke – twice is fine after replace`, async (t) => {
    const applier = await open(t);
    const old = randomPassword('old');
    const next = randomPassword('new');
    const user = await fx.createUser(t, old);
    await applier.apply({ user, newPassword: next, strategy: 'replace', currentPassword: old });
    t.same(await applier.revoke({ user, password: old, currentPassword: next }), { outcome: 'absent' }, 'first revoke');
    t.same(await applier.revoke({ user, password: old, currentPassword: next }), { outcome: 'absent' }, 'second revoke');
    await accepts(t, applier, user, next, 'ok', 'new password still logs in');
  });

  t.test(`${fx.name}: revoke – refuses the current password`, async (t) => {
    const applier = await open(t);
    const current = randomPassword('cur');
    const user = await fx.createUser(t, current);
    const err = await rejection(t, applier.revoke({ user, password: current, currentPassword: current }), 'revoke');
    t.equal((err as ApplierError).code, 'ERR_APPLIER_REVOKE_CURRENT', 'ERR_APPLIER_REVOKE_CURRENT');
    await accepts(t, applier, user, current, 'ok', 'the password still logs in');
  });

  t.test(`${fx.name}: hostile passwords – round-trip`, async (t) => {
    const applier = await open(t);
    let previous = randomPassword('start');
    const user = await fx.createUser(t, previous);
    for (const password of HOSTILE_PASSWORDS) {
      await applier.apply({ user, newPassword: password, strategy: 'replace', currentPassword: previous });
      await accepts(t, applier, user, password, 'ok', `accepted: ${JSON.stringify(password)}`);
      await accepts(t, applier, user, previous, 'refused', 'previous refused');
      previous = password;
    }
  });

  t.test(`${fx.name}: unknown user – apply errors, verify refuses`, async (t) => {
    const applier = await open(t);
    const user = fx.unknownUser();
    const err = await rejection(t, applier.apply({ user, newPassword: randomPassword('new'), strategy: 'replace', currentPassword: randomPassword('cur') }), 'apply');
    t.equal((err as ApplierError).code, fx.unknownUserApplyCode, fx.unknownUserApplyCode);
    await accepts(t, applier, user, randomPassword('any'), 'refused', 'verify: refused');
  });

  t.test(`${fx.name}: unprivileged – apply errors, password unchanged`, async (t) => {
    const current = randomPassword('cur');
    const user = await fx.createUser(t, current);
    const weak = await fx.unprivilegedApplier(t, user, randomPassword('weak'));
    t.teardown(() => weak.close());
    const err = await rejection(t, weak.apply({ user, newPassword: randomPassword('new'), strategy: 'replace' }), 'apply');
    t.equal((err as ApplierError).code, 'ERR_APPLIER_PRIVILEGE', 'ERR_APPLIER_PRIVILEGE');
    await accepts(t, weak, user, current, 'ok', 'the current password still logs in');
  });

  t.test(`${fx.name}: unreachable – typed, retryable errors`, async (t) => {
    const applier = await fx.unreachableApplier(randomPassword('admin'));
    t.teardown(() => applier.close());
    const user = fx.fixedUser ?? 'someone';
    const err = await rejection(t, applier.verify({ user, password: randomPassword('p') }), 'verify');
    t.equal((err as ApplierError).code, 'ERR_APPLIER_UNREACHABLE', 'verify: ERR_APPLIER_UNREACHABLE');
    t.equal((err as ApplierError).retryable, true, 'retryable');
    const result = await applier.preflight({ user, strategy: 'replace', currentPassword: randomPassword('c') });
    t.same(result.problems.map((p) => p.code), ['ERR_APPLIER_UNREACHABLE'], 'preflight: one ERR_APPLIER_UNREACHABLE problem');
  });

  t.test(`${fx.name}: errors carry no password`, async (t) => {
    const canaries: { password: string; token: string }[] = [];
    const canary = () => {
      const c = canaryPassword();
      canaries.push(c);
      return c.password;
    };
    const applier = await open(t);
    const current = randomPassword('cur');
    const user = await fx.createUser(t, current);
    canaries.push({ password: current, token: current });

    const unknown = await rejection(t, applier.apply({ user: fx.unknownUser(), newPassword: canary(), strategy: 'replace', currentPassword: canary() }), 'unknown user');
    assertCleanError(t, unknown, fx.unknownUserApplyCode, canaries, 'apply for an unknown user');

    const weak = await fx.unprivilegedApplier(t, user, canary());
    t.teardown(() => weak.close());
    const denied = await rejection(t, weak.apply({ user, newPassword: canary(), strategy: 'replace' }), 'unprivileged');
    assertCleanError(t, denied, 'ERR_APPLIER_PRIVILEGE', canaries, 'apply without privilege');

    const away = await fx.unreachableApplier(canary());
    t.teardown(() => away.close());
    const unreachable = await rejection(t, away.apply({ user, newPassword: canary(), strategy: 'replace', currentPassword: canary() }), 'unreachable');
    assertCleanError(t, unreachable, 'ERR_APPLIER_UNREACHABLE', canaries, 'apply on an unreachable server');

    if (fx.mode === 'self') {
      const refused = await rejection(t, applier.apply({ user, newPassword: canary(), strategy: 'replace', currentPassword: canary() }), 'wrong current');
      assertCleanError(t, refused, 'ERR_APPLIER_AUTH_FAILED', canaries, 'apply with a wrong current password');
    } else if (fx.refusedLoginApplier !== undefined) {
      const wrong = await fx.refusedLoginApplier(canary());
      t.teardown(() => wrong.close());
      const refused = await rejection(t, wrong.apply({ user, newPassword: canary(), strategy: 'replace' }), 'wrong admin');
      assertCleanError(t, refused, 'ERR_APPLIER_AUTH_FAILED', canaries, 'apply with a refused admin login');
      const report = await wrong.preflight({ user, strategy: 'dual' });
      t.notOk(canaries.some((c) => JSON.stringify(report).includes(c.token)), 'preflight report holds no password');
    }
    const revoked = await rejection(t, applier.revoke({ user, password: current, currentPassword: current }), 'revoke current');
    assertCleanError(t, revoked, 'ERR_APPLIER_REVOKE_CURRENT', canaries, 'revoke of the current password');
    await accepts(t, applier, user, current, 'ok', 'the user was never changed');
  });

  t.test(`${fx.name}: close – idempotent, then every method refuses`, async (t) => {
    const applier = await fx.applier();
    await applier.close();
    await applier.close();
    const err = await rejection(t, applier.verify({ user: 'x', password: 'y' }), 'verify after close');
    t.equal((err as ApplierError).code, 'ERR_APPLIER_CLOSED', 'ERR_APPLIER_CLOSED');
  });
}
