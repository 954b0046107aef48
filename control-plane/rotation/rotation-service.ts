import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import type { Logger } from '../../shared/logging/logger.js';
import { requireProjectAction } from '../auth/authorize.js';
import { withTransactionFrom } from '../db/transaction.js';
import type { AuthIdentity } from '../identity/identity-types.js';
import type { ProjectService } from '../vault/project-service.js';
import { lockSecretStatement, type LockedSecretRow } from '../vault/version-store.js';
import { requirePreflight } from './policy-rules.js';
import { findRun, findTargetByIdStatement, insertRunStatement, listRuns, openRunOf, runSteps, findTargetById, type RunRow, type RunStepRecord, type TargetRow } from './rotation-dal.js';
import type { RotationEngine } from './rotation-engine.js';
import { userForNextRun } from './policy-rules.js';
import type { TargetService } from './target-service.js';

export interface RunWithTarget {
  run: RunRow;
  target: TargetRow;
}

/** Manual rotations and the record of runs. */
export class RotationService {
  constructor(
    private readonly pool: Pool,
    private readonly projects: ProjectService,
    private readonly targets: TargetService,
    private readonly engine: RotationEngine,
    private readonly logger: Logger,
  ) {}

  /**
   * Starts a rotation now (ignoring the window). When a run is already in flight for
   * the target — a scheduled one that started the same instant, say — that run is
   * returned (`joined`), never a second one. `steps`: the new run's steps, when this call
   * started it (a joined run's are read by the caller).
   */
  async rotateNow(caller: AuthIdentity, sourceIp: string, project: string, targetName: string): Promise<{ run: RunWithTarget; joined: boolean; steps?: RunStepRecord[] }> {
    const { target, policy } = await this.targets.resolveWithPolicy(caller, project, targetName, 'rotation.run');
    const strategy = policy?.spec.strategy ?? 'replace';
    requirePreflight(target, strategy);
    const runId = randomUUID();
    const newRun = {
      runId, targetId: target.target_id, projectId: target.project_id, trigger: 'manual' as const, scheduledFor: null, strategy,
      graceSeconds: policy?.spec.graceSeconds ?? 0, dbUser: userForNextRun({ strategy, user: target.spec.user, alternate_user: target.alternate_user, current_version: target.current_version, current_user: target.current_user }),
      maxAttempts: policy?.spec.maxAttempts ?? 5, previousVersion: target.current_version, requestedBy: caller.identityId,
    };
    // BEGIN, the run's insert, the target read after it (a run that held the target may have
    // committed while the insert waited) and the secret's lock in one round trip
    const first = [insertRunStatement(newRun), findTargetByIdStatement(target.target_id), lockSecretStatement(target.project_id, target.secret_id, target.current_version)];
    const started = await withTransactionFrom(this.pool, this.logger, first, async (client, [runs, targets, secrets]) => {
      const run = (runs?.[0] ?? null) as RunRow | null;
      if (run === null) return null;
      // The run, its pending version, the apply command and the audit records commit together; the agent is told after.
      return this.engine.startWithin(client, run, {
        step: 'created', detail: { trigger: 'manual' },
        audits: [{ identityId: caller.identityId, sourceIp, action: 'rotation.start', projectId: target.project_id, secretId: target.secret_id, outcome: 'success', detail: { runId, target: targetName, trigger: 'manual' } }],
      }, { policy, target: (targets?.[0] ?? null) as TargetRow | null, secret: { read: target.current_version, row: secrets?.[0] as LockedSecretRow | undefined } });
    });
    if (started === null) {
      const open = await openRunOf(this.pool, target.target_id);
      if (open === null) throw new SikkerError('ERR_ROTATION_IN_FLIGHT', 'a run just finished for this target; try again', { retryable: true });
      return { run: { run: open, target }, joined: true };
    }
    this.engine.afterCommit(started, started.run.run_id);
    // The run and its steps as the transaction left them (no second read while the agent works:
    // the run is new, so its steps are exactly those, numbered from 1).
    const steps = started.steps.map((s, i) => ({ seq: i + 1, step: s.step, at: s.at, detail: JSON.parse(JSON.stringify(s.detail)) as Record<string, unknown> }));
    return { run: { run: started.run, target: started.target }, joined: false, steps };
  }

  async show(caller: AuthIdentity, project: string, runId: string): Promise<RunWithTarget> {
    const p = await this.projects.resolve(caller, project);
    requireProjectAction(caller, 'target.read', p.project_id);
    const run = await findRun(this.pool, runId);
    if (run === null || run.project_id !== p.project_id) throw new SikkerError('ERR_NOT_FOUND', `no run ${runId} in project "${project}"`);
    const target = await findTargetById(this.pool, run.target_id);
    if (target === null) throw new SikkerError('ERR_INTERNAL', 'a run refers to a missing target');
    return { run, target };
  }

  async steps(runId: string): Promise<RunStepRecord[]> {
    return runSteps(this.pool, runId);
  }

  async list(caller: AuthIdentity, project: string, targetName: string | undefined, limit: number): Promise<RunWithTarget[]> {
    const p = await this.projects.resolve(caller, project);
    requireProjectAction(caller, 'target.read', p.project_id);
    const target = targetName === undefined ? null : await this.targets.resolve(caller, project, targetName, 'target.read');
    const runs = await listRuns(this.pool, p.project_id, target?.target_id ?? null, limit);
    const byId = new Map<string, TargetRow>();
    const out: RunWithTarget[] = [];
    for (const run of runs) {
      let t = byId.get(run.target_id) ?? null;
      if (t === null) {
        t = await findTargetById(this.pool, run.target_id);
        if (t !== null) byId.set(run.target_id, t);
      }
      if (t !== null) out.push({ run, target: t });
    }
    return out;
  }
}
