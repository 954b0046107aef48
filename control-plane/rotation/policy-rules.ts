import { SikkerError } from '../../shared/errors/sikker-error.js';
import type { PolicySpec } from '../../shared/protocol/rotation-api.js';
import { validatePasswordRules } from './password-generator.js';
import { validateSchedule, type SchedulePolicy } from './schedule.js';
import type { TargetRow } from './rotation-dal.js';

export function schedulePolicyOf(spec: PolicySpec): SchedulePolicy {
  return {
    schedule: spec.schedule,
    timeZone: spec.timeZone,
    ...(spec.window === undefined ? {} : { window: spec.window }),
    jitterSeconds: spec.jitterSeconds,
    alternate: spec.strategy === 'alternate',
  };
}

/**
 * Everything a policy must satisfy for its target, beyond its shape. Throws
 * ERR_POLICY_INVALID naming the field, or ERR_PREFLIGHT_FAILED when `active` and the
 * target's last preflight failed or did not offer the strategy.
 */
export function checkPolicy(spec: PolicySpec, target: TargetRow, active: boolean): void {
  validateSchedule(schedulePolicyOf(spec));
  validatePasswordRules(spec.passwordRules, target.spec.engine);
  if (spec.strategy === 'alternate') {
    if (target.alternate_user === null) throw new SikkerError('ERR_POLICY_INVALID', 'strategy alternate needs a target with a second user (target add --alternate-user)');
    if (target.spec.privilege.mode === 'self') throw new SikkerError('ERR_POLICY_INVALID', 'strategy alternate needs an admin connection: the resting user\'s password is scrambled, so it cannot rotate itself');
  }
  if (spec.strategy !== 'replace' && spec.graceSeconds === 0) throw new SikkerError('ERR_POLICY_INVALID', `graceSeconds: strategy ${spec.strategy} needs a grace period above 0`);
  if (spec.schedule.kind === 'every' && spec.strategy !== 'replace' && spec.graceSeconds >= spec.schedule.seconds) {
    throw new SikkerError('ERR_POLICY_INVALID', `graceSeconds: ${spec.graceSeconds} s must be shorter than the interval (${spec.schedule.seconds} s), or rotations would queue behind their grace periods`);
  }
  if (active) requirePreflight(target, spec.strategy);
}

/** ERR_PREFLIGHT_FAILED unless the target's last preflight passed and offered the strategy. */
export function requirePreflight(target: TargetRow, strategy: PolicySpec['strategy']): void {
  const report = target.preflight as { ok?: boolean; problems?: string; strategies?: string[]; strategy?: string } | null;
  if (report === null || target.preflight_at === null) {
    throw new SikkerError('ERR_PREFLIGHT_FAILED', `target "${target.name}" has not passed a preflight yet: run \`sikker target test\` first`);
  }
  if (!target.preflight_ok) throw new SikkerError('ERR_PREFLIGHT_FAILED', `target "${target.name}" failed its last preflight: ${report.problems ?? 'see sikker target show'}`);
  const needed = strategy === 'dual' ? 'dual' : 'replace';
  if (!(report.strategies ?? []).includes(needed)) {
    throw new SikkerError('ERR_PREFLIGHT_FAILED', `this server does not support strategy ${strategy} for "${target.spec.user}" (supported: ${(report.strategies ?? []).join(', ') || 'none'})`);
  }
  // Some checks exist only for dual (e.g. a Redis nopass user, MySQL's APPLICATION_PASSWORD_ADMIN): a replace preflight does not vouch for it.
  if (needed === 'dual' && report.strategy !== 'dual') {
    throw new SikkerError('ERR_PREFLIGHT_FAILED', `the last preflight of "${target.name}" checked strategy replace; run \`sikker target test --strategy dual\` first`);
  }
}

/**
 * `alternate`: the user that is not current now; otherwise the target's user. With no
 * current version the target's user goes first. A current version with no user recorded
 * (written with `secret set`, not by a rotation) is the target's user's, as everywhere else.
 */
export function userForNextRun(t: { strategy: PolicySpec['strategy']; user: string; alternate_user: string | null; current_version: number | null; current_user: string | null }): string {
  if (t.strategy !== 'alternate' || t.alternate_user === null || t.current_version === null) return t.user;
  return (t.current_user ?? t.user) === t.user ? t.alternate_user : t.user;
}
