import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { cleanupRedisPrefix, createTestDatabase, SHARED_REDIS_URL, uniqueRedisPrefix } from '../support/databases.js';
import { freePort } from '../support/free-port.js';
import { CLI_BIN, CONTROL_PLANE_BIN, runProgram, startProgram, type RunningProcess } from '../support/processes.js';

const CANARY = 'canary-e2e-value-51c9-Ü';

t.test('e2e – an operator initialises, stores, reads, survives kill -9, unseals, verifies the audit log', async (t) => {
  const db = await createTestDatabase('e2e_cli');
  const prefix = uniqueRedisPrefix('e2e-cli');
  const home = mkdtempSync(join(tmpdir(), 'sikker-e2e-'));
  const port = await freePort();
  const serverEnv = { SIKKER_AUDIT_CHECKPOINT_EVERY: '4', SIKKER_DATABASE_URL: db.url, SIKKER_REDIS_URL: SHARED_REDIS_URL, SIKKER_REDIS_PREFIX: prefix, SIKKER_LISTEN: `127.0.0.1:${port}` };
  const cliEnv = { SIKKER_SERVER: `http://127.0.0.1:${port}`, SIKKER_IDENTITY: join(home, 'identity.json'), HOME: home };
  let server: RunningProcess | null = null;
  t.teardown(async () => {
    await server?.kill();
    rmSync(home, { recursive: true, force: true });
    await db.drop();
    await cleanupRedisPrefix(SHARED_REDIS_URL, prefix);
  });
  const sikker = (args: string[], stdin?: string) => runProgram(CLI_BIN, args, { env: cliEnv, ...(stdin === undefined ? {} : { stdin }) });

  server = startProgram(CONTROL_PLANE_BIN, [], serverEnv);
  await server.waitFor(/control plane listening/);

  const init = await sikker(['operator', 'init', '--shares', '3', '--threshold', '2', '--json']);
  t.equal(init.code, 0, init.stderr);
  const { shares } = JSON.parse(init.stdout) as { shares: string[] };
  t.equal(shares.length, 3);

  t.equal((await sikker(['project', 'create', 'payments'])).code, 0);
  const put = await sikker(['secret', 'put', 'payments/db-password', '--json'], `${CANARY}\n`);
  t.equal(put.code, 0, put.stderr);
  t.match(JSON.parse(put.stdout), { version: 1, label: 'current' });
  const get = await sikker(['secret', 'get', 'payments/db-password']);
  t.equal(get.stdout, `${CANARY}\n`, 'the value reads back exactly');

  t.equal(await server.kill('SIGKILL'), null);
  server = startProgram(CONTROL_PLANE_BIN, [], serverEnv);
  await server.waitFor(/control plane listening/);
  const status = await sikker(['operator', 'status', '--json']);
  t.match(JSON.parse(status.stdout), { initialised: true, sealed: true });
  const sealedGet = await sikker(['secret', 'get', 'payments/db-password']);
  t.equal(sealedGet.code, 1);
  t.match(sealedGet.stderr, /ERR_VAULT_SEALED/);
  t.notMatch(sealedGet.stdout, new RegExp(CANARY));

  t.equal((await sikker(['operator', 'unseal'], `${shares[2]}\n`)).code, 0);
  const unsealed = await sikker(['operator', 'unseal', '--json'], shares[0]);
  t.match(JSON.parse(unsealed.stdout), { sealed: false });
  t.equal((await sikker(['secret', 'get', 'payments/db-password'])).stdout, `${CANARY}\n`, 'reads again after unseal');

  const list = await sikker(['audit', 'list', '--project', 'payments', '--secret', 'db-password', '--json']);
  const records = (JSON.parse(list.stdout) as { records: Array<{ action: string; secretVersion: number }> }).records;
  t.equal(records.filter((r) => r.action === 'secret.read').length, 2, 'two successful reads audited');
  const verify = await sikker(['audit', 'verify', '--json']);
  t.equal(verify.code, 0);
  t.match(JSON.parse(verify.stdout), { ok: true });

  // Someone with database access cuts the log back to before the newest checkpoint and
  // rewinds the head: the server's own walk finds nothing wrong, the CLI's memory does.
  const { default: pg } = await import('pg');
  const direct = new pg.Client({ connectionString: db.url });
  await direct.connect();
  const cut = Number((await direct.query('SELECT max(seq) AS s FROM audit_checkpoints')).rows[0].s);
  const keep = cut - 1;
  const before = (await direct.query('SELECT seq, record_hash FROM audit_checkpoints WHERE seq < $1 ORDER BY seq DESC LIMIT 1', [cut])).rows[0] ?? { seq: 0, record_hash: Buffer.alloc(32) };
  await direct.query('DELETE FROM audit_records WHERE seq > $1', [keep]);
  await direct.query('DELETE FROM audit_checkpoints WHERE seq > $1', [keep]);
  await direct.query('UPDATE audit_chain_head SET seq = $1, record_hash = (SELECT record_hash FROM audit_records WHERE seq = $1), checkpoint_seq = $2, checkpoint_hash = $3', [keep, before.seq, before.record_hash]);
  await direct.end();
  const truncated = await sikker(['audit', 'verify', '--json']);
  t.equal(truncated.code, 1, 'verify fails');
  t.match(JSON.parse(truncated.stdout).problem, /truncated/, 'the CLI remembers the checkpoint it saw');

  chmodSync(cliEnv.SIKKER_IDENTITY, 0o644);
  const loose = await sikker(['secret', 'get', 'payments/db-password']);
  t.equal(loose.code, 1, 'a world-readable identity file is refused');
  t.match(loose.stderr, /ERR_IDENTITY_KEY_FILE.*0600/);
  chmodSync(cliEnv.SIKKER_IDENTITY, 0o600);

  const remote = await runProgram(CLI_BIN, ['operator', 'status'], { env: { ...cliEnv, SIKKER_SERVER: 'http://192.0.2.10:8200' } });
  t.equal(remote.code, 1);
  t.match(remote.stderr, /ERR_TRANSPORT_INSECURE/, 'plain HTTP to a non-loopback address is refused before connecting');

  await server.kill('SIGTERM');
  t.notOk(server.output().includes(CANARY), 'the value never appeared in the control plane\'s output');
});

t.test('e2e – the control plane refuses bad configuration with a clear message', async (t) => {
  const r = await runProgram(CONTROL_PLANE_BIN, [], { env: { SIKKER_DATABASE_URL: 'mysql://x', SIKKER_REDIS_URL: 'redis://127.0.0.1:6379' } });
  t.not(r.code, 0);
  t.match(r.stderr, /SIKKER_DATABASE_URL/);
  const unreachable = await runProgram(CONTROL_PLANE_BIN, [], { env: { SIKKER_DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none', SIKKER_REDIS_URL: 'redis://127.0.0.1:6379' } });
  t.equal(unreachable.code, 1);
  t.match(unreachable.stderr, /PostgreSQL/);
});
