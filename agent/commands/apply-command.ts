import { SikkerError } from '../../shared/errors/sikker-error.js';
import type { Logger } from '../../shared/logging/logger.js';
import type { CommandEnvelope } from '../../shared/protocol/agent-messages.js';
import { ApplyPayload, ApplySecrets, type ApplyFacts } from '../../shared/protocol/rotation-commands.js';
import type { Applier, VerifyResponse } from '../appliers/applier.js';
// a value import, but driver-free: password-derivation.ts needs only node:crypto
import { PasswordDerivation } from '../appliers/password-derivation.js';
import type { WarmSocket } from '../appliers/postgres-warm-socket.js';
import type { CommandContext, CommandExecutor, ResultFacts } from './command-executor.js';
import { openSecrets, parsePayload, withApplier, type RotationExecutorDeps } from './rotation-context.js';

/**
 * An apply made ready when it was accepted: the payload parsed, the secrets opened,
 * the new password's derivation (PostgreSQL's SCRAM verifier) running — or the error
 * that stopped it, for `execute` to throw in turn (so the command fails as it always did).
 */
export type PreparedApply =
  | { ok: true; payload: ApplyPayload; secrets: ApplySecrets; derived: PasswordDerivation | undefined; warm: WarmSocket | null }
  | { ok: false; error: unknown };

/**
 * Never throws: an error opening or checking the secrets is kept in the result. Sends
 * nothing to any database: at most it opens the PostgreSQL verify login's TCP connection
 * (postgres-warm-socket.ts), on which nothing is sent before the apply.
 */
function prepareApply(deps: RotationExecutorDeps, envelope: CommandEnvelope, payload: ApplyPayload, runsNow: boolean): PreparedApply {
  try {
    const secrets = openSecrets(deps, envelope, ApplySecrets);
    const { target } = payload;
    if (target.privilege.mode === 'self' && secrets.currentPassword === undefined) {
      throw new SikkerError('ERR_VALIDATION', 'a self-rotation apply needs the current password');
    }
    const derived = PasswordDerivation.start(target.engine, secrets.newPassword);
    // only for a command that runs now: one queued behind others would keep a server process waiting meanwhile
    const early = runsNow && target.engine === 'postgres' && target.privilege.mode === 'admin';
    return { ok: true, payload, secrets, derived, warm: early ? openWarm(deps, target.host, target.port) : null };
  } catch (error) {
    return { ok: false, error };
  }
}

/** The verify login's connection, opened now when the deps say so; null when not (or when opening it throws: the applier opens its own). */
function openWarm(deps: RotationExecutorDeps, host: string, port: number): WarmSocket | null {
  try {
    return deps.openWarmSocket?.(host, port) ?? null;
  } catch {
    return null;
  }
}

/** Releases what `prepareApply` holds open (the warm socket, the derived keys); for a prepared apply that is never executed too. */
function releasePrepared(prepared: PreparedApply): void {
  if (!prepared.ok) return;
  prepared.warm?.close();
  prepared.derived?.dispose();
}

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
 * plane acts on); ERR_ROTATION_UNCERTAIN when the apply went through but the verify
 * could not log in either way (its own code in the message and `details.verifyCode`);
 * ERR_ROTATION_VERIFY_FAILED when the new password does not log in,
 * after putting `restorePassword` back when the command carries one (details say
 * whether the previous password logs in again); ERR_VALIDATION for malformed input.
 * No password appears in a message, a cause or a log line.
 *
 * `prepare` (when the command is accepted, before it is journaled) parses nothing
 * again: it takes the payload checkPayload parsed, opens the sealed secrets and starts
 * the new password's derivation, which the applier then uses instead of computing it
 * (PostgreSQL: the SCRAM verifier, ~1 ms of PBKDF2, overlapped with the journal
 * write); for a PostgreSQL admin-mode apply that runs at once (no command queued ahead
 * of it) it also opens the verify login's TCP connection (postgres-warm-socket.ts).
 * Nothing is sent to the database before `execute`. A command resumed after a restart
 * has no prepared value and does all of it in `execute`, with the same errors.
 */
export function createApplyExecutor(deps: RotationExecutorDeps): CommandExecutor<ApplyPayload, PreparedApply> {
  return {
    kind: 'rotation.apply',
    idempotent: true,
    checkPayload(payload) {
      return parsePayload('rotation.apply', ApplyPayload, payload);
    },
    prepare(envelope, payload, queue) {
      return prepareApply(deps, envelope, payload, queue.ahead === 0);
    },
    discard(prepared) {
      releasePrepared(prepared);
    },
    async execute({ envelope, logger, prepared }: CommandContext<PreparedApply>): Promise<ResultFacts> {
      const ready = prepared ?? prepareApply(deps, envelope, parsePayload('rotation.apply', ApplyPayload, envelope.payload), true);
      try {
        if (!ready.ok) throw ready.error;
        const { payload, secrets, derived, warm } = ready;
        const { user, strategy } = payload;
        const log = logger.child({ rotationRunId: payload.runId, attempt: payload.attempt, engine: payload.target.engine, user, strategy });
        return await applyAndVerify(deps, payload.target, log, { user, strategy, secrets, derived, warm });
      } finally {
        releasePrepared(ready);
      }
    },
  };
}

/** The apply, its proof by a fresh login, and the restore when the proof is refused. */
function applyAndVerify(
  deps: RotationExecutorDeps,
  target: ApplyPayload['target'],
  log: Logger,
  { user, strategy, secrets, derived, warm }: { user: string; strategy: ApplyPayload['strategy']; secrets: ApplySecrets; derived: PasswordDerivation | undefined; warm: WarmSocket | null },
): Promise<ResultFacts> {
  return withApplier(deps, target, log, async (applier) => {
    // `derived` was started for secrets.newPassword, `warm` opened for its verify; the restore below gets neither
    const applied = await applier.apply({ user, newPassword: secrets.newPassword, strategy, currentPassword: secrets.currentPassword, derived, warm });
    if (deps.crashAfterApply === true) {
      log.fatal('SIKKER_AGENT_TEST_CRASH_AT=after-apply: killing this process after the database changed');
      process.kill(process.pid, 'SIGKILL');
    }
    const proof = await verifyAfterApply(applier, user, secrets.newPassword, log);
    if (proof.outcome === 'refused') throw await restoreAfterRefusal(applier, { user, newPassword: secrets.newPassword, restorePassword: secrets.restorePassword }, log);
    log.info({ unchanged: applied.unchanged, oldPasswordRetained: applied.oldPasswordRetained, persisted: applied.persisted }, 'new password applied and verified with a fresh login');
    const facts: ApplyFacts = { verified: true, unchanged: applied.unchanged, oldPasswordRetained: applied.oldPasswordRetained, persisted: applied.persisted };
    return { ...facts };
  });
}

/**
 * The verify that follows an apply. The database has changed by now, so an error here
 * (unreachable, a server that let the login in without checking its password, …) must
 * not reach the control plane as the applier's own code: some of those codes mean "this
 * certainly changed nothing" there, and a run failed that way discards its pending
 * version, which may be the only one that logs in now. It is reported as
 * ERR_ROTATION_UNCERTAIN instead, which sends the run to reconciliation.
 */
async function verifyAfterApply(applier: Applier, user: string, password: string, log: Logger): Promise<VerifyResponse> {
  try {
    return await applier.verify({ user, password });
  } catch (err) {
    const code = err instanceof SikkerError ? err.code : 'ERR_INTERNAL';
    log.error({ code }, 'the new password was applied, but the login that should prove it failed');
    throw new SikkerError('ERR_ROTATION_UNCERTAIN', `the new password was applied, but the login that should prove it failed (${code}${err instanceof SikkerError ? `: ${err.message}` : ''})`, {
      // appliers throw only sanitised ApplierErrors; anything else is not passed on as a cause
      ...(err instanceof SikkerError ? { cause: err } : {}),
      details: { applied: true, verifyCode: code },
    });
  }
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
