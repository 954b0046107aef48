import { readFileSync, readdirSync } from 'node:fs';

/**
 * CPU of process groups that bench/support/cpu.ts cannot see: several agent
 * processes at once, and a whole PostgreSQL cluster including the short-lived
 * backends of fresh logins (they exit inside the window, so sampling live pids
 * would miss them). Linux /proc only; figures are null elsewhere.
 */
const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ

interface StatTicks {
  ppid: number;
  /** utime + stime of the process itself. */
  own: number;
  /** cutime + cstime: children it has waited for (a postmaster reaps its backends). */
  reaped: number;
}

function statTicks(pid: number | string): StatTicks | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // after the comm: state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14)
    return { ppid: Number(f[1]), own: Number(f[11]) + Number(f[12]), reaped: Number(f[13]) + Number(f[14]) };
  } catch {
    return null; // the process exited, or no /proc
  }
}

/** utime + stime of each pid, summed; pids that are gone count 0. Null when none was readable. */
export function ticksOfPids(pids: readonly number[]): number | null {
  let total = 0;
  let found = false;
  for (const pid of pids) {
    const t = statTicks(pid);
    if (t === null) continue;
    total += t.own;
    found = true;
  }
  return found ? total : null;
}

/**
 * Everything a process and its direct children ever used: its own ticks, the ticks
 * of the children it reaped, and those of the children still running. Right for a
 * postmaster (backends are its direct children and it reaps each one). Null when the
 * root process is not readable.
 */
export function ticksOfTree(rootPid: number): number | null {
  const root = statTicks(rootPid);
  if (root === null) return null;
  let total = root.own + root.reaped;
  let entries: string[] = [];
  try {
    entries = readdirSync('/proc');
  } catch {
    return null; // no /proc: no figure
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const t = statTicks(entry);
    if (t !== null && t.ppid === rootPid) total += t.own;
  }
  return total;
}

/** The parent pid of `pid` (e.g. a backend's postmaster), or null. */
export function parentPid(pid: number): number | null {
  return statTicks(pid)?.ppid ?? null;
}

/** One counter read at both ends of a window, reported in % of one core. */
export class TickWindow {
  private start: { atMs: number; ticks: number | null } | null = null;

  constructor(private readonly read: () => number | null) {}

  begin(): void {
    this.start = { atMs: Date.now(), ticks: this.read() };
  }

  /** % of one core since begin(), rounded; null when either end was unreadable. */
  end(): number | null {
    const a = this.start;
    if (a === null) throw new Error('TickWindow.end() before begin()');
    const ticks = this.read();
    const seconds = (Date.now() - a.atMs) / 1000;
    if (a.ticks === null || ticks === null || seconds <= 0) return null;
    return Math.round(((ticks - a.ticks) / CLOCK_TICKS_PER_SECOND / seconds) * 100);
  }
}
