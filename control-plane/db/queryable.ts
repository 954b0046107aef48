import type { Pool, PoolClient } from 'pg';

/** Anything that runs a query: the pool, or a client inside a transaction. */
export type Queryable = Pick<Pool | PoolClient, 'query'>;

/**
 * One data-modifying statement to be sent together with others (as a CTE of a larger
 * statement). `sql` numbers its own parameters from $1 and ends in `RETURNING 1`, so the
 * rows it changed can be counted.
 */
export interface StatementWrite {
  /** Names the statement's shape (it becomes part of a prepared statement's name). */
  name: string;
  sql: string;
  values: unknown[];
}
