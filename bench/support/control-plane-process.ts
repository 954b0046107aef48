import { spawn, type ChildProcess } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../test/support/free-port.js';

/** The compiled control-plane program (dist/control-plane/main.js), next to dist/bench/. */
export const CONTROL_PLANE_MAIN = fileURLToPath(new URL('../../control-plane/main.js', import.meta.url));

export interface ControlPlaneProcess {
  /** http://127.0.0.1:<port> */
  baseUrl: string;
  port: number;
  pid: number;
  child: ChildProcess;
  /** SIGTERM (the program drains and seals), SIGKILL after 5 s. Idempotent. */
  stop(): Promise<void>;
}

export interface StartOptions {
  /**
   * SIKKER_* variables; SIKKER_LISTEN is chosen here. Inherited SIKKER_* variables are
   * dropped, except the overrides in {@link controlPlaneEnvOverrides} (applied last).
   */
  env: Record<string, string>;
  /** Extra node flags (e.g. --cpu-prof). Defaults to $SIKKER_BENCH_CP_NODE_ARGS split on spaces. */
  nodeArgs?: string[];
  readyTimeoutMs?: number;
  /** Where the child's own output goes (default: stderr, prefixed). */
  log?: (line: string) => void;
}

const STOP_GRACE_MS = 5000;

/**
 * Configuration experiments without editing a benchmark: $SIKKER_BENCH_CP_ENV holds
 * space-separated NAME=value pairs given to the control plane on top of the
 * benchmark's own (e.g. `SIKKER_DB_POOL_SIZE=40`). Benchmarks report them in their
 * result so a figure measured with overrides is never mistaken for the default.
 */
export function controlPlaneEnvOverrides(): Record<string, string> {
  const raw = process.env['SIKKER_BENCH_CP_ENV'] ?? '';
  const out: Record<string, string> = {};
  for (const pair of raw.split(' ').filter((p) => p !== '')) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new Error(`SIKKER_BENCH_CP_ENV: expected NAME=value, got "${pair}"`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}
const PORT_ATTEMPTS = 3;

/**
 * Starts the real control-plane program as a child process on a free loopback port
 * and waits until GET /healthz answers 200. Retries with a new port if the child
 * exits before answering (e.g. the port was taken meanwhile). The child is killed
 * (SIGKILL) if this process exits without stopping it.
 */
export async function startControlPlaneProcess(options: StartOptions): Promise<ControlPlaneProcess> {
  let lastError: Error = new Error('control plane did not start');
  for (let attempt = 1; attempt <= PORT_ATTEMPTS; attempt += 1) {
    const port = await freePort();
    try {
      return await startOnce(port, options);
    } catch (err) {
      lastError = err instanceof Error ? err : new Error(String(err));
      if (!/exited/.test(lastError.message)) break;
    }
  }
  throw lastError;
}

async function startOnce(port: number, options: StartOptions): Promise<ControlPlaneProcess> {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SIKKER_')));
  const nodeArgs = options.nodeArgs ?? (process.env['SIKKER_BENCH_CP_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '');
  const log = options.log ?? ((line: string) => process.stderr.write(`[control-plane] ${line}\n`));
  const child = spawn(process.execPath, [...nodeArgs, CONTROL_PLANE_MAIN], {
    env: { ...inherited, ...options.env, ...controlPlaneEnvOverrides(), SIKKER_LISTEN: `127.0.0.1:${port}` },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const killOnExit = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.on('exit', killOnExit);
  const tail: string[] = [];
  const forward = (chunk: Buffer): void => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line === '') continue;
      tail.push(line);
      if (tail.length > 20) tail.shift();
      log(line);
    }
  };
  child.stdout?.on('data', forward);
  child.stderr?.on('data', forward);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  exited.then(() => process.off('exit', killOnExit), () => undefined);

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const graceful = await Promise.race([exited.then(() => true), sleep(STOP_GRACE_MS).then(() => false)]);
      if (!graceful) {
        child.kill('SIGKILL');
        await Promise.race([exited, sleep(2000)]);
      }
    })();
    return stopping;
  };

  const baseUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + (options.readyTimeoutMs ?? 30_000);
  let childGone = false;
  void exited.then(() => {
    childGone = true;
  });
  for (;;) {
    if (childGone) {
      throw new Error(`control plane exited (code ${String(child.exitCode)}, signal ${String(child.signalCode)}) before answering /healthz:\n${tail.join('\n')}`);
    }
    if (await healthy(port)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`control plane did not answer GET /healthz on port ${port} within the timeout:\n${tail.join('\n')}`);
    }
    await sleep(100);
  }
  if (child.pid === undefined) throw new Error('control plane has no pid');
  return { baseUrl, port, pid: child.pid, child, stop };
}

function healthy(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/healthz', method: 'GET', agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200));
      res.on('error', () => resolve(false));
    });
    req.setTimeout(1000, () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(false));
    req.end();
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
