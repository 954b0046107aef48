/**
 * Benchmark `rotation`: end-to-end latency of one PostgreSQL password rotation —
 * trigger → agent applied and verified → committed — against the bare database work
 * (`ALTER ROLE … PASSWORD` on an open admin connection, then a fresh login with the
 * new password), measured in the same run on the same private SCRAM cluster.
 *
 * - Real processes: the control plane (`node dist/control-plane/main.js`, fresh
 *   database and Redis prefix, SIKKER_LOG_LEVEL=warn, default sweep) and the agent
 *   (`sikker-agent enroll`, then `sikker-agent run` with `adminConnections: [{name:
 *   "pg", url: <the cluster's superuser URL>}]`, logLevel warn, file journal in its
 *   state directory). The cluster is test/support/scram-postgres.ts (SCRAM-SHA-256,
 *   fsync off).
 * - One target (role `bench_rot_*`, privilege admin via "pg", strategy replace),
 *   adopted with its password, preflighted through POST …/targets/:t/test.
 * - A rotation: the client takes performance.now() and sends POST …/targets/:t/rotate,
 *   then waits for the commit notification, asking nothing of the control plane meanwhile
 *   (it reads the run only every FAILURE_CHECK_MS, to notice a run that fails), then polls
 *   GET …/runs/:runId every POLL_MS until the run is done. Latency = when the
 *   client received the run's commit notification (RUN_COMMITTED_CHANNEL, LISTENed on its
 *   own connection to the control plane's database; PostgreSQL delivers it only after the
 *   commit transaction committed) − that performance.now(): the whole commit is counted,
 *   and the delivery of the notification too. The polling after it moves neither. `committedAt` (set in
 *   the commit transaction, before its last statements and COMMIT) − trigger is reported
 *   as a diagnostic. WARMUP_RUNS, then MEASURED_RUNS, one at a time.
 * - Baseline: an admin connection opened once runs `ALTER ROLE <other role> PASSWORD
 *   '<new>'`, then a fresh connection logs in as that role with the new password and
 *   runs SELECT 1; both timed together. BASELINE_ITERATIONS, half before and half
 *   after the rotations (after a warm-up), so drift on the shared machine hits both.
 * - Diagnostics (not in the goal): where a rotation's time goes, from rotation_steps
 *   and agent_commands timestamps; the agent's own applier run in this process
 *   (what one `rotation.apply` does against the database); one journal append with
 *   fdatasync (what each journal change costs the agent).
 *
 * Last line (via bench/run.ts): p50Ms, p99Ms, baselineP50Ms, runs, ratio
 * (= p50 ÷ baseline p50), plus diagnostics.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fdatasyncSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createApplier } from '../agent/appliers/index.js';
import { RUN_COMMITTED_CHANNEL } from '../control-plane/rotation/rotation-engine.js';
import { JOURNAL_PADDING_BYTES } from '../agent/journal/journal-append-log.js';
import { journalData } from '../agent/journal/journal-file-format.js';
import { journalPath } from '../agent/state/state-dir.js';
import { cleanupRedisPrefix, createTestDatabase, uniqueRedisPrefix, type TestDatabase } from '../test/support/databases.js';
import { postgresLogsIn } from '../test/support/postgres-login.js';
import { startScramPostgres, type ScramPostgres } from '../test/support/scram-postgres.js';
import { REDIS_PORT, SERVICE_HOST } from '../test/support/services.js';
import type { TestClient } from '../test/support/test-client.js';
import { startAgentProcess, type AgentProcess } from './support/agent-process.js';
import { initBenchVault, withTimeout } from './support/bench-vault.js';
import { benchAbortSignal, CleanupStack } from './support/cleanup.js';
import { controlPlaneEnvOverrides, startControlPlaneProcess, type ControlPlaneProcess } from './support/control-plane-process.js';
import { CpuSampler, type CpuShares } from './support/cpu.js';
import { percentile, round } from './support/load.js';
import { breakdown, printBreakdown, type RunSample } from './support/rotation-breakdown.js';

export const WARMUP_RUNS = 20;
export const MEASURED_RUNS = 200;
export const BASELINE_WARMUP = 20;
export const BASELINE_ITERATIONS = 200;
/** Applier-only diagnostic: iterations of what the agent does per apply. */
export const APPLIER_ITERATIONS = 50;
/** GET …/runs/:id interval after the commit was heard, until the run is done. */
export const POLL_MS = 25;
/** While a run is in flight, how long to wait for its commit before reading it to see whether it failed. */
export const FAILURE_CHECK_MS = 1_000;
/** One run may take at most this long before the benchmark gives up. */
export const RUN_TIMEOUT_MS = 15_000;
/** Goals from BENCHMARKS.md. */
export const GOAL_RATIO = 2;
export const GOAL_P99_MS = 250;
/** bench/run.ts kills the run (cleaning up) if it takes longer than this. */
export const timeoutMs = 240_000;

const PROJECT = 'bench';
const TARGET = 'orders';
const REDIS_URL = `redis://${SERVICE_HOST}:${REDIS_PORT}`;

interface RunView {
  runId: string;
  state: string;
  committedAt: string | null;
  errorCode: string | null;
  errorMessage: string | null;
  joined?: boolean;
}

function progress(message: string): void {
  process.stderr.write(`[rotation] ${message}\n`);
}

export async function run(): Promise<Record<string, unknown>> {
  const cleanups = new CleanupStack();
  try {
    const overrides = controlPlaneEnvOverrides();
    // Experiments only (echoed in the result): node flags for the agent, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
    const agentNodeArgs = (process.env['SIKKER_BENCH_AGENT_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '');
    const { cluster, superuser, targetRole, baselineRole, adopted, db, home, cp, admin, agent } = await setUp(cleanups, agentNodeArgs);

    // --- baseline (first half), rotations, baseline (second half) ----------------------------------------
    const half = Math.ceil(BASELINE_ITERATIONS / 2);
    progress(`baseline: ${BASELINE_WARMUP} warm-up + ${half} × (ALTER ROLE on an open admin connection + fresh login)`);
    const baselineMs = await baseline(superuser, cluster.port, baselineRole, BASELINE_WARMUP, half);
    progress(`rotations: ${WARMUP_RUNS} warm-up + ${MEASURED_RUNS} measured, one at a time`);
    const commits = await listenForCommits(db.url);
    cleanups.defer('close the commit listener', () => commits.close());
    for (let i = 0; i < WARMUP_RUNS; i += 1) await rotateOnce(admin, commits);
    // CPU over the measured runs: the control plane with its database's backends, and the agent (diagnostics: the machine is shared).
    const monitor = new pg.Client({ connectionString: db.url, connectionTimeoutMillis: 10_000 });
    monitor.on('error', () => undefined);
    await monitor.connect();
    cleanups.defer('close the monitoring connection', () => monitor.end());
    const backendPids = async (): Promise<number[]> =>
      (await monitor.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()')).rows.map((r) => r.pid);
    const cpCpu = new CpuSampler(cp.pid, backendPids);
    const agentCpu = new CpuSampler(agent.pid, async () => []);
    await Promise.all([cpCpu.begin(), agentCpu.begin()]);
    const samples: RunSample[] = [];
    for (let i = 0; i < MEASURED_RUNS; i += 1) {
      samples.push(await rotateOnce(admin, commits));
      if ((i + 1) % 50 === 0) progress(`  ${i + 1} runs, p50 so far ${round(percentile(samples.map((s) => s.latencyMs), 0.5))} ms`);
    }
    const [cpShares, agentShares] = await Promise.all([cpCpu.end(), agentCpu.end()]);
    progress(`baseline: ${BASELINE_ITERATIONS - half} more`);
    baselineMs.push(...(await baseline(superuser, cluster.port, baselineRole, 5, BASELINE_ITERATIONS - half)));

    // --- checks and diagnostics ---------------------------------------------------------------------
    const current = (await admin.ok('GET', `/v1/projects/${PROJECT}/secrets/${TARGET}-password`)) as { value: string };
    if (!(await postgresLogsIn(cluster.port, targetRole, current.value))) throw new Error('the committed password does not log in');
    if (await postgresLogsIn(cluster.port, targetRole, adopted)) throw new Error('the adopted (first) password still logs in');
    progress('the committed password logs in, the first one is refused; collecting the step timestamps');
    const parts = await breakdown(db.url, samples);
    progress(`diagnostic: the agent's applier in this process, ${APPLIER_ITERATIONS} × (admin connect + SCRAM verifier + ALTER ROLE + fresh login + close)`);
    const applierMs = await applierOnly(cluster.port, cluster.superuserUrl, baselineRole, APPLIER_ITERATIONS);
    // its lines, not the zero padding they are written over
    const journalBytes = Buffer.byteLength(journalData(readFileSync(journalPath(join(home, 'state')), 'utf8')));
    const journalWriteMs = await journalWrites(home, 20);
    benchAbortSignal.throwIfAborted();

    // --- report ---------------------------------------------------------------------------------------
    const latencies = samples.map((s) => s.latencyMs);
    const p50 = percentile(latencies, 0.5);
    const p99 = percentile(latencies, 0.99);
    const baselineP50 = percentile(baselineMs, 0.5);
    const ratio = p50 / baselineP50;
    const goalMet = ratio <= GOAL_RATIO && p99 <= GOAL_P99_MS;
    const quarter = Math.floor(samples.length / 4);
    const firstQuarterP50 = percentile(latencies.slice(0, quarter), 0.5);
    const lastQuarterP50 = percentile(latencies.slice(-quarter), 0.5);
    const cpu = { controlPlane: cpShares.child, controlPlanePostgres: cpShares.postgres, agent: agentShares.child, redis: cpShares.redis, bench: cpShares.bench, machine: cpShares.machine, cores: cpShares.cores };
    printTable({ latencies, baselineMs, applierMs, journalWriteMs, journalBytes, ratio, firstQuarterP50, lastQuarterP50, cpu: cpShares, agentCpu: agentShares });
    printBreakdown(parts);
    return {
      p50Ms: round(p50, 1),
      p99Ms: round(p99, 1),
      baselineP50Ms: round(baselineP50, 2),
      runs: samples.length,
      ratio: round(ratio, 2),
      goalMet,
      goals: { ratio: GOAL_RATIO, p99Ms: GOAL_P99_MS },
      meanMs: round(mean(latencies), 1),
      maxMs: round(Math.max(...latencies), 1),
      baselineP99Ms: round(percentile(baselineMs, 0.99), 2),
      baselineIterations: baselineMs.length,
      postP50Ms: round(percentile(samples.map((s) => s.postMs), 0.5), 1),
      committedAtP50Ms: round(percentile(samples.map((s) => s.committedAtMs), 0.5), 1),
      firstQuarterP50Ms: round(firstQuarterP50, 1),
      lastQuarterP50Ms: round(lastQuarterP50, 1),
      applierP50Ms: round(percentile(applierMs, 0.5), 2),
      journalBytes,
      journalWriteP50Ms: round(percentile(journalWriteMs, 0.5), 2),
      breakdownMeanMs: Object.fromEntries(parts.map((p) => [p.key, round(p.meanMs, 1)])),
      cpuPercentOfOneCore: cpu,
      processes: 'control plane and agent as separate processes',
      ...(Object.keys(overrides).length > 0 ? { controlPlaneOverrides: overrides } : {}),
      ...(agentNodeArgs.length > 0 ? { agentNodeArgs: agentNodeArgs.join(' ') } : {}),
    };
  } finally {
    await cleanups.runAll();
  }
}

interface Setup {
  cluster: ScramPostgres;
  /** An open superuser connection to the cluster (the baseline's admin connection). */
  superuser: pg.Client;
  targetRole: string;
  baselineRole: string;
  /** The target role's first password, adopted by the target. */
  adopted: string;
  db: TestDatabase;
  home: string;
  cp: ControlPlaneProcess;
  admin: TestClient;
  agent: AgentProcess;
}

/** The SCRAM cluster and its two roles, the control plane, the enrolled agent, and the preflighted target; each registered for cleanup. */
async function setUp(cleanups: CleanupStack, agentNodeArgs: string[]): Promise<Setup> {
  progress('starting a private PostgreSQL cluster that checks SCRAM passwords');
  const cluster = await startScramPostgres();
  cleanups.defer('stop the SCRAM cluster', () => cluster.stop());
  const superuser = new pg.Client({ connectionString: cluster.superuserUrl, connectionTimeoutMillis: 10_000 });
  superuser.on('error', () => undefined); // surfaced through the awaited queries
  await superuser.connect();
  cleanups.defer('close the superuser connection', () => superuser.end());
  const suffix = randomBytes(4).toString('hex');
  const targetRole = `bench_rot_${suffix}`;
  const baselineRole = `bench_base_${suffix}`;
  const adopted = newPassword();
  await superuser.query(`CREATE ROLE ${targetRole} LOGIN PASSWORD ${superuser.escapeLiteral(adopted)}`);
  await superuser.query(`CREATE ROLE ${baselineRole} LOGIN PASSWORD ${superuser.escapeLiteral(newPassword())}`);

  const db = await createTestDatabase('bench_rotation');
  cleanups.defer(`drop database ${db.name}`, () => db.drop());
  const redisPrefix = uniqueRedisPrefix('bench_rotation');
  cleanups.defer(`remove Redis keys ${redisPrefix}*`, () => cleanupRedisPrefix(REDIS_URL, redisPrefix));
  const home = mkdtempSync(join(tmpdir(), 'sikker-bench-rotation-'));
  cleanups.defer(`remove ${home}`, () => rmSync(home, { recursive: true, force: true }));
  progress(`starting the control plane on database ${db.name}`);
  const cp = await startControlPlaneProcess({
    env: { SIKKER_DATABASE_URL: db.url, SIKKER_REDIS_URL: REDIS_URL, SIKKER_REDIS_PREFIX: redisPrefix, SIKKER_LOG_LEVEL: 'warn' },
  });
  cleanups.defer(`stop the control plane (pid ${cp.pid})`, () => cp.stop());
  const admin = await initBenchVault(cp.baseUrl, PROJECT);
  const agent = await startAgentProcess({
    baseUrl: cp.baseUrl, admin, project: PROJECT, home, name: 'bench-rotation-agent',
    config: { logLevel: 'warn', adminConnections: [{ name: 'pg', url: cluster.superuserUrl }] }, nodeArgs: agentNodeArgs,
  });
  cleanups.defer(`stop the agent (pid ${agent.pid})`, () => agent.stop());
  progress(`agent ${agent.agentId} (pid ${agent.pid}) online; adding target ${TARGET} for role ${targetRole}`);
  await withTimeout(admin.ok('POST', `/v1/projects/${PROJECT}/targets`, {
    name: TARGET, secret: `${TARGET}-password`, agentId: agent.agentId, adoptPassword: adopted,
    connection: { engine: 'postgres', host: '127.0.0.1', port: cluster.port, database: 'postgres', user: targetRole, tls: { mode: 'disable' }, privilege: { mode: 'admin', adminConnection: 'pg' } },
  }), 'add target');
  const tested = (await withTimeout(admin.ok('POST', `/v1/projects/${PROJECT}/targets/${TARGET}/test`, {}), 'target test', 20_000)) as { finished: boolean; target: { preflight: { ok: boolean; problems: string } | null } };
  if (!tested.finished || tested.target.preflight?.ok !== true) throw new Error(`the preflight did not pass: ${JSON.stringify(tested.target.preflight)}`);
  return { cluster, superuser, targetRole, baselineRole, adopted, db, home, cp, admin, agent };
}

/** Receipt times (performance.now()) of the control plane's commit notifications, by run id. */
interface CommitListener {
  /**
   * When the commit of `runId` was heard: at once if it already was, else when its
   * notification arrives (no timer runs meanwhile); null when `timeoutMs` passed first.
   */
  heard(runId: string, timeoutMs: number): Promise<number | null>;
  close(): Promise<void>;
}

async function listenForCommits(databaseUrl: string): Promise<CommitListener> {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined); // a broken listener shows as a run whose commit is never heard
  const heard = new Map<string, number>();
  const waiting = new Map<string, (at: number) => void>();
  client.on('notification', (n) => {
    if (n.channel !== RUN_COMMITTED_CHANNEL || n.payload === undefined) return;
    const at = performance.now();
    const waiter = waiting.get(n.payload);
    if (waiter === undefined) heard.set(n.payload, at);
    else waiter(at);
  });
  await client.connect();
  await client.query(`LISTEN ${RUN_COMMITTED_CHANNEL}`);
  return {
    heard(runId, timeoutMs) {
      const at = heard.get(runId);
      if (at !== undefined) {
        heard.delete(runId);
        return Promise.resolve(at);
      }
      return new Promise<number | null>((resolve) => {
        const timer = setTimeout(() => {
          waiting.delete(runId);
          resolve(null);
        }, timeoutMs);
        waiting.set(runId, (when) => {
          clearTimeout(timer);
          waiting.delete(runId);
          resolve(when);
        });
      });
    },
    close: () => client.end(),
  };
}

/**
 * One manual rotation, timed from just before the trigger to the moment its commit was heard.
 *
 * Nothing is asked of the control plane while the run is in flight: the client waits for
 * the commit notification, and reads the run only every FAILURE_CHECK_MS to notice one
 * that ends without committing. (Until the seventh session it polled GET …/runs/:id every
 * 25 ms. The POST answers about 14 ms after the trigger, so that poll landed inside the
 * commit transaction on nearly every run: a signature check, a nonce claim in Redis and
 * four reads competing with the measured commit, which the baseline never has. See
 * docs/benchmarks.md, "Seventh session".)
 */
async function rotateOnce(admin: TestClient, commits: CommitListener): Promise<RunSample> {
  benchAbortSignal.throwIfAborted();
  const t0 = Date.now();
  const p0 = performance.now();
  const started = (await admin.ok('POST', `/v1/projects/${PROJECT}/targets/${TARGET}/rotate`, {})) as { run: RunView; joined: boolean };
  const postMs = Date.now() - t0;
  if (started.joined) throw new Error('the trigger joined a run already in flight (the previous one had not finished)');
  const runId = started.run.runId;
  let heardAt: number | null = null;
  while (heardAt === null) {
    heardAt = await commits.heard(runId, FAILURE_CHECK_MS);
    if (heardAt !== null) break;
    if (Date.now() - t0 > RUN_TIMEOUT_MS) throw new Error(`the commit of run ${runId} was not announced within ${RUN_TIMEOUT_MS / 1000} s`);
    const view = (await admin.ok('GET', `/v1/projects/${PROJECT}/runs/${runId}`)) as RunView;
    if (view.committedAt === null && ['failed', 'parked', 'done'].includes(view.state)) {
      throw new Error(`run ${runId} ended ${view.state}: ${view.errorCode ?? ''} ${view.errorMessage ?? ''}`);
    }
  }
  // replace on the same user ends at commit (the old password is already dead): wait for `done` so the next trigger starts a new run
  let view = (await admin.ok('GET', `/v1/projects/${PROJECT}/runs/${runId}`)) as RunView;
  while (view.state !== 'done') {
    if (Date.now() - t0 > RUN_TIMEOUT_MS) throw new Error(`run ${runId} committed but did not finish (state ${view.state})`);
    await sleep(POLL_MS);
    view = (await admin.ok('GET', `/v1/projects/${PROJECT}/runs/${runId}`)) as RunView;
  }
  if (view.committedAt === null) throw new Error(`run ${runId} is done but has no commit time`);
  return { runId, t0, latencyMs: heardAt - p0, committedAtMs: Date.parse(view.committedAt) - t0, postMs };
}

/** ALTER ROLE on the already open `admin` connection + a fresh login with the new password, timed together (ms each). */
async function baseline(admin: pg.Client, port: number, role: string, warmup: number, count: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < warmup + count; i += 1) {
    benchAbortSignal.throwIfAborted();
    const password = newPassword();
    const t0 = performance.now();
    await admin.query(`ALTER ROLE ${role} PASSWORD ${admin.escapeLiteral(password)}`);
    const client = new pg.Client({ host: '127.0.0.1', port, database: 'postgres', user: role, password, connectionTimeoutMillis: 5000 });
    client.on('error', () => undefined);
    await client.connect();
    await client.query('SELECT 1');
    const elapsed = performance.now() - t0;
    await client.end();
    if (i >= warmup) out.push(elapsed);
  }
  return out;
}

/** What one `rotation.apply` does against the database, with the agent's own applier (built and closed per command, as the agent does). */
async function applierOnly(port: number, adminUrl: string, role: string, count: number): Promise<number[]> {
  const target = { engine: 'postgres' as const, host: '127.0.0.1', port, database: 'postgres', user: role, tls: { mode: 'disable' as const }, privilege: { mode: 'admin' as const, adminConnection: 'pg' } };
  const out: number[] = [];
  for (let i = 0; i < count + 5; i += 1) {
    benchAbortSignal.throwIfAborted();
    const password = newPassword();
    const t0 = performance.now();
    const applier = await createApplier(target, { url: adminUrl });
    try {
      await applier.apply({ user: role, newPassword: password, strategy: 'replace' });
      const proof = await applier.verify({ user: role, password });
      if (proof.outcome !== 'ok') throw new Error('the applier\'s new password does not log in');
    } finally {
      await applier.close();
    }
    if (i >= 5) out.push(performance.now() - t0);
  }
  return out;
}

/**
 * Times `count` journal appends as the agent makes them per change (one line of about
 * the size of an accepted command, written over the file's zero padding and fdatasynced:
 * agent/journal/journal-append-log.ts), 15 ms apart as between rotations; the whole-file
 * rewrite happens only at compaction, every few hundred changes.
 */
async function journalWrites(dir: string, count: number): Promise<number[]> {
  const path = join(dir, 'journal-probe.json');
  const line = Buffer.from(`${JSON.stringify({ op: 'put', entry: { pad: 'a'.repeat(1500) } })}\n`, 'utf8');
  writeFileSync(path, Buffer.alloc(JOURNAL_PADDING_BYTES), { mode: 0o600 });
  const fd = openSync(path, 'r+');
  const out: number[] = [];
  try {
    fdatasyncSync(fd);
    for (let i = 0; i < count; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 15));
      const t0 = performance.now();
      writeSync(fd, line, 0, line.length, i * line.length);
      fdatasyncSync(fd);
      out.push(performance.now() - t0);
    }
  } finally {
    closeSync(fd);
    rmSync(path, { force: true });
  }
  return out;
}

/** 32 URL-safe characters (the generator's default length). */
function newPassword(): string {
  return randomBytes(24).toString('base64url');
}

function mean(values: readonly number[]): number {
  return values.length === 0 ? Number.NaN : values.reduce((a, b) => a + b, 0) / values.length;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function printTable(r: {
  latencies: number[]; baselineMs: number[]; applierMs: number[]; journalWriteMs: number[]; journalBytes: number; ratio: number;
  firstQuarterP50: number; lastQuarterP50: number; cpu: CpuShares; agentCpu: CpuShares;
}): void {
  const fmt = (v: number | null): string => (v === null ? '-' : `${v}%`);
  const row = (label: string, values: readonly number[]): string =>
    `${label.padEnd(58)}${String(values.length).padStart(6)}${String(round(percentile(values, 0.5), 2)).padStart(10)}${String(round(percentile(values, 0.99), 2)).padStart(10)}${String(round(mean(values), 2)).padStart(10)}`;
  const lines = [
    '',
    'rotation: PostgreSQL (private SCRAM cluster), control plane and agent as processes, one run at a time',
    `${'measure'.padEnd(58)}${'n'.padStart(6)}${'p50 ms'.padStart(10)}${'p99 ms'.padStart(10)}${'mean ms'.padStart(10)}`,
    row('trigger → committed (POST rotate … run.committedAt)', r.latencies),
    row('baseline: ALTER ROLE (open conn) + fresh login', r.baselineMs),
    row('diagnostic: agent applier in-process (connect+apply+verify)', r.applierMs),
    row(`diagnostic: one journal append + fdatasync (file ${r.journalBytes} B)`, r.journalWriteMs),
    `ratio p50 ÷ baseline p50: ${round(r.ratio, 2)} (goal <= ${GOAL_RATIO}: ${r.ratio <= GOAL_RATIO ? 'met' : 'NOT met'}); `
      + `p99 ${round(percentile(r.latencies, 0.99), 1)} ms (goal <= ${GOAL_P99_MS} ms: ${percentile(r.latencies, 0.99) <= GOAL_P99_MS ? 'met' : 'NOT met'})`,
    `p50 of the first quarter of measured runs ${round(r.firstQuarterP50, 1)} ms, of the last quarter ${round(r.lastQuarterP50, 1)} ms`,
    `CPU during the measured runs (% of one core): control plane ${fmt(r.cpu.child)}, its PostgreSQL backends ${fmt(r.cpu.postgres)}, agent ${fmt(r.agentCpu.child)}, `
      + `redis ${fmt(r.cpu.redis)}, this process ${fmt(r.cpu.bench)}; whole machine ${fmt(r.cpu.machine)} of ${r.cpu.cores === null ? '-' : r.cpu.cores * 100}%`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}
