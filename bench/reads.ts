/**
 * Benchmark `reads`: signed, fail-closed audited secret reads per second over HTTP
 * at fixed concurrency, against raw PostgreSQL primary-key selects per second at the
 * same concurrency, measured in the same run on the same machine.
 *
 * - The control plane is the real program (`node dist/control-plane/main.js`) as a
 *   child process, on its own fresh database and Redis prefix, initialised and
 *   filled with SECRET_COUNT secrets through its HTTP API.
 * - Reads: CONCURRENCY workers, each in a loop, `GET /v1/projects/bench/secrets/s<i>`
 *   for a random i, every request freshly signed (new timestamp and nonce), over a
 *   keep-alive agent with CONCURRENCY sockets. A read counts only if it answered 200
 *   with the value that was stored; anything else is an error (reported, not counted).
 * - Baseline: a pg.Pool of CONCURRENCY connections on the same database running
 *   `SELECT ciphertext FROM secret_versions WHERE secret_id = $1 AND version = $2`
 *   with random existing keys. It runs first, while the control plane is up but idle.
 * - Both phases: WARMUP_MS not counted, then MEASURE_MS measured.
 *
 * Last line (via bench/run.ts): readsPerSecond, baselinePerSecond, p99Ms,
 * concurrency, ratio (= reads ÷ baseline), plus diagnostics.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { Agent, request as httpRequest } from 'node:http';
import pg from 'pg';
import { signRequest } from '../shared/signing/request-signature.js';
import { cleanupRedisPrefix, createTestDatabase, uniqueRedisPrefix } from '../test/support/databases.js';
import { REDIS_PORT, SERVICE_HOST } from '../test/support/services.js';
import { initBenchVault, withTimeout } from './support/bench-vault.js';
import { benchAbortSignal, CleanupStack } from './support/cleanup.js';
import { controlPlaneEnvOverrides, startControlPlaneProcess } from './support/control-plane-process.js';
import { CpuSampler, type CpuShares } from './support/cpu.js';
import { closedLoop, percentile, round, type LoadResult } from './support/load.js';

export const CONCURRENCY = 32;
export const WARMUP_MS = 2_000;
export const MEASURE_MS = 10_000;
export const SECRET_COUNT = 100;
/** One request or query may take at most this long (it then counts as an error). */
export const REQUEST_TIMEOUT_MS = 5_000;
/** Goal from BENCHMARKS.md. */
export const GOAL_RATIO = 0.5;
/** bench/run.ts kills the run (cleaning up) if it takes longer than this. */
export const timeoutMs = 110_000;

const PROJECT = 'bench';
const REDIS_URL = `redis://${SERVICE_HOST}:${REDIS_PORT}`;

function progress(message: string): void {
  process.stderr.write(`[reads] ${message}\n`);
}

export async function run(): Promise<Record<string, unknown>> {
  const cleanups = new CleanupStack();
  try {
    // --- setup ------------------------------------------------------------------
    const overrides = controlPlaneEnvOverrides();
    const nodeArgs = process.env['SIKKER_BENCH_CP_NODE_ARGS'] ?? '';
    const db = await createTestDatabase('bench_reads');
    cleanups.defer(`drop database ${db.name}`, () => db.drop());
    const redisPrefix = uniqueRedisPrefix('bench_reads');
    cleanups.defer(`remove Redis keys ${redisPrefix}*`, () => cleanupRedisPrefix(REDIS_URL, redisPrefix));

    progress(`starting the control plane on database ${db.name}`);
    const cp = await startControlPlaneProcess({
      env: {
        SIKKER_DATABASE_URL: db.url,
        SIKKER_REDIS_URL: REDIS_URL,
        SIKKER_REDIS_PREFIX: redisPrefix,
        SIKKER_LOG_LEVEL: 'warn',
      },
    });
    cleanups.defer(`stop the control plane (pid ${cp.pid})`, () => cp.stop());

    const client = await initBenchVault(cp.baseUrl, PROJECT);
    const values: string[] = Array.from({ length: SECRET_COUNT }, () => randomBytes(24).toString('base64url'));
    await inParallel(8, SECRET_COUNT, (i) => withTimeout(client.ok('PUT', `/v1/projects/${PROJECT}/secrets/s${i}`, { value: values[i] }), `put s${i}`));
    progress(`control plane pid ${cp.pid} at ${cp.baseUrl}: initialised, ${SECRET_COUNT} secrets stored`);
    benchAbortSignal.throwIfAborted();

    const pool = new pg.Pool({ connectionString: db.url, max: CONCURRENCY, statement_timeout: REQUEST_TIMEOUT_MS, connectionTimeoutMillis: REQUEST_TIMEOUT_MS });
    pool.on('error', () => undefined); // idle client errors surface as failed queries
    let poolEnded = false;
    const endPool = async (): Promise<void> => {
      if (poolEnded) return;
      poolEnded = true;
      await pool.end();
    };
    cleanups.defer('close the baseline pool', endPool);
    const keys = (await pool.query<{ secret_id: string; version: number }>('SELECT secret_id, version FROM secret_versions')).rows;
    if (keys.length !== SECRET_COUNT) throw new Error(`expected ${SECRET_COUNT} secret versions in the database, found ${keys.length}`);
    // Open every baseline connection before measuring, as the control plane's pool already is.
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => pool.connect())).then((cs) => cs.forEach((c) => c.release()));

    // --- baseline: raw primary-key selects (control plane idle) -----------------------
    progress(`baseline: pg primary-key selects, concurrency ${CONCURRENCY}, ${WARMUP_MS / 1000} s warm-up + ${MEASURE_MS / 1000} s`);
    // CPU accounting: the backends of this database only (other users share the server).
    const monitor = new pg.Client({ connectionString: db.url, connectionTimeoutMillis: REQUEST_TIMEOUT_MS });
    monitor.on('error', () => undefined);
    await monitor.connect();
    cleanups.defer('close the monitoring connection', () => monitor.end());
    const backendPids = async (): Promise<number[]> =>
      (await monitor.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()')).rows.map((r) => r.pid);
    const baselineCpu = new CpuSampler(cp.pid, backendPids);
    const baseline = await measured(baselineCpu, async () => {
      const key = keys[randomInt(keys.length)];
      if (key === undefined) throw new Error('no key');
      const result = await pool.query<{ ciphertext: Buffer }>('SELECT ciphertext FROM secret_versions WHERE secret_id = $1 AND version = $2', [key.secret_id, key.version]);
      if (result.rowCount !== 1 || !Buffer.isBuffer(result.rows[0]?.ciphertext)) throw new Error(`expected one row, got ${String(result.rowCount)}`);
    });
    await endPool();

    // --- signed, audited reads over HTTP ------------------------------------------------
    progress(`reads: signed GET over HTTP, concurrency ${CONCURRENCY}, ${WARMUP_MS / 1000} s warm-up + ${MEASURE_MS / 1000} s`);
    const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY, maxFreeSockets: CONCURRENCY });
    cleanups.defer('close the HTTP agent', () => agent.destroy());
    const readsCpu = new CpuSampler(cp.pid, backendPids);
    const reads = await measured(readsCpu, async () => {
      const i = randomInt(SECRET_COUNT);
      const path = `/v1/projects/${PROJECT}/secrets/s${i}`;
      const headers = signRequest(client.privateKey, { method: 'GET', pathWithQuery: path, body: Buffer.alloc(0), identityId: client.identityId });
      const response = await get(agent, cp.port, path, headers);
      if (response.status !== 200) throw new Error(`HTTP ${response.status}: ${response.body.slice(0, 120)}`);
      let value: unknown;
      try {
        value = (JSON.parse(response.body) as { value?: unknown }).value;
      } catch {
        throw new Error('response is not JSON');
      }
      if (value !== values[i]) throw new Error('wrong secret value in the response');
    });
    agent.destroy();

    // --- report -----------------------------------------------------------------------
    const ratio = baseline.load.perSecond > 0 ? reads.load.perSecond / baseline.load.perSecond : 0;
    const p99Ms = percentile(reads.load.latenciesMs, 0.99);
    printTable(reads, baseline, ratio);
    return {
      readsPerSecond: round(reads.load.perSecond),
      baselinePerSecond: round(baseline.load.perSecond),
      p99Ms: round(p99Ms, 2),
      concurrency: CONCURRENCY,
      ratio: round(ratio, 3),
      goalRatio: GOAL_RATIO,
      goalMet: ratio >= GOAL_RATIO && reads.load.errors === 0,
      p50Ms: round(percentile(reads.load.latenciesMs, 0.5), 2),
      baselineP50Ms: round(percentile(baseline.load.latenciesMs, 0.5), 2),
      baselineP99Ms: round(percentile(baseline.load.latenciesMs, 0.99), 2),
      reads: reads.load.ok,
      errors: reads.load.errors,
      baselineErrors: baseline.load.errors,
      ...(reads.load.errors + baseline.load.errors > 0 ? { errorKinds: { reads: reads.load.errorKinds, baseline: baseline.load.errorKinds } } : {}),
      warmupSeconds: WARMUP_MS / 1000,
      measureSeconds: MEASURE_MS / 1000,
      secrets: SECRET_COUNT,
      cpuPercentOfOneCore: { reads: reads.cpu, baseline: baseline.cpu },
      cpuMsPerOp: { reads: reads.cpuMsPerOp, baseline: baseline.cpuMsPerOp },
      cpuCostRatio: costRatio(baseline, reads),
      ...(Object.keys(overrides).length > 0 ? { controlPlaneOverrides: overrides } : {}),
      ...(nodeArgs !== '' ? { controlPlaneNodeArgs: nodeArgs } : {}),
    };
  } finally {
    await cleanups.runAll();
  }
}

interface Phase {
  load: LoadResult;
  cpu: CpuShares;
  cpuMsPerOp: Record<string, number | null>;
}

async function measured(cpu: CpuSampler, op: () => Promise<void>): Promise<Phase> {
  // CPU is sampled over the measurement window only (started when warm-up ends).
  let began: Promise<void> | undefined;
  const timer = setTimeout(() => {
    began = cpu.begin();
  }, WARMUP_MS);
  const load = await closedLoop({ concurrency: CONCURRENCY, warmupMs: WARMUP_MS, measureMs: MEASURE_MS, signal: benchAbortSignal }, op);
  clearTimeout(timer);
  benchAbortSignal.throwIfAborted();
  if (began === undefined) throw new Error('the measurement window ended before it began (timer starved)');
  await began;
  const shares = await cpu.end();
  return { load, cpu: shares, cpuMsPerOp: cpuMsPerOp(shares, load.perSecond) };
}

/** CPU milliseconds spent per successful operation, by component (from % of one core and ops/s). */
function cpuMsPerOp(shares: CpuShares, perSecond: number): Record<string, number | null> {
  const per = (pct: number | null): number | null => (pct === null || perSecond <= 0 ? null : round((pct / 100 / perSecond) * 1000, 3));
  const parts = { controlPlane: per(shares.child), postgres: per(shares.postgres), redis: per(shares.redis), bench: per(shares.bench) };
  const total = Object.values(parts).reduce<number>((sum, v) => sum + (v ?? 0), 0);
  return { ...parts, total: round(total, 3) };
}

function get(agent: Agent, port: number, path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ agent, host: '127.0.0.1', port, path, method: 'GET', headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end();
  });
}

async function inParallel(width: number, count: number, task: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(width, count) }, async () => {
    while (next < count) {
      const i = next;
      next += 1;
      await task(i);
    }
  }));
}


/** Baseline CPU per op ÷ read CPU per op: the ratio a CPU-bound, otherwise idle machine would give. */
function costRatio(baseline: Phase, reads: Phase): number | null {
  const b = baseline.cpuMsPerOp['total'];
  const r = reads.cpuMsPerOp['total'];
  return b === null || b === undefined || r === null || r === undefined || r <= 0 ? null : round(b / r, 3);
}

function printTable(reads: Phase, baseline: Phase, ratio: number): void {
  const row = (label: string, p: Phase): string => {
    const cells = [
      label.padEnd(36),
      String(round(p.load.perSecond)).padStart(10),
      String(round(percentile(p.load.latenciesMs, 0.5), 2)).padStart(8),
      String(round(percentile(p.load.latenciesMs, 0.99), 2)).padStart(8),
      String(p.load.errors).padStart(7),
      `${fmt(p.cpu.child)} / ${fmt(p.cpu.postgres)} / ${fmt(p.cpu.redis)} / ${fmt(p.cpu.bench)} / ${fmt(p.cpu.machine)}`.padStart(28),
    ];
    return cells.join('  ');
  };
  const fmt = (v: number | null): string => (v === null ? '-' : String(v));
  const perOp = (p: Phase): string => {
    const c = p.cpuMsPerOp;
    return `${fmt(c['controlPlane'] ?? null)}/${fmt(c['postgres'] ?? null)}/${fmt(c['redis'] ?? null)}/${fmt(c['bench'] ?? null)} = ${fmt(c['total'] ?? null)}`;
  };
  const lines = [
    '',
    `reads: concurrency ${CONCURRENCY}, ${WARMUP_MS / 1000} s warm-up, ${MEASURE_MS / 1000} s measured, ${SECRET_COUNT} secrets`,
    `${'phase'.padEnd(36)}  ${'ops/s'.padStart(10)}  ${'p50 ms'.padStart(8)}  ${'p99 ms'.padStart(8)}  ${'errors'.padStart(7)}  ${'CPU % cp/pg/redis/bench/all'.padStart(28)}`,
    row('signed audited reads (HTTP)', reads),
    row('baseline: pg primary-key select', baseline),
    `ratio reads/baseline: ${round(ratio, 3)} (goal >= ${GOAL_RATIO}: ${ratio >= GOAL_RATIO ? 'met' : 'NOT met'})`,
    `CPU ms per op (cp/pg/redis/bench = total): reads ${perOp(reads)}; baseline ${perOp(baseline)}; cost ratio ${String(costRatio(baseline, reads) ?? '-')}`,
  ];
  if (reads.cpu.machine !== null && reads.cpu.cores !== null && reads.cpu.machine > reads.cpu.cores * 100 * 0.9) {
    const ours = [reads.cpu.child, reads.cpu.postgres, reads.cpu.redis, reads.cpu.bench].reduce<number>((a, v) => a + (v ?? 0), 0);
    lines.push(`note: the machine was saturated during the reads (${reads.cpu.machine}% of ${reads.cpu.cores * 100}%; this benchmark's processes ${ours}%); figures are noisy`);
  }
  if (reads.load.errors > 0 || baseline.load.errors > 0) {
    lines.push(`WARNING: ${reads.load.errors} read errors and ${baseline.load.errors} baseline errors in the measured window; only successes are counted`);
    for (const [message, n] of Object.entries({ ...reads.load.errorKinds })) lines.push(`  read error x${n}: ${message}`);
    for (const [message, n] of Object.entries({ ...baseline.load.errorKinds })) lines.push(`  baseline error x${n}: ${message}`);
  }
  lines.push('');
  process.stdout.write(`${lines.join('\n')}\n`);
}
