import { randomBytes } from 'node:crypto';
import { zero } from '../../shared/crypto/aead.js';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { RevokePayload, RevokeSecrets } from '../../shared/protocol/rotation-commands.js';
import type { Applier } from '../appliers/applier.js';
import type { CommandContext, CommandExecutor, ResultFacts } from './command-executor.js';
import { openSecrets, parsePayload, withApplier, type RotationExecutorDeps } from './rotation-context.js';

/** 36 random bytes: 48 base64url characters, a password nobody holds. */
const SCRAMBLE_BYTES = 36;

/**
 * `rotation.revoke`: stops the sealed password of the user from logging in. Facts:
 * `{outcome: 'removed' | 'absent'}` (`absent`: it already did not log in). Idempotent.
 * - `dual`: the applier drops the old of the two passwords the engine holds.
 * - `scramble` (`alternate`'s resting user): when the password still logs in, the user
 *   gets a random password generated here and never reported nor kept, and the old
 *   one is checked to be refused afterwards.
 *
 * Failure modes: ERR_VALIDATION for malformed input (a self-rotation `dual` revoke
 * without the current password); the applier's errors, e.g. ERR_APPLIER_REVOKE_CURRENT
 * when `dual` is asked to drop the only password; ERR_APPLIER_FAILED when the
 * scrambled password still logs in.
 */
export function createRevokeExecutor(deps: RotationExecutorDeps): CommandExecutor {
  return {
    kind: 'rotation.revoke',
    idempotent: true,
    checkPayload(payload) {
      parsePayload('rotation.revoke', RevokePayload, payload);
    },
    async execute({ envelope, logger }: CommandContext): Promise<ResultFacts> {
      const payload = parsePayload('rotation.revoke', RevokePayload, envelope.payload);
      const secrets = openSecrets(deps, envelope, RevokeSecrets);
      const self = payload.target.privilege.mode === 'self';
      if (self && payload.method === 'dual' && secrets.currentPassword === undefined) {
        throw new SikkerError('ERR_VALIDATION', 'a self-rotation dual revoke needs the current password');
      }
      const { user, method } = payload;
      const log = logger.child({ rotationRunId: payload.runId, engine: payload.target.engine, user, method });
      const outcome = await withApplier(deps, payload.target, log, async (applier) => method === 'dual'
        ? (await applier.revoke({ user, password: secrets.password, currentPassword: secrets.currentPassword })).outcome
        : scramble(applier, user, secrets.password));
      log.info({ outcome }, 'old password revoked');
      return { outcome };
    },
  };
}

/** Replaces `password` (if it still logs in) with one nobody holds, and proves it is refused. */
async function scramble(applier: Applier, user: string, password: string): Promise<'removed' | 'absent'> {
  if ((await applier.verify({ user, password })).outcome === 'refused') return 'absent';
  const random = randomBytes(SCRAMBLE_BYTES);
  try {
    // Self-rotation logs in with the password being scrambled: it was just shown to log in.
    await applier.apply({ user, newPassword: random.toString('base64url'), strategy: 'replace', currentPassword: password });
  } finally {
    zero(random);
  }
  if ((await applier.verify({ user, password })).outcome !== 'refused') {
    throw new SikkerError('ERR_APPLIER_FAILED', 'the scrambled password still logs in after the change', { retryable: true });
  }
  return 'removed';
}
