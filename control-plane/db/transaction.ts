import pg, { type Pool, type PoolClient, type QueryResult, type QueryResultRow } from 'pg';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import type { Logger } from '../../shared/logging/logger.js';
import { takeCommitted } from './commit-with.js';

/** Runs `work` in one transaction; rolls back and rethrows on any error. */
export async function withTransaction<T>(pool: Pick<Pool, 'connect'>, logger: Logger, work: (client: PoolClient) => Promise<T>): Promise<T> {
  return transact(pool, logger, async (client) => {
    await client.query('BEGIN');
    return work(client);
  });
}

/**
 * A transaction's statement failed on purpose, having stored nothing, because something it
 * was built on moved (audit-appender.ts AuditHeadMovedError): {@link transact} rolls back and
 * runs the whole transaction again at once, a few times at most, and marked as such
 * ({@link isRunAgain}): the run again must not take the optimistic path that failed.
 */
export class RunAgainError extends SikkerError {}

const RUNS_AFTER_RUN_AGAIN = 3;
/** The connections of transactions run again, while they run (a mark on the client, not an AsyncLocalStorage: that would tax every promise of the process from its first use). */
const runningAgain = new WeakSet<PoolClient>();

/**
 * Whether the transaction in progress on `client` is run again after a {@link RunAgainError}:
 * code that chose an optimistic path (one that fails when another writer got in first) takes
 * the other one then, so that under contention a transaction fails at most once this way.
 */
export function isRunAgain(client: PoolClient): boolean {
  return runningAgain.has(client);
}

/**
 * `body` begins the transaction and does its work; then COMMIT (unless its last statement
 * carried the COMMIT: commit-with.ts), or ROLLBACK and rethrow. The connection goes back to
 * the pool either way. A {@link RunAgainError} runs `body` again in a new transaction
 * (it must be safe to: it is, when all it did is in the rolled-back transaction).
 */
async function transact<T>(pool: Pick<Pool, 'connect'>, logger: Logger, body: (client: PoolClient) => Promise<T>): Promise<T> {
  for (let run = 1; ; run += 1) {
    try {
      return await transactOnce(pool, logger, body, run > 1);
    } catch (err) {
      if (!(err instanceof RunAgainError) || run >= RUNS_AFTER_RUN_AGAIN) throw err;
    }
  }
}

async function transactOnce<T>(pool: Pick<Pool, 'connect'>, logger: Logger, body: (client: PoolClient) => Promise<T>, again: boolean): Promise<T> {
  const client = await pool.connect();
  if (again) runningAgain.add(client);
  try {
    const result = await body(client);
    if (!takeCommitted(client)) await client.query('COMMIT');
    return result;
  } catch (err) {
    // after a COMMIT that travelled with the last statement there is nothing to roll back; the error stands
    if (!takeCommitted(client)) await client.query('ROLLBACK').catch((rollbackErr: unknown) => logger.warn({ err: rollbackErr }, 'rollback failed'));
    throw err;
  } finally {
    runningAgain.delete(client);
    client.release();
  }
}

/** A statement {@link withTransactionFrom} sends with BEGIN: prepared once per connection, then executed by name. */
export interface FirstStatement {
  /** The server-side prepared statement's name (an SQL identifier, fixed per statement text). */
  name: string;
  /** `PREPARE name(types) AS …` text; the parameters are $1, $2, … as usual. */
  prepare: string;
  /** Literal SQL for each parameter, already validated and quoted by the caller. */
  args: string[];
}

/** One argument of a {@link FirstStatement} as SQL text: NULL, an integer, or a quoted literal (strings; dates as ISO 8601). */
export function sqlLiteral(value: string | number | Date | null): string {
  if (value === null) return 'NULL';
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new Error('only integers are inlined');
    return String(value);
  }
  return pg.escapeLiteral(value instanceof Date ? value.toISOString() : value);
}

const prepared = new WeakMap<PoolClient, Set<string>>();

/**
 * {@link withTransaction} whose first statements travel with BEGIN, in one round trip: a
 * simple query `BEGIN; EXECUTE a(args); EXECUTE b(args)…`, each statement prepared (PREPARE,
 * its own round trip) the first time on a connection, so it is planned once per connection
 * like a named statement. Each statement runs on a snapshot taken when it starts, as separate
 * queries would. `work` gets their rows, in order. Everything else is as in {@link withTransaction}.
 */
export async function withTransactionFrom<T>(pool: Pick<Pool, 'connect'>, logger: Logger, first: FirstStatement[], work: (client: PoolClient, rows: QueryResultRow[][]) => Promise<T>): Promise<T> {
  return transact(pool, logger, async (client) => {
    let names = prepared.get(client);
    if (names === undefined) {
      names = new Set();
      prepared.set(client, names);
    }
    for (const statement of first) {
      if (names.has(statement.name)) continue;
      // once per connection, on its own: a failure leaves nothing prepared, a success is known to be
      await client.query(statement.prepare);
      names.add(statement.name);
    }
    const executes = first.map((f) => `EXECUTE ${f.name}${f.args.length > 0 ? `(${f.args.join(', ')})` : ''}`);
    const results = (await client.query(['BEGIN', ...executes].join('; '))) as unknown as QueryResult[];
    return work(client, results.slice(1).map((r) => r.rows));
  });
}
