/**
 * Make sure the shared database servers the test suite relies on are running:
 * PostgreSQL on 127.0.0.1:5432, Redis on 127.0.0.1:6379, MariaDB on
 * 127.0.0.1:3306. Used by run-tests.ts before tap starts.
 */
import { execFile } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { connect } from 'node:net';
import pg from 'pg';

/** Host every shared test service listens on. */
export const SERVICE_HOST = '127.0.0.1';
/** Port of the shared PostgreSQL server (trust auth, user postgres). */
export const POSTGRES_PORT = 5432;
/** Port of the shared Redis server (no auth). */
export const REDIS_PORT = 6379;
/** Port of the shared MariaDB server (root, no password). */
export const MARIADB_PORT = 3306;

const DEFAULT_TIMEOUT_MS = 60_000;
const PROBE_INTERVAL_MS = 250;
const START_COMMAND_TIMEOUT_MS = 60_000;

/** Options for {@link ensureServices}. */
export interface EnsureServicesOptions {
  /**
   * How long to wait for each service after starting it, in ms. Defaults to
   * $SIKKER_TEST_SERVICE_TIMEOUT_MS or 60 000.
   */
  timeoutMs?: number;
  /** Progress messages (only emitted when something has to be started). */
  log?: (message: string) => void;
}

interface Service {
  name: string;
  port: number;
  /** Resolves when the service answers its protocol; rejects otherwise. */
  probe(): Promise<void>;
  /** Starts the service (the command may return before it is ready). */
  start(): Promise<void>;
}

/**
 * Probe PostgreSQL, Redis and MariaDB and start any that is not answering,
 * then wait until each answers a real protocol exchange.
 *
 * Contract:
 * - PostgreSQL: a `pg` client connects as `postgres` to database `postgres`
 *   and runs `SELECT 1`.
 * - Redis: a RESP `PING` answered with `+PONG`.
 * - MariaDB: a TCP connect that receives the server's protocol-10 handshake.
 * - A service that already answers is left alone, so the call is idempotent
 *   and takes a few milliseconds when everything runs. The three services
 *   are checked (and started) in parallel.
 * - Start commands: `pg_ctlcluster --skip-systemctl-redirect <ver> main start`,
 *   `redis-server --daemonize yes ...` (same flags as CI), and
 *   `start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd`.
 *   Runtime directories (/run/postgresql, /run/mysqld, /var/lib/redis,
 *   /var/log/redis) are created first when missing and we are root.
 *
 * Failure modes: rejects with one Error listing every service that did not
 * come up within the timeout, naming the service, its port, the last probe
 * error and the start command's output. Starting needs root on CI machines;
 * as another user the start command usually fails and the error says so.
 */
export async function ensureServices(options: EnsureServicesOptions = {}): Promise<void> {
  const timeoutMs = options.timeoutMs ?? envTimeout() ?? DEFAULT_TIMEOUT_MS;
  const log = options.log ?? ((message: string) => process.stderr.write(`[services] ${message}\n`));
  const services: Service[] = [postgresService(), redisService(), mariadbService()];
  const results = await Promise.allSettled(services.map((s) => ensureOne(s, timeoutMs, log)));
  const failures = results
    .filter((r): r is PromiseRejectedResult => r.status === 'rejected')
    .map((r) => (r.reason instanceof Error ? r.reason.message : String(r.reason)));
  if (failures.length > 0) {
    throw new Error(`test services are not available:\n- ${failures.join('\n- ')}`);
  }
}

function envTimeout(): number | undefined {
  const raw = process.env['SIKKER_TEST_SERVICE_TIMEOUT_MS'];
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

async function ensureOne(service: Service, timeoutMs: number, log: (m: string) => void): Promise<void> {
  try {
    await service.probe();
    return;
  } catch {
    // not answering: start it below
  }
  log(`${service.name} is not answering on ${SERVICE_HOST}:${service.port}; starting it`);
  let startError = '';
  try {
    await service.start();
  } catch (err) {
    startError = err instanceof Error ? err.message : String(err);
    log(`${service.name} start command failed (will still wait for it): ${startError}`);
  }
  const deadline = Date.now() + timeoutMs;
  let lastProbeError = '';
  for (;;) {
    try {
      await service.probe();
      log(`${service.name} is up`);
      return;
    } catch (err) {
      lastProbeError = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() >= deadline) break;
    await sleep(PROBE_INTERVAL_MS);
  }
  const hint = process.getuid?.() === 0 ? '' : ' (starting services usually needs root)';
  throw new Error(
    `${service.name} did not come up on ${SERVICE_HOST}:${service.port} within ${Math.round(timeoutMs / 1000)} s` +
      `; last probe error: ${lastProbeError}` +
      (startError ? `; start command failed: ${startError}` : '') +
      hint,
  );
}

// ---------------------------------------------------------------------------
// PostgreSQL

function postgresService(): Service {
  return {
    name: 'PostgreSQL',
    port: POSTGRES_PORT,
    probe: () => pingPostgres(`postgres://postgres@${SERVICE_HOST}:${POSTGRES_PORT}/postgres`),
    async start() {
      const version = newestClusterVersion();
      if (version === undefined) {
        throw new Error('no cluster configuration under /etc/postgresql (is postgresql installed?)');
      }
      ensureRuntimeDir('/var/run/postgresql', 'postgres', 0o2775);
      await run('pg_ctlcluster', ['--skip-systemctl-redirect', version, 'main', 'start']);
    },
  };
}

function newestClusterVersion(): string | undefined {
  let entries: string[];
  try {
    entries = readdirSync('/etc/postgresql');
  } catch {
    return undefined;
  }
  return entries
    .filter((v) => /^\d+(\.\d+)?$/.test(v) && existsSync(`/etc/postgresql/${v}/main`))
    .sort((a, b) => Number(b) - Number(a))[0];
}

/**
 * Connect to PostgreSQL at `url`, run `SELECT 1`, disconnect.
 *
 * Failure modes: rejects with the driver's error (connection refused, "the
 * database system is starting up", authentication failure, or a 3 s timeout).
 */
export async function pingPostgres(url: string, timeoutMs = 3000): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs });
  client.on('error', () => {
    // errors after connect are reported through the awaited calls
  });
  try {
    await client.connect();
    await client.query('SELECT 1');
  } finally {
    await client.end().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------
// Redis

function redisService(): Service {
  return {
    name: 'Redis',
    port: REDIS_PORT,
    probe: () => pingRedis(SERVICE_HOST, REDIS_PORT),
    async start() {
      ensureRuntimeDir('/var/lib/redis', 'redis', 0o750);
      ensureRuntimeDir('/var/log/redis', 'redis', 0o2750);
      await run('redis-server', [
        '--daemonize', 'yes',
        '--bind', '127.0.0.1', '-::1',
        '--port', String(REDIS_PORT),
        '--save', '',
        '--appendonly', 'no',
        '--dir', '/var/lib/redis',
        '--logfile', '/var/log/redis/ci.log',
      ]);
    },
  };
}

/**
 * Send a RESP `PING` to the Redis server at host:port and expect `+PONG`.
 *
 * Failure modes: rejects on connection errors, on a timeout (default 2 s),
 * or when the server answers anything else (e.g. `-LOADING`, `-NOAUTH`); the
 * error message carries the server's reply.
 */
export function pingRedis(host: string, port: number, timeoutMs = 2000): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const socket = connect({ host, port });
    let buffer = '';
    let settled = false;
    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve();
    };
    const timer = setTimeout(() => finish(new Error(`Redis PING to ${host}:${port} timed out`)), timeoutMs);
    socket.setNoDelay(true);
    socket.on('connect', () => socket.write('*1\r\n$4\r\nPING\r\n'));
    socket.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('latin1');
      const eol = buffer.indexOf('\r\n');
      if (eol === -1) return;
      const line = buffer.slice(0, eol);
      if (line === '+PONG') finish();
      else finish(new Error(`Redis at ${host}:${port} answered PING with ${JSON.stringify(line)}`));
    });
    socket.on('error', (err) => finish(err));
    socket.on('close', () => finish(new Error(`Redis at ${host}:${port} closed the connection`)));
  });
}

// ---------------------------------------------------------------------------
// MariaDB

function mariadbService(): Service {
  return {
    name: 'MariaDB',
    port: MARIADB_PORT,
    probe: () => pingMariaDb(SERVICE_HOST, MARIADB_PORT),
    async start() {
      ensureRuntimeDir('/run/mysqld', 'mysql', 0o755);
      await run('start-stop-daemon', ['--start', '--oknodo', '--background', '--exec', '/usr/sbin/mariadbd']);
    },
  };
}

/**
 * Open a TCP connection to a MySQL/MariaDB server and wait for its initial
 * handshake packet (protocol version 10). No login is attempted.
 *
 * Failure modes: rejects on connection errors, a timeout (default 2 s), or
 * when the first packet is an error packet (the message is included, e.g.
 * "Too many connections" or "Host ... is blocked").
 */
export function pingMariaDb(host: string, port: number, timeoutMs = 2000): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const socket = connect({ host, port });
    let buffer = Buffer.alloc(0);
    let settled = false;
    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve();
    };
    const timer = setTimeout(() => finish(new Error(`MariaDB handshake from ${host}:${port} timed out`)), timeoutMs);
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (buffer.length < 5) return;
      // packet header: 3-byte little-endian length, 1-byte sequence id
      const kind = buffer[4];
      if (kind === 0x0a) {
        finish();
      } else if (kind === 0xff) {
        const length = buffer.readUIntLE(0, 3);
        if (buffer.length < 4 + length) return;
        const message = buffer.subarray(7, 4 + length).toString('utf8').replace(/^#\w{5}/, '');
        finish(new Error(`MariaDB at ${host}:${port} refused: ${message}`));
      } else {
        finish(new Error(`MariaDB at ${host}:${port} sent an unexpected first packet (0x${(kind ?? 0).toString(16)})`));
      }
    });
    socket.on('error', (err) => finish(err));
    socket.on('close', () => finish(new Error(`MariaDB at ${host}:${port} closed the connection`)));
  });
}

// ---------------------------------------------------------------------------
// helpers

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Run a command; reject with its exit status and output when it fails. */
function run(command: string, args: string[]): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    execFile(command, args, { timeout: START_COMMAND_TIMEOUT_MS }, (err, stdout, stderr) => {
      if (!err) {
        resolve();
        return;
      }
      const output = `${stdout}${stderr}`.trim().replace(/\s*\n\s*/g, ' | ');
      const status = typeof err.code === 'number' ? `exited with code ${err.code}` : err.message.split('\n')[0];
      reject(new Error(`\`${[command, ...args].join(' ')}\` ${status}${output ? `: ${output}` : ''}`));
    });
  });
}

/** Read uid/gid of a system user from /etc/passwd. */
export function lookupUser(name: string): { uid: number; gid: number } | undefined {
  let passwd: string;
  try {
    passwd = readFileSync('/etc/passwd', 'utf8');
  } catch {
    return undefined;
  }
  for (const line of passwd.split('\n')) {
    const fields = line.split(':');
    if (fields[0] === name && fields[2] !== undefined && fields[3] !== undefined) {
      return { uid: Number(fields[2]), gid: Number(fields[3]) };
    }
  }
  return undefined;
}

/**
 * Create a daemon's runtime directory when it is missing (e.g. /run is a fresh
 * tmpfs). Only acts as root; best effort: a failure surfaces later as the
 * daemon's own start error.
 */
function ensureRuntimeDir(path: string, owner: string, mode: number): void {
  if (existsSync(path) || process.getuid?.() !== 0) return;
  try {
    mkdirSync(path, { recursive: true });
    chmodSync(path, mode);
    const user = lookupUser(owner);
    if (user) chownSync(path, user.uid, user.gid);
  } catch {
    // best effort
  }
}
