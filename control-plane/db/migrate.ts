import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Pool } from 'pg';
import { SikkerError } from '../../shared/errors/sikker-error.js';

/** Migrations are plain SQL files applied in name order, each in its own transaction, once. */
function migrationsDir(): string {
  // Compiled code runs from dist/control-plane/db; the SQL files stay in the source tree.
  const here = dirname(fileURLToPath(import.meta.url));
  return join(here, '..', '..', '..', 'control-plane', 'db', 'migrations');
}

/**
 * Applies every migration not yet applied. Concurrent replicas are serialised by an
 * advisory lock, so starting several at once is safe.
 */
export async function migrate(pool: Pool): Promise<string[]> {
  const files = readdirSync(migrationsDir()).filter((f) => f.endsWith('.sql')).sort();
  const client = await pool.connect();
  const applied: string[] = [];
  try {
    await client.query('SELECT pg_advisory_lock(727274001)');
    await client.query('CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())');
    const done = new Set((await client.query<{ name: string }>('SELECT name FROM schema_migrations')).rows.map((r) => r.name));
    for (const file of files) {
      if (done.has(file)) continue;
      const sql = readFileSync(join(migrationsDir(), file), 'utf8');
      try {
        await client.query('BEGIN');
        await client.query(sql);
        await client.query('INSERT INTO schema_migrations (name) VALUES ($1)', [file]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK');
        throw new SikkerError('ERR_INTERNAL', `migration ${file} failed`, { cause: err });
      }
      applied.push(file);
    }
  } finally {
    await client.query('SELECT pg_advisory_unlock(727274001)').catch(() => undefined); // the session ends anyway on release
    client.release();
  }
  return applied;
}
