import type { Logger } from '../../shared/logging/logger.js';
import type { CommandEnvelope, CommandKind } from '../../shared/protocol/agent-messages.js';

/** Small, non-secret facts a command reports (the protocol caps them at 32 keys). */
export type ResultFacts = Record<string, string | number | boolean | null>;

/** Everything an executor gets for one run. */
export interface CommandContext {
  /** Verified envelope: the signature, agent id, expiry and generation were checked. */
  envelope: CommandEnvelope;
  /** Child logger bound to agentId and commandId. */
  logger: Logger;
}

/**
 * One kind of command. `execute` resolves with the facts to report, or throws a
 * SikkerError whose code and message go to the hub (so neither may hold a secret).
 * Any other thrown value is reported as ERR_INTERNAL without its message.
 */
export interface CommandExecutor {
  readonly kind: CommandKind;
  /**
   * Re-running after a crash in the middle leaves the same end state, so an accepted
   * command without a result may simply be executed again at start. Every kind so far
   * is: a rotation apply sets the same password again (appliers are idempotent), and
   * the control plane reconciles any outcome it cannot trust. A kind that is not
   * idempotent is reported as interrupted instead of re-run.
   */
  readonly idempotent: boolean;
  /** Throws ERR_VALIDATION if the signed, non-secret payload is not this kind's shape. */
  checkPayload(payload: Record<string, unknown>): void;
  execute(context: CommandContext): Promise<ResultFacts>;
}

export type ExecutorRegistry = ReadonlyMap<CommandKind, CommandExecutor>;
