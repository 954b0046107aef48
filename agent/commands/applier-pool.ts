import type { Applier } from '../appliers/applier.js';

/** How long an idle admin applier (and its open admin connection) is kept for the next command. */
const IDLE_MS = 60_000;
/** Idle appliers kept in all (each holds one admin connection: a database's connection slots are few). */
const MAX_IDLE = 8;

/**
 * Keeps admin-mode appliers — each holding at most one admin connection — for a minute
 * after use, so back-to-back rotations on a server do not each pay a new login. Keyed by
 * server and admin login (engine, host, port, database, TLS, admin connection name and
 * the engine's account options), not by user: requests name their user, so a thousand
 * targets on one server share one admin connection. At most {@link MAX_IDLE} are kept;
 * the oldest is closed first. A broken connection is dropped by the applier itself and
 * reopened on the next call. Commands run one at a time, so an applier is never used
 * concurrently.
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
    while (this.#idle.size > MAX_IDLE) {
      const [oldestKey, oldest] = this.#idle.entries().next().value as [string, { applier: Applier; timer: NodeJS.Timeout }];
      clearTimeout(oldest.timer);
      this.#idle.delete(oldestKey);
      void oldest.applier.close().catch(() => undefined);
    }
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
