import type { Pool, PoolClient } from 'pg';
import { zero } from '../../shared/crypto/aead.js';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import type { Logger } from '../../shared/logging/logger.js';
import type { CommandResult } from '../../shared/protocol/agent-messages.js';
import { PolicySpec } from '../../shared/protocol/rotation-api.js';
import type { AuditChainWriter } from '../audit/audit-appender.js';
import type { AuditDraft } from '../audit/audit-types.js';
import { isRunAgain, withTransactionFrom } from '../db/transaction.js';
import { completeCommandWrite, findCommand, type CommandRow } from '../hub/command-dal.js';
import type { StatementWrite, WriteOutcome } from '../db/queryable.js';
import type { ClaimedDelivery, ClaimTicket } from '../hub/hub-server.js';
import type { CommandService } from '../hub/command-service.js';
import type { RootKeyHolder } from '../vault/root-key-holder.js';
import { promotePendingWrite, type LockedSecretRow, type VersionStore } from '../vault/version-store.js';
import type { Alert, Alerter } from './alerter.js';
import { generatePassword } from './password-generator.js';
import { findPolicy, findTargetById, lockRunWithTargetStatement, runWithTarget, updateRunWithSteps, type LockedRun, type RunWithTargetRow, type PolicyRow, type RunChange, type RunRow, type RunStep, type TargetRow } from './rotation-dal.js';
import { userForNextRun } from './policy-rules.js';
import { RunCommands } from './run-commands.js';

/** Apply failures that certainly changed nothing and will not change by retrying: park at once. */
const PERMANENT_FAILURES = new Set(['ERR_APPLIER_UNKNOWN_USER', 'ERR_APPLIER_PRIVILEGE', 'ERR_APPLIER_AUTH_FAILED', 'ERR_APPLIER_CONFIG', 'ERR_APPLIER_UNSUPPORTED', 'ERR_APPLIER_LOGIN_DISABLED', 'ERR_APPLIER_AMBIGUOUS_USER', 'ERR_VALIDATION']);
const OPEN_COMMAND_STATES = new Set(['pending', 'delivered', 'accepted']);
/** Revocation is retried without end (capped backoff), with an alert after this many failures. */
const ALERT_AFTER_FAILURES = 5;
const MAX_BACKOFF_SECONDS = 3600;
/** A run parked with an unknown outcome is checked again this often. */
const PARKED_RECHECK_MS = 3600_000;
/** Time past a command's expiry before the run stops waiting for it (the hub expires it first). */
const COMMAND_MARGIN_MS = 2000;

export interface RotationEngineOptions {
  commandTimeoutMs: number;
  /** Tests only: SIGKILL this process at a named point. */
  crashAt: 'before-announce' | 'before-commit' | null;
}

/** A run started by {@link RotationEngine.startWithin}: the step's outcome, the run as left, and the steps written. */
export type StartedRun = StepOutcome & { run: RunRow; target: TargetRow; steps: RunStep[] };

/**
 * PostgreSQL notification channel on which each run's commit is announced (payload: the run
 * id, nothing else), delivered only once the commit transaction has committed: a client with a
 * connection to the control plane's database can wait for a commit without polling.
 */
export const RUN_COMMITTED_CHANNEL = 'sikker_run_committed';

/** The secret's lock as its statement read it (lockSecretStatement): the row, and the version it read. */
export interface LockedSecretRead {
  read: number | null;
  row: LockedSecretRow | undefined;
}

/** The step the creator of a run records first (`created`), and its audit records (appended before the step's own). */
export interface FirstRecords {
  step: string;
  detail: Record<string, unknown>;
  audits?: AuditDraft[];
}

export interface StepOutcome {
  /** Advance again at once (the next step needs no waiting). */
  again: boolean;
  /** The command the run now waits for, when this step issued one. */
  waitsFor?: string | null;
  /** Agents to tell about a new command, after the commit. */
  announce: string[];
  /** Commands counted as delivered in the step's transaction, sent right after the commit (their agents are not announced). */
  claimed?: ClaimedDelivery[];
  alert: Alert | null;
  /** Called once the step's transaction committed (internal: an early result stored by it). */
  onCommit?: Array<() => void>;
}

/** How the agents hear of a step's commands (the hub, and the bus for agents held by other replicas). */
export interface CommandDelivery {
  /** In the step's transaction: the agent's open commands counted as delivered, when this replica holds its socket; else null. */
  claimWithin(client: PoolClient, agentId: string): Promise<ClaimedDelivery | null>;
  /** For a statement that stores a command and claims in one go: null when this replica does not hold the agent's socket. */
  claimTicket(agentId: string): ClaimTicket | null;
  /** After the commit: sends what {@link claimWithin} (or a statement with a ticket) counted. */
  sendClaimed(claim: ClaimedDelivery): void;
  /** After the commit: tells whichever replica holds the agent's socket that it has a command. */
  announce(agentId: string): void;
}

/** Where an agent's result came from (for its audit record). */
export interface ResultOrigin {
  sourceIp: string | null;
  projectId: string | null;
}

/** A result read off an agent's socket that a run of this process waits for, not yet stored. */
interface ReportedResult {
  agentId: string;
  result: CommandResult;
  origin: ResultOrigin;
  /** true: the run's committed step stored it (and audited it); false: it did not, the hub must. Only the first call counts. */
  settle: (storedByRun: boolean) => void;
}

/**
 * Moves rotation runs through their states (DESIGN.md, "One rotation run"):
 *
 *   created → pending → dispatched → committed → revoking → done
 *                           └→ uncertain (reconcile: which credential logs in?) → committed | retry | parked
 *
 * Each step runs in one PostgreSQL transaction on the locked run row, so a step
 * happens once however often BullMQ, the hub or the sweep ask for it (fenced by the
 * run id and its state). A step that needs the agent stores a command and waits; the
 * hub's result (or the sweep, at `next_action_at`) advances the run again. The pending
 * version is stored before anything is sent, and is never discarded while it might
 * be live in the database: at every instant some non-revoked version logs in.
 */
export class RotationEngine {
  private readonly runCommands: RunCommands;
  private readonly running = new Map<string, Promise<void>>();
  /** Commands issued here that a run waits for: command id → run id (bounded; the database is the fallback). */
  private readonly waiting = new Map<string, string>();
  /** Results reported by agents and not yet stored, by command id (used once, then dropped). */
  private readonly reported = new Map<string, ReportedResult>();

  constructor(
    private readonly pool: Pool,
    private readonly versions: VersionStore,
    commands: CommandService,
    private readonly chain: AuditChainWriter,
    private readonly root: RootKeyHolder,
    private readonly alerter: Alerter,
    private readonly logger: Logger,
    private readonly options: RotationEngineOptions,
    private readonly delivery: CommandDelivery,
  ) {
    this.runCommands = new RunCommands(versions, commands, options.commandTimeoutMs);
  }

  /**
   * Advances one run as far as it can go without waiting. Concurrent calls for the
   * same run in this process coalesce; across replicas the row lock decides.
   */
  advance(runId: string): Promise<void> {
    const running = this.running.get(runId);
    if (running !== undefined) {
      // One more pass after the current one: the event that caused this call may have come too late for it.
      const next = running.then(() => this.advance(runId));
      return next;
    }
    const work = this.advanceLoop(runId).finally(() => this.running.delete(runId));
    this.running.set(runId, work);
    return work;
  }

  private async advanceLoop(runId: string): Promise<void> {
    for (let i = 0; i < 8; i += 1) {
      if (this.root.isSealed()) return; // the sweep advances it after unseal
      let outcome: StepOutcome | null;
      try {
        outcome = await withTransactionFrom(this.pool, this.logger, [lockRunWithTargetStatement(runId)], async (client, [rows]) => this.step(client, runWithTarget((rows ?? []) as RunWithTargetRow[])));
      } catch (err) {
        const retryable = err instanceof SikkerError && err.retryable;
        this.logger[retryable ? 'warn' : 'error']({ err, runId }, 'a rotation step failed; the sweep will try it again');
        // Never earlier than the run already waits: a failed step must not cut a grace period
        // (or a command's deadline) short. A run waiting for a command that has finished is
        // picked up by the sweep whatever its next_action_at (rotation-dal.ts dueRuns).
        await this.pool.query(`UPDATE rotation_runs SET next_action_at = GREATEST(COALESCE(next_action_at, now()), now() + interval '5 seconds'), updated_at = now()
                                WHERE run_id = $1 AND holds_target`, [runId]).catch(() => undefined);
        return;
      }
      if (outcome === null) return;
      for (const committed of outcome.onCommit ?? []) committed();
      this.afterCommit(outcome, runId);
      if (outcome.alert !== null) await this.alerter.send(outcome.alert);
      if (!outcome.again) return;
    }
  }

  /**
   * Starts a run created in the caller's open transaction: its pending version and its
   * apply command are stored there too, with `first` (the caller's `created` step) written
   * alongside. One commit makes the run, the pending version and the command durable
   * together, so the pending version is on record before anything can reach the agent.
   *
   * The step's audit records go with `first.audits` (the caller's) into the step's one
   * statement, the last of the transaction: it may carry the COMMIT (commit-with.ts), so the
   * caller writes nothing after this returns, and commits as withTransaction does (which
   * then sends no COMMIT of its own). After the commit, call {@link afterCommit} with the
   * result to tell the agent.
   */
  async startWithin(client: PoolClient, inserted: RunRow, first: FirstRecords, known: { policy?: PolicyRow | null; target?: TargetRow | null; secret?: LockedSecretRead } = {}): Promise<StartedRun> {
    // The run was inserted in this transaction, so no one else can see it, let alone lock it.
    // `known.target`: read in this transaction after the insert (the caller's), else read now.
    const target = known.target !== undefined ? known.target : await findTargetById(client, inserted.target_id);
    if (target === null) throw new SikkerError('ERR_INTERNAL', 'a run refers to a missing target');
    const ctx = new StepContext(client, inserted, target, this.chain, known.policy);
    ctx.lockedSecret = known.secret;
    ctx.begin(first.step, first.detail);
    const stepped = await this.stepOn(ctx) ?? { again: false, announce: [], alert: null };
    // nothing of the caller's follows (see above), so the COMMIT goes with the flush unless an agent is still to be claimed for
    await ctx.flush(first.audits ?? [], { commit: stepped.announce.length === 0 });
    const outcome = await this.claimDeliveries(ctx, stepped);
    return { ...outcome, run: ctx.run, target, steps: ctx.written };
  }

  /** What follows a step's commit: the agents with a new command get it (claimed ones from here at once, the others through an announcement). */
  afterCommit(outcome: StepOutcome, runId: string): void {
    const claimed = outcome.claimed ?? [];
    if (outcome.announce.length > 0 || claimed.length > 0) this.crashHere('before-announce'); // committed; no agent told yet
    if (outcome.waitsFor != null) remember(this.waiting, outcome.waitsFor, runId);
    for (const claim of claimed) this.delivery.sendClaimed(claim);
    for (const agentId of outcome.announce) this.delivery.announce(agentId);
  }

  /**
   * Claims, in the step's transaction, the commands of the agents this replica holds (see
   * {@link CommandDelivery.claimWithin}), unless the statement that stored them already did
   * (`ctx.claimed`); the rest stay to announce.
   */
  private async claimDeliveries(ctx: StepContext, outcome: StepOutcome): Promise<StepOutcome> {
    if (outcome.announce.length === 0 && ctx.claimed.length === 0) return outcome;
    const claimed: ClaimedDelivery[] = [...ctx.claimed];
    const announce: string[] = [];
    for (const agentId of new Set(outcome.announce)) {
      const claim = await this.delivery.claimWithin(ctx.client, agentId);
      if (claim === null) announce.push(agentId);
      else claimed.push(claim);
    }
    return { ...outcome, announce, claimed };
  }

  /**
   * An agent's result, as soon as the hub reads it. When a run of this process waits for
   * that command, its next step starts now with the result in hand, and stores the result
   * (command row and audit record) in that step's transaction: the step checks that the
   * reporting agent is the target's. Returns null when no run here waits (the hub stores
   * it as before); otherwise a promise that resolves true once a committed step stored
   * it, or false when none did (the hub must store it then: a failed step, a forged
   * report, a run that had moved on).
   */
  resultArrived(agentId: string, result: CommandResult, origin: ResultOrigin): Promise<boolean> | null {
    const runId = this.waiting.get(result.commandId);
    if (runId === undefined) return null;
    this.waiting.delete(result.commandId);
    return new Promise<boolean>((resolve) => {
      let settled = false;
      const settle = (storedByRun: boolean): void => {
        if (settled) return;
        settled = true;
        resolve(storedByRun);
      };
      const entry: ReportedResult = { agentId, result, origin, settle };
      remember(this.reported, result.commandId, entry, (evicted) => evicted.settle(false));
      void this.advance(runId).finally(() => {
        if (this.reported.get(result.commandId) === entry) this.reported.delete(result.commandId);
        settle(false);
      });
    });
  }

  /** One step on the locked run, its steps and audit records written at the end; null when there is nothing to do now. */
  private async step(client: PoolClient, locked: LockedRun | null): Promise<StepOutcome | null> {
    if (locked === null || !locked.run.holds_target) return null;
    const { run, target } = locked;
    if (target === null) throw new SikkerError('ERR_INTERNAL', 'a run refers to a missing target');
    const ctx = new StepContext(client, run, target, this.chain);
    ctx.answersLeak = locked.answersLeak;
    const stepped = await this.stepOn(ctx);
    // the step's last statement carries the COMMIT unless an agent is still to be claimed for after it
    await ctx.flush([], { commit: stepped !== null && stepped.announce.length === 0 });
    // after the flush: a command stored by one of its writes is claimed there (ctx.claimed)
    const outcome = stepped === null ? null : await this.claimDeliveries(ctx, stepped);
    return outcome === null ? null : { ...outcome, onCommit: ctx.onCommit };
  }

  private async stepOn(ctx: StepContext): Promise<StepOutcome | null> {
    switch (ctx.run.state) {
      case 'created':
        return this.storePending(ctx);
      case 'pending':
        return this.dispatch(ctx);
      case 'dispatched':
        return this.afterApply(ctx);
      case 'uncertain':
      case 'parked': // parked while the outcome is unknown: still held, checked now and then
        return this.reconcile(ctx);
      case 'committed':
        return this.startRevoke(ctx);
      case 'revoking':
        return this.afterRevoke(ctx);
      default:
        return null;
    }
  }

  private async storePending(ctx: StepContext): Promise<StepOutcome> {
    const { target } = ctx;
    if (ctx.run.previous_version !== target.current_version) {
      // Whoever created the run read the target just before another run committed (the
      // insert waited for that run to release the target): start from what is current now,
      // or the restore password and the later revoke would name the wrong version.
      ctx.change({ previous_version: target.current_version, db_user: userForNextRun({ strategy: ctx.run.strategy, user: target.spec.user, alternate_user: target.alternate_user, current_version: target.current_version, current_user: target.current_user }) },
        'previous version re-read', { previous: target.current_version });
    }
    const { client, run } = ctx;
    const policy = await ctx.policy();
    const rules = (policy?.spec ?? PolicySpec.parse({ schedule: { kind: 'every', seconds: 86_400 } })).passwordRules;
    const password = Buffer.from(generatePassword(rules, target.spec.engine), 'utf8');
    let previous: { plaintext: Buffer; dbUser: string | null } | null = null;
    try {
      // the previous version (the apply's restore or current password) is read with the lock,
      // which the run's creator may have taken already (with the run's insert, for the version it expected)
      const known = ctx.lockedSecret;
      ctx.lockedSecret = undefined;
      const locked = known !== undefined && known.read === ctx.run.previous_version
        ? await this.versions.lockedSecret(client, target.project_id, target.secret_id, known.read, known.row)
        : await this.versions.lockSecret(client, target.project_id, target.secret_id, ctx.run.previous_version);
      previous = locked.version;
      if (ctx.run.previous_version !== null && previous === null) throw new SikkerError('ERR_NOT_FOUND', `no version ${ctx.run.previous_version} of this secret`);
      let pending: { version: number; write: StatementWrite };
      try {
        pending = await this.versions.pendingVersionWrite(client, { projectId: target.project_id, secretId: target.secret_id, dataKey: locked.dataKey, plaintext: password, dbUser: run.db_user, createdBy: null, knownMax: locked.maxVersion });
      } finally {
        zero(locked.dataKey);
      }
      const { version } = pending;
      // sent with the step's other writes; numbered from the highest version read under the secret's lock, so it stores one row
      ctx.write({
        ...pending.write,
        expect: { sql: '(SELECT count(*) FROM self) = 1', values: [], error: () => new SikkerError('ERR_CONFLICT', `version ${version} of the secret could not be stored as pending (a higher version exists)`, { retryable: true }) },
      });
      ctx.change({ state: 'pending', pending_version: version, next_action_at: new Date() }, 'pending stored', { version, user: run.db_user, attempt: run.attempt });
      ctx.audit('rotation.pending', 'success', version, { attempt: run.attempt });
      // Dispatch in the same transaction: the command becomes visible (and can be sent) only
      // when this commits, and the pending version commits with it.
      return await this.dispatch(ctx, { pendingPassword: password, previous });
    } finally {
      zero(password);
      zero(previous?.plaintext ?? null);
    }
  }

  /** `held`: the pending value and the previous version when the caller has them in hand (else they are decrypted). */
  private async dispatch(ctx: StepContext, held?: { pendingPassword: Buffer; previous: { plaintext: Buffer; dbUser: string | null } | null }): Promise<StepOutcome> {
    // stored and, when this replica holds the agent's socket, claimed for sending in the same statement
    const ticket = this.delivery.claimTicket(ctx.target.agent_id);
    const issued = await this.runCommands.apply(ctx.client, ctx.run, ctx.target, held, ticket?.except);
    const claiming = 'write' in issued;
    if (claiming) {
      // stored with the step's other writes; what it claimed is sent after the commit
      if (ticket === null) throw new SikkerError('ERR_INTERNAL', 'a claiming command without a claim ticket');
      ctx.write(issued.write, (outcome) => ctx.claimed.push({ conn: ticket.conn, rows: issued.settle(outcome).claimed ?? [] }));
    }
    ctx.change({ state: 'dispatched', command_id: issued.commandId, failures: 0, next_action_at: new Date(issued.expiresAt.getTime() + COMMAND_MARGIN_MS) },
      'dispatched to agent', { commandId: issued.commandId, agentId: ctx.target.agent_id, user: ctx.run.db_user, strategy: ctx.run.strategy });
    ctx.audit('rotation.dispatch', 'issued', ctx.run.pending_version, { commandId: issued.commandId });
    // a claimed command is sent after the commit (ctx.claimed); otherwise the agent is announced or claimed for at flush
    return { again: false, announce: claiming ? [] : [ctx.target.agent_id], alert: null, waitsFor: ctx.run.command_id };
  }

  private async afterApply(ctx: StepContext): Promise<StepOutcome | null> {
    const command = await this.waitedCommand(ctx);
    if (command === 'wait') return null;
    if (command === 'timeout') return this.toUncertain(ctx, 'ERR_ROTATION_TIMEOUT', 'the agent did not report within the command timeout');
    if (command.state === 'succeeded') {
      ctx.step('applied and verified by agent', { commandId: command.command_id, ...command.result });
      return this.commit(ctx, 'verified');
    }
    const code = command.error?.code ?? (command.state === 'expired' ? 'ERR_COMMAND_EXPIRED' : 'ERR_INTERNAL');
    const message = command.error?.message ?? `the command ended ${command.state}`;
    ctx.step(`agent reported ${command.state}`, { commandId: command.command_id, code, message });
    if (command.state === 'rejected') return this.retryOrPark(ctx, code, message, true); // never run: nothing changed
    if (command.state === 'expired' && command.deliveries === 0) {
      return this.retryOrPark(ctx, 'ERR_AGENT_UNREACHABLE', 'the agent did not take the command before it expired (offline?)', true); // never sent: nothing changed
    }
    if (command.state === 'failed' && code === 'ERR_APPLIER_REJECTED_PASSWORD') return this.retryOrPark(ctx, code, message, false);
    if (command.state === 'failed' && PERMANENT_FAILURES.has(code)) return this.park(ctx, code, message, true);
    return this.toUncertain(ctx, code, message);
  }

  private async toUncertain(ctx: StepContext, code: string, message: string): Promise<StepOutcome> {
    // An apply never sent to the agent is cancelled here, and then certainly changed nothing —
    // also when the hub's expiry sweep got to it between our read and this statement.
    // One that reached the agent runs before any later check (the agent keeps generation order).
    if (ctx.run.command_id !== null) {
      const cancelled = await ctx.client.query(
        `UPDATE agent_commands SET state = 'expired', completed_at = COALESCE(completed_at, now()), sealed = NULL
          WHERE command_id = $1 AND (state = 'pending' OR (state = 'expired' AND deliveries = 0))`, [ctx.run.command_id]);
      if (cancelled.rowCount === 1) {
        ctx.step('never delivered: cancelled', { commandId: ctx.run.command_id });
        return this.retryOrPark(ctx, 'ERR_AGENT_UNREACHABLE', 'the agent did not take the command before it expired (offline?)', true);
      }
    }
    ctx.change({ state: 'uncertain', command_id: null, error_code: code, error_message: message, next_action_at: new Date() }, 'outcome uncertain: reconciling', { code });
    return { again: true, announce: [], alert: null };
  }

  private async reconcile(ctx: StepContext): Promise<StepOutcome | null> {
    const { run } = ctx;
    if (run.command_id === null) {
      const issued = await this.runCommands.check(ctx.client, run, ctx.target);
      ctx.change({ command_id: issued.commandId, next_action_at: new Date(issued.expiresAt.getTime() + COMMAND_MARGIN_MS) }, 'asked agent which credential logs in', { commandId: issued.commandId });
      ctx.audit('rotation.reconcile', 'issued', run.pending_version, { commandId: issued.commandId });
      return { again: false, announce: [ctx.target.agent_id], alert: null, waitsFor: ctx.run.command_id };
    }
    const command = await this.waitedCommand(ctx);
    if (command === 'wait') return null;
    if (command === 'timeout' || command.state !== 'succeeded') {
      const failures = run.failures + 1;
      const reason = command === 'timeout' ? 'the agent did not answer the check' : `the check ended ${command.state}: ${command.error?.code ?? ''}`;
      if (run.state === 'parked' || failures >= run.max_attempts) {
        // Parked, but still holding the target: the new password may be live, so no new run may start.
        const first = run.state !== 'parked';
        ctx.change({ state: 'parked', command_id: null, failures, next_action_at: new Date(Date.now() + PARKED_RECHECK_MS), error_code: 'ERR_ROTATION_UNCERTAIN', error_message: `cannot tell whether the new password took effect (${reason}); the target stays held and is checked hourly` },
          first ? 'parked: outcome unknown' : 'check failed again', { reason, failures });
        if (first) ctx.audit('rotation.parked', 'failure', run.pending_version, { code: 'ERR_ROTATION_UNCERTAIN' });
        if (first) this.finishLeaks(ctx, 'exposed', `ERR_ROTATION_UNCERTAIN: ${reason}`);
        return { again: false, announce: [], alert: first ? ctx.alert('rotation.parked', 'ERR_ROTATION_UNCERTAIN', `cannot tell whether the new password took effect (${reason}); the target is held until a check succeeds`) : null };
      }
      ctx.change({ command_id: null, failures, next_action_at: backoff(await this.retryBase(ctx), failures) }, 'check failed; will ask again', { reason, failures });
      return { again: false, announce: [], alert: null };
    }
    const result = command.result ?? {};
    ctx.step('agent checked credentials', { pending: result.p ?? null, current: result.c ?? null });
    if (result.p === 'ok') return this.commit(ctx, 'reconciled');
    if (result.c === 'ok') return this.retryOrPark(ctx, run.error_code ?? 'ERR_ROTATION_FAILED', run.error_message ?? 'the rotation did not take effect', false);
    // Neither logs in: someone else changed the password. Keep every version; a human must look.
    return this.park(ctx, 'ERR_ROTATION_NO_CREDENTIAL', 'neither the pending nor the current password logs in; the password was changed outside SikkerKey', false);
  }

  private async commit(ctx: StepContext, how: 'verified' | 'reconciled'): Promise<StepOutcome> {
    const { run, target } = ctx;
    this.crashHere('before-commit');
    if (run.pending_version === null) throw new SikkerError('ERR_INTERNAL', 'commit without a pending version');
    const previousUser = run.previous_version === null ? null : (target.current_user ?? target.spec.user);
    // replace on the same user: the old password stopped working the moment the new one was set.
    const oldIsDead = run.strategy === 'replace' && previousUser === run.db_user;
    // Labels move with the step's other writes: pending → current, current → previous. The
    // version current as read with the run's lock is what becomes previous; if another writer
    // moved the labels since, the step fails (retryable) and runs again on a fresh reading.
    const previous = target.current_version;
    const pendingVersion = run.pending_version;
    ctx.write(promotePendingWrite(target.secret_id, pendingVersion, oldIsDead, previous));
    const graceOver = previous === null || oldIsDead;
    ctx.write({ name: 'policy-last-run', sql: 'UPDATE policies SET last_run_at = now() WHERE target_id = $1 RETURNING 1', values: [target.target_id] });
    // delivered by PostgreSQL once this transaction has committed, to whoever listens (the benchmark times commits by it)
    ctx.write({ name: 'run-committed-notify', sql: `SELECT pg_notify('${RUN_COMMITTED_CHANNEL}', $1::text)`, values: [run.run_id] });
    if (graceOver) this.finishLeaks(ctx, 'neutralised', null);
    const now = new Date();
    ctx.change(graceOver
      ? { state: 'done', holds_target: false, committed_at: now, finished_at: now, next_action_at: null, command_id: null, error_code: null, error_message: null }
      : { state: 'committed', committed_at: now, command_id: null, failures: 0, next_action_at: new Date(now.getTime() + run.grace_seconds * 1000), error_code: null, error_message: null },
    `committed (${how})`, { version: run.pending_version, previous, graceSeconds: graceOver ? 0 : run.grace_seconds });
    ctx.audit('rotation.commit', 'success', run.pending_version, { how, previous, strategy: run.strategy });
    const announce = await this.deliverToSinks(ctx);
    // a leak run, or a run a leak joined before its commit (leak-service.ts runFor)
    if (run.trigger === 'leak' || ctx.answersLeak) announce.push(...(await this.leakAfterCommit(ctx, previous, oldIsDead)));
    return { again: !graceOver && run.grace_seconds === 0, announce, alert: null };
  }

  /** Sinks get the committed password in the commit's transaction, so they are never skipped, and before any revoke (generation order). */
  private async deliverToSinks(ctx: StepContext): Promise<string[]> {
    const { client, run, target } = ctx;
    if (target.sinks.length === 0 || run.pending_version === null) return [];
    const value = await this.versions.decrypt(client, target.project_id, target.secret_id, run.pending_version);
    try {
      for (const sink of target.sinks) {
        const issued = (await this.runCommands.deliver(client, target, sink, run.pending_version, value.plaintext)).commandId;
        ctx.step('sent to sink', { sink, commandId: issued });
        ctx.audit('secret.deliver', 'issued', run.pending_version, { agent: target.agent_id, commandId: issued, sink });
      }
    } finally {
      zero(value.plaintext);
    }
    return [target.agent_id];
  }

  private async startRevoke(ctx: StepContext): Promise<StepOutcome | null> {
    if (ctx.run.next_action_at !== null && ctx.run.next_action_at.getTime() > Date.now()) return null; // grace not over
    const issued = await this.runCommands.revoke(ctx.client, ctx.run, ctx.target);
    ctx.change({ state: 'revoking', command_id: issued.commandId, next_action_at: new Date(issued.expiresAt.getTime() + COMMAND_MARGIN_MS) },
      'grace over: revoking previous', { commandId: issued.commandId, version: ctx.run.previous_version });
    ctx.audit('rotation.revoke.dispatch', 'issued', ctx.run.previous_version, { commandId: issued.commandId });
    return { again: false, announce: [ctx.target.agent_id], alert: null, waitsFor: ctx.run.command_id };
  }

  private async afterRevoke(ctx: StepContext): Promise<StepOutcome | null> {
    const { run } = ctx;
    const command = await this.waitedCommand(ctx);
    if (command === 'wait') return null;
    if (command !== 'timeout' && command.state === 'succeeded') {
      if (run.previous_version !== null) await this.versions.revoke(ctx.client, ctx.target.secret_id, run.previous_version);
      const now = new Date();
      ctx.change({ state: 'done', holds_target: false, finished_at: now, command_id: null, next_action_at: null }, 'previous revoked', { version: run.previous_version, outcome: command.result?.outcome ?? null });
      ctx.audit('rotation.revoke', 'success', run.previous_version, {});
      this.finishLeaks(ctx, 'neutralised', null);
      // a leak's sessions are ended now that its password no longer logs in (see leakAfterCommit)
      const announce = ctx.answersLeak && run.previous_version !== null && (await this.leakWantsSessionsEnded(ctx)) ? await this.endSessions(ctx, run.previous_version) : [];
      return { again: false, announce, alert: null };
    }
    const failures = run.failures + 1;
    const reason = command === 'timeout' ? 'the agent did not answer' : `${command.error?.code ?? command.state}: ${command.error?.message ?? ''}`;
    ctx.change({ state: 'committed', command_id: null, failures, next_action_at: backoff(await this.retryBase(ctx), failures) }, 'revoke failed; will try again', { reason, failures });
    return { again: false, announce: [], alert: failures === ALERT_AFTER_FAILURES ? ctx.alert('rotation.revoke-stuck', 'ERR_ROTATION_REVOKE', `the previous password still logs in: ${reason}`) : null };
  }

  /** A try that certainly changed nothing: discard its pending version, then a new try with a new password, or park. */
  private async retryOrPark(ctx: StepContext, code: string, message: string, countAsUnreachable: boolean): Promise<StepOutcome> {
    const { run } = ctx;
    if (run.pending_version !== null) await this.versions.revoke(ctx.client, ctx.target.secret_id, run.pending_version);
    if (run.attempt >= run.max_attempts) return this.park(ctx, code, `${message} (after ${run.attempt} attempts)`, false);
    const base = await this.retryBase(ctx);
    // A refused password is retried at once with a new one; anything else backs off with jitter.
    const at = code === 'ERR_APPLIER_REJECTED_PASSWORD' && !countAsUnreachable ? new Date() : backoff(base, run.attempt);
    ctx.change({ state: 'created', attempt: run.attempt + 1, pending_version: null, command_id: null, failures: 0, error_code: code, error_message: message, next_action_at: at },
      'attempt failed; retrying with a new password', { code, message, retryAt: at.toISOString() });
    ctx.audit('rotation.retry', 'failure', run.pending_version, { code, attempt: run.attempt });
    return { again: at.getTime() <= Date.now(), announce: [], alert: null };
  }

  private async park(ctx: StepContext, code: string, message: string, discardPending: boolean): Promise<StepOutcome> {
    const { run } = ctx;
    if (discardPending && run.pending_version !== null) await this.versions.revoke(ctx.client, ctx.target.secret_id, run.pending_version);
    ctx.change({ state: 'parked', holds_target: false, finished_at: new Date(), command_id: null, next_action_at: null, error_code: code, error_message: message }, 'parked', { code, message });
    ctx.audit('rotation.parked', 'failure', run.pending_version, { code });
    this.finishLeaks(ctx, 'exposed', `${code}: ${message}`);
    return { again: false, announce: [], alert: ctx.alert('rotation.parked', code, message) };
  }

  /**
   * Leak response at commit: every older version still marked active is revoked in the
   * vault at once (they no longer log in: earlier rotations replaced or revoked them),
   * except the previous one of dual/alternate, which the revoke step (grace 0, next)
   * removes from the database first. With `kill_sessions`, the previous password's user's
   * live sessions are ended once that password no longer logs in: at commit when the apply
   * replaced it, otherwise right after the revoke step (also for a leak that joined the run
   * after its commit).
   */
  private async leakAfterCommit(ctx: StepContext, previous: number | null, oldIsDead: boolean): Promise<string[]> {
    const { client, run, target } = ctx;
    const keepForRevoke = run.strategy === 'replace' ? null : previous;
    await client.query(
      `UPDATE secret_versions SET state = 'revoked' WHERE secret_id = $1 AND version < $2 AND state = 'active' AND ($3::int IS NULL OR version <> $3::int)`,
      [target.secret_id, run.pending_version, keepForRevoke],
    );
    // Sessions are ended once the leaked password no longer logs in: here when the apply replaced
    // it, else after the revoke (afterRevoke). Ended before that, they could log in again meanwhile.
    if (!oldIsDead || previous === null || !(await this.leakWantsSessionsEnded(ctx))) return [];
    return this.endSessions(ctx, previous);
  }

  /** Whether a leak this run answers asked for the user's live sessions to be ended. */
  private async leakWantsSessionsEnded(ctx: StepContext): Promise<boolean> {
    return (await ctx.client.query<{ kill: boolean | null }>({ name: 'leak-kill-sessions-of-run', text: 'SELECT bool_or(kill_sessions) AS kill FROM leaks WHERE run_id = $1', values: [ctx.run.run_id] })).rows[0]?.kill === true;
  }

  /** Ends the live sessions of the user `version` was the password of (`sessions.terminate`, after the agent's earlier commands). */
  private async endSessions(ctx: StepContext, version: number): Promise<string[]> {
    const { client, run, target } = ctx;
    const user = (await client.query<{ db_user: string | null }>('SELECT db_user FROM secret_versions WHERE secret_id = $1 AND version = $2', [target.secret_id, version])).rows[0]?.db_user ?? target.spec.user;
    const issued = await this.runCommands.terminate(client, run, target, user);
    ctx.step('ending the user\'s live sessions', { commandId: issued.commandId, user });
    ctx.audit('rotation.sessions.terminate', 'issued', version, { commandId: issued.commandId });
    return [target.agent_id];
  }

  /** Closes the leak records this run answers. */
  private finishLeaks(ctx: StepContext, state: 'neutralised' | 'exposed', reason: string | null): void {
    ctx.write({ name: 'leaks-finish', sql: `UPDATE leaks SET state = $2, reason = $3, neutralised_at = CASE WHEN $2 = 'neutralised' THEN now() ELSE NULL END WHERE run_id = $1 AND state = 'open' RETURNING 1`, values: [ctx.run.run_id, state, reason] });
  }

  private async retryBase(ctx: StepContext): Promise<number> {
    return (await ctx.policy())?.spec.retryBaseSeconds ?? 30;
  }

  /** The command the run waits for: finished, still open ('wait'), or open past its deadline ('timeout'). */
  private async waitedCommand(ctx: StepContext): Promise<CommandRow | 'wait' | 'timeout'> {
    const { run } = ctx;
    const reported = run.command_id === null ? undefined : this.reported.get(run.command_id);
    if (reported !== undefined && run.command_id !== null) {
      // Only the target's agent can report on the command (another agent's report is left to the hub, which refuses it too).
      if (reported.agentId !== ctx.target.agent_id) this.reported.delete(run.command_id);
      else {
        const { result, origin } = reported;
        const commandId = run.command_id;
        // Stored and audited with the step's other writes. If it changes nothing, the result was
        // stored meanwhile by another path (and audited there: the agent reports one final result
        // per command): the step fails, so it is not audited twice, and runs again on the stored row.
        ctx.write({
          ...completeCommandWrite(reported.agentId, commandId, result.outcome, result.result, result.error, { evenIfExpired: true }),
          expect: { sql: 'EXISTS (SELECT 1 FROM self)', values: [], error: () => new SikkerError('ERR_CONFLICT', 'the command\'s result was stored meanwhile by another path; the step runs again', { retryable: true }) },
        });
        ctx.auditAs({ identityId: reported.agentId, sourceIp: origin.sourceIp, action: 'agent.command.result', projectId: origin.projectId, outcome: result.outcome, detail: { commandId, code: result.error?.code ?? null } });
        // taken once stored: a step run again (transaction.ts RunAgainError) finds it still here
        ctx.onCommit.push(() => {
          if (this.reported.get(commandId) === reported) this.reported.delete(commandId);
          reported.settle(true);
        });
        return reportedCommand(commandId, reported.agentId, result);
      }
    }
    const command = run.command_id === null ? null : await findCommand(ctx.client, run.command_id);
    if (command === null) return 'timeout';
    if (!OPEN_COMMAND_STATES.has(command.state)) return command;
    return run.next_action_at !== null && run.next_action_at.getTime() <= Date.now() ? 'timeout' : 'wait';
  }

  private crashHere(point: 'before-announce' | 'before-commit'): void {
    if (this.options.crashAt !== point) return;
    this.logger.fatal({ point }, 'SIKKER_TEST_CRASH_AT: killing this process');
    process.kill(process.pid, 'SIGKILL');
  }
}

/** Bounded memo: the oldest entry goes first (a map keeps insertion order). */
function remember<V>(map: Map<string, V>, key: string, value: V, evicted?: (value: V) => void): void {
  map.set(key, value);
  if (map.size <= 10_000) return;
  const [oldestKey, oldest] = map.entries().next().value as [string, V];
  map.delete(oldestKey);
  evicted?.(oldest);
}

/**
 * The command row as the step stored it from `result`. A step reads only the id,
 * state, result, error and deliveries; the rest is filler, never written anywhere.
 */
function reportedCommand(commandId: string, agentId: string, r: CommandResult): CommandRow {
  const now = new Date();
  return {
    command_id: commandId, agent_id: agentId, generation: '0', kind: '', payload: {}, sealed: null, state: r.outcome, issued_by: null,
    issued_at: now, expires_at: now, delivered_at: now, completed_at: now, deliveries: 1, result: r.result, error: r.error,
  };
}

/** Full-jitter exponential backoff from now: uniform in [base, base·2^(n-1)] seconds, capped at an hour. */
function backoff(baseSeconds: number, n: number): Date {
  const ceiling = Math.min(MAX_BACKOFF_SECONDS, baseSeconds * 2 ** Math.max(0, n - 1));
  const seconds = baseSeconds + Math.random() * Math.max(0, ceiling - baseSeconds);
  return new Date(Date.now() + seconds * 1000);
}

/**
 * The locked run, its target and helpers for one step's transaction. The run row's
 * changes, the step records and the audit records are collected and written by
 * {@link flush} just before the commit, in one statement each (the audit chain's head
 * is then locked only for the end of the transaction). The run as changed so far is
 * `run`, in memory; no statement of a step reads the row back.
 */
class StepContext {
  private readonly steps: RunStep[] = [];
  /** The steps flush wrote, in order. */
  readonly written: RunStep[] = [];
  private readonly audits: AuditDraft[] = [];
  /** What to do once this step's transaction committed. */
  readonly onCommit: Array<() => void> = [];
  /** The secret's lock row, when the run's creator took the lock in its transaction (used once, by the pending step). */
  lockedSecret: LockedSecretRead | undefined;
  /** A leak is answered by this run (as the run was locked): its commit revokes older versions and ends sessions as asked. */
  answersLeak = false;
  /** Commands the step's own statements counted as delivered (sent after the commit). */
  readonly claimed: ClaimedDelivery[] = [];
  /** Writes nothing in the step reads back, sent with the run's changes by flush; `then` gets what each did. */
  private readonly writes: Array<{ write: StatementWrite; then?: ((outcome: WriteOutcome) => void) | undefined }> = [];
  /** Changes to the run row, written once by flush (nothing in a step reads the row back). */
  private runChanges: RunChange = {};
  /** The flush carried the transaction's COMMIT: nothing more can be written in it. */
  private committed = false;

  /** `policy`: the target's policy when the caller already read it in this transaction (null: it has none). */
  constructor(readonly client: PoolClient, public run: RunRow, readonly target: TargetRow, private readonly chain: AuditChainWriter, private policyRow?: PolicyRow | null) {}

  async policy(): Promise<PolicyRow | null> {
    if (this.policyRow === undefined) this.policyRow = await findPolicy(this.client, this.target.target_id);
    return this.policyRow;
  }

  /** The step written ahead of this one by whoever created the run in this transaction. */
  begin(step: string, detail: Record<string, unknown>): void {
    this.steps.push({ step, detail, at: new Date() });
  }

  change(change: RunChange, step: string, detail: Record<string, unknown>): void {
    Object.assign(this.runChanges, change);
    this.steps.push({ step, detail, at: new Date() });
    this.run = { ...this.run, ...change };
  }

  step(step: string, detail: Record<string, unknown>): void {
    this.steps.push({ step, detail, at: new Date() });
  }

  audit(action: string, outcome: string, version: number | null, detail: AuditDraft['detail']): void {
    this.notCommitted();
    this.audits.push({
      identityId: this.run.requested_by, sourceIp: null, action, projectId: this.target.project_id, secretId: this.target.secret_id, secretVersion: version,
      outcome, detail: { runId: this.run.run_id, target: this.target.name, ...detail },
    });
  }

  /**
   * A write sent with the run's changes at flush, in the order given. `then` runs once the
   * statement did (it may throw, failing the step, or add an audit record: appended after).
   */
  write(write: StatementWrite, then?: (outcome: WriteOutcome) => void): void {
    this.writes.push({ write, then });
  }

  /** An audit record that is not the run's own (an agent's result stored with the step). */
  auditAs(draft: AuditDraft): void {
    this.notCommitted();
    this.audits.push(draft);
  }

  /** Records added once the flush carried the COMMIT would be written outside the step's transaction: a bug, refused loudly. */
  private notCommitted(): void {
    if (this.committed) throw new SikkerError('ERR_INTERNAL', 'an audit record was added after the step\'s transaction committed');
  }

  /**
   * Writes what the step collected in one statement: the writes, the audit records (`lead`
   * first: the run's creator's) linked onto the chain's head as last known here, then the run's
   * changes and steps (AuditChainWriter.appendWrite, rotation-dal.ts updateRunWithSteps). When
   * the head had moved, or records came from a write's `then`, they are appended after it.
   * `commit`: nothing follows in the transaction, so the COMMIT may travel with the statement
   * (then the head must not have moved, and no `then` may add records).
   */
  async flush(lead: AuditDraft[] = [], options: { commit?: boolean } = {}): Promise<void> {
    const writes = this.writes.splice(0);
    const steps = this.steps.splice(0);
    const audits = [...lead, ...this.audits.splice(0)];
    // With the COMMIT in the same round trip nothing may follow the statement: its records
    // must link onto the head as known here (a moved head fails it: AuditHeadMovedError, and
    // the transaction runs again, then without the COMMIT in the statement: isRunAgain; and
    // for a while no statement carries it, while another writer is busy: inlineAllowed).
    const inline = options.commit === true && !isRunAgain(this.client) && this.chain.inlineAllowed();
    const linked = this.chain.appendWrite(audits, { failIfMoved: inline });
    const commit = inline && (linked !== null || audits.length === 0);
    const outcomes = await updateRunWithSteps(this.client, this.run.run_id, this.runChanges, steps, [...writes.map((w) => w.write), ...(linked === null ? [] : [linked.write])], commit);
    this.written.push(...steps);
    this.runChanges = {};
    this.committed = commit;
    for (const [i, w] of writes.entries()) w.then?.(outcomes[i] ?? { changed: 0 });
    if (linked !== null) await linked.settle(this.client, outcomes[writes.length]?.changed ?? 0);
    else await this.chain.append(this.client, audits);
    await this.chain.append(this.client, this.audits.splice(0));
  }

  alert(event: Alert['event'], code: string, reason: string): Alert {
    return { event, project: this.target.project_name, target: this.target.name, runId: this.run.run_id, code, reason };
  }
}
