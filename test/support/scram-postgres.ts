/**
 * A private PostgreSQL cluster that really checks passwords (SCRAM-SHA-256),
 * for tests of password rotation: the shared server trusts everyone.
 */
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { appendFile, chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from './free-port.js';
import { lookupUser } from './services.js';

const PORT_ATTEMPTS = 3;
const COMMAND_TIMEOUT_MS = 60_000;

/** A running private cluster; see {@link startScramPostgres}. */
export interface ScramPostgres {
  /** TCP port on 127.0.0.1. */
  port: number;
  /** `postgres://postgres:<password>@127.0.0.1:<port>/postgres`. */
  superuserUrl: string;
  /** The superuser's password (random, URL-safe). */
  superuserPassword: string;
  /**
   * `pg_ctl stop -m immediate`, then remove the cluster's directory.
   * Idempotent; never rejects (errors are ignored: the directory is removed
   * regardless).
   */
  stop(): Promise<void>;
}

/**
 * Create and start a throw-away PostgreSQL cluster whose TCP connections
 * require SCRAM-SHA-256 passwords.
 *
 * Contract:
 * - Binaries: the highest version under /usr/lib/postgresql/<v>/bin.
 * - A temp dir (owned by `postgres` when running as root) holds the data
 *   directory, the unix socket (local connections: trust) and the log.
 * - `initdb -U postgres --auth-local=trust --auth-host=scram-sha-256
 *   --pwfile=...` with a random superuser password; pg_hba.conf allows only
 *   `local ... trust` and `host ... 127.0.0.1/32, ::1/128 scram-sha-256`;
 *   `password_encryption = scram-sha-256`; listens on 127.0.0.1 only, on a
 *   free port (retried if taken); fsync off (test data only).
 * - As root, every PostgreSQL program runs through `runuser -u postgres --`
 *   (initdb/pg_ctl refuse root). As another user they run directly.
 * - If the test process exits without stop(), an exit hook stops the cluster
 *   and removes the directory (a SIGKILLed process can still leak it).
 *
 * Failure modes: rejects when no PostgreSQL binaries are installed, when
 * running as root without a `postgres` user, or when initdb / pg_ctl fail
 * (the error includes their output and the server log); the temp dir is
 * removed and no server is left running.
 */
export async function startScramPostgres(): Promise<ScramPostgres> {
  const bin = findPostgresBin();
  const asRoot = process.getuid?.() === 0;
  const owner = asRoot ? lookupUser('postgres') : undefined;
  if (asRoot && owner === undefined) {
    throw new Error('startScramPostgres: running as root but there is no "postgres" user to run the server');
  }
  const base = await mkdtemp(join(tmpdir(), 'sikker-scram-pg-'));
  const dataDir = join(base, 'data');
  const socketDir = join(base, 'sock');
  const logFile = join(base, 'server.log');
  const pwFile = join(base, 'pwfile');
  const password = randomBytes(18).toString('base64url');
  let started = false;

  const runPg = (program: string, args: string[]) =>
    runCommand(asRoot ? 'runuser' : join(bin, program), asRoot ? ['-u', 'postgres', '--', join(bin, program), ...args] : args, base);

  const stopSync = () => {
    if (started) {
      const [cmd, args] = asRoot
        ? ['runuser', ['-u', 'postgres', '--', join(bin, 'pg_ctl'), '-D', dataDir, '-m', 'immediate', '-w', 'stop']]
        : [join(bin, 'pg_ctl'), ['-D', dataDir, '-m', 'immediate', '-w', 'stop']];
      spawnSync(cmd as string, args as string[], { stdio: 'ignore', timeout: 20_000 });
    }
    rmSync(base, { recursive: true, force: true });
  };
  process.on('exit', stopSync);

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      if (started) {
        await runPg('pg_ctl', ['-D', dataDir, '-m', 'immediate', '-w', 'stop']).catch(() => undefined);
        started = false;
      }
      process.removeListener('exit', stopSync);
      await rm(base, { recursive: true, force: true }).catch(() => undefined);
    })();
    return stopping;
  };

  try {
    await mkdir(dataDir, { mode: 0o700 });
    await mkdir(socketDir, { mode: 0o700 });
    await writeFile(pwFile, `${password}\n`, { mode: 0o600 });
    if (owner) {
      for (const path of [base, dataDir, socketDir, pwFile]) await chown(path, owner.uid, owner.gid);
    }
    await chmod(base, 0o700);

    await runPg('initdb', [
      '-D', dataDir,
      '-U', 'postgres',
      `--pwfile=${pwFile}`,
      '--auth-local=trust',
      '--auth-host=scram-sha-256',
      '--encoding=UTF8',
      '--no-locale',
      '--no-sync',
    ]);
    await rm(pwFile, { force: true });

    await writeFile(
      join(dataDir, 'pg_hba.conf'),
      [
        '# written by test/support/scram-postgres.ts',
        'local   all   all                  trust',
        'host    all   all   127.0.0.1/32   scram-sha-256',
        'host    all   all   ::1/128        scram-sha-256',
        '',
      ].join('\n'),
    );
    await appendFile(
      join(dataDir, 'postgresql.conf'),
      [
        '',
        '# written by test/support/scram-postgres.ts',
        "listen_addresses = '127.0.0.1'",
        `unix_socket_directories = '${socketDir}'`,
        "password_encryption = 'scram-sha-256'",
        'fsync = off',
        'synchronous_commit = off',
        'full_page_writes = off',
        'max_connections = 50',
        'logging_collector = off',
        '',
      ].join('\n'),
    );

    let lastError: Error | undefined;
    for (let attempt = 0; attempt < PORT_ATTEMPTS; attempt++) {
      const port = await freePort();
      try {
        await runPg('pg_ctl', ['-D', dataDir, '-l', logFile, '-o', `-p ${port}`, '-w', '-t', '30', 'start']);
        started = true;
        return {
          port,
          superuserPassword: password,
          superuserUrl: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
          stop,
        };
      } catch (err) {
        const log = await readFile(logFile, 'utf8').catch(() => '');
        lastError = new Error(`${err instanceof Error ? err.message : String(err)}\nserver log:\n${log.slice(-3000)}`);
        // pg_ctl may have left a half-started server behind
        await runPg('pg_ctl', ['-D', dataDir, '-m', 'immediate', '-w', 'stop']).catch(() => undefined);
        if (!/already in use|could not bind|could not create any TCP\/IP sockets/i.test(log)) break;
      }
    }
    throw lastError ?? new Error('pg_ctl start failed');
  } catch (err) {
    await stop();
    throw new Error(`startScramPostgres: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** The bin directory of the newest PostgreSQL under /usr/lib/postgresql. */
function findPostgresBin(): string {
  let versions: string[] = [];
  try {
    versions = readdirSync('/usr/lib/postgresql');
  } catch {
    // handled below
  }
  const best = versions
    .filter((v) => /^\d+(\.\d+)?$/.test(v) && existsSync(`/usr/lib/postgresql/${v}/bin/initdb`))
    .sort((a, b) => Number(b) - Number(a))[0];
  if (best === undefined) {
    throw new Error('startScramPostgres: no PostgreSQL server binaries under /usr/lib/postgresql/*/bin');
  }
  return `/usr/lib/postgresql/${best}/bin`;
}

function runCommand(command: string, args: string[], cwd: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    execFile(
      command,
      args,
      { cwd, timeout: COMMAND_TIMEOUT_MS, env: { ...process.env, LC_ALL: 'C', LANG: 'C' } },
      (err, stdout, stderr) => {
        if (!err) {
          resolve();
          return;
        }
        const output = `${stdout}${stderr}`.trim();
        reject(new Error(`\`${[command, ...args].join(' ')}\` failed: ${err.message.split('\n')[0]}${output ? `\n${output}` : ''}`));
      },
    );
  });
}

/**
 * {@link startScramPostgres} with a connected superuser client, both closed in `t`'s
 * teardown (the cluster after the client).
 */
export async function startScramPostgresWithSuperuser(t: { teardown(fn: () => unknown): void }): Promise<{ server: ScramPostgres; superuser: pg.Client }> {
  const server = await startScramPostgres();
  t.teardown(() => server.stop());
  const superuser = new pg.Client({ connectionString: server.superuserUrl });
  superuser.on('error', () => undefined); // surfaced through the awaited queries
  await superuser.connect();
  t.teardown(() => superuser.end());
  return { server, superuser };
}
