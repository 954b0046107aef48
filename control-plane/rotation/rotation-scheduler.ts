import { randomUUID } from 'node:crypto';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import type { Pool } from 'pg';
import type { Logger } from '../../shared/logging/logger.js';
import type { PolicySpec } from '../../shared/protocol/rotation-api.js';
import type { AuditChainWriter } from '../audit/audit-appender.js';
import { withTransaction } from '../db/transaction.js';
import type { RootKeyHolder } from '../vault/root-key-holder.js';
import { addStep, dueRuns, insertRun } from './rotation-dal.js';
import type { RotationEngine } from './rotation-engine.js';
import { nextRunAt } from './schedule.js';
import { schedulePolicyOf } from './policy-rules.js';

/** Due policies claimed per transaction, and runs advanced per sweep. */
const CLAIM_BATCH = 500;
const RUN_BATCH = 200;
/** Runs advanced at once by one sweep (each holds a PostgreSQL connection while it steps). */
const ADVANCE_CONCURRENCY = 8;

interface DuePolicyRow {
  target_id: string;
  project_id: string;
  secret_id: string;
  spec: PolicySpec;
  next_run_at: Date;
  last_run_at: Date | null;
  user: string;
  alternate_user: string | null;
  current_version: number | null;
  current_user: string | null;
}

/**
 * Turns due schedules into runs, and wakes runs whose `next_action_at` has come.
 *
 * Schedules live in PostgreSQL (`policies.next_run_at`, the state of record), not one
 * BullMQ job scheduler per policy: Redis holds one job scheduler in all — the sweep —
 * upserted idempotently at every start, so 100,000 policies cost Redis nothing per
 * policy and a restart can neither add a rotation nor move one. Claiming a due policy
 * creates its run and moves `next_run_at` in one transaction (FOR UPDATE SKIP LOCKED:
 * replicas share the work, never double it); a target that already has a run in
 * flight gets no second one.
 */
export class RotationScheduler {
  private queue: Queue | null = null;
  private worker: Worker | null = null;
  private connection: Redis | null = null;
  private sweeping: Promise<void> | null = null;
  private closed = false;

  constructor(
    private readonly pool: Pool,
    private readonly chain: AuditChainWriter,
    private readonly engine: RotationEngine,
    private readonly root: RootKeyHolder,
    private readonly logger: Logger,
    private readonly options: { redisUrl: string; redisPrefix: string; sweepMs: number },
  ) {}

  /** Starts this replica's worker and upserts the one job scheduler (in the background, retried while Redis is away). */
  start(): void {
    // BullMQ's blocking worker needs a connection of its own that retries forever (maxRetriesPerRequest: null).
    this.connection = new Redis(this.options.redisUrl, { maxRetriesPerRequest: null, enableOfflineQueue: true });
    this.connection.on('error', (err: Error) => this.logger.warn({ err: { message: err.message } }, 'Redis connection problem (rotation scheduler)'));
    const prefix = `${this.options.redisPrefix}bull`;
    this.queue = new Queue('rotation', { connection: this.connection, prefix });
    this.queue.on('error', (err) => this.logger.warn({ err: { message: err.message } }, 'rotation queue error'));
    this.worker = new Worker('rotation', async () => this.sweep(), { connection: this.connection, prefix, concurrency: 1 });
    this.worker.on('error', (err) => this.logger.warn({ err: { message: err.message } }, 'rotation sweep worker error'));
    void this.upsertScheduler();
  }

  private async upsertScheduler(): Promise<void> {
    while (this.queue !== null && !this.closed) {
      try {
        // Idempotent: every replica and every restart upserts the same scheduler id with the same settings.
        await this.queue.upsertJobScheduler('rotation-sweep', { every: this.options.sweepMs }, { name: 'sweep', data: {}, opts: { removeOnComplete: true, removeOnFail: 50 } });
        return;
      } catch (err) {
        this.logger.warn({ err: { message: (err as Error).message } }, 'could not upsert the rotation sweep job scheduler; retrying in 5 s');
        await new Promise((resolve) => setTimeout(resolve, 5000).unref());
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    // Bounded: with Redis gone, BullMQ's close would wait for it forever.
    await bounded(this.worker?.close(true), 3000);
    await bounded(this.queue?.close(), 2000);
    this.connection?.disconnect();
    await bounded(this.sweeping ?? undefined, 5000);
  }

  /** One pass: due policies become runs, due runs advance. Also called directly by tests. */
  sweep(): Promise<void> {
    this.sweeping ??= this.sweepOnce().finally(() => {
      this.sweeping = null;
    });
    return this.sweeping;
  }

  private async sweepOnce(): Promise<void> {
    if (this.root.isSealed()) return; // nothing can be encrypted or signed
    const created: string[] = [];
    for (;;) {
      const batch = await this.claimDuePolicies();
      created.push(...batch.runs);
      if (batch.claimed < CLAIM_BATCH) break;
    }
    const due = await dueRuns(this.pool, RUN_BATCH);
    const ids = [...new Set([...created, ...due])];
    await runLimited(ids, ADVANCE_CONCURRENCY, (id) => this.engine.advance(id));
  }

  private async claimDuePolicies(): Promise<{ claimed: number; runs: string[] }> {
    return withTransaction(this.pool, this.logger, async (client) => {
      const due = (await client.query<DuePolicyRow>(
        `SELECT p.target_id, t.project_id, t.secret_id, p.spec, p.next_run_at, p.last_run_at, t.spec->>'user' AS user, t.alternate_user,
                v.version AS current_version, v.db_user AS current_user
           FROM policies p
           JOIN targets t ON t.target_id = p.target_id
           LEFT JOIN secret_versions v ON v.secret_id = t.secret_id AND v.label = 'current'
          WHERE p.state = 'active' AND p.next_run_at <= now()
          ORDER BY p.next_run_at
          LIMIT $1
          FOR UPDATE OF p SKIP LOCKED`, [CLAIM_BATCH],
      )).rows;
      const runs: string[] = [];
      const now = new Date();
      for (const policy of due) {
        const runId = randomUUID();
        const inserted = await insertRun(client, {
          runId, targetId: policy.target_id, projectId: policy.project_id, trigger: 'schedule', scheduledFor: policy.next_run_at,
          strategy: policy.spec.strategy, graceSeconds: policy.spec.graceSeconds, dbUser: userForNextRun({ ...policy, strategy: policy.spec.strategy }),
          maxAttempts: policy.spec.maxAttempts, previousVersion: policy.current_version, requestedBy: null,
        });
        if (inserted) {
          runs.push(runId);
          await addStep(client, runId, 'created', { trigger: 'schedule', scheduledFor: policy.next_run_at.toISOString() });
          await this.chain.append(client, [{ identityId: null, sourceIp: null, action: 'rotation.start', projectId: policy.project_id, secretId: policy.secret_id, outcome: 'success', detail: { runId, trigger: 'schedule' } }]);
        }
        else this.logger.info({ targetId: policy.target_id }, 'a rotation is already in flight for this target; the scheduled one joins it');
        const next = nextRunAt(schedulePolicyOf(policy.spec), now, Math.random, now);
        await client.query('UPDATE policies SET next_run_at = $2 WHERE target_id = $1', [policy.target_id, next]);
      }
      return { claimed: due.length, runs };
    });
  }
}

/** `alternate`: the user that is not current now; otherwise the target's user. */
export function userForNextRun(t: { strategy: PolicySpec['strategy']; user: string; alternate_user: string | null; current_user: string | null }): string {
  if (t.strategy !== 'alternate' || t.alternate_user === null) return t.user;
  return (t.current_user ?? t.alternate_user) === t.user ? t.alternate_user : t.user;
}

async function bounded(work: Promise<unknown> | undefined, ms: number): Promise<void> {
  if (work === undefined) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([work.catch(() => undefined), new Promise((resolve) => { timer = setTimeout(resolve, ms); })]);
  clearTimeout(timer);
}

async function runLimited<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next] as T;
      next += 1;
      await work(item);
    }
  });
  await Promise.all(lanes);
}
