/**
 * Benchmark `leak`: N leaked PostgreSQL credentials on one server, spread over several
 * agents, neutralised by one project-wide leak request (`POST /v1/projects/:p/leaks
 * {all: true}`: each current version marked leaked, rotated at once with no grace,
 * verified by the agent with a fresh login, the old one refused), against bare
 * `ALTER ROLE … PASSWORD` per second at the same concurrency on the same cluster.
 *
 * - Real processes: the control plane (fresh database and Redis prefix, log level
 *   warn, default settings) and AGENTS × `sikker-agent run` (each enrolled, admin
 *   connection "pg" = the cluster's superuser, log level warn, file journal). The
 *   cluster is test/support/scram-postgres.ts (SCRAM-SHA-256, fsync off,
 *   max_connections 50 unless SIKKER_BENCH_LEAK_MAX_CONNECTIONS restarts it with more).
 * - N login roles made in one SQL batch; N targets (strategy replace, admin privilege)
 *   registered through the API round robin over the agents, each adopting its role's
 *   password (version 1 = the leaked value). One target per agent is preflighted for
 *   real (POST …/test); that passing report is copied in SQL onto the others.
 * - Timed window: from just before the leak request is sent until a poll of the
 *   control plane's `leaks` table (every POLL_MS, directly in its database: cheaper than
 *   N report requests) first sees N leaks and none open. totalSeconds is that span;
 *   rotationsPerSecond = neutralised ÷ totalSeconds. Past LEAK_TIMEOUT_MS the run
 *   reports what it reached.
 * - Afterwards, untimed: every leak report through GET …/leaks/:id; the agents are
 *   stopped (each keeps an idle admin connection per target for a minute); for every
 *   neutralised target a fresh login with the leaked password (must be refused) and
 *   with the current version read through the API (must log in).
 * - Baseline: AGENTS open superuser connections run `ALTER ROLE <baseline role>
 *   PASSWORD '<fresh plaintext>'` (the server derives the verifier) round robin over
 *   BASELINE_ROLES other roles, ≥ BASELINE_MIN_SECONDS and ≥ N statements, once before
 *   and once after the leak; baselinePerSecond is the pooled rate. For context, at the
 *   same concurrency: the same with SCRAM verifiers computed beforehand (what the agent
 *   sends); ALTER ROLE followed by a fresh login with the new password (the least a
 *   verified rotation does); the agent's own applier in this process.
 * - Diagnostics: CPU of the control plane, its PostgreSQL backends, the agents, the
 *   cluster (postmaster and every backend, also the short-lived ones), Redis and the
 *   machine over the window; lock waits of the control plane's backends (sampled at each
 *   poll); the agents' connections on the cluster; the pipeline's timestamps.
 *
 * Experiments (echoed in the result): SIKKER_BENCH_LEAK_CREDENTIALS, SIKKER_BENCH_LEAK_AGENTS,
 * SIKKER_BENCH_LEAK_MAX_CONNECTIONS, SIKKER_BENCH_LEAK_CP_SYNCHRONOUS_COMMIT (on|off, for the
 * control plane's database), SIKKER_BENCH_AGENT_NODE_ARGS, SIKKER_BENCH_CP_ENV.
 *
 * Last line (via bench/run.ts): credentials, agents, totalSeconds, rotationsPerSecond,
 * baselinePerSecond, ratio (= rotationsPerSecond ÷ baselinePerSecond), plus diagnostics.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { journalPath } from '../agent/state/state-dir.js';
import { alterRoleRate, type AlterRoleRate } from './support/alter-role-baseline.js';
import { applierRate } from './support/applier-rate.js';
import { CleanupStack } from './support/cleanup.js';
import { controlPlaneEnvOverrides } from './support/control-plane-process.js';
import { checkCredentials, reportStates } from './support/credential-check.js';
import { setUpLeakFleet, type LeakFleet } from './support/leak-fleet.js';
import { leakResult, printLeakSummary, type LeakRunOptions } from './support/leak-summary.js';
import { leakTimeline, printTimeline } from './support/leak-timeline.js';
import { runLeakWindow, withClient } from './support/leak-window.js';
import { round } from './support/load.js';

export const DEFAULT_CREDENTIALS = 1000;
/** Agent processes: on 2 cores 4 did better than 2 or 8 (docs/benchmarks.md, "leak"). */
export const DEFAULT_AGENTS = 4;
export const BASELINE_ROLES = 1000;
export const BASELINE_MIN_SECONDS = 5;
/** Diagnostic: the agent's applier in this process, one lane per agent. */
export const APPLIER_MIN_SECONDS = 3;
/** Poll of the leaks table (and activity sample) while the leak is open. */
export const POLL_MS = 50;
/** Past this the run reports what it reached. */
export const LEAK_TIMEOUT_MS = 120_000;
/** Concurrency of the untimed checks (reports, logins). */
export const CHECK_LANES = 8;
/** Goals from BENCHMARKS.md. */
export const GOALS = { credentials: 1000, totalSeconds: 10, ratio: 0.7 };
/** bench/run.ts kills the run (cleaning up) if it takes longer than this. */
export const timeoutMs = 15 * 60_000;

const PROJECT = 'bench';

function progress(message: string): void {
  process.stderr.write(`[leak] ${message}\n`);
}

export async function run(): Promise<Record<string, unknown>> {
  const cleanups = new CleanupStack();
  try {
    const options = runOptions();
    const fleet = await setUpLeakFleet(cleanups, {
      project: PROJECT, credentials: options.credentials, agents: options.agents, baselineRoles: BASELINE_ROLES, maxConnections: options.maxConnections,
      controlPlaneSynchronousCommit: options.controlPlaneSynchronousCommit, agentNodeArgs: options.agentNodeArgs, progress,
    });
    const baseline = (extra: Partial<Parameters<typeof alterRoleRate>[0]> = {}): Promise<AlterRoleRate> => alterRoleRate({
      url: fleet.cluster.superuserUrl, roles: fleet.baselineRoles, connections: options.agents, minSeconds: BASELINE_MIN_SECONDS, minAlters: options.credentials, password: 'plaintext', ...extra,
    });
    progress(`baseline: ${options.agents} connections × ALTER ROLE … PASSWORD '<plaintext>' for ≥ ${BASELINE_MIN_SECONDS} s and ≥ ${options.credentials} statements`);
    const before = await baseline();
    progress(`  ${round(before.perSecond, 0)}/s`);

    const window = await runLeakWindow(fleet, { project: PROJECT, credentials: options.credentials, pollMs: POLL_MS, timeoutMs: LEAK_TIMEOUT_MS, progress });
    progress(`${window.counts.neutralised}/${options.credentials} neutralised${window.settled ? '' : ' (NOT all: timed out)'} in ${round(window.seconds, 2)} s; collecting the timeline`);
    const timeline = await leakTimeline(fleet.db.url, fleet.projectId, window.t0, window.postMs);
    const checks = await afterTheLeak(fleet, window.leakIds);

    progress('baseline again; then, for context, with SCRAM verifiers computed beforehand, with a fresh login after each, and the agent\'s applier in this process');
    const after = await baseline();
    const verifier = await baseline({ password: 'verifier' });
    const alterAndLogin = await baseline({ verifyLoginPort: fleet.cluster.port });
    const applier = await applierRate({ port: fleet.cluster.port, adminUrl: fleet.cluster.superuserUrl, roles: fleet.baselineRoles, lanes: options.agents, minSeconds: APPLIER_MIN_SECONDS });

    const figures = { options, goals: GOALS, fleet, window, timeline, ...checks, before, after, verifier, alterAndLogin, applier };
    printLeakSummary(figures);
    printTimeline(timeline);
    return leakResult(figures);
  } finally {
    await cleanups.runAll();
  }
}

/** Sizes and experiments from the environment, checked once. */
function runOptions(): LeakRunOptions {
  const syncCommit = process.env['SIKKER_BENCH_LEAK_CP_SYNCHRONOUS_COMMIT'] ?? '';
  if (!['', 'on', 'off'].includes(syncCommit)) throw new Error(`SIKKER_BENCH_LEAK_CP_SYNCHRONOUS_COMMIT: expected on or off, got "${syncCommit}"`);
  return {
    credentials: intFromEnv('SIKKER_BENCH_LEAK_CREDENTIALS', DEFAULT_CREDENTIALS, 1, 5000),
    agents: intFromEnv('SIKKER_BENCH_LEAK_AGENTS', DEFAULT_AGENTS, 1, 16),
    maxConnections: (process.env['SIKKER_BENCH_LEAK_MAX_CONNECTIONS'] ?? '') === '' ? null : intFromEnv('SIKKER_BENCH_LEAK_MAX_CONNECTIONS', 0, 20, 10_000),
    controlPlaneSynchronousCommit: syncCommit === '' ? null : (syncCommit as 'on' | 'off'),
    agentNodeArgs: (process.env['SIKKER_BENCH_AGENT_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== ''),
    controlPlaneOverrides: controlPlaneEnvOverrides(),
    timeoutMs: LEAK_TIMEOUT_MS,
  };
}

function intFromEnv(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name}: expected an integer from ${min} to ${max}, got "${raw}"`);
  return n;
}

/**
 * Untimed checks: every leak report through the API; then, with the agents stopped
 * (each keeps an idle admin connection per target for a minute, agent/commands/applier-pool.ts,
 * which would leave the cluster no slot for the logins), fresh logins for every
 * neutralised target.
 */
async function afterTheLeak(fleet: LeakFleet, leakIds: readonly string[]) {
  progress(`checking every leak report (GET …/leaks/:id, ${CHECK_LANES} at a time)`);
  const states = await reportStates(fleet.admin, PROJECT, leakIds, CHECK_LANES);
  progress('stopping the agents (their idle admin connections would hold the cluster\'s connection slots)');
  await Promise.all(fleet.agents.map((a) => a.stop()));
  const journalBytes = fleet.agentHomes.map((home) => fileSize(journalPath(join(home, 'state'))));
  const names = await withClient(fleet.db.url, async (c) => new Set((await c.query<{ name: string }>(
    `SELECT t.name FROM leaks l JOIN targets t ON t.target_id = l.target_id WHERE l.project_id = $1 AND l.state = 'neutralised'`, [fleet.projectId],
  )).rows.map((r) => r.name)));
  const neutralised = fleet.targets.filter((t) => names.has(t.name));
  progress(`fresh logins for ${neutralised.length} neutralised targets: the leaked password must be refused, the current one must log in`);
  const logins = await checkCredentials(fleet.admin, PROJECT, fleet.cluster.port, neutralised, CHECK_LANES);
  return { states, logins, journalBytes };
}

function fileSize(path: string): number | null {
  try {
    return statSync(path).size;
  } catch {
    return null; // no journal: the agent never took a command
  }
}
