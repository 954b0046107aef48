import type { Pool, PoolClient, QueryResult, QueryResultRow } from 'pg';
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

/**
 * {@link withTransaction} whose first statement travels with BEGIN, in one round trip
 * instead of two: `first` is sent as a simple query after `BEGIN;`, so it must be complete
 * SQL text with no parameters (the caller inlines values it has validated). `work` gets
 * that statement's rows. Everything else is as in {@link withTransaction}.
 */
export async function withTransactionFrom<T, R extends QueryResultRow>(pool: Pick<Pool, 'connect'>, logger: Logger, first: string, work: (client: PoolClient, rows: R[]) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    const results = (await client.query<R>(`BEGIN; ${first}`)) as unknown as Array<QueryResult<R>>;
    const result = await work(client, results[1]?.rows ?? []);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch((rollbackErr: unknown) => logger.warn({ err: rollbackErr }, 'rollback failed'));
    throw err;
  } finally {
    client.release();
  }
}
