import { SikkerError } from '../../shared/errors/sikker-error.js';

/**
 * Runs a sink's reload command: argv as configured, no shell, the agent's
 * environment, output discarded, its whole process group killed (SIGKILL) after `timeoutMs`. Resolves on exit code 0; throws
 * ERR_SINK_RELOAD naming the program and the exit code, signal or timeout — never
 * its output. child_process is loaded on first use only (the agent stays small).
 */
export async function runReloadCommand(argv: readonly string[], timeoutMs: number): Promise<void> {
  const [program, ...args] = argv;
  if (program === undefined) throw new SikkerError('ERR_SINK_RELOAD', 'reload command is empty');
  const { spawn } = await import('node:child_process');
  await new Promise<void>((resolve, reject) => {
    // Own process group, output ignored: a timeout kills the command and everything it started,
    // and a chatty command cannot fail for its output (which could echo the secret anyway).
    const child = spawn(program, args, { shell: false, stdio: 'ignore', detached: true, windowsHide: true });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid);
    }, timeoutMs);
    child.on('error', (err: Error & { code?: unknown }) => {
      clearTimeout(timer);
      reject(new SikkerError('ERR_SINK_RELOAD', describeFailure(program, err, timeoutMs), { retryable: true }));
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0 && !timedOut) {
        resolve();
        return;
      }
      const err = Object.assign(new Error('reload failed'), { code: code ?? undefined, signal: signal ?? undefined, killed: timedOut });
      reject(new SikkerError('ERR_SINK_RELOAD', describeFailure(program, err, timeoutMs), { retryable: true }));
    });
  });
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

function describeFailure(program: string, err: Error & { code?: unknown; signal?: unknown; killed?: boolean }, timeoutMs: number): string {
  if (err.killed === true) return `reload command ${program} did not finish within ${timeoutMs / 1000} s and was killed`;
  if (typeof err.code === 'number') return `reload command ${program} exited with code ${err.code}`;
  if (typeof err.code === 'string') return `reload command ${program} could not be started (${err.code})`;
  if (typeof err.signal === 'string') return `reload command ${program} was killed by ${err.signal}`;
  return `reload command ${program} failed`;
}
