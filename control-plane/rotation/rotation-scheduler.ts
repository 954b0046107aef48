import { randomUUID } from 'node:crypto';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import type { Pool } from 'pg';
import type { Logger } from '../../shared/logging/logger.js';
import type { PolicySpec } from '../../shared/protocol/rotation-api.js';
import type { AuditChainWriter } from '../audit/audit-appender.js';
import { withTransaction } from '../db/transaction.js';
import type { RootKeyHolder } from '../vault/root-key-holder.js';
import { addFirstSteps, dueRuns, insertRuns, moveSchedules } from './rotation-dal.js';
import type { RotationEngine } from './rotation-engine.js';
import { nextRun } from './schedule.js';
import { schedulePolicyOf, userForNextRun } from './policy-rules.js';

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
  next_base_at: Date | null;
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
    /** Small catch-up work done on every sweep while unsealed (fingerprints of versions from before they existed). */
    private readonly backfill?: () => Promise<unknown>,
  ) {}

  /** Starts this replica's worker and upserts the one job scheduler (in the background, retried while Redis is away). */
  start(): void {
    // BullMQ's blocking worker needs a connection of its own that retries forever (maxRetriesPerRequest: null).
    this.connection = new Redis(this.options.redisUrl, { maxRetriesPerRequest: null, enableOfflineQueue: true });
    this.connection.on('error', (err: Error) => this.logger.warn({ err: { message: err.message } }, 'Redis connection problem (rotation scheduler)'));
    const prefix = `${this.options.redisPrefix}bull`;
    // Nobody reads the sweep's event stream: keep it short (BullMQ's default is 10,000 events, about 1 MB).
    this.queue = new Queue('rotation', { connection: this.connection, prefix, streams: { events: { maxLen: 100 } } });
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
    // New runs beyond one batch wait for the next sweeps (their next_action_at is now), so a burst never blocks claiming.
    const due = await dueRuns(this.pool, RUN_BATCH);
    await this.backfill?.().catch((err: unknown) => this.logger.warn({ err }, 'fingerprint backfill failed; retrying next sweep'));
    const ids = [...new Set([...created.slice(0, RUN_BATCH), ...due])].slice(0, RUN_BATCH * 2);
    await runLimited(ids, ADVANCE_CONCURRENCY, (id) => this.engine.advance(id));
  }

  private async claimDuePolicies(): Promise<{ claimed: number; runs: string[] }> {
    return withTransaction(this.pool, this.logger, async (client) => {
      const due = (await client.query<DuePolicyRow>(
        `SELECT p.target_id, t.project_id, t.secret_id, p.spec, p.next_run_at, p.next_base_at, p.last_run_at, t.spec->>'user' AS user, t.alternate_user,
                v.version AS current_version, v.db_user AS current_user
           FROM policies p
           JOIN targets t ON t.target_id = p.target_id
           LEFT JOIN secret_versions v ON v.secret_id = t.secret_id AND v.label = 'current'
          WHERE p.state = 'active' AND p.next_run_at <= now()
          ORDER BY p.next_run_at
          LIMIT $1
          FOR UPDATE OF p SKIP LOCKED`, [CLAIM_BATCH],
      )).rows;
      if (due.length === 0) return { claimed: 0, runs: [] };
      const now = new Date();
      const planned = due.map((policy) => ({ policy, run: {
        runId: randomUUID(), targetId: policy.target_id, projectId: policy.project_id, trigger: 'schedule' as const, scheduledFor: policy.next_run_at,
        strategy: policy.spec.strategy, graceSeconds: policy.spec.graceSeconds, dbUser: userForNextRun({ ...policy, strategy: policy.spec.strategy }),
        maxAttempts: policy.spec.maxAttempts, previousVersion: policy.current_version, requestedBy: null,
      } }));
      // Set-based: a thousand policies due at the same instant cost a handful of statements, not thousands.
      const inserted = new Set(await insertRuns(client, planned.map((p) => p.run)));
      const started = planned.filter((p) => inserted.has(p.run.runId));
      if (started.length < planned.length) this.logger.info({ joined: planned.length - started.length }, 'targets with a rotation already in flight: their scheduled one joins it');
      await addFirstSteps(client, started.map((p) => ({ runId: p.run.runId, detail: { trigger: 'schedule', scheduledFor: p.policy.next_run_at.toISOString() } })));
      if (started.length > 0) {
        await this.chain.append(client, started.map((p) => ({
          identityId: null, sourceIp: null, action: 'rotation.start', projectId: p.policy.project_id, secretId: p.policy.secret_id, outcome: 'success', detail: { runId: p.run.runId, trigger: 'schedule' },
        })));
      }
      // every N: on from the base this run was due at, so its lateness and jitter do not carry over
      await moveSchedules(client, due.map((policy) => ({ targetId: policy.target_id, next: nextRun(schedulePolicyOf(policy.spec), now, Math.random, now, policy.next_base_at ?? policy.next_run_at) })));
      const runs = started.map((p) => p.run.runId);
      return { claimed: due.length, runs };
    });
  }
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
