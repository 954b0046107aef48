/**
 * The timed part of the `leak` benchmark: sends one project-wide leak request and polls
 * the control plane's `leaks` table until every leak is settled (or the deadline),
 * with CPU and lock-wait sampling over exactly that window.
 */
import pg from 'pg';
import { withTimeout } from './bench-vault.js';
import { CpuSampler, type CpuShares } from './cpu.js';
import type { LeakFleet } from './leak-fleet.js';
import { LeakWatcher, type LeakCounts, type WaitSummary } from './leak-watch.js';
import { parentPid, ticksOfPids, ticksOfTree, TickWindow } from './process-cpu.js';

export interface LeakWindow {
  /** Date.now() just before the leak request was sent. */
  t0: number;
  /** Every leak settled (neutralised or exposed) before the deadline. */
  settled: boolean;
  counts: LeakCounts;
  /** t0 → the poll that first saw every leak settled (or the deadline). */
  seconds: number;
  /** When the leak request was answered (every run started and dispatched), ms after t0; null if it was not. */
  postMs: number | null;
  postError: string | null;
  leakIds: string[];
  waits: WaitSummary;
  cpu: { controlPlane: CpuShares; agents: number | null; cluster: number | null };
}

export interface LeakWindowOptions {
  project: string;
  credentials: number;
  pollMs: number;
  timeoutMs: number;
  progress: (message: string) => void;
}

/** Runs the window. Rejects only when the watcher's own connections fail; a failed leak request is reported in `postError`. */
export async function runLeakWindow(fleet: LeakFleet, o: LeakWindowOptions): Promise<LeakWindow> {
  const watcher = new LeakWatcher(fleet.db.url, fleet.cluster.superuserUrl, fleet.projectId);
  await watcher.open();
  try {
    const postmaster = await clusterPostmaster(fleet.cluster.superuserUrl);
    const cpCpu = new CpuSampler(fleet.cp.pid, () => controlPlaneBackends(fleet.db.url));
    const agentCpu = new TickWindow(() => ticksOfPids(fleet.agents.map((a) => a.pid)));
    const clusterCpu = new TickWindow(() => (postmaster === null ? null : ticksOfTree(postmaster)));
    await cpCpu.begin();
    agentCpu.begin();
    clusterCpu.begin();

    o.progress(`leak: POST /v1/projects/${o.project}/leaks {"all": true} for ${o.credentials} targets over ${fleet.agents.length} agents; polling the leaks table every ${o.pollMs} ms`);
    const t0 = Date.now();
    let postMs: number | null = null;
    let postError: string | null = null;
    let leakIds: string[] = [];
    const posting = fleet.admin.ok('POST', `/v1/projects/${o.project}/leaks`, { all: true }).then(
      (body: { leaks: Array<{ leakId: string }> }) => {
        postMs = Date.now() - t0;
        leakIds = body.leaks.map((l) => l.leakId);
      },
      (err: unknown) => {
        postError = err instanceof Error ? err.message : String(err);
      },
    );
    const { counts, settledAtMs } = await watcher.pollUntilSettled(o.credentials, o.pollMs, t0 + o.timeoutMs, (c) =>
      o.progress(`  +${((Date.now() - t0) / 1000).toFixed(1)} s: ${c.total} leaks, ${c.neutralised} neutralised, ${c.exposed} exposed${postMs === null ? '' : ` (request answered at +${(postMs / 1000).toFixed(1)} s)`}`));
    const seconds = ((settledAtMs ?? Date.now()) - t0) / 1000;
    const [controlPlane, agents, cluster] = [await cpCpu.end(), agentCpu.end(), clusterCpu.end()];
    await withTimeout(posting, 'the leak request', 120_000).catch((err: unknown) => {
      postError ??= err instanceof Error ? err.message : String(err);
    });
    return { t0, settled: settledAtMs !== null, counts, seconds, postMs, postError, leakIds, waits: watcher.summary(), cpu: { controlPlane, agents, cluster } };
  } finally {
    await watcher.close();
  }
}

/** Backends of the control plane's database, without the benchmark's own monitoring connections. */
async function controlPlaneBackends(url: string): Promise<number[]> {
  return withClient(url, async (c) =>
    (await c.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name <> 'bench-monitor'")).rows.map((r) => r.pid));
}

/** The cluster's postmaster: the parent of one of its backends. */
async function clusterPostmaster(url: string): Promise<number | null> {
  return withClient(url, async (c) => {
    const pid = (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
    return pid === undefined ? null : parentPid(pid);
  });
}

/** Runs `fn` on a new connection to `url` and closes it. */
export async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000, application_name: 'bench-monitor' });
  client.on('error', () => undefined); // surfaced through the awaited queries
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}
