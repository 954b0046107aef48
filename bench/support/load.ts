import { performance } from 'node:perf_hooks';

/**
 * Closed-loop load at fixed concurrency: `concurrency` workers each issue one
 * operation, await it, and issue the next. The first `warmupMs` are not counted;
 * then for `measureMs` every operation that *completes* inside the window counts
 * (successes with their latency, failures by message). Workers stop issuing at the
 * end of the window; the call resolves when the last in-flight operation settles,
 * so each operation must be bounded in time by itself (e.g. a request timeout).
 */
export interface LoadOptions {
  concurrency: number;
  warmupMs: number;
  measureMs: number;
  /** Stops issuing work once aborted (the result then covers less than the window). */
  signal?: AbortSignal;
}

/** One operation. Resolves on success; rejects (with a short message) on any failure. */
export type Operation = (worker: number) => Promise<void>;

export interface LoadResult {
  /** Operations that succeeded inside the measurement window. */
  ok: number;
  /** Operations that failed inside the measurement window. */
  errors: number;
  /** Failures inside the window, counted by message (at most 20 distinct messages kept). */
  errorKinds: Record<string, number>;
  /** Failures during warm-up (not otherwise counted). */
  warmupErrors: number;
  /** Length of the measurement window, in seconds. */
  measuredSeconds: number;
  /** Successes per second inside the window (failures are not counted). */
  perSecond: number;
  /** Latency of each success inside the window, ms, unsorted. */
  latenciesMs: number[];
}

const MAX_ERROR_KINDS = 20;

export async function closedLoop(options: LoadOptions, op: Operation): Promise<LoadResult> {
  const latenciesMs: number[] = [];
  const errorKinds: Record<string, number> = {};
  let ok = 0;
  let errors = 0;
  let warmupErrors = 0;
  const start = performance.now();
  const measureFrom = start + options.warmupMs;
  const measureTo = measureFrom + options.measureMs;

  const worker = async (id: number): Promise<void> => {
    while (performance.now() < measureTo && options.signal?.aborted !== true) {
      const t0 = performance.now();
      let failure: string | null = null;
      try {
        await op(id);
      } catch (err) {
        failure = (err instanceof Error ? err.message : String(err)).slice(0, 200);
      }
      const t1 = performance.now();
      if (t1 < measureFrom || t1 >= measureTo) {
        if (failure !== null && t1 < measureFrom) warmupErrors += 1;
        continue;
      }
      if (failure === null) {
        ok += 1;
        latenciesMs.push(t1 - t0);
      } else {
        errors += 1;
        if (failure in errorKinds || Object.keys(errorKinds).length < MAX_ERROR_KINDS) errorKinds[failure] = (errorKinds[failure] ?? 0) + 1;
        else errorKinds['(other)'] = (errorKinds['(other)'] ?? 0) + 1;
      }
    }
  };

  await Promise.all(Array.from({ length: options.concurrency }, (_, i) => worker(i)));
  const measuredSeconds = options.measureMs / 1000;
  return { ok, errors, errorKinds, warmupErrors, measuredSeconds, perSecond: ok / measuredSeconds, latenciesMs };
}

/** Nearest-rank percentile (p in 0..1) of unsorted values; NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = Float64Array.from(values).sort();
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(p * sorted.length)));
  return sorted[rank - 1] ?? Number.NaN;
}

/** Rounds for display and JSON (keeps NaN as null-able by JSON.stringify). */
export function round(value: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
