import type { Logger } from '../../shared/logging/logger.js';
import type { CommandEnvelope, CommandKind } from '../../shared/protocol/agent-messages.js';

/** Small, non-secret facts a command reports (the protocol caps them at 32 keys). */
export type ResultFacts = Record<string, string | number | boolean | null>;

/** Everything an executor gets for one run. */
export interface CommandContext<Prepared = unknown> {
  /** Verified envelope: the signature, agent id, expiry and generation were checked. */
  envelope: CommandEnvelope;
  /** Child logger bound to agentId and commandId. */
  logger: Logger;
  /**
   * What this executor's `prepare` returned when the command was accepted. Undefined
   * when it has no `prepare`, and for a command resumed after a restart (which was
   * never prepared in this process): `execute` then does that work itself.
   */
  prepared?: Prepared | undefined;
}

/** Where a command being prepared stands in the queue. */
export interface PrepareQueue {
  /**
   * Commands accepted before it and not finished: it runs once they have. Work that holds
   * something open until the command runs (a connection) is only worth starting at 0.
   */
  ahead: number;
}

/**
 * One kind of command. `execute` resolves with the facts to report, or throws a
 * SikkerError whose code and message go to the hub (so neither may hold a secret).
 * Any other thrown value is reported as ERR_INTERNAL without its message.
 *
 * `Payload` is what `checkPayload` returns (the payload parsed), handed to `prepare`;
 * `Prepared` is what `prepare` returns, handed to `execute`. The command processor
 * only passes them along, between the methods of the same executor.
 */
export interface CommandExecutor<Payload = unknown, Prepared = unknown> {
  readonly kind: CommandKind;
  /**
   * Re-running after a crash in the middle leaves the same end state, so an accepted
   * command without a result may simply be executed again at start. Every kind so far
   * is: a rotation apply sets the same password again (appliers are idempotent), and
   * the control plane reconciles any outcome it cannot trust. A kind that is not
   * idempotent is reported as interrupted instead of re-run.
   */
  readonly idempotent: boolean;
  /** Throws ERR_VALIDATION if the signed, non-secret payload is not this kind's shape; returns it parsed. */
  checkPayload(payload: Record<string, unknown>): Payload;
  /**
   * Optional. Called synchronously once the command passed every check, before it is
   * journaled and `accepted` is sent, to start work that sends nothing anywhere (opening
   * the sealed secrets, deriving a password verifier, opening a TCP connection) so that it
   * overlaps with the journal write. What it returns reaches `execute` as
   * `context.prepared` — unless the journal write fails and the command is refused,
   * in which case it goes to `discard`.
   *
   * So it must not throw, and must leave no promise that could reject unobserved: a
   * failure belongs inside the returned value, for `execute` to throw, so the command
   * gets the same `failed` result as without `prepare`. (A `prepare` that throws anyway
   * is logged with its code, and the command runs unprepared.)
   */
  prepare?(envelope: CommandEnvelope, payload: Payload, queue: PrepareQueue): Prepared;
  /**
   * Optional, with `prepare` when what it returns holds something open (a socket): called
   * instead of `execute` when the prepared command is refused after all (the journal write
   * failed), to release it. Must not throw. `execute` releases it itself.
   */
  discard?(prepared: Prepared): void;
  execute(context: CommandContext<Prepared>): Promise<ResultFacts>;
}

export type ExecutorRegistry = ReadonlyMap<CommandKind, CommandExecutor>;
