import { SikkerError } from '../../shared/errors/sikker-error.js';
import { TerminatePayload, TerminateSecrets } from '../../shared/protocol/rotation-commands.js';
import type { CommandContext, CommandExecutor, ResultFacts } from './command-executor.js';
import { openSecrets, parsePayload, withApplier, type RotationExecutorDeps } from './rotation-context.js';

/**
 * `sessions.terminate` (leak response): ends every live session of the user, so a
 * leaked credential already logged in somewhere stops working too. Facts:
 * `{terminated}` (sessions the server ended; the applier's own is never counted).
 * Idempotent: a second run finds nothing more to end.
 *
 * Failure modes: ERR_VALIDATION (malformed payload; self mode without the current
 * password), the applier's ERR_APPLIER_PRIVILEGE (the login may not end sessions),
 * ERR_APPLIER_UNREACHABLE.
 */
export function createTerminateExecutor(deps: RotationExecutorDeps): CommandExecutor {
  return {
    kind: 'sessions.terminate',
    idempotent: true,
    checkPayload(payload) {
      parsePayload('sessions.terminate', TerminatePayload, payload);
    },
    async execute({ envelope, logger }: CommandContext): Promise<ResultFacts> {
      const payload = parsePayload('sessions.terminate', TerminatePayload, envelope.payload);
      const secrets = openSecrets(deps, envelope, TerminateSecrets, false);
      if (payload.target.privilege.mode === 'self' && secrets?.currentPassword === undefined) {
        throw new SikkerError('ERR_VALIDATION', 'ending the sessions of a self-rotating user needs its current password');
      }
      const log = logger.child({ rotationRunId: payload.runId, engine: payload.target.engine, user: payload.user });
      const { terminated } = await withApplier(deps, payload.target, log, (applier) => applier.terminateSessions({ user: payload.user, currentPassword: secrets?.currentPassword }));
      log.info({ terminated }, 'ended the user\'s live sessions');
      return { terminated };
    },
  };
}
