/**
 * Rotation scenarios shared by the per-engine test files: each runs against an
 * {@link EngineRotationFixture}, so every engine is held to the same checks.
 */
import type { Test } from 'tap';
import { eventually } from './agents.js';
import { randomPassword } from './applier-fixtures.js';
import type { EngineRotationFixture } from './rotation-fixture.js';

/** A target on a fresh user adopting its password, preflighted (for `strategy` when given). */
export async function testedTarget(fx: EngineRotationFixture, name: string, extra: Record<string, unknown> = {}, strategy?: 'dual'): Promise<{ user: string; password: string; tested: any }> {
  const password = randomPassword(`${name}-old`);
  const user = await fx.createUser(password);
  await fx.addTarget(name, user, { adoptPassword: password, ...extra });
  const tested = await fx.h.admin.ok('POST', `/v1/projects/p/targets/${name}/test`, strategy === undefined ? {} : { strategy });
  return { user, password, tested };
}

/** A policy every 2 s: the first run is the one due at nextRunAt, every run starts within a second, the vault and the server agree. */
export async function scheduledOnTime(t: Test, fx: EngineRotationFixture): Promise<void> {
  const { user, password, tested } = await testedTarget(fx, 'sched');
  t.equal(tested.target.preflight.ok, true);
  const set = await fx.h.admin.ok('PUT', '/v1/projects/p/targets/sched/policy', { policy: { schedule: { kind: 'every', seconds: 2 } } });
  const firstDue = new Date(set.nextRunAt).getTime();
  const first = await eventually(async () => {
    const runs = (await fx.h.admin.ok('GET', '/v1/projects/p/runs?target=sched')).runs;
    return runs.find((r: { trigger: string; state: string }) => r.trigger === 'schedule' && r.state === 'done');
  }, 15_000, 'a scheduled run to finish');
  await fx.h.admin.ok('POST', '/v1/projects/p/targets/sched/policy/pause', {});
  const runs = await fx.waitIdle('sched');

  t.equal(new Date(first.scheduledFor).getTime(), firstDue, 'the first run was the one due at nextRunAt');
  const scheduled = runs.filter((r) => r.trigger === 'schedule');
  t.ok(scheduled.length >= 1, 'runs were started by the schedule');
  for (const r of scheduled) {
    const late = new Date(r.createdAt).getTime() - new Date(r.scheduledFor).getTime();
    t.ok(late >= 0 && late < 1000, `run created ${late} ms after its due time`);
  }
  t.same(runs.map((r) => r.state), runs.map(() => 'done'), 'every run is done');
  const current = await fx.secretValue('sched-password');
  t.not(current, password);
  t.equal(await fx.logsIn(user, current), true, 'the vault\'s current password logs in');
  t.equal(await fx.logsIn(user, password), false, 'the adopted one is refused');
}

/** Polls a leak until it is no longer open. */
export function waitLeak(fx: EngineRotationFixture, leakId: string, timeoutMs = 20_000): Promise<any> {
  return eventually(async () => {
    const r = await fx.h.admin.ok('GET', `/v1/projects/p/leaks/${leakId}`);
    return r.state === 'open' ? undefined : r;
  }, timeoutMs, `leak ${leakId} to be handled`);
}

/**
 * A one-password-per-user engine end to end: adopt and preflight, dual refused, a manual
 * rotation (new accepted, old refused), a scheduled one on time, then a leak by value.
 */
export async function rotateScheduleAndLeak(t: Test, fx: EngineRotationFixture): Promise<void> {
  const old = randomPassword('Old1');
  const user = await fx.createUser(old);
  await fx.addTarget('ledger', user, { adoptPassword: old });
  const tested = await fx.h.admin.ok('POST', '/v1/projects/p/targets/ledger/test', {});
  t.equal(tested.target.preflight.ok, true, tested.target.preflight.problems);
  const refusedDual = await fx.h.admin.call('PUT', '/v1/projects/p/targets/ledger/policy', { policy: { schedule: { kind: 'every', seconds: 3600 }, strategy: 'dual', graceSeconds: 60 } });
  t.match(refusedDual.body, { error: { code: 'ERR_PREFLIGHT_FAILED' } }, 'dual is refused: one password per user');

  const manual = await fx.h.admin.ok('POST', '/v1/projects/p/targets/ledger/rotate', {});
  const run = await fx.waitRun(manual.run.runId, ['done', 'failed', 'parked']);
  t.equal(run.state, 'done', `${run.errorCode ?? ''} ${run.errorMessage ?? ''}`);
  t.equal(await fx.logsIn(user, await fx.secretValue('ledger-password')), true, 'the new password logs in');
  t.equal(await fx.logsIn(user, old), false, 'the old one is refused');

  await fx.h.admin.ok('PUT', '/v1/projects/p/targets/ledger/policy', { policy: { schedule: { kind: 'every', seconds: 2 } } });
  const scheduled = await eventually(async () => {
    const runs = (await fx.h.admin.ok('GET', '/v1/projects/p/runs?target=ledger')).runs;
    return runs.find((r: { trigger: string; state: string }) => r.trigger === 'schedule' && r.state === 'done');
  }, 20_000, 'a scheduled rotation');
  t.ok(new Date(scheduled.createdAt).getTime() - new Date(scheduled.scheduledFor).getTime() < 1000, 'on time');
  await fx.h.admin.ok('POST', '/v1/projects/p/targets/ledger/policy/pause', {});
  await fx.waitIdle('ledger');
  const current = await fx.secretValue('ledger-password');
  t.equal(await fx.logsIn(user, current), true);

  const leak = await fx.h.admin.ok('POST', '/v1/leaks/by-value', { value: current });
  t.match(leak, { matched: true, leaks: [{ secret: 'ledger-password' }] });
  t.equal((await waitLeak(fx, leak.leaks[0].leakId)).state, 'neutralised');
  t.equal(await fx.logsIn(user, current), false, 'the leaked password is refused');
}

/** Two targets leaked, one by name and one by value: both refused afterwards, both new passwords work. */
export async function leakByNameAndValue(t: Test, fx: EngineRotationFixture, byName: { user: string; password: string }, byValue: { user: string; password: string }): Promise<void> {
  const a = await fx.h.admin.ok('POST', '/v1/projects/p/leaks', { secret: 'leak-name-password' });
  const b = await fx.h.admin.ok('POST', '/v1/leaks/by-value', { value: byValue.password });
  t.match(b, { matched: true, leaks: [{ secret: 'leak-value-password', version: 1 }] }, 'found by fingerprint');
  for (const [started, target] of [[a, byName], [b, byValue]] as const) {
    const report = await waitLeak(fx, started.leaks[0].leakId);
    t.equal(report.state, 'neutralised', report.reason ?? '');
    t.equal(await fx.logsIn(target.user, target.password), false, 'the leaked password is refused');
    t.equal(await fx.logsIn(target.user, await fx.secretValue(`${started.leaks[0].secret}`)), true, 'the new one works');
  }
}
