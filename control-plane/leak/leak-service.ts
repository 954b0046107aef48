import { randomUUID } from 'node:crypto';
import type { Pool, PoolClient } from 'pg';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import type { Logger } from '../../shared/logging/logger.js';
import type { AuditChainWriter } from '../audit/audit-appender.js';
import type { AuditDraft } from '../audit/audit-types.js';
import { requireProjectAction } from '../auth/authorize.js';
import { withTransaction } from '../db/transaction.js';
import type { AuthIdentity } from '../identity/identity-types.js';
import { addSteps, findPolicy, insertRun, openRunOf, type PolicyRow, type RunRow, type TargetRow } from '../rotation/rotation-dal.js';
import type { RotationEngine } from '../rotation/rotation-engine.js';
import { userForNextRun } from '../rotation/policy-rules.js';
import type { ProjectService } from '../vault/project-service.js';
import type { FingerprintService } from './fingerprint-service.js';
import { leakReport, type LeakReport } from './leak-report.js';

/** Targets of a project leak started at once (each holds a PostgreSQL connection while it starts). */
const PROJECT_LEAK_CONCURRENCY = 8;

export interface LeakOptions {
  killSessions: boolean;
}

/** What one `leak` call started: a leak per matched secret (a value may match none). */
export interface LeakStarted {
  matched: boolean;
  leaks: Array<{ leakId: string; project: string; secret: string; version: number; target: string | null; runId: string | null; joined: boolean }>;
}

/**
 * Leak response: marks the leaked version, rotates at once (windows ignored, no grace),
 * revokes every older version, optionally ends the user's sessions, and reports who
 * could hold the value. A leaked value is found by keyed fingerprint, never by
 * decrypting secrets. The work happens in the rotation engine (trigger `leak`); the
 * leak record follows its run to `neutralised` or `exposed`.
 */
export class LeakService {
  constructor(
    private readonly pool: Pool,
    private readonly projects: ProjectService,
    private readonly fingerprints: FingerprintService,
    private readonly engine: RotationEngine,
    private readonly chain: AuditChainWriter,
    private readonly logger: Logger,
  ) {}

  /** By name: the current version, or `version`. */
  async byName(caller: AuthIdentity, sourceIp: string, projectName: string, secret: string, version: number | undefined, options: LeakOptions): Promise<LeakStarted> {
    const project = await this.projects.resolve(caller, projectName);
    requireProjectAction(caller, 'leak.respond', project.project_id);
    const row = (await this.pool.query<{ secret_id: string; version: number }>(
      `SELECT s.secret_id, v.version FROM secrets s JOIN secret_versions v ON v.secret_id = s.secret_id
        WHERE s.project_id = $1 AND s.name = $2 AND ($3::int IS NULL AND v.label = 'current' OR v.version = $3::int)`, [project.project_id, secret, version ?? null],
    )).rows[0];
    if (row === undefined) throw new SikkerError('ERR_NOT_FOUND', `no secret "${secret}"${version === undefined ? ' with a current version' : ` version ${version}`} in project "${projectName}"`);
    return { matched: true, leaks: [await this.start(caller, sourceIp, project.project_id, projectName, row.secret_id, secret, row.version, 'name', options)] };
  }

  /** By the leaked value itself, matched by fingerprint in the caller's projects (or one). */
  async byValue(caller: AuthIdentity, sourceIp: string, value: string, projectName: string | undefined, options: LeakOptions): Promise<LeakStarted> {
    const matches = await this.fingerprints.match(caller, sourceIp, [value], projectName);
    const leaks: LeakStarted['leaks'] = [];
    for (const m of matches) {
      requireProjectAction(caller, 'leak.respond', m.projectId);
      leaks.push(await this.start(caller, sourceIp, m.projectId, m.project, m.secretId, m.secret, m.version, 'value', options));
    }
    return { matched: matches.length > 0, leaks };
  }

  /** Every target of a project: each current version treated as leaked. */
  async wholeProject(caller: AuthIdentity, sourceIp: string, projectName: string, options: LeakOptions): Promise<LeakStarted> {
    const project = await this.projects.resolve(caller, projectName);
    requireProjectAction(caller, 'leak.respond', project.project_id);
    const rows = (await this.pool.query<{ secret_id: string; name: string; version: number }>(
      `SELECT s.secret_id, s.name, v.version FROM targets t JOIN secrets s ON s.secret_id = t.secret_id
         JOIN secret_versions v ON v.secret_id = s.secret_id AND v.label = 'current' WHERE t.project_id = $1 ORDER BY t.name`, [project.project_id],
    )).rows;
    // Bounded concurrency: each start is a short transaction plus the dispatch; the agents then work in parallel.
    const leaks: LeakStarted['leaks'] = new Array(rows.length);
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < rows.length) {
        const i = next;
        next += 1;
        const r = rows[i] as (typeof rows)[number];
        leaks[i] = await this.start(caller, sourceIp, project.project_id, projectName, r.secret_id, r.name, r.version, 'name', options, false);
      }
    };
    await Promise.all(Array.from({ length: Math.min(PROJECT_LEAK_CONCURRENCY, rows.length) }, lane));
    // New runs were dispatched as they started. Runs that were already in flight (hurried to
    // grace 0) are advanced in the background, so the answer does not wait for them; the sweep
    // picks up any this process does not get to.
    const joined = [...new Set(leaks.filter((l) => l.joined).map((l) => l.runId).filter((id): id is string => id !== null))];
    void this.advanceAll(joined);
    return { matched: rows.length > 0, leaks };
  }

  async report(caller: AuthIdentity, projectName: string, leakId: string): Promise<LeakReport> {
    const project = await this.projects.resolve(caller, projectName);
    requireProjectAction(caller, 'leak.respond', project.project_id);
    const report = await leakReport(this.pool, leakId);
    if (report === null || report.projectId !== project.project_id) throw new SikkerError('ERR_NOT_FOUND', `no leak ${leakId} in project "${projectName}"`);
    return report;
  }

  private async advanceAll(runIds: string[]): Promise<void> {
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < runIds.length) {
        const runId = runIds[next] as string;
        next += 1;
        await this.engine.advance(runId).catch((err: unknown) => this.logger.warn({ err, runId }, 'could not dispatch a leak run; the sweep will'));
      }
    };
    await Promise.all(Array.from({ length: Math.min(PROJECT_LEAK_CONCURRENCY, runIds.length) }, lane));
  }

  private async start(caller: AuthIdentity, sourceIp: string, projectId: string, project: string, secretId: string, secret: string, version: number, foundBy: 'name' | 'value', options: LeakOptions, dispatchNow = true): Promise<LeakStarted['leaks'][number]> {
    const leakId = randomUUID();
    const started = await withTransaction(this.pool, this.logger, async (client) => {
      await client.query('SELECT 1 FROM secrets WHERE secret_id = $1 FOR UPDATE', [secretId]);
      const target = (await client.query<TargetRow>(`SELECT t.*, v.version AS current_version, v.db_user AS current_user FROM targets t
        LEFT JOIN secret_versions v ON v.secret_id = t.secret_id AND v.label = 'current' WHERE t.secret_id = $1`, [secretId])).rows[0] ?? null;
      const state = (await client.query<{ state: string }>('UPDATE secret_versions SET leaked_at = COALESCE(leaked_at, now()) WHERE secret_id = $1 AND version = $2 RETURNING state', [secretId, version])).rows[0]?.state;
      let run: { runId: string | null; joined: boolean; neutralised: boolean; reason: string | null; created?: { run: RunRow; policy: PolicyRow | null } } = { runId: null, joined: false, neutralised: false, reason: null };
      if (state === 'revoked' && (target === null || target.current_version !== version)) run = { ...run, neutralised: true, reason: 'the version was already revoked' };
      else if (target === null) run = { ...run, reason: 'this secret is not rotated by SikkerKey (no target): change it by hand' };
      else run = { ...(await this.runFor(client, caller, target, version)), neutralised: false, reason: null };
      await client.query(
        `INSERT INTO leaks (leak_id, project_id, secret_id, target_id, leaked_version, found_by, kill_sessions, run_id, state, reason, reported_by, neutralised_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, CASE WHEN $9 = 'neutralised' THEN now() END)`,
        [leakId, projectId, secretId, target?.target_id ?? null, version, foundBy, options.killSessions, run.runId,
          run.neutralised ? 'neutralised' : run.runId === null ? 'exposed' : 'open', run.reason, caller.identityId],
      );
      // One append, the last statement: the chain's head is locked from there to the commit. A
      // new run is started last, its records appended with this one: its apply command takes the
      // agent's row lock (generation order), held until the commit, so as little as possible comes after it.
      const leaked: AuditDraft = { identityId: caller.identityId, sourceIp, action: 'secret.leaked', projectId, secretId, secretVersion: version, outcome: 'success', detail: { leakId, foundBy, runId: run.runId, killSessions: options.killSessions } };
      const started = run.created === undefined ? undefined
        : await this.engine.startWithin(client, run.created.run, { step: 'created', detail: { trigger: 'leak', leakedVersion: version }, audits: [leaked] }, { policy: run.created.policy });
      if (started === undefined) await this.chain.append(client, [leaked]);
      return { runId: run.runId, joined: run.joined, started, target: target?.name ?? null };
    });
    if (started.started !== undefined) this.engine.afterCommit(started.started, started.started.run.run_id); // a new run: tell its agent
    else if (started.runId !== null && started.joined && dispatchNow) await this.engine.advance(started.runId);
    return { leakId, project, secret, version, target: started.target, runId: started.runId, joined: started.joined };
  }

  /**
   * The run that neutralises the leak: a new `leak` run (no grace), or the run already
   * holding the target, hurried (grace 0). A run whose pending version IS the leaked one
   * cannot answer it.
   */
  private async runFor(client: PoolClient, caller: AuthIdentity, target: TargetRow, leaked: number): Promise<{ runId: string; joined: boolean; created?: { run: RunRow; policy: PolicyRow | null } }> {
    const open = await openRunOf(client, target.target_id);
    if (open !== null) {
      if (open.pending_version === leaked) throw new SikkerError('ERR_ROTATION_IN_FLIGHT', `the leaked version is the one run ${open.run_id} is putting in place; run the leak again when it ends`, { retryable: true });
      // Only while it still holds the target: a run that finished after openRunOf read it
      // (this UPDATE waited for its row) would never answer the leak; a new run does then.
      const hurried = await client.query(`UPDATE rotation_runs SET grace_seconds = 0, next_action_at = CASE WHEN state = 'committed' THEN now() ELSE next_action_at END
                                           WHERE run_id = $1 AND holds_target RETURNING 1`, [open.run_id]);
      if (hurried.rowCount === 1) {
        await addSteps(client, open.run_id, [{ step: 'leak reported: grace cut to 0', detail: { leakedVersion: leaked }, at: new Date() }]);
        return { runId: open.run_id, joined: true };
      }
    }
    const policy = await findPolicy(client, target.target_id);
    const strategy = policy?.spec.strategy ?? 'replace';
    const runId = randomUUID();
    const run = await insertRun(client, {
      runId, targetId: target.target_id, projectId: target.project_id, trigger: 'leak', scheduledFor: null, strategy, graceSeconds: 0,
      dbUser: userForNextRun({ strategy, user: target.spec.user, alternate_user: target.alternate_user, current_version: target.current_version, current_user: target.current_user }),
      maxAttempts: policy?.spec.maxAttempts ?? 5, previousVersion: target.current_version, requestedBy: caller.identityId,
    });
    if (run === null) throw new SikkerError('ERR_ROTATION_IN_FLIGHT', 'a rotation of this target started at the same moment; run the leak again', { retryable: true });
    return { runId, joined: false, created: { run, policy } }; // the caller starts it (startWithin)
  }
}
