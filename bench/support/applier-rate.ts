/**
 * Diagnostic for the `leak` benchmark: what the agents' database work alone sustains,
 * with the agent's own PostgreSQL applier in this process, one lane per agent. Each
 * apply builds a fresh applier and closes it — what an agent does for a target it has
 * not rotated in the last minute (its applier pool is keyed per target): admin login,
 * SCRAM verifier, ALTER ROLE, a fresh login with the new password.
 */
import { randomBytes } from 'node:crypto';
import { createApplier } from '../../agent/appliers/index.js';
import { benchAbortSignal } from './cleanup.js';

export interface ApplierRate {
  lanes: number;
  applies: number;
  seconds: number;
  perSecond: number;
}

/** Runs apply + verify over `roles` (round robin) on `lanes` lanes for at least `minSeconds`. Rejects if a new password does not log in. */
export async function applierRate(o: { port: number; adminUrl: string; roles: readonly string[]; lanes: number; minSeconds: number }): Promise<ApplierRate> {
  let next = 0;
  let applies = 0;
  const one = async (): Promise<void> => {
    const role = o.roles[next % o.roles.length] as string;
    next += 1;
    const target = { engine: 'postgres' as const, host: '127.0.0.1', port: o.port, database: 'postgres', user: role, tls: { mode: 'disable' as const }, privilege: { mode: 'admin' as const, adminConnection: 'pg' } };
    const password = randomBytes(24).toString('base64url');
    const applier = await createApplier(target, { url: o.adminUrl });
    try {
      await applier.apply({ user: role, newPassword: password, strategy: 'replace' });
      if ((await applier.verify({ user: role, password })).outcome !== 'ok') throw new Error(`the applier's new password for ${role} does not log in`);
    } finally {
      await applier.close();
    }
  };
  await Promise.all(Array.from({ length: o.lanes }, async () => {
    for (let i = 0; i < 3; i += 1) await one(); // warm-up
  }));
  const t0 = performance.now();
  const deadline = t0 + o.minSeconds * 1000;
  await Promise.all(Array.from({ length: o.lanes }, async () => {
    while (performance.now() < deadline) {
      benchAbortSignal.throwIfAborted();
      await one();
      applies += 1;
    }
  }));
  const seconds = (performance.now() - t0) / 1000;
  return { lanes: o.lanes, applies, seconds, perSecond: applies / seconds };
}
