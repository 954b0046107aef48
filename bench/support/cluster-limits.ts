/**
 * Changing `max_connections` of a private SCRAM cluster (test/support/scram-postgres.ts
 * starts it with 50) for experiments: `ALTER SYSTEM`, then `pg_ctl restart` with the
 * options the server was started with (postmaster.opts keeps its port). The cluster's
 * stop() still works afterwards (same data directory).
 */
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import pg from 'pg';

/** Restarts the cluster behind `superuserUrl` with `maxConnections`; resolves once it accepts logins again. */
export async function restartWithMaxConnections(superuserUrl: string, maxConnections: number): Promise<void> {
  const client = new pg.Client({ connectionString: superuserUrl, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined); // surfaced through the awaited queries
  await client.connect();
  let dataDir: string;
  let major: number;
  try {
    dataDir = (await client.query<{ data_directory: string }>('SHOW data_directory')).rows[0]?.data_directory ?? '';
    major = Math.floor(Number((await client.query<{ server_version_num: string }>('SHOW server_version_num')).rows[0]?.server_version_num) / 10000);
    await client.query(`ALTER SYSTEM SET max_connections = ${Math.trunc(maxConnections)}`);
  } finally {
    await client.end().catch(() => undefined);
  }
  const pgCtl = `/usr/lib/postgresql/${major}/bin/pg_ctl`;
  // scram-postgres.ts keeps the server log next to the data directory
  const args = ['-D', dataDir, '-l', join(dirname(dataDir), 'server.log'), '-m', 'fast', '-w', '-t', '60', 'restart'];
  const asRoot = process.getuid?.() === 0;
  await run(asRoot ? 'runuser' : pgCtl, asRoot ? ['-u', 'postgres', '--', pgCtl, ...args] : args);
  const check = new pg.Client({ connectionString: superuserUrl, connectionTimeoutMillis: 10_000 });
  check.on('error', () => undefined);
  await check.connect();
  try {
    const now = Number((await check.query<{ max_connections: string }>('SHOW max_connections')).rows[0]?.max_connections);
    if (now !== Math.trunc(maxConnections)) throw new Error(`max_connections is ${now} after the restart, not ${maxConnections}`);
  } finally {
    await check.end().catch(() => undefined);
  }
}

function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: 90_000, env: { ...process.env, LC_ALL: 'C', LANG: 'C' } }, (err, stdout, stderr) => {
      if (err === null) resolve();
      else reject(new Error(`${command} ${args.join(' ')} failed: ${err.message.split('\n')[0] ?? ''}\n${`${stdout}${stderr}`.trim()}`));
    });
  });
}
