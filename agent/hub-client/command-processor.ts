import type { KeyObject } from 'node:crypto';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import type { Logger } from '../../shared/logging/logger.js';
import { MAX_MESSAGE_BYTES, PROTOCOL_VERSION, verifyCommand, type AgentToHub, type CommandEnvelope, type CommandKind, type CommandResult } from '../../shared/protocol/agent-messages.js';
import type { CommandExecutor, ExecutorRegistry } from '../commands/command-executor.js';
import type { CommandJournal } from '../journal/command-journal.js';

/** What happened to one received command (for events and tests). */
export type CommandDecision =
  | { action: 'accepted' }
  | { action: 'duplicate'; status: 'accepted' | 'final' }
  | { action: 'rejected'; code: string }
  | { action: 'ignored' };

/** Reported when a command's final result is recorded. */
export interface CommandFinished {
  commandId: string;
  kind: CommandKind;
  outcome: 'succeeded' | 'failed';
  code: string | null;
}

export interface CommandProcessorOptions {
  agentId: string;
  serverPublicKey: KeyObject;
  journal: CommandJournal;
  executors: ExecutorRegistry;
  logger: Logger;
  agentVersion: string;
  onFinished?: (finished: CommandFinished) => void;
  /** Clock for expiry checks (tests). */
  now?: () => number;
}

/** Hello may report at most this many results and in-progress ids (protocol limit). */
const HELLO_LIMIT = 1000;
/** A hello must fit in one frame (MAX_MESSAGE_BYTES), with room to spare. */
const HELLO_BUDGET_BYTES = MAX_MESSAGE_BYTES - 4096;

/**
 * Decides about every command and runs accepted ones one at a time, in the order they
 * were accepted (two deliveries to one sink land in generation order). Checks, in
 * order: signature with the pinned server key, addressee, already journaled (re-send
 * the result, or `accepted` again — never execute twice), expiry, generation above
 * the highest accepted, payload shape. Then the executor may `prepare` (start work
 * that needs nothing outside this process, e.g. a password verifier) so it overlaps
 * with the journal write. Acceptance is journaled durably before `accepted` is sent;
 * the result is journaled right after `result` is sent (see #finish). When no session
 * is attached, results wait in the journal for the next hello.
 */
export class CommandProcessor {
  readonly #o: CommandProcessorOptions;
  #send: ((message: AgentToHub) => boolean) | null = null;
  #accepting = true;
  #queue: Promise<void> = Promise.resolve();
  #pending = 0;

  constructor(options: CommandProcessorOptions) {
    this.#o = options;
  }

  /** Commands queued or running. */
  get inFlight(): number {
    return this.#pending;
  }

  /** Routes messages to the current session (null: none). */
  attach(send: ((message: AgentToHub) => boolean) | null): void {
    this.#send = send;
  }

  /**
   * What a fresh session starts with: the hello (highest generation, what is still
   * running, and as many unacknowledged results as fit in one frame), then the other
   * unacknowledged results as separate `result` messages, so none waits for a reconnect.
   */
  greeting(): AgentToHub[] {
    const j = this.#o.journal;
    const inProgress = j.inProgress().slice(0, HELLO_LIMIT).map((e) => e.commandId);
    const pending = j.unacknowledgedResults(Number.MAX_SAFE_INTEGER);
    const results: CommandResult[] = [];
    let size = Buffer.byteLength(JSON.stringify(inProgress)) + 256;
    for (const result of pending) {
      const length = Buffer.byteLength(JSON.stringify(result)) + 1;
      if (results.length >= HELLO_LIMIT || size + length > HELLO_BUDGET_BYTES) break;
      results.push(result);
      size += length;
    }
    const hello: AgentToHub = {
      type: 'hello',
      protocol: PROTOCOL_VERSION,
      agentVersion: this.#o.agentVersion,
      highestGeneration: j.highestGeneration,
      results,
      inProgress,
    };
    return [hello, ...pending.slice(results.length).map((r): AgentToHub => ({ type: 'result', ...r }))];
  }

  /** From now on new commands are left undelivered (no answer at all). */
  stopAccepting(): void {
    this.#accepting = false;
  }

  /** Resolves true when the queue is empty, false if `timeoutMs` passes first. */
  async drain(timeoutMs: number): Promise<boolean> {
    if (this.#pending === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const drained = (async () => {
      while (this.#pending > 0) await this.#queue;
      return true;
    })();
    try {
      return await Promise.race([drained, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  handleCommand(envelope: CommandEnvelope, signature: string): CommandDecision {
    if (!this.#accepting) return { action: 'ignored' };
    const checked = this.#check(envelope, signature);
    if ('refusal' in checked) return checked.refusal;
    const prepared = this.#prepare(checked.executor, envelope, checked.payload);
    try {
      this.#o.journal.recordAccepted(envelope, signature);
    } catch (err) {
      // `prepared` is released unused (prepare leaves nothing that could reject unobserved)
      if (prepared !== undefined) this.#discard(checked.executor, prepared);
      this.#o.logger.error({ err, commandId: envelope.commandId }, 'could not journal an accepted command; refusing it');
      return this.#reject(envelope.commandId, new SikkerError('ERR_AGENT_STATE', 'the agent could not record the command durably', { retryable: true }));
    }
    this.#send?.({ type: 'accepted', commandId: envelope.commandId });
    this.#enqueue(envelope, prepared);
    return { action: 'accepted' };
  }

  handleResultAck(commandId: string): void {
    try {
      this.#o.journal.acknowledge(commandId);
    } catch (err) {
      // The hub will get the result again in the next hello and acknowledge it again.
      this.#o.logger.warn({ err, commandId }, 'could not journal a result acknowledgement');
    }
  }

  /**
   * Runs commands that were accepted but have no result (the agent stopped or crashed
   * during them). Call once at start, before connecting.
   */
  resumeInterrupted(): void {
    for (const entry of this.#o.journal.inProgress()) {
      const log = this.#o.logger.child({ commandId: entry.commandId, kind: entry.kind });
      const executor = this.#o.executors.get(entry.kind);
      if (entry.envelope === null || entry.signature === null || !verifyCommand(this.#o.serverPublicKey, entry.envelope, entry.signature)) {
        this.#finish(entry.commandId, entry.kind, failure(new SikkerError('ERR_AGENT_STATE', 'the journaled command could not be verified again after a restart')), log);
      } else if (executor?.idempotent === true) {
        log.info('re-running a command interrupted by a restart');
        this.#enqueue(entry.envelope);
      } else {
        // A kind that cannot simply run again is reported as interrupted; the control plane decides.
        this.#finish(entry.commandId, entry.kind, failure(new SikkerError('ERR_AGENT_STATE', 'the command was interrupted by a restart and cannot be re-run safely')), log);
      }
    }
  }

  /** The refusal to answer with, or the executor and the payload it parsed. */
  #check(envelope: CommandEnvelope, signature: string): { refusal: CommandDecision } | { executor: CommandExecutor; payload: unknown } {
    const { commandId } = envelope;
    const refuse = (err: SikkerError) => ({ refusal: this.#reject(commandId, err) });
    if (!verifyCommand(this.#o.serverPublicKey, envelope, signature)) {
      return refuse(new SikkerError('ERR_COMMAND_SIGNATURE', 'the command signature does not verify with the pinned server key'));
    }
    if (envelope.agentId !== this.#o.agentId) {
      return refuse(new SikkerError('ERR_COMMAND_WRONG_AGENT', 'the command is addressed to another agent'));
    }
    const known = this.#o.journal.get(commandId);
    if (known !== undefined) return { refusal: this.#repeat(commandId, known.status, known.result) };
    if (envelope.expiresAt <= (this.#o.now ?? Date.now)()) {
      return refuse(new SikkerError('ERR_COMMAND_EXPIRED', 'the command expired before it reached the agent'));
    }
    if (envelope.generation <= this.#o.journal.highestGeneration) {
      return refuse(new SikkerError('ERR_COMMAND_STALE', `generation ${envelope.generation} is not above ${this.#o.journal.highestGeneration}, the highest accepted`));
    }
    const executor = this.#o.executors.get(envelope.kind);
    if (executor === undefined) return refuse(new SikkerError('ERR_VALIDATION', `this agent does not run ${envelope.kind} commands`));
    try {
      return { executor, payload: executor.checkPayload(envelope.payload) };
    } catch (err) {
      return refuse(err instanceof SikkerError ? err : new SikkerError('ERR_VALIDATION', 'invalid payload'));
    }
  }

  /** Hands a prepared value that will not run to the executor's `discard`; a throwing one is logged, never thrown. */
  #discard(executor: CommandExecutor, prepared: unknown): void {
    try {
      executor.discard?.(prepared);
    } catch (err) {
      this.#o.logger.warn({ code: err instanceof SikkerError ? err.code : undefined }, 'releasing a prepared command failed');
    }
  }

  /** The executor's prepared value for an accepted command, or undefined (no `prepare`, or it broke its contract by throwing). */
  #prepare(executor: CommandExecutor, envelope: CommandEnvelope, payload: unknown): unknown {
    if (executor.prepare === undefined) return undefined;
    try {
      return executor.prepare(envelope, payload, { ahead: this.#pending });
    } catch (err) {
      // The command then runs unprepared, as after a restart, and fails (or not) as it would have.
      // Only the code is logged: this error did not pass the executor's own sanitising.
      this.#o.logger.warn({ commandId: envelope.commandId, code: err instanceof SikkerError ? err.code : undefined }, 'preparing the command failed; it runs unprepared');
      return undefined;
    }
  }

  #repeat(commandId: string, status: 'accepted' | 'final', result: CommandResult | null): CommandDecision {
    this.#o.logger.info({ commandId, status }, 'command received again; not executing it twice');
    if (status === 'final' && result !== null) this.#send?.({ type: 'result', ...result });
    else this.#send?.({ type: 'accepted', commandId });
    return { action: 'duplicate', status };
  }

  #reject(commandId: string, err: SikkerError): CommandDecision {
    this.#o.logger.warn({ commandId, code: err.code }, `command rejected: ${err.message}`);
    this.#send?.({ type: 'rejected', commandId: commandId.slice(0, 64), code: err.code, message: err.message.slice(0, 1024) });
    return { action: 'rejected', code: err.code };
  }

  #enqueue(envelope: CommandEnvelope, prepared?: unknown): void {
    this.#pending += 1;
    this.#queue = this.#queue
      .then(() => this.#execute(envelope, prepared))
      .catch((err: unknown) => {
        // Only a throwing 'command-finished' listener gets here; the result is already journaled.
        this.#o.logger.error({ err, commandId: envelope.commandId }, 'a command-finished listener failed');
      })
      .finally(() => {
        this.#pending -= 1;
      });
  }

  /** Never throws: every failure becomes a `failed` result. */
  async #execute(envelope: CommandEnvelope, prepared: unknown): Promise<void> {
    const log = this.#o.logger.child({ commandId: envelope.commandId, kind: envelope.kind });
    const executor = this.#o.executors.get(envelope.kind);
    let outcome: Omit<CommandResult, 'commandId'>;
    try {
      if (executor === undefined) throw new SikkerError('ERR_VALIDATION', `this agent does not run ${envelope.kind} commands`);
      const facts = await executor.execute({ envelope, logger: log, prepared });
      outcome = { outcome: 'succeeded', result: facts, error: null };
    } catch (err) {
      if (!(err instanceof SikkerError)) log.error({ err }, 'command failed unexpectedly');
      outcome = failure(err);
    }
    this.#finish(envelope.commandId, envelope.kind, outcome, log);
  }

  #finish(commandId: string, kind: CommandKind, outcome: Omit<CommandResult, 'commandId'>, log: Logger): void {
    const result: CommandResult = { commandId, ...outcome };
    // Sent first, then journaled in the same turn of the event loop (the write and its fdatasync
    // are synchronous), so no message is handled in between. A crash between the two leaves the
    // command in progress in the journal: it runs again at start, before the agent reconnects
    // (every kind may: all are idempotent), and reports again, which the hub takes once.
    this.#send?.({ type: 'result', ...result });
    try {
      this.#o.journal.recordFinal(result);
    } catch (err) {
      // Already reported; after a restart the command would run again (kinds are idempotent).
      log.error({ err }, 'could not journal a command result');
    }
    if (result.outcome === 'succeeded') log.info('command succeeded');
    else log.warn({ code: result.error?.code }, `command failed: ${result.error?.message ?? ''}`);
    this.#o.onFinished?.({ commandId, kind, outcome: result.outcome, code: result.error?.code ?? null });
  }
}

function failure(err: unknown): Omit<CommandResult, 'commandId'> {
  const e = err instanceof SikkerError ? err : new SikkerError('ERR_INTERNAL', 'the command failed unexpectedly');
  return { outcome: 'failed', result: {}, error: { code: e.code, message: e.message.slice(0, 1024) } };
}
