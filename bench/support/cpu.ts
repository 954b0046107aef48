import { readFileSync, readdirSync } from 'node:fs';

/**
 * CPU accounting from /proc (Linux), to show where a phase's CPU went on a shared
 * machine: this process, one child, the PostgreSQL backends serving one database
 * (pids supplied by the caller, looked up at both ends of the window), Redis, and the
 * whole machine (so a noisy neighbour is visible). Everything is in "% of one core".
 * Where /proc is unavailable the figures are null. A backend that exits inside the
 * window loses its ticks (benchmarks keep their pools open, so this is rare).
 */
const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ; 100 on every Linux architecture Node supports

interface Snapshot {
  atMs: number;
  selfTicks: number;
  childTicks: number | null;
  /** Ticks per PostgreSQL backend pid. */
  postgres: Map<number, number>;
  redisTicks: number | null;
  machineBusyTicks: number | null;
  machineTotalTicks: number | null;
}

export interface CpuShares {
  /** The benchmark process itself (load generator / baseline client). */
  bench: number | null;
  /** The child under test (the control plane). */
  child: number | null;
  /** PostgreSQL backends of the benchmark's database. */
  postgres: number | null;
  redis: number | null;
  /** Every process on the machine (non-idle time), % of one core. */
  machine: number | null;
  /** Cores on the machine (machine's ceiling is cores × 100). */
  cores: number | null;
}

function procTicks(pid: number | string): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // after the comm: state(0) ... utime(11) stime(12)
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return null;
  }
}

function ticksOf(commPrefix: string): number | null {
  let total = 0;
  let found = false;
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return null;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const comm = readFileSync(`/proc/${entry}/comm`, 'utf8').trim();
      if (!comm.startsWith(commPrefix)) continue;
      const t = procTicks(entry);
      if (t !== null) {
        total += t;
        found = true;
      }
    } catch {
      // process went away
    }
  }
  return found ? total : null;
}

function machineTicks(): { busy: number; total: number; cores: number } | null {
  try {
    const lines = readFileSync('/proc/stat', 'utf8').split('\n');
    const cpu = (lines[0] ?? '').split(/\s+/).slice(1).filter((s) => s !== '').map(Number);
    const total = cpu.reduce((a, b) => a + b, 0);
    const idle = (cpu[3] ?? 0) + (cpu[4] ?? 0);
    const cores = lines.filter((l) => /^cpu\d+ /.test(l)).length;
    return { busy: total - idle, total, cores };
  } catch {
    return null;
  }
}

export class CpuSampler {
  private start: Snapshot | null = null;

  /** `postgresPids` lists the backend pids to count (e.g. from pg_stat_activity for one database). */
  constructor(private readonly childPid: number | null, private readonly postgresPids: () => Promise<number[]>) {}

  private async snapshot(): Promise<Snapshot> {
    let pids: number[] = [];
    try {
      pids = await this.postgresPids();
    } catch {
      // no figures for PostgreSQL
    }
    const postgres = new Map<number, number>();
    for (const pid of pids) {
      const t = procTicks(pid);
      if (t !== null) postgres.set(pid, t);
    }
    const self = process.cpuUsage();
    const machine = machineTicks();
    return {
      atMs: Date.now(),
      selfTicks: ((self.user + self.system) / 1e6) * CLOCK_TICKS_PER_SECOND,
      childTicks: this.childPid === null ? null : procTicks(this.childPid),
      postgres,
      redisTicks: ticksOf('redis-server'),
      machineBusyTicks: machine?.busy ?? null,
      machineTotalTicks: machine?.total ?? null,
    };
  }

  async begin(): Promise<void> {
    this.start = await this.snapshot();
  }

  /** Shares since begin(), in % of one core, rounded. */
  async end(): Promise<CpuShares> {
    const a = this.start;
    if (a === null) throw new Error('CpuSampler.end() before begin()');
    const b = await this.snapshot();
    const seconds = (b.atMs - a.atMs) / 1000;
    const pct = (x: number | null, y: number | null): number | null =>
      x === null || y === null || seconds <= 0 ? null : Math.round(((y - x) / CLOCK_TICKS_PER_SECOND / seconds) * 100);
    const cores = machineTicks()?.cores ?? null;
    let machine: number | null = null;
    if (a.machineBusyTicks !== null && b.machineBusyTicks !== null && a.machineTotalTicks !== null && b.machineTotalTicks !== null && cores !== null) {
      const total = b.machineTotalTicks - a.machineTotalTicks;
      machine = total > 0 ? Math.round(((b.machineBusyTicks - a.machineBusyTicks) / total) * cores * 100) : null;
    }
    // Backends seen at the end: ticks since the start (0 at the start if born inside the window).
    let postgresDelta = 0;
    for (const [pid, ticks] of b.postgres) postgresDelta += ticks - (a.postgres.get(pid) ?? 0);
    return {
      bench: pct(a.selfTicks, b.selfTicks),
      child: pct(a.childTicks, b.childTicks),
      postgres: b.postgres.size === 0 ? null : pct(0, postgresDelta),
      redis: pct(a.redisTicks, b.redisTicks),
      machine,
      cores,
    };
  }
}
