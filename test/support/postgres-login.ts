/**
 * The proof every rotation test and benchmark rests on: a fresh login as `user` on the
 * cluster at 127.0.0.1:`port` (one that checks passwords, see scram-postgres.ts).
 */
import pg from 'pg';

/** True when the login and a `SELECT 1` succeed, false when the password is refused (28P01); any other error rejects. */
export async function postgresLogsIn(port: number, user: string, password: string, timeoutMs = 5000): Promise<boolean> {
  const client = new pg.Client({ host: '127.0.0.1', port, database: 'postgres', user, password, connectionTimeoutMillis: timeoutMs });
  client.on('error', () => undefined); // surfaced through connect/query
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch (err) {
    if ((err as { code?: string }).code === '28P01') return false;
    throw err;
  } finally {
    await client.end().catch(() => undefined);
  }
}
