import type { Pool } from 'pg';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import type { Logger } from '../../shared/logging/logger.js';
import type { PolicySpec } from '../../shared/protocol/rotation-api.js';
import type { AuditChainWriter } from '../audit/audit-appender.js';
import { withTransaction } from '../db/transaction.js';
import type { AuthIdentity } from '../identity/identity-types.js';
import { checkPolicy, requirePreflight, schedulePolicyOf } from './policy-rules.js';
import { findPolicy, upsertPolicy, type NextRun, type PolicyRow, type TargetRow } from './rotation-dal.js';
import { nextRun } from './schedule.js';
import type { TargetService } from './target-service.js';

/** Rotation policies: one per target. `next_run_at` in PostgreSQL is the schedule of record. */
export class PolicyService {
  constructor(
    private readonly pool: Pool,
    private readonly targets: TargetService,
    private readonly chain: AuditChainWriter,
    private readonly logger: Logger,
  ) {}

  async show(caller: AuthIdentity, project: string, targetName: string): Promise<{ target: TargetRow; policy: PolicyRow }> {
    const target = await this.targets.resolve(caller, project, targetName, 'target.read');
    return { target, policy: await this.require(target) };
  }

  /**
   * Sets (or replaces) a target's policy. An active policy needs a passing preflight
   * that offers its strategy. The first rotation is `nextRunAt` when given, otherwise
   * one interval (or cron occurrence) from now, inside the window, with jitter.
   */
  async set(caller: AuthIdentity, sourceIp: string, project: string, targetName: string, spec: PolicySpec, options: { paused: boolean; nextRunAt?: string | undefined }): Promise<PolicyRow> {
    const target = await this.targets.resolve(caller, project, targetName, 'target.write');
    checkPolicy(spec, target, !options.paused);
    const next = options.nextRunAt === undefined ? nextRun(schedulePolicyOf(spec), new Date(), Math.random) : chosen(options.nextRunAt);
    const state = options.paused ? 'paused' : 'active';
    await withTransaction(this.pool, this.logger, async (client) => {
      await upsertPolicy(client, { targetId: target.target_id, spec, state, next, updatedBy: caller.identityId });
      await this.chain.append(client, [{
        identityId: caller.identityId, sourceIp, action: 'policy.set', projectId: target.project_id, secretId: target.secret_id, outcome: 'success',
        detail: { target: targetName, strategy: spec.strategy, schedule: spec.schedule.kind === 'every' ? `every ${spec.schedule.seconds}s` : spec.schedule.expression, timeZone: spec.timeZone, state, nextRunAt: next.at.toISOString() },
      }]);
    });
    return this.require(target);
  }

  async pause(caller: AuthIdentity, sourceIp: string, project: string, targetName: string): Promise<PolicyRow> {
    return this.change(caller, sourceIp, project, targetName, 'policy.pause', async (target, policy) => {
      void target;
      return { state: 'paused', next: keptNext(policy) };
    });
  }

  /**
   * Resumes; a `next_run_at` that passed while paused becomes the next occurrence from now
   * (no burst of catch-up runs; an `every` schedule keeps its steps: nextRun).
   */
  async resume(caller: AuthIdentity, sourceIp: string, project: string, targetName: string): Promise<PolicyRow> {
    return this.change(caller, sourceIp, project, targetName, 'policy.resume', async (target, policy) => {
      requirePreflight(target, policy.spec.strategy);
      const kept = keptNext(policy);
      if (kept !== null && kept.at.getTime() > Date.now()) return { state: 'active', next: kept };
      return { state: 'active', next: nextRun(schedulePolicyOf(policy.spec), new Date(), Math.random, policy.last_run_at ?? undefined, kept?.base) };
    });
  }

  /** A DBA moves the next rotation (e.g. out of a freeze). The schedule continues from that rotation. */
  async setNextRun(caller: AuthIdentity, sourceIp: string, project: string, targetName: string, at: string): Promise<PolicyRow> {
    return this.change(caller, sourceIp, project, targetName, 'policy.next', async (_target, policy) => ({ state: policy.state, next: chosen(at) }));
  }

  private async change(caller: AuthIdentity, sourceIp: string, project: string, targetName: string, action: string,
    decide: (target: TargetRow, policy: PolicyRow) => Promise<{ state: 'active' | 'paused'; next: NextRun | null }>): Promise<PolicyRow> {
    const target = await this.targets.resolve(caller, project, targetName, 'target.write');
    await withTransaction(this.pool, this.logger, async (client) => {
      const policy = (await client.query<PolicyRow>('SELECT * FROM policies WHERE target_id = $1 FOR UPDATE', [target.target_id])).rows[0];
      if (policy === undefined) throw new SikkerError('ERR_NOT_FOUND', `target "${targetName}" has no policy (sikker policy set)`);
      const next = await decide(target, policy);
      await client.query('UPDATE policies SET state = $2, next_run_at = $3, next_base_at = $4, updated_by = $5, updated_at = now() WHERE target_id = $1',
        [target.target_id, next.state, next.next?.at ?? null, next.next?.base ?? null, caller.identityId]);
      await this.chain.append(client, [{
        identityId: caller.identityId, sourceIp, action, projectId: target.project_id, secretId: target.secret_id, outcome: 'success',
        detail: { target: targetName, state: next.state, nextRunAt: next.next?.at.toISOString() ?? null },
      }]);
    });
    return this.require(target);
  }

  private async require(target: TargetRow): Promise<PolicyRow> {
    const policy = await findPolicy(this.pool, target.target_id);
    if (policy === null) throw new SikkerError('ERR_NOT_FOUND', `target "${target.name}" has no policy (sikker policy set)`);
    return policy;
  }
}

/** The policy's next rotation as it stands (a row from before `next_base_at` was kept: its own base). */
function keptNext(policy: PolicyRow): NextRun | null {
  return policy.next_run_at === null ? null : { at: policy.next_run_at, base: policy.next_base_at ?? policy.next_run_at };
}

/** A next rotation a DBA chose: the schedule steps on from it (it is its own base). */
function chosen(iso: string): NextRun {
  const at = futureDate(iso);
  return { at, base: at };
}

function futureDate(iso: string): Date {
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) throw new SikkerError('ERR_VALIDATION', 'nextRunAt: not a date');
  if (at.getTime() < Date.now() - 60_000) throw new SikkerError('ERR_VALIDATION', 'nextRunAt: must not be in the past');
  if (at.getTime() > Date.now() + 10 * 365 * 86_400_000) throw new SikkerError('ERR_VALIDATION', 'nextRunAt: more than ten years ahead');
  return at;
}
