import type { Applier } from '../appliers/applier.js';

/** How long an idle admin applier (and its open admin connection) is kept for the next command. */
const IDLE_MS = 60_000;

/**
 * Keeps admin-mode appliers — each holding at most one admin connection — for a minute
 * after use, so back-to-back rotations of a target do not each pay a new login. Keyed by
 * the whole target spec (engine, host, port, user, TLS, admin connection name). A broken
 * connection is dropped by the applier itself and reopened on the next call. Commands
 * run one at a time, so an applier is never used concurrently.
 */
export class ApplierPool {
  readonly #idle = new Map<string, { applier: Applier; timer: NodeJS.Timeout }>();

  /** An idle applier for `key`, taken out of the pool; undefined when none. */
  take(key: string): Applier | undefined {
    const entry = this.#idle.get(key);
    if (entry === undefined) return undefined;
    clearTimeout(entry.timer);
    this.#idle.delete(key);
    return entry.applier;
  }

  /** Returns an applier after use; it is closed when idle too long or when another one is already kept. */
  give(key: string, applier: Applier): void {
    if (this.#idle.has(key)) {
      void applier.close().catch(() => undefined);
      return;
    }
    const timer = setTimeout(() => {
      this.#idle.delete(key);
      void applier.close().catch(() => undefined);
    }, IDLE_MS);
    timer.unref();
    this.#idle.set(key, { applier, timer });
  }

  async closeAll(): Promise<void> {
    const entries = [...this.#idle.values()];
    this.#idle.clear();
    for (const { applier, timer } of entries) {
      clearTimeout(timer);
      await applier.close().catch(() => undefined);
    }
  }
}
