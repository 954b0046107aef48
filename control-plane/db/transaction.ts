import type { Pool, PoolClient } from 'pg';
import type { Logger } from '../../shared/logging/logger.js';

/** Runs `work` in one transaction; rolls back and rethrows on any error. */
export async function withTransaction<T>(pool: Pick<Pool, 'connect'>, logger: Logger, work: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch((rollbackErr: unknown) => logger.warn({ err: rollbackErr }, 'rollback failed'));
    throw err;
  } finally {
    client.release();
  }
}
