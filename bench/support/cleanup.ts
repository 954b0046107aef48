/**
 * Cleanups that must run however a benchmark ends: normally (the benchmark's own
 * `finally`), on SIGINT/SIGTERM, or when bench/run.ts's watchdog gives up. A
 * benchmark registers each resource as it acquires it; bench/run.ts calls
 * {@link runAllCleanups} on signals and on timeout.
 */

type Cleanup = () => unknown;

interface Entry {
  label: string;
  fn: Cleanup;
  done: Promise<void> | undefined;
}

const registry: Entry[] = [];

const abortController = new AbortController();
/**
 * Aborted when the run is abandoned (signal or timeout), before the cleanups run:
 * load loops stop issuing work and benchmarks stop between phases.
 */
export const benchAbortSignal: AbortSignal = abortController.signal;

/** Each cleanup is given this long before it is abandoned (so a dead server cannot hang the exit). */
const CLEANUP_TIMEOUT_MS = 15_000;

function runEntry(entry: Entry): Promise<void> {
  entry.done ??= (async () => {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        Promise.resolve().then(entry.fn),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`timed out after ${CLEANUP_TIMEOUT_MS} ms`)), CLEANUP_TIMEOUT_MS);
        }),
      ]);
    } catch (err) {
      process.stderr.write(`[cleanup] ${entry.label} failed: ${err instanceof Error ? err.message : String(err)}\n`);
    } finally {
      clearTimeout(timer);
      const i = registry.indexOf(entry);
      if (i >= 0) registry.splice(i, 1);
    }
  })();
  return entry.done;
}

/** A group of cleanups owned by one benchmark run; run in reverse order of registration. */
export class CleanupStack {
  private readonly entries: Entry[] = [];

  /** Registers `fn` (here and globally, for signals). Idempotent: it runs at most once. */
  defer(label: string, fn: Cleanup): void {
    const entry: Entry = { label, fn, done: undefined };
    this.entries.push(entry);
    registry.push(entry);
    // Acquired after the run was abandoned (its cleanups already ran): release it now.
    if (benchAbortSignal.aborted) void runEntry(entry);
  }

  /** Runs every cleanup of this stack, last registered first; never throws (failures go to stderr). */
  async runAll(): Promise<void> {
    for (const entry of [...this.entries].reverse()) await runEntry(entry);
  }
}

/** Runs every registered cleanup of every stack, newest first. Used on signals and timeouts. */
export async function runAllCleanups(): Promise<void> {
  abortController.abort(new Error('benchmark abandoned'));
  for (const entry of [...registry].reverse()) await runEntry(entry);
}
