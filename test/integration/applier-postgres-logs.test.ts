/**
 * After a PostgreSQL rotation the plaintext password is nowhere on the server:
 * not in the statement log (log_statement = all) and not in pg_stat_statements.
 * The private cluster is restarted once with pg_stat_statements preloaded; if
 * the extension is not installed on this machine that half is skipped (and
 * says so), the log half still runs.
 */
import t from 'tap';
import pg from 'pg';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { createApplier } from '../../agent/appliers/index.js';
import { startScramPostgres } from '../support/scram-postgres.js';

const run = promisify(execFile);

function postgresBin(): string {
  const version = readdirSync('/usr/lib/postgresql')
    .filter((v) => existsSync(`/usr/lib/postgresql/${v}/bin/pg_ctl`))
    .sort((a, b) => Number(b) - Number(a))[0];
  if (version === undefined) throw new Error('no pg_ctl under /usr/lib/postgresql');
  return `/usr/lib/postgresql/${version}/bin`;
}

/** `pg_ctl restart`, as the postgres user when we are root (like test/support/scram-postgres.ts). */
async function restart(dataDir: string, logFile: string): Promise<void> {
  const args = ['-D', dataDir, '-l', logFile, '-m', 'fast', '-w', '-t', '30', 'restart'];
  const pgCtl = join(postgresBin(), 'pg_ctl');
  if (process.getuid?.() === 0) await run('runuser', ['-u', 'postgres', '--', pgCtl, ...args], { timeout: 60_000 });
  else await run(pgCtl, args, { timeout: 60_000 });
}

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

t.test('postgres: rotation – no plaintext in the server log or pg_stat_statements', async (t) => {
  const server = await startScramPostgres();
  t.teardown(() => server.stop());
  let admin = await connect(server.superuserUrl);
  const { rows: [dir] } = await admin.query<{ data_directory: string }>('SHOW data_directory');
  const dataDir = dir?.data_directory ?? '';
  const logFile = join(dirname(dataDir), 'server.log'); // where startScramPostgres points pg_ctl -l
  const { rowCount: available } = await admin.query(`SELECT 1 FROM pg_available_extensions WHERE name = 'pg_stat_statements'`);
  await admin.query(`ALTER SYSTEM SET log_statement = 'all'`);
  if (available) await admin.query(`ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'`);
  await admin.end();
  await restart(dataDir, logFile);
  admin = await connect(server.superuserUrl);
  t.teardown(() => admin.end());
  if (available) await admin.query('CREATE EXTENSION pg_stat_statements');

  const role = `sk_logs_${randomBytes(4).toString('hex')}`;
  await admin.query(`CREATE ROLE ${role} LOGIN PASSWORD 'initial-not-secret'`);
  const plaintext = `PLAINTEXT${randomBytes(10).toString('hex')}'"\\$$`;
  const applier = await createApplier(
    { engine: 'postgres', host: '127.0.0.1', port: server.port, database: 'postgres', user: role, tls: { mode: 'disable' }, privilege: { mode: 'admin', adminConnection: 'local' } },
    { url: server.superuserUrl },
  );
  t.teardown(() => applier.close());
  await applier.apply({ user: role, newPassword: plaintext, strategy: 'replace' });
  t.equal((await applier.verify({ user: role, password: plaintext })).outcome, 'ok', 'the new password logs in');
  const token = plaintext.slice(0, 29);

  const log = await readFile(logFile, 'utf8');
  t.match(log, new RegExp(`ALTER ROLE "?${role}"? PASSWORD 'SCRAM-SHA-256\\$4096:`), 'the log holds the ALTER ROLE statement, with a verifier');
  t.notOk(log.includes(token), 'the log never holds the plaintext');

  if (!available) {
    t.pass('pg_stat_statements holds no plaintext', { skip: 'pg_stat_statements is not installed on this machine: that half is not checked' });
    return;
  }
  const { rows } = await admin.query<{ query: string }>('SELECT query FROM pg_stat_statements');
  t.ok(rows.some((r) => /ALTER ROLE/i.test(r.query)), 'pg_stat_statements recorded the ALTER ROLE');
  t.notOk(rows.some((r) => r.query.includes(token)), 'pg_stat_statements never holds the plaintext');
});
