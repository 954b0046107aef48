/**
 * A throw-away redis-server owned by one test, for scenarios the shared server
 * cannot host (e.g. "Redis goes down → the nonce store refuses").
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './free-port.js';
import { pingRedis } from './services.js';

const START_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;
const PORT_ATTEMPTS = 3;

/** A running private Redis; see {@link startPrivateRedis}. */
export interface PrivateRedis {
  /** `redis://127.0.0.1:<port>` (no auth, database 0). */
  url: string;
  port: number;
  /**
   * Stop the server (SIGTERM, SIGKILL after 5 s), wait until the process has
   * exited, remove its temp dir. Idempotent. After it resolves the port
   * refuses connections.
   */
  stop(): Promise<void>;
}

/**
 * Start a private `redis-server` on a free 127.0.0.1 port with persistence
 * off (`--save "" --appendonly no`) and a fresh temp dir, and wait until it
 * answers PING.
 *
 * Contract: the server is a child of this process; if the test process exits
 * without calling stop() an exit hook kills it (a SIGKILLed test process
 * can still leak it). Retries with another port if the chosen one was taken
 * between freePort() and the bind.
 *
 * Failure modes: rejects if redis-server is not installed, exits early, or
 * does not answer PING within 10 s; the error includes its output. Nothing
 * is left running or on disk in that case.
 */
export async function startPrivateRedis(): Promise<PrivateRedis> {
  let lastError: Error | undefined;
  for (let attempt = 0; attempt < PORT_ATTEMPTS; attempt++) {
    try {
      return await startOnce(await freePort());
    } catch (err) {
      lastError = err instanceof Error ? err : new Error(String(err));
      if (!/Address already in use/i.test(lastError.message)) break;
    }
  }
  throw lastError ?? new Error('startPrivateRedis failed');
}

async function startOnce(port: number): Promise<PrivateRedis> {
  const dir = await mkdtemp(join(tmpdir(), 'sikker-redis-'));
  const child = spawn(
    'redis-server',
    [
      '--port', String(port),
      '--bind', '127.0.0.1',
      '--save', '',
      '--appendonly', 'no',
      '--dir', dir,
      '--daemonize', 'no',
      '--logfile', '',
      '--loglevel', 'warning',
    ],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  const collect = (chunk: Buffer) => {
    output = (output + chunk.toString('utf8')).slice(-4000);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  let spawnError: Error | undefined;
  child.on('error', (err) => {
    spawnError ??= err;
  });
  const exited = waitForExit(child);

  const killOnExit = () => {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', killOnExit);

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
        await exited;
        clearTimeout(timer);
      }
      process.removeListener('exit', killOnExit);
      await rm(dir, { recursive: true, force: true });
    })();
    return stopping;
  };

  try {
    await waitUntilReady(port, exited, () => spawnError, () => output);
  } catch (err) {
    await stop();
    throw err;
  }
  return { url: `redis://127.0.0.1:${port}`, port, stop };
}

function waitForExit(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('close', () => resolve());
    child.once('error', () => resolve());
  });
}

async function waitUntilReady(
  port: number,
  exited: Promise<void>,
  spawnError: () => Error | undefined,
  output: () => string,
): Promise<void> {
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  const deadline = Date.now() + START_TIMEOUT_MS;
  let lastError = '';
  while (Date.now() < deadline) {
    const error = spawnError();
    if (error) throw new Error(`cannot run redis-server: ${error.message}`);
    if (gone) throw new Error(`redis-server exited during start (port ${port}): ${output().trim()}`);
    try {
      await pingRedis('127.0.0.1', port, 1000);
      return;
    } catch (err) {
      lastError = err instanceof Error ? err.message : String(err);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`redis-server on port ${port} did not answer PING within ${START_TIMEOUT_MS} ms: ${lastError}; ${output().trim()}`);
}
