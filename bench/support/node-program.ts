import { spawn, type ChildProcess } from 'node:child_process';
import { sleep } from './agent-proc.js';

/** A `node` child process started by a benchmark. */
export interface Program {
  pid: number;
  exited(): boolean;
  /** SIGTERM, SIGKILL after the grace period (default 5 s). Idempotent. */
  stop(): Promise<void>;
}

/** Starts `node <args>` with piped stdio (non-empty output lines go to `onLine`); killed if this process exits. */
export function startProgram(args: string[], onLine: (line: string) => void, options: { stopGraceMs?: number } = {}): Program {
  const child: ChildProcess = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const killOnExit = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.on('exit', killOnExit);
  const gone = new Promise<void>((resolve) => child.once('exit', () => {
    process.off('exit', killOnExit);
    resolve();
  }));
  let partial = '';
  const onData = (chunk: Buffer): void => {
    const lines = (partial + chunk.toString('utf8')).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) if (line !== '') onLine(line);
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  if (child.pid === undefined) throw new Error(`could not start node ${args.join(' ')}`);
  const pid = child.pid;
  const exited = (): boolean => child.exitCode !== null || child.signalCode !== null;
  let stopping: Promise<void> | undefined;
  return {
    pid,
    exited,
    stop() {
      stopping ??= (async () => {
        if (exited()) return;
        child.kill('SIGTERM');
        if (!(await Promise.race([gone.then(() => true), sleep(options.stopGraceMs ?? 5000).then(() => false)]))) {
          child.kill('SIGKILL');
          await Promise.race([gone, sleep(2000)]);
        }
      })();
      return stopping;
    },
  };
}
