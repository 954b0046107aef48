/**
 * Benchmark `schedules`: 100,000 rotation policies scheduled at once — what they cost
 * in Redis, and how late the due ones start.
 *
 * - The control plane is the real program as a child process on a fresh database and
 *   Redis prefix, SIKKER_ROTATION_SWEEP_MS=250 (SWEEP_MS; SIKKER_BENCH_CP_ENV overrides
 *   it, and the result says which was used), SIKKER_LOG_LEVEL=warn, initialised
 *   through its API with project `bench`.
 * - One agent identity, inserted as enrollment would write it (test/support/agents.ts
 *   insertAgents); it never connects: a due run stores its pending version, issues its
 *   apply command and waits for the agent — enough to measure when runs start.
 * - DUE_POLICIES targets are added through the API (POST …/targets with adoptPassword),
 *   so their secrets have real data keys and a current version, and the runs that
 *   become due can encrypt and seal. The other ones are bulk-inserted with SQL (secrets,
 *   targets, policies; see insertBulk for why their wrapped data keys are placeholders).
 *   Every policy: PolicySpec defaults with `every 86400 s`, state active; the bulk is due
 *   2–26 h from now, never during the benchmark.
 * - Measurement starts once all 100,000 exist: the due policies get next_run_at spread
 *   evenly over WINDOW_MS, starting LEAD_MS after the start. After the window (plus
 *   SETTLE_MS), lateness = rotation_runs.created_at − scheduled_for per due policy.
 * - Redis: the sum of `MEMORY USAGE … SAMPLES 0` over the control plane's prefix,
 *   before the bulk insert and after the window (the scheduler has run throughout);
 *   bytes per schedule = that total ÷ policies. `INFO memory` used_memory is printed
 *   for context (the server is shared, so it moves with other users' keys).
 * - For comparison, what one BullMQ job scheduler per policy would cost: in a throwaway
 *   prefix, BULLMQ_SCHEDULERS × `queue.upsertJobScheduler(id, { every: 86400000 })`,
 *   bytes per scheduler = prefix total after ÷ BULLMQ_SCHEDULERS.
 *
 * Last line (via bench/run.ts): policies, redisBytesPerSchedule, latenessP50Ms,
 * latenessP99Ms, ratio (= bytes ÷ 300), bullmqBytesPerScheduler, plus diagnostics.
 */
import { randomBytes } from 'node:crypto';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import pg from 'pg';
import { PolicySpec } from '../shared/protocol/rotation-api.js';
import { insertAgents } from '../test/support/agents.js';
import { cleanupRedisPrefix, createTestDatabase, uniqueRedisPrefix } from '../test/support/databases.js';
import { REDIS_PORT, SERVICE_HOST } from '../test/support/services.js';
import type { TestClient } from '../test/support/test-client.js';
import { initBenchVault, withTimeout } from './support/bench-vault.js';
import { benchAbortSignal, CleanupStack } from './support/cleanup.js';
import { controlPlaneEnvOverrides, startControlPlaneProcess } from './support/control-plane-process.js';
import { percentile, round } from './support/load.js';
import { footprintLines, prefixFootprint, usedMemory, type PrefixFootprint } from './support/redis-footprint.js';

export const POLICIES = 100_000;
/** Policies that become due during the measurement (created through the API). */
export const DUE_POLICIES = 400;
/** The first due policy is due this long after measurement starts … */
export const LEAD_MS = 5_000;
/** … and the due ones are spread evenly over this window. */
export const WINDOW_MS = 20_000;
/** Waited after the window for the last due runs (and at most this long again for stragglers). */
export const SETTLE_MS = 3_000;
export const SWEEP_MS = 250;
export const BULLMQ_SCHEDULERS = 1_000;
/** Goals from BENCHMARKS.md. */
export const GOAL_POLICIES = 100_000;
export const GOAL_BYTES = 300;
export const GOAL_P99_MS = 1_000;
/** bench/run.ts kills the run (cleaning up) if it takes longer than this. */
export const timeoutMs = 300_000;

const PROJECT = 'bench';
const REDIS_URL = `redis://${SERVICE_HOST}:${REDIS_PORT}`;
const BULK_CHUNK = 25_000;
/** BullMQ's default cap on its events stream (approximate trimming). */
const BULLMQ_EVENTS_MAXLEN = 10_000;

function progress(message: string): void {
  process.stderr.write(`[schedules] ${message}\n`);
}

export async function run(): Promise<Record<string, unknown>> {
  const cleanups = new CleanupStack();
  try {
    // --- control plane, project, agent identity ------------------------------------------------
    const overrides = controlPlaneEnvOverrides();
    const sweepMs = Number(overrides['SIKKER_ROTATION_SWEEP_MS'] ?? SWEEP_MS);
    const db = await createTestDatabase('bench_schedules');
    cleanups.defer(`drop database ${db.name}`, () => db.drop());
    const redisPrefix = uniqueRedisPrefix('bench_schedules');
    cleanups.defer(`remove Redis keys ${redisPrefix}*`, () => cleanupRedisPrefix(REDIS_URL, redisPrefix));
    const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1, connectTimeout: 5000 });
    redis.on('error', () => undefined); // surfaced through the awaited commands
    cleanups.defer('close the Redis connection', () => redis.disconnect());
    progress(`starting the control plane on database ${db.name}, SIKKER_ROTATION_SWEEP_MS=${sweepMs}`);
    const cp = await startControlPlaneProcess({
      env: { SIKKER_DATABASE_URL: db.url, SIKKER_REDIS_URL: REDIS_URL, SIKKER_REDIS_PREFIX: redisPrefix, SIKKER_LOG_LEVEL: 'warn', SIKKER_ROTATION_SWEEP_MS: String(SWEEP_MS) },
    });
    cleanups.defer(`stop the control plane (pid ${cp.pid})`, () => cp.stop());
    const admin = await initBenchVault(cp.baseUrl, PROJECT);
    const pool = new pg.Pool({ connectionString: db.url, max: 4, connectionTimeoutMillis: 10_000 });
    pool.on('error', () => undefined); // idle client errors surface as failed queries
    cleanups.defer('close the bench pool', () => pool.end());
    const [agent] = await insertAgents(pool, PROJECT, 1);
    if (agent === undefined) throw new Error('no agent inserted');
    await sleep(2 * sweepMs + 500); // the scheduler has upserted its job scheduler and swept a few times
    const before = await prefixFootprint(redis, redisPrefix);
    const usedBefore = await usedMemory(redis);

    // --- 100,000 targets and policies ------------------------------------------------------------------
    const spec = PolicySpec.parse({ schedule: { kind: 'every', seconds: 86_400 } });
    const started = Date.now();
    progress(`adding ${DUE_POLICIES} targets through the API (they become due)`);
    const dueNames = Array.from({ length: DUE_POLICIES }, (_, i) => `due-${i}`);
    await inParallel(8, dueNames.length, (i) => addTarget(admin, agent.identityId, dueNames[i] ?? ''));
    progress(`inserting ${POLICIES - DUE_POLICIES} more secrets, targets and policies with SQL`);
    await insertBulk(pool, agent.identityId, POLICIES - DUE_POLICIES, spec);
    await pool.query(
      `INSERT INTO policies (target_id, spec, state, next_run_at)
       SELECT target_id, $2, 'active', now() + interval '2 hours' FROM targets WHERE name = ANY($1::text[])`,
      [dueNames, JSON.stringify(spec)],
    );
    await pool.query('ANALYZE secrets, targets, policies');
    const policies = Number((await pool.query<{ n: string }>("SELECT count(*) AS n FROM policies WHERE state = 'active'")).rows[0]?.n ?? 0);
    const postgresBytes = Number((await pool.query<{ b: string }>("SELECT pg_total_relation_size('policies') AS b")).rows[0]?.b ?? 0);
    progress(`${policies} active policies after ${((Date.now() - started) / 1000).toFixed(1)} s (policies table ${round(postgresBytes / 1024 / 1024)} MiB)`);
    benchAbortSignal.throwIfAborted();

    // --- the due window ---------------------------------------------------------------------------------
    const startMs = Date.now();
    const dueAt = dueNames.map((_, i) => new Date(startMs + LEAD_MS + Math.floor((i * WINDOW_MS) / DUE_POLICIES)));
    await pool.query(
      `UPDATE policies p SET next_run_at = d.at FROM targets t, unnest($1::text[], $2::timestamptz[]) AS d(name, at)
        WHERE t.name = d.name AND p.target_id = t.target_id`,
      [dueNames, dueAt],
    );
    progress(`${DUE_POLICIES} policies due from +${LEAD_MS / 1000} s to +${(LEAD_MS + WINDOW_MS) / 1000} s; waiting`);
    await sleep(LEAD_MS + WINDOW_MS + SETTLE_MS);
    const deadline = Date.now() + SETTLE_MS * 3;
    let late = await lateness(pool);
    while (late.length < DUE_POLICIES && Date.now() < deadline) {
      benchAbortSignal.throwIfAborted();
      await sleep(500);
      late = await lateness(pool);
    }
    const states = (await pool.query<{ state: string; n: string }>("SELECT state, count(*) AS n FROM rotation_runs WHERE trigger = 'schedule' GROUP BY state ORDER BY state")).rows;
    const bulkRuns = Number((await pool.query<{ n: string }>("SELECT count(*) AS n FROM rotation_runs r JOIN targets t USING (target_id) WHERE t.name LIKE 'bulk-%'")).rows[0]?.n ?? 0);
    const after = await prefixFootprint(redis, redisPrefix);
    const usedAfter = await usedMemory(redis);

    // --- what BullMQ would cost per schedule -------------------------------------------------------------
    progress(`BullMQ comparison: ${BULLMQ_SCHEDULERS} job schedulers in a throwaway prefix`);
    const bullmq = await bullmqPerScheduler(cleanups);

    // --- report -----------------------------------------------------------------------------------------
    const latenessMs = late.map((l) => l.latenessMs);
    const bytesPerSchedule = after.bytes / policies;
    const p50 = percentile(latenessMs, 0.5);
    const p99 = percentile(latenessMs, 0.99);
    const events = after.families.find((f) => f.family.endsWith(':events'));
    // BullMQ trims the sweep's events stream at ~10,000 entries: the steady state once it is full.
    const steadyBytes = events === undefined || events.entries === null || events.entries === 0
      ? after.bytes
      : after.bytes - events.bytes + (events.bytes / events.entries) * BULLMQ_EVENTS_MAXLEN;
    const goalMet = policies >= GOAL_POLICIES && bytesPerSchedule <= GOAL_BYTES && p99 <= GOAL_P99_MS && late.length === DUE_POLICIES;
    const notes: string[] = [];
    if (late.length < DUE_POLICIES) notes.push(`${DUE_POLICIES - late.length} due policies had no run by the end`);
    if (bulkRuns > 0) notes.push(`${bulkRuns} runs started for bulk policies that were not due`);
    printReport({ policies, before, after, usedBefore, usedAfter, bytesPerSchedule, steadyBytes, latenessMs, bullmq, sweepMs, states, postgresBytes, goalMet, notes });
    return {
      policies,
      redisBytesPerSchedule: round(bytesPerSchedule, 3),
      latenessP50Ms: round(p50, 1),
      latenessP99Ms: round(p99, 1),
      ratio: round(bytesPerSchedule / GOAL_BYTES, 4),
      bullmqBytesPerScheduler: round(bullmq.perScheduler, 1),
      goalMet,
      sweepMs,
      duePolicies: DUE_POLICIES,
      dueRuns: late.length,
      latenessMaxMs: round(Math.max(...latenessMs), 1),
      redisPrefixBytes: { before: before.bytes, after: after.bytes, keysAfter: after.keys },
      redisBytesPerScheduleSteadyState: round(steadyBytes / policies, 3),
      redisUsedMemory: { before: usedBefore, after: usedAfter },
      postgresBytesPerPolicy: round(postgresBytes / policies, 1),
      bullmqBytesPerSchedulerWithoutEvents: round(bullmq.perSchedulerWithoutEvents, 1),
      runStates: Object.fromEntries(states.map((s) => [s.state, Number(s.n)])),
      ...(notes.length > 0 ? { notes } : {}),
      ...(Object.keys(overrides).length > 0 ? { controlPlaneOverrides: overrides } : {}),
    };
  } finally {
    await cleanups.runAll();
  }
}

/** A PostgreSQL target through the API, with an adopted password (a real secret, data key and current version). */
async function addTarget(admin: TestClient, agentId: string, name: string): Promise<void> {
  await withTimeout(admin.ok('POST', `/v1/projects/${PROJECT}/targets`, {
    name, secret: `${name}-password`, agentId, adoptPassword: randomBytes(24).toString('base64url'),
    connection: { engine: 'postgres', host: '127.0.0.1', port: 5432, database: 'postgres', user: name.replace(/-/g, '_'), tls: { mode: 'disable' }, privilege: { mode: 'admin', adminConnection: 'pg' } },
  }), `add target ${name}`);
}

/**
 * `count` targets with their secrets and policies, named `bulk-<n>`, in a few statements.
 *
 * Their secrets get a placeholder `wrapped_data_key` (one zero byte) and no version:
 * a real data key is sealed under the project key with the secret id as associated
 * data, so it cannot be made once and copied, and making 100,000 through the service
 * would take the benchmark's whole budget. Nothing unwraps them: their policies are due
 * 2–26 h from now, so no run, read or key rotation touches them during the benchmark.
 */
async function insertBulk(pool: pg.Pool, agentId: string, count: number, spec: PolicySpec): Promise<void> {
  const project = (await pool.query<{ project_id: string }>('SELECT project_id FROM projects WHERE name = $1', [PROJECT])).rows[0];
  if (project === undefined) throw new Error(`no project ${PROJECT}`);
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    for (let from = 0; from < count; from += BULK_CHUNK) {
      const to = Math.min(count, from + BULK_CHUNK) - 1;
      await client.query(
        `WITH n AS (SELECT i, gen_random_uuid() AS secret_id, gen_random_uuid() AS target_id FROM generate_series($2::int, $3::int) AS i),
              s AS (INSERT INTO secrets (secret_id, project_id, name, wrapped_data_key, data_key_version)
                    SELECT secret_id, $1, 'bulk-' || i || '-password', '\\x00'::bytea, 1 FROM n),
              t AS (INSERT INTO targets (target_id, project_id, name, secret_id, agent_id, spec)
                    SELECT target_id, $1, 'bulk-' || i, secret_id, $4,
                           jsonb_build_object('engine', 'postgres', 'host', '127.0.0.1', 'port', 5432, 'database', 'postgres', 'user', 'bulk_' || i,
                                              'tls', jsonb_build_object('mode', 'disable'), 'privilege', jsonb_build_object('mode', 'admin', 'adminConnection', 'pg'))
                      FROM n)
         INSERT INTO policies (target_id, spec, state, next_run_at)
         SELECT target_id, $5, 'active', now() + interval '2 hours' + random() * interval '24 hours' FROM n`,
        [project.project_id, from, to, agentId, JSON.stringify(spec)],
      );
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

interface Late {
  latenessMs: number;
}

/** created_at − scheduled_for of every scheduled run (only due policies get one). */
async function lateness(pool: pg.Pool): Promise<Late[]> {
  return (await pool.query<{ ms: string }>(
    "SELECT extract(epoch FROM (created_at - scheduled_for)) * 1000 AS ms FROM rotation_runs WHERE trigger = 'schedule'",
  )).rows.map((r) => ({ latenessMs: Number(r.ms) }));
}

interface BullmqCost {
  perScheduler: number;
  perSchedulerWithoutEvents: number;
  footprint: PrefixFootprint;
}

/** Upserts BULLMQ_SCHEDULERS job schedulers (every 24 h) in a throwaway prefix and measures the prefix. */
async function bullmqPerScheduler(cleanups: CleanupStack): Promise<BullmqCost> {
  const prefix = uniqueRedisPrefix('bench_schedules_bullmq');
  cleanups.defer(`remove Redis keys ${prefix}*`, () => cleanupRedisPrefix(REDIS_URL, prefix));
  const connection = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  connection.on('error', () => undefined); // surfaced through the awaited commands
  const queue = new Queue('probe', { connection, prefix: `${prefix}bull` });
  try {
    const ids = Array.from({ length: BULLMQ_SCHEDULERS }, (_, i) => `sched-${i}`);
    await inParallel(20, ids.length, (i) => queue.upsertJobScheduler(ids[i] ?? '', { every: 86_400_000 }, { name: 'rotate', data: { target: ids[i] } }));
    const footprint = await prefixFootprint(connection, prefix);
    const events = footprint.families.find((f) => f.family.endsWith(':events'));
    return {
      perScheduler: footprint.bytes / BULLMQ_SCHEDULERS,
      perSchedulerWithoutEvents: (footprint.bytes - (events?.bytes ?? 0)) / BULLMQ_SCHEDULERS,
      footprint,
    };
  } finally {
    await queue.close();
    connection.disconnect();
  }
}

async function inParallel(width: number, count: number, task: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(width, count) }, async () => {
    while (next < count) {
      const i = next;
      next += 1;
      benchAbortSignal.throwIfAborted();
      await task(i);
    }
  }));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function printReport(r: {
  policies: number; before: PrefixFootprint; after: PrefixFootprint; usedBefore: number; usedAfter: number; bytesPerSchedule: number; steadyBytes: number;
  latenessMs: number[]; bullmq: BullmqCost; sweepMs: number; states: Array<{ state: string; n: string }>; postgresBytes: number; goalMet: boolean; notes: string[];
}): void {
  const l = r.latenessMs;
  const lines = [
    '',
    `schedules: ${r.policies} active policies (every 86400 s) in PostgreSQL, one BullMQ job scheduler (the sweep, every ${r.sweepMs} ms)`,
    ...footprintLines('control plane Redis prefix before the policies', r.before),
    ...footprintLines('control plane Redis prefix with the policies, after the due window', r.after),
    `  bytes per schedule: ${round(r.bytesPerSchedule, 3)} (goal <= ${GOAL_BYTES}); with the sweep's events stream at BullMQ's ${BULLMQ_EVENTS_MAXLEN}-entry cap: ${round(r.steadyBytes / r.policies, 3)}`,
    `  INFO memory used_memory (whole shared server): ${r.usedBefore} → ${r.usedAfter} bytes`,
    `  PostgreSQL policies table with indexes: ${r.postgresBytes} bytes (${round(r.postgresBytes / r.policies, 1)} per policy)`,
    `lateness of ${l.length} due runs (created_at − scheduled_for): p50 ${round(percentile(l, 0.5), 1)} ms, p99 ${round(percentile(l, 0.99), 1)} ms, max ${round(Math.max(...l), 1)} ms (goal p99 <= ${GOAL_P99_MS})`,
    `  run states: ${r.states.map((s) => `${s.state} ${s.n}`).join(', ')} (the agent is offline: dispatched runs wait for it)`,
    ...footprintLines(`BullMQ: ${BULLMQ_SCHEDULERS} job schedulers (every 24 h) in a throwaway prefix`, r.bullmq.footprint),
    `  bytes per BullMQ job scheduler: ${round(r.bullmq.perScheduler, 1)} (${round(r.bullmq.perSchedulerWithoutEvents, 1)} without the events stream)`,
    `goals (policies >= ${GOAL_POLICIES}, bytes <= ${GOAL_BYTES}, p99 <= ${GOAL_P99_MS} ms): ${r.goalMet ? 'met' : 'NOT met'}`,
    ...r.notes.map((n) => `note: ${n}`),
    '',
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}
