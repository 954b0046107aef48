import { SikkerError } from '../../shared/errors/sikker-error.js';

/** Output beyond this is discarded; the reload's output is never logged (it could echo a secret). */
const MAX_OUTPUT_BYTES = 64 * 1024;

/**
 * Runs a sink's reload command: argv as configured, no shell, the agent's
 * environment, killed (SIGKILL) after `timeoutMs`. Resolves on exit code 0; throws
 * ERR_SINK_RELOAD naming the program and the exit code, signal or timeout — never
 * its output. child_process is loaded on first use only (the agent stays small).
 */
export async function runReloadCommand(argv: readonly string[], timeoutMs: number): Promise<void> {
  const [program, ...args] = argv;
  if (program === undefined) throw new SikkerError('ERR_SINK_RELOAD', 'reload command is empty');
  const { execFile } = await import('node:child_process');
  await new Promise<void>((resolve, reject) => {
    execFile(program, args, { shell: false, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: MAX_OUTPUT_BYTES, windowsHide: true }, (err) => {
      if (err === null) {
        resolve();
        return;
      }
      reject(new SikkerError('ERR_SINK_RELOAD', describeFailure(program, err, timeoutMs), { retryable: true }));
    });
  });
}

function describeFailure(program: string, err: Error & { code?: unknown; signal?: unknown; killed?: boolean }, timeoutMs: number): string {
  if (err.killed === true && err.signal === 'SIGKILL') return `reload command ${program} did not finish within ${timeoutMs / 1000} s and was killed`;
  if (typeof err.code === 'number') return `reload command ${program} exited with code ${err.code}`;
  if (typeof err.code === 'string') return `reload command ${program} could not be started (${err.code})`;
  if (typeof err.signal === 'string') return `reload command ${program} was killed by ${err.signal}`;
  return `reload command ${program} failed`;
}
