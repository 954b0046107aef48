import { SikkerError } from '../../shared/errors/sikker-error.js';
import type { Logger } from '../../shared/logging/logger.js';
import { ApplyPayload, ApplySecrets, type ApplyFacts } from '../../shared/protocol/rotation-commands.js';
import type { Applier } from '../appliers/applier.js';
import type { CommandContext, CommandExecutor, ResultFacts } from './command-executor.js';
import { openSecrets, parsePayload, withApplier, type RotationExecutorDeps } from './rotation-context.js';

/**
 * `rotation.apply`: sets the sealed new password for the user, then proves it with a
 * fresh login as that user. Facts on success: `{verified: true, unchanged,
 * oldPasswordRetained, persisted}` (see ApplyResponse).
 *
 * Marked idempotent although it changes the database: applying the same password
 * again is a no-op for every applier, so an apply interrupted by a crash is simply
 * run again at start (the control plane fences runs by id and attempt).
 *
 * Failure modes: the applier's own error, unchanged, when apply throws (its code —
 * ERR_APPLIER_REJECTED_PASSWORD, ERR_APPLIER_UNREACHABLE, … — is what the control
 * plane acts on); ERR_ROTATION_VERIFY_FAILED when the new password does not log in,
 * after putting `restorePassword` back when the command carries one (details say
 * whether the previous password logs in again); ERR_VALIDATION for malformed input.
 * No password appears in a message, a cause or a log line.
 */
export function createApplyExecutor(deps: RotationExecutorDeps): CommandExecutor {
  return {
    kind: 'rotation.apply',
    idempotent: true,
    checkPayload(payload) {
      parsePayload('rotation.apply', ApplyPayload, payload);
    },
    async execute({ envelope, logger }: CommandContext): Promise<ResultFacts> {
      const payload = parsePayload('rotation.apply', ApplyPayload, envelope.payload);
      const secrets = openSecrets(deps, envelope, ApplySecrets);
      if (payload.target.privilege.mode === 'self' && secrets.currentPassword === undefined) {
        throw new SikkerError('ERR_VALIDATION', 'a self-rotation apply needs the current password');
      }
      const { user, strategy } = payload;
      const log = logger.child({ rotationRunId: payload.runId, attempt: payload.attempt, engine: payload.target.engine, user, strategy });
      return withApplier(deps, payload.target, log, async (applier) => {
        const applied = await applier.apply({ user, newPassword: secrets.newPassword, strategy, currentPassword: secrets.currentPassword });
        if (deps.crashAfterApply === true) {
          log.fatal('SIKKER_AGENT_TEST_CRASH_AT=after-apply: killing this process after the database changed');
          process.kill(process.pid, 'SIGKILL');
        }
        const proof = await applier.verify({ user, password: secrets.newPassword });
        if (proof.outcome === 'refused') throw await restoreAfterRefusal(applier, { user, newPassword: secrets.newPassword, restorePassword: secrets.restorePassword }, log);
        log.info({ unchanged: applied.unchanged, oldPasswordRetained: applied.oldPasswordRetained, persisted: applied.persisted }, 'new password applied and verified with a fresh login');
        const facts: ApplyFacts = { verified: true, unchanged: applied.unchanged, oldPasswordRetained: applied.oldPasswordRetained, persisted: applied.persisted };
        return { ...facts };
      });
    },
  };
}

/**
 * The new password was set but a fresh login with it is refused: put the previous
 * one back when we have it, check that it logs in, and return the error to report.
 */
async function restoreAfterRefusal(
  applier: Applier,
  req: { user: string; newPassword: string; restorePassword: string | undefined },
  log: Logger,
): Promise<SikkerError> {
  if (req.restorePassword === undefined) {
    log.error('the new password does not log in and the command carries no previous password: it could not be restored');
    return new SikkerError('ERR_ROTATION_VERIFY_FAILED', 'the new password did not log in after apply; the previous password could not be restored (none was sent)', {
      details: { restored: false },
    });
  }
  let restored: boolean;
  try {
    // Self-rotation logs in with `currentPassword`: the refused new one. The applier then
    // checks whether the restore password already logs in, which is the case we can fix.
    await applier.apply({ user: req.user, newPassword: req.restorePassword, strategy: 'replace', currentPassword: req.newPassword });
    restored = (await applier.verify({ user: req.user, password: req.restorePassword })).outcome === 'ok';
  } catch (err) {
    const code = err instanceof SikkerError ? err.code : 'ERR_INTERNAL';
    log.error({ code }, 'the new password does not log in, and restoring the previous one failed');
    return new SikkerError('ERR_ROTATION_VERIFY_FAILED', `the new password did not log in after apply; restoring the previous password failed (${code})`, {
      // appliers throw only sanitised ApplierErrors; anything else is not passed on as a cause
      ...(err instanceof SikkerError ? { cause: err } : {}),
      details: { restored: false },
    });
  }
  log.warn({ restored }, restored ? 'the new password does not log in; the previous password was restored' : 'the new password does not log in; the previous password was put back but does not log in either');
  return new SikkerError('ERR_ROTATION_VERIFY_FAILED', restored
    ? 'the new password did not log in after apply; the previous password was restored and logs in'
    : 'the new password did not log in after apply; the previous password was put back but does not log in either', { details: { restored } });
}
