import { SikkerError } from '../../shared/errors/sikker-error.js';
import { CheckPayload, CheckSecrets } from '../../shared/protocol/rotation-commands.js';
import type { CommandContext, CommandExecutor, ResultFacts } from './command-executor.js';
import { openSecrets, parsePayload, withApplier, type RotationExecutorDeps } from './rotation-context.js';

/**
 * `rotation.check` (reconciliation): which of the candidate credentials log in right
 * now? Each is tried with a fresh login as its user; the facts hold one `ok` or
 * `refused` per label. Changes nothing, so idempotent. The applier is built as for
 * any command (admin mode: with its admin connection), though a check needs no privilege.
 *
 * Failure modes: ERR_VALIDATION for a malformed payload, a label given twice or a
 * label without a sealed password; the applier's ERR_APPLIER_UNREACHABLE /
 * ERR_APPLIER_TLS when the server cannot be asked (the control plane asks again later).
 */
export function createCheckExecutor(deps: RotationExecutorDeps): CommandExecutor {
  return {
    kind: 'rotation.check',
    idempotent: true,
    checkPayload(payload) {
      parseCheckPayload(payload);
    },
    async execute({ envelope, logger }: CommandContext): Promise<ResultFacts> {
      const payload = parseCheckPayload(envelope.payload);
      const { passwords } = openSecrets(deps, envelope, CheckSecrets);
      const missing = payload.candidates.filter((c) => passwords[c.label] === undefined).map((c) => c.label);
      if (missing.length > 0) throw new SikkerError('ERR_VALIDATION', `rotation.check carries no sealed password for ${missing.join(', ')}`);
      const log = logger.child({ rotationRunId: payload.runId, engine: payload.target.engine, host: payload.target.host, port: payload.target.port });
      const facts = await withApplier(deps, payload.target, log, async (applier) => {
        const out: Record<string, 'ok' | 'refused'> = {};
        for (const { label, user } of payload.candidates) {
          out[label] = (await applier.verify({ user, password: passwords[label] ?? '' })).outcome;
        }
        return out;
      });
      log.info({ outcomes: facts }, 'candidate credentials checked with fresh logins');
      return facts;
    },
  };
}

/** The payload, with each label given once (a label is a fact key of the result). */
function parseCheckPayload(raw: unknown): CheckPayload {
  const payload = parsePayload('rotation.check', CheckPayload, raw);
  if (new Set(payload.candidates.map((c) => c.label)).size !== payload.candidates.length) {
    throw new SikkerError('ERR_VALIDATION', 'rotation.check payload names a candidate label twice');
  }
  return payload;
}
