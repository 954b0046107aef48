/**
 * /proc helpers for the agent benchmarks (Linux only): resident memory, open-file
 * limits and counts of another process, and raising a child's open-file limit.
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** VmRSS of `pid` in bytes (throws if the process is gone or /proc is unavailable). */
export function readRssBytes(pid: number): number {
  return readStatusKb(pid, 'VmRSS') * 1024;
}

/** VmHWM (peak resident set) of `pid` in bytes. */
export function readPeakRssBytes(pid: number): number {
  return readStatusKb(pid, 'VmHWM') * 1024;
}

/** A `<field>: <n> kB` line of /proc/<pid>/status, in kB. */
function readStatusKb(pid: number, field: string): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = new RegExp(`^${field}:\\s+(\\d+)\\s+kB$`, 'm').exec(status);
  if (match === null || match[1] === undefined) throw new Error(`/proc/${pid}/status has no ${field}`);
  return Number(match[1]);
}

/** The RssAnon / RssFile / RssShmem split of VmRSS, in bytes (diagnostics). */
export function readRssParts(pid: number): { anon: number; file: number; shmem: number } {
  return { anon: readStatusKb(pid, 'RssAnon') * 1024, file: readStatusKb(pid, 'RssFile') * 1024, shmem: readStatusKb(pid, 'RssShmem') * 1024 };
}

export interface FdLimits {
  soft: number;
  hard: number;
}

/** "Max open files" of `pid` from /proc/<pid>/limits ("unlimited" reads as Infinity). */
export function readFdLimits(pid: number): FdLimits {
  const limits = readFileSync(`/proc/${pid}/limits`, 'utf8');
  const match = /^Max open files\s+(\S+)\s+(\S+)/m.exec(limits);
  if (match === null) throw new Error(`/proc/${pid}/limits has no "Max open files" line`);
  const parse = (v: string | undefined): number => (v === 'unlimited' ? Number.POSITIVE_INFINITY : Number(v));
  return { soft: parse(match[1]), hard: parse(match[2]) };
}

/** Number of open file descriptors of `pid`. */
export function countOpenFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/**
 * Raises the open-file limit of a running process as far as this machine allows:
 * first soft = hard = the kernel's per-process ceiling (fs.nr_open, needs
 * CAP_SYS_RESOURCE and no container cap), then soft = its current hard limit.
 * Uses util-linux `prlimit --pid`; failures are not errors (read the result back
 * with {@link readFdLimits}).
 */
export async function raiseFdLimit(pid: number): Promise<FdLimits> {
  let ceiling = 1_048_576;
  try {
    ceiling = Number(readFileSync('/proc/sys/fs/nr_open', 'utf8').trim()) || ceiling;
  } catch {
    // keep the default ceiling
  }
  const before = readFdLimits(pid);
  if (before.hard < ceiling && !(await prlimit(pid, ceiling, ceiling))) {
    const now = readFdLimits(pid);
    if (now.soft < now.hard && Number.isFinite(now.hard)) await prlimit(pid, now.hard, now.hard);
  } else if (before.soft < before.hard && Number.isFinite(before.hard)) {
    await prlimit(pid, before.hard, before.hard);
  }
  return readFdLimits(pid);
}

function prlimit(pid: number, soft: number, hard: number): Promise<boolean> {
  return new Promise((resolve) => {
    execFile('prlimit', ['--pid', String(pid), `--nofile=${soft}:${hard}`], { timeout: 5000 }, (err) => resolve(err === null));
  });
}

export interface RssSamples {
  /** Median of the samples, bytes. */
  median: number;
  min: number;
  max: number;
  values: number[];
}

/** Takes `count` VmRSS samples of `pid`, `intervalMs` apart, and returns their median (and spread). */
export async function sampleRss(pid: number, count: number, intervalMs: number, signal?: AbortSignal): Promise<RssSamples> {
  const values: number[] = [];
  for (let i = 0; i < count; i += 1) {
    if (i > 0) await sleep(intervalMs);
    signal?.throwIfAborted();
    values.push(readRssBytes(pid));
  }
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 === 1 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
  return { median, min: sorted[0] ?? 0, max: sorted[sorted.length - 1] ?? 0, values };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Bytes as MiB with one decimal, for tables. */
export function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
