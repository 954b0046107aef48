import pg, { type PoolClient, type QueryResult, type QueryResultRow } from 'pg';

/**
 * A transaction's last statement and its COMMIT in one round trip.
 *
 * pg sends a statement as Parse (once per connection for a named one), Bind, Describe,
 * Execute and Sync. This query adds Parse, Bind and Execute of `COMMIT` before the Sync,
 * so the server runs both and answers once. PostgreSQL skips everything after an error up
 * to the Sync, so when the statement fails the COMMIT never runs: the transaction is left
 * aborted and the caller rolls it back as after any failed statement. When the COMMIT
 * itself fails, the whole query fails and the transaction is gone; either way the client
 * is not marked committed.
 *
 * Built on pg's Query (pinned in package-lock.json): it overrides `_getRows`, the one
 * place pg writes Execute and Sync of an unpaged query (test/integration/commit-with.test.ts
 * shows both the commit and the failure path on a real server).
 */
const committed = new WeakSet<PoolClient>();

interface PgConnection {
  execute(config: { portal?: string; rows?: number }): void;
  parse(config: { text: string; name?: string; types?: unknown[] }): void;
  bind(config: { portal?: string; statement?: string; values?: unknown[] }): void;
  sync(): void;
}

type QueryCallback = (err: Error | undefined, result: QueryResult | QueryResult[]) => void;
const PgQuery = pg.Query as unknown as new (config: pg.QueryConfig, values: undefined, callback: QueryCallback) => object;

class ThenCommit extends PgQuery {
  declare portal: string | undefined;

  _getRows(connection: PgConnection, rows: number | undefined): void {
    if (rows !== undefined && rows !== null) throw new Error('a statement sent with COMMIT cannot be paged');
    connection.execute({ portal: this.portal ?? '' });
    connection.parse({ text: 'COMMIT', name: '', types: [] });
    connection.bind({ portal: '', statement: '', values: [] });
    connection.execute({ portal: '' });
    connection.sync();
  }
}

/**
 * Runs `config` on `client`, inside its open transaction, and commits in the same round
 * trip. Returns the statement's result; afterwards {@link takeCommitted} says the
 * transaction is done.
 */
export function queryThenCommit<R extends QueryResultRow>(client: PoolClient, config: { name: string; text: string; values: unknown[] }): Promise<QueryResult<R>> {
  return new Promise((resolve, reject) => {
    const query = new ThenCommit(config, undefined, (err, result) => {
      if (err !== undefined && err !== null) {
        reject(err);
        return;
      }
      committed.add(client);
      const results = Array.isArray(result) ? result : [result];
      resolve(results[0] as QueryResult<R>);
    });
    void client.query(query as unknown as pg.QueryConfig);
  });
}

/** Whether `client`'s transaction was committed by {@link queryThenCommit} (and forgets it: the next transaction starts unmarked). */
export function takeCommitted(client: PoolClient): boolean {
  return committed.delete(client);
}
