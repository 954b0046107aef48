import type { Pool, PoolClient } from 'pg';

/** Anything that runs a query: the pool, or a client inside a transaction. */
export type Queryable = Pick<Pool | PoolClient, 'query'>;

/**
 * One data-modifying statement to be sent together with others (as a CTE of a larger
 * statement: rotation-dal.ts `updateRunWithSteps`), or on its own ({@link standalone}).
 * `sql` numbers its own parameters from $1 and returns one row per row it changed
 * (`RETURNING 1`, or the rows themselves when `rows` is set), so they can be counted.
 */
export interface StatementWrite {
  /** Names the statement's shape (it becomes part of a prepared statement's name). */
  name: string;
  sql: string;
  values: unknown[];
  /**
   * CTEs `sql` needs, written before it in the same WITH: [name, statement] (names of
   * lower-case letters and `_`, distinct enough not to be mistaken for a column; a
   * combined statement prefixes them to keep writes apart). Parameters as in `sql`.
   */
  before?: ReadonlyArray<readonly [string, string]>;
  /** The caller wants the rows `sql` returns (as JSON objects when sent with others), not only their count. */
  rows?: boolean;
  /**
   * What the write must have done, checked by the combined statement itself (rotation-dal.ts
   * `updateRunWithSteps`; {@link standalone} leaves the check to its caller): `sql` is a
   * boolean expression over the write's rows as `self` and its `before` CTEs, with its own
   * parameters from $1 (`values`). When it is not true the statement fails (SQLSTATE SK001,
   * migration 008), so nothing of it is stored even when COMMIT travels with it, and the
   * caller gets `error()`.
   */
  expect?: { sql: string; values: unknown[]; error: () => Error };
}

/** `write` as a statement of its own: its `before` CTEs, then its `sql`. */
export function standalone(write: StatementWrite): { name: string; text: string; values: unknown[] } {
  const before = write.before ?? [];
  const text = before.length === 0 ? write.sql : `WITH ${before.map(([name, sql]) => `${name} AS (${sql})`).join(',\n')}\n${write.sql}`;
  return { name: write.name, text, values: write.values };
}

/** What a write sent with others did: rows changed, and the rows themselves (JSON objects) when it asked for them (`rows`). */
export interface WriteOutcome {
  changed: number;
  rows?: Array<Record<string, unknown>>;
}
