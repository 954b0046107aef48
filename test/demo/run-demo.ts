import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureServices } from '../support/services.js';
import { cleanupRedisPrefix, createTestDatabase, SHARED_REDIS_URL, uniqueRedisPrefix } from '../support/databases.js';
import { freePort } from '../support/free-port.js';
import { CLI_BIN, CONTROL_PLANE_BIN, runProgram, startProgram, waitForHealthy, type RunningProcess } from '../support/processes.js';

/**
 * `npm run demo`: a development control plane on the machine's PostgreSQL and Redis
 * (its own database and key prefix, removed at the end), driven by the real `sikker`
 * CLI: initialise, store a secret, read it back, restart (sealed), unseal, read
 * again, show the audit trail and verify it.
 */
const bold = (s: string): string => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);

function step(title: string): void {
  process.stdout.write(`\n${bold(`▶ ${title}`)}\n`);
}

async function main(): Promise<void> {
  await ensureServices();
  const db = await createTestDatabase('demo');
  const prefix = uniqueRedisPrefix('demo');
  const home = mkdtempSync(join(tmpdir(), 'sikker-demo-'));
  const port = await freePort();
  const serverEnv = { SIKKER_DATABASE_URL: db.url, SIKKER_REDIS_URL: SHARED_REDIS_URL, SIKKER_REDIS_PREFIX: prefix, SIKKER_LISTEN: `127.0.0.1:${port}`, SIKKER_LOG_LEVEL: 'warn' };
  const cliEnv = { SIKKER_SERVER: `http://127.0.0.1:${port}`, SIKKER_IDENTITY: join(home, 'identity.json'), HOME: home };
  let server: RunningProcess | null = null;
  const sikker = async (args: string[], stdin?: string): Promise<string> => {
    process.stdout.write(`$ sikker ${args.join(' ')}${stdin === undefined ? '' : '   (input on stdin)'}\n`);
    const r = await runProgram(CLI_BIN, args, { env: cliEnv, ...(stdin === undefined ? {} : { stdin }) });
    if (r.code !== 0) throw new Error(`sikker ${args.join(' ')} failed: ${r.stderr.trim()}`);
    return r.stdout;
  };
  try {
    step(`Start a control plane on 127.0.0.1:${port} (database ${db.name})`);
    server = startProgram(CONTROL_PLANE_BIN, [], serverEnv);
    await waitForHealthy(`http://127.0.0.1:${port}/healthz`);
    process.stdout.write('control plane is up, sealed and not yet initialised\n');

    step('Initialise the vault: 3 Shamir shares, any 2 unseal it; this CLI identity becomes the first admin');
    const { shares } = JSON.parse(await sikker(['operator', 'init', '--shares', '3', '--threshold', '2', '--json'])) as { shares: string[] };
    shares.forEach((s, i) => process.stdout.write(`  share ${i + 1}: ${s.slice(0, 12)}… (shown once; kept by a different person each)\n`));

    step('Create a project and store a secret (value read from stdin, never on the command line)');
    process.stdout.write(await sikker(['project', 'create', 'payments']));
    process.stdout.write(await sikker(['secret', 'put', 'payments/db-password'], 'demo-s3cret-value\n'));
    process.stdout.write(await sikker(['secret', 'put', 'payments/db-password'], 'demo-s3cret-value-v2\n'));

    step('Read it back (every read is audited before the value is returned)');
    process.stdout.write(await sikker(['secret', 'get', 'payments/db-password']));
    process.stdout.write(await sikker(['secret', 'versions', 'payments/db-password']));

    step('Restart the control plane: the root key was only in memory, so it comes back sealed');
    await server.kill('SIGTERM');
    server = startProgram(CONTROL_PLANE_BIN, [], serverEnv);
    await waitForHealthy(`http://127.0.0.1:${port}/healthz`);
    process.stdout.write(await sikker(['operator', 'status']));

    step('Unseal with two of the three shares');
    process.stdout.write(await sikker(['operator', 'unseal'], shares[0]));
    process.stdout.write(await sikker(['operator', 'unseal'], shares[2]));
    process.stdout.write(await sikker(['secret', 'get', 'payments/db-password']));

    step('The audit trail: who did what, from where, which version');
    process.stdout.write(await sikker(['audit', 'list', '--limit', '20']));
    process.stdout.write(await sikker(['audit', 'verify']));
    process.stdout.write(`\n${bold('Demo finished.')} Everything it created (database ${db.name}, Redis prefix ${prefix}) is removed now.\n`);
  } finally {
    await server?.kill('SIGTERM');
    rmSync(home, { recursive: true, force: true });
    await db.drop();
    await cleanupRedisPrefix(SHARED_REDIS_URL, prefix);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
