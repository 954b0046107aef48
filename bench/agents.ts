/**
 * Benchmark `agents`: idle authenticated agent connections held by one control-plane
 * process, and the resident memory each one costs it.
 *
 * - The control plane is the real program (`node dist/control-plane/main.js`) as a
 *   child process, on its own fresh database and Redis prefix, SIKKER_LOG_LEVEL=warn,
 *   default heartbeat (15 s); its open-file limit is raised as far as the machine allows
 *   (`prlimit --pid`) and read back from /proc/<pid>/limits (`fdLimit`). It is initialised
 *   through its API (which unseals it) and given project `bench`.
 * - Simulated agents: SWARMS child processes (bench/support/agent-swarm.ts), each with
 *   its own raised open-file limit, connecting from their own loopback source addresses
 *   (127.0.0.2, 127.0.0.3, …). Each agent has its own Ed25519 identity, inserted in bulk
 *   into the benchmark's database as an enrolled agent (identities, grants, agents), does
 *   the signed upgrade, sends hello after welcome and then only answers pings. At most
 *   HANDSHAKES_IN_FLIGHT upgrades are in flight at once (across all swarms).
 * - Target N = min(18,000, 90 % of fdLimit, fdLimit − descriptors already open − FD_MARGIN).
 * - RSS (VmRSS, /proc/<pid>/status) of the control plane: "before" after a warm-up (WARMUP
 *   agents connected, said hello and disconnected; the pool and code paths are warm) and
 *   SETTLE_MS of idle, median of RSS_SAMPLES; "after" once every connected agent's hello
 *   has been processed (seen in the database) and SETTLE_MS of idle, median of RSS_SAMPLES.
 *   GC cannot be forced from outside, so garbage left by the handshakes counts (the figure
 *   errs high).
 *
 * Last line (via bench/run.ts): connections, fdLimit, bytesPerConnection
 * (= (RSS after − RSS before) ÷ connections), ratio (= bytesPerConnection ÷ 16,384),
 * plus diagnostics (failures by reason, drops, timings, RSS samples).
 */
import { cleanupRedisPrefix, createTestDatabase, uniqueRedisPrefix } from '../test/support/databases.js';
import { REDIS_PORT, SERVICE_HOST } from '../test/support/services.js';
import { AGENT_CONNECT_PATH } from '../shared/protocol/agent-messages.js';
import { countHelloed, insertAgents } from './support/agent-fixtures.js';
import { countOpenFds, mib, raiseFdLimit, readPeakRssBytes, readRssParts, sampleRss, sleep, type RssSamples } from './support/agent-proc.js';
import { AgentSwarm, mergeCounts, type ConnectReport, type PreparedAgent } from './support/agent-swarm-control.js';
import { initBenchVault, withTimeout } from './support/bench-vault.js';
import { benchAbortSignal, CleanupStack } from './support/cleanup.js';
import { controlPlaneEnvOverrides, startControlPlaneProcess } from './support/control-plane-process.js';
import { round } from './support/load.js';

/** Goal from BENCHMARKS.md. */
export const GOAL_CONNECTIONS = 18_000;
export const GOAL_BYTES_PER_CONNECTION = 16_384;
/** Simulated-agent processes. */
export const SWARMS = 5;
/** Loopback source addresses per swarm (127.0.0.2 onwards); ~28,000 ephemeral ports each. */
export const ADDRESSES_PER_SWARM = 2;
/** Upgrades in flight at once, over all swarms. */
export const HANDSHAKES_IN_FLIGHT = 150;
/** Agents connected (and disconnected) before the "before" sample. */
export const WARMUP = 250;
/** Descriptors kept free in the control plane beyond the ones open before connecting. */
export const FD_MARGIN = 64;
export const SETTLE_MS = 5_000;
export const RSS_SAMPLES = 5;
export const RSS_SAMPLE_INTERVAL_MS = 1_000;
export const HANDSHAKE_TIMEOUT_MS = 20_000;
/** Past this, no new upgrade is started (the run reports what it reached). */
export const CONNECT_DEADLINE_MS = 150_000;
/** bench/run.ts kills the run (cleaning up) if it takes longer than this. */
export const timeoutMs = 285_000;

const PROJECT = 'bench';
const REDIS_URL = `redis://${SERVICE_HOST}:${REDIS_PORT}`;
const AGENT_VERSION = 'bench-swarm/1';
const WARMUP_VERSION = 'bench-warmup/1';
/** Ephemeral ports per source address towards one server port (ip_local_port_range 32768–60999, less what others use). */
const PORTS_PER_ADDRESS = 25_000;

function progress(message: string): void {
  process.stderr.write(`[agents] ${message}\n`);
}

export async function run(): Promise<Record<string, unknown>> {
  const cleanups = new CleanupStack();
  const t0 = Date.now();
  try {
    // --- control plane --------------------------------------------------------------
    const overrides = controlPlaneEnvOverrides();
    const nodeArgs = process.env['SIKKER_BENCH_CP_NODE_ARGS'] ?? '';
    const db = await createTestDatabase('bench_agents');
    cleanups.defer(`drop database ${db.name}`, () => db.drop());
    const redisPrefix = uniqueRedisPrefix('bench_agents');
    cleanups.defer(`remove Redis keys ${redisPrefix}*`, () => cleanupRedisPrefix(REDIS_URL, redisPrefix));
    progress(`starting the control plane on database ${db.name}`);
    const cp = await startControlPlaneProcess({
      env: { SIKKER_DATABASE_URL: db.url, SIKKER_REDIS_URL: REDIS_URL, SIKKER_REDIS_PREFIX: redisPrefix, SIKKER_LOG_LEVEL: 'warn' },
    });
    cleanups.defer(`stop the control plane (pid ${cp.pid})`, () => cp.stop());
    const cpLimits = await raiseFdLimit(cp.pid);
    const fdLimit = cpLimits.soft;

    const client = await initBenchVault(cp.baseUrl, PROJECT);
    const fdsAtStart = countOpenFds(cp.pid);

    const goalConnections = Math.min(GOAL_CONNECTIONS, Math.floor(0.9 * fdLimit));
    const addresses = Array.from({ length: SWARMS * ADDRESSES_PER_SWARM }, (_, i) => `127.0.0.${2 + i}`);
    const target = Math.max(0, Math.min(GOAL_CONNECTIONS, Math.floor(0.9 * fdLimit), fdLimit - fdsAtStart - FD_MARGIN, addresses.length * PORTS_PER_ADDRESS));
    progress(`control plane pid ${cp.pid} at ${cp.baseUrl}: initialised; open-file limit ${fdLimit} (hard ${cpLimits.hard}), ${fdsAtStart} descriptors open; target ${target} agents (goal ${goalConnections})`);
    if (target < goalConnections) progress(`WARNING: the target (${target}) is below the goal (${goalConnections}): not enough descriptors`);
    benchAbortSignal.throwIfAborted();

    // --- swarms and identities ----------------------------------------------------------
    const swarms = await Promise.all(Array.from({ length: SWARMS }, (_, i) => AgentSwarm.start(i, (line) => process.stderr.write(`${line}\n`))));
    for (const s of swarms) cleanups.defer(`stop swarm ${s.index} (pid ${s.pid})`, () => s.stop());
    const share = (total: number, i: number): number => Math.floor(total / SWARMS) + (i < total % SWARMS ? 1 : 0);
    const warmupShares = swarms.map((s) => share(WARMUP, s.index));
    const mainShares = swarms.map((s) => share(target, s.index));
    const tPrep = Date.now();
    const prepared = await Promise.all(swarms.map((s, i) => s.prepare((warmupShares[i] ?? 0) + (mainShares[i] ?? 0))));
    const warmupAgents: PreparedAgent[] = prepared.flatMap((p, i) => p.slice(0, warmupShares[i] ?? 0));
    const mainAgents: PreparedAgent[] = prepared.flatMap((p, i) => p.slice(warmupShares[i] ?? 0));
    await insertAgents(db.url, PROJECT, warmupAgents, 'warmup');
    await insertAgents(db.url, PROJECT, mainAgents, 'agent');
    progress(`${mainAgents.length} + ${WARMUP} warm-up agent identities made in ${SWARMS} swarms (open-file limits ${swarms.map((s) => s.fdLimits.soft).join(', ')}) and inserted in ${((Date.now() - tPrep) / 1000).toFixed(1)} s`);
    benchAbortSignal.throwIfAborted();

    const url = `ws://127.0.0.1:${cp.port}${AGENT_CONNECT_PATH}`;
    const perSwarm = Math.max(1, Math.ceil(HANDSHAKES_IN_FLIGHT / SWARMS));
    const connectAll = async (range: (i: number) => { from: number; count: number }, agentVersion: string, deadlineMs: number): Promise<ConnectReport[]> => {
      const ticker = setInterval(() => {
        const c = swarms.reduce((a, s) => a + s.progress.connected, 0);
        const f = swarms.reduce((a, s) => a + s.progress.failedAttempts, 0);
        progress(`  … ${c} connected, ${f} failed attempts`);
      }, 5000);
      try {
        return await Promise.all(swarms.map((s, i) => s.connect({
          url, ...range(i), localAddresses: addresses.slice(i * ADDRESSES_PER_SWARM, (i + 1) * ADDRESSES_PER_SWARM),
          concurrency: perSwarm, handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS, retries: 1, agentVersion, deadlineMs,
        })));
      } finally {
        clearInterval(ticker);
      }
    };

    // --- warm-up, then "before" ----------------------------------------------------------
    progress(`warm-up: ${WARMUP} agents connect, say hello and disconnect`);
    const warm = await connectAll((i) => ({ from: 0, count: warmupShares[i] ?? 0 }), WARMUP_VERSION, 60_000);
    const warmConnected = warm.reduce((a, r) => a + r.connected, 0);
    await waitForHellos(db.url, WARMUP_VERSION, warmConnected, 20_000);
    await Promise.all(swarms.map((s, i) => s.close(0, warmupShares[i] ?? 0)));
    if (warmConnected < WARMUP) progress(`WARNING: only ${warmConnected} of ${WARMUP} warm-up agents connected: ${JSON.stringify(warm.reduce((a, r) => mergeCounts(a, r.failureKinds), {}))}`);
    await sleep(SETTLE_MS);
    const before = await sampleRss(cp.pid, RSS_SAMPLES, RSS_SAMPLE_INTERVAL_MS, benchAbortSignal);
    const fdsBefore = countOpenFds(cp.pid);
    const partsBefore = readRssParts(cp.pid);
    progress(`before: RSS median ${mib(before.median)} (${mib(before.min)}–${mib(before.max)}), ${fdsBefore} descriptors open`);

    // --- connect N --------------------------------------------------------------------------
    progress(`connecting ${target} agents from ${addresses.length} source addresses, ${perSwarm} handshakes in flight per swarm`);
    const tConnect = Date.now();
    const reports = await connectAll((i) => ({ from: warmupShares[i] ?? 0, count: mainShares[i] ?? 0 }), AGENT_VERSION, CONNECT_DEADLINE_MS);
    const connectSeconds = (Date.now() - tConnect) / 1000;
    const connectedReported = reports.reduce((a, r) => a + r.connected, 0);
    const failureKinds = reports.reduce<Record<string, number>>((a, r) => mergeCounts(a, r.failureKinds), {});
    const failedAttempts = reports.reduce((a, r) => a + r.failedAttempts, 0);
    const notConnected = reports.reduce((a, r) => a + r.notConnected, 0);
    const notAttempted = reports.reduce((a, r) => a + r.notAttempted, 0);
    progress(`${connectedReported} of ${target} connected in ${connectSeconds.toFixed(1)} s (${round(connectedReported / Math.max(connectSeconds, 0.001))}/s); ${failedAttempts} failed attempts, ${notConnected} agents not connected, ${notAttempted} not attempted`);
    for (const [reason, n] of Object.entries(failureKinds)) progress(`  failed attempt x${n}: ${reason}`);
    const helloed = await waitForHellos(db.url, AGENT_VERSION, connectedReported, 30_000);
    benchAbortSignal.throwIfAborted();

    // --- "after" ----------------------------------------------------------------------------
    await sleep(SETTLE_MS);
    const after = await sampleRss(cp.pid, RSS_SAMPLES, RSS_SAMPLE_INTERVAL_MS, benchAbortSignal);
    const fdsAfter = countOpenFds(cp.pid);
    const partsAfter = readRssParts(cp.pid);
    const peak = readPeakRssBytes(cp.pid);
    const statuses = await Promise.all(swarms.map((s) => s.status()));
    const connections = statuses.reduce((a, s) => a + s.open, 0);
    const dropped = statuses.reduce((a, s) => a + s.dropped, 0);
    const dropKinds = statuses.reduce<Record<string, number>>((a, s) => mergeCounts(a, s.dropKinds), {});
    const unexpectedMessages = statuses.reduce((a, s) => a + s.unexpectedMessages, 0);
    progress(`after: RSS median ${mib(after.median)} (${mib(after.min)}–${mib(after.max)}), peak ${mib(peak)}, ${fdsAfter} descriptors open; ${connections} sockets open, ${dropped} dropped since welcome`);

    // --- report -----------------------------------------------------------------------------
    const bytesPerConnection = connections > 0 ? (after.median - before.median) / connections : 0;
    const ratio = bytesPerConnection / GOAL_BYTES_PER_CONNECTION;
    const reachedGoal = connections >= goalConnections;
    const goalMet = reachedGoal && connections > 0 && bytesPerConnection <= GOAL_BYTES_PER_CONNECTION;
    const notes: string[] = [];
    if (!reachedGoal) notes.push(`only ${connections} connections held (goal ${goalConnections}; target ${target})`);
    if (target < goalConnections) notes.push(`target ${target} below the goal: the control plane's open-file limit is ${fdLimit}`);
    if (helloed < connectedReported) notes.push(`${connectedReported - helloed} hellos not seen in the database when measuring`);
    if (dropped > 0) notes.push(`${dropped} connections dropped after welcome`);
    printTable({ target, goalConnections, connections, fdLimit, before, after, bytesPerConnection, ratio, goalMet, connectSeconds, failedAttempts, failureKinds, notes });
    return {
      connections,
      fdLimit,
      bytesPerConnection: Math.round(bytesPerConnection),
      ratio: round(ratio, 3),
      goalConnections,
      goalBytesPerConnection: GOAL_BYTES_PER_CONNECTION,
      goalMet,
      target,
      ...(notes.length > 0 ? { notes } : {}),
      rssBeforeBytes: before.median,
      rssAfterBytes: after.median,
      rssSamples: { before: before.values, after: after.values },
      rssAnonDeltaBytes: partsAfter.anon - partsBefore.anon,
      peakRssBytes: peak,
      controlPlaneFds: { atStart: fdsAtStart, before: fdsBefore, after: fdsAfter, hardLimit: cpLimits.hard },
      connectSeconds: round(connectSeconds, 1),
      connectsPerSecond: round(connectedReported / Math.max(connectSeconds, 0.001)),
      failedAttempts,
      ...(failedAttempts > 0 ? { failureKinds } : {}),
      agentsNotConnected: notConnected + notAttempted,
      helloed,
      dropped,
      ...(dropped > 0 ? { dropKinds } : {}),
      unexpectedMessages,
      warmup: warmConnected,
      swarms: SWARMS,
      sourceAddresses: addresses.length,
      handshakesInFlight: perSwarm * SWARMS,
      totalSeconds: round((Date.now() - t0) / 1000, 1),
      ...(Object.keys(overrides).length > 0 ? { controlPlaneOverrides: overrides } : {}),
      ...(nodeArgs !== '' ? { controlPlaneNodeArgs: nodeArgs } : {}),
    };
  } finally {
    await cleanups.runAll();
  }
}

/** Waits until the database shows `expected` agents of this version connected and helloed; returns the count seen. */
async function waitForHellos(databaseUrl: string, agentVersion: string, expected: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let seen = 0;
  for (;;) {
    seen = await countHelloed(databaseUrl, agentVersion);
    if (seen >= expected || Date.now() > deadline) return seen;
    benchAbortSignal.throwIfAborted();
    await sleep(500);
  }
}


function printTable(r: {
  target: number; goalConnections: number; connections: number; fdLimit: number; before: RssSamples; after: RssSamples;
  bytesPerConnection: number; ratio: number; goalMet: boolean; connectSeconds: number; failedAttempts: number; failureKinds: Record<string, number>; notes: string[];
}): void {
  const lines = [
    '',
    `agents: idle authenticated agent connections held by one control-plane process (open-file limit ${r.fdLimit})`,
    `  connections held        ${r.connections} (target ${r.target}, goal >= ${r.goalConnections})`,
    `  RSS before / after      ${mib(r.before.median)} / ${mib(r.after.median)} (medians of ${RSS_SAMPLES} samples)`,
    `  bytes per connection    ${Math.round(r.bytesPerConnection)} (goal <= ${GOAL_BYTES_PER_CONNECTION}; ratio ${round(r.ratio, 3)})`,
    `  connect phase           ${r.connectSeconds.toFixed(1)} s, ${r.failedAttempts} failed attempts`,
    ...Object.entries(r.failureKinds).map(([reason, n]) => `    x${n} ${reason}`),
    ...r.notes.map((n) => `  note: ${n}`),
    `  goal: ${r.goalMet ? 'met' : 'NOT met'}`,
    '',
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}
