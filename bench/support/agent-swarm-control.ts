/**
 * Parent side of the simulated-agent swarm (bench/support/agent-swarm.ts): starts a
 * swarm child process, raises its open-file limit, and drives it over the IPC
 * channel (prepare identities, connect them at a bounded rate, close some, report,
 * exit). The request/answer messages are defined here and imported (as types only)
 * by the child.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { raiseFdLimit, sleep, type FdLimits } from './agent-proc.js';

/** The compiled child script, next to this module in dist/bench/support/. */
export const AGENT_SWARM_SCRIPT = fileURLToPath(new URL('./agent-swarm.js', import.meta.url));

/** One simulated agent as the database needs it (the private key stays in the swarm). */
export interface PreparedAgent {
  identityId: string;
  /** Ed25519, base64url raw (exportPublicKey). */
  publicKey: string;
  /** X25519, base64url raw (exportBoxPublicKey). */
  boxPublicKey: string;
}

export interface ConnectOptions {
  /** ws://127.0.0.1:<port>/v1/agent/connect */
  url: string;
  /** Indexes [from, from + count) of the prepared agents. */
  from: number;
  count: number;
  /** Source addresses, used round-robin (ws `localAddress`). */
  localAddresses: string[];
  /** Handshakes in flight at once in this swarm. */
  concurrency: number;
  /** Upgrade + welcome must complete within this. */
  handshakeTimeoutMs: number;
  /** Further attempts after a failed one (fresh signature each time). */
  retries: number;
  /** Sent in hello. */
  agentVersion: string;
  /** Stop starting new attempts after this long (the report says how many were not tried). */
  deadlineMs: number;
}

export interface ConnectReport {
  /** Agents of this batch holding a welcomed socket when the batch finished. */
  connected: number;
  /** Agents of this batch that never got a welcomed socket. */
  notConnected: number;
  /** Agents never attempted because the deadline passed. */
  notAttempted: number;
  /** Every failed attempt, by reason (retried ones included). */
  failedAttempts: number;
  failureKinds: Record<string, number>;
  elapsedMs: number;
}

export interface SwarmStatus {
  /** Welcomed sockets open now. */
  open: number;
  /** Welcomed sockets that closed since, by close code. */
  dropped: number;
  dropKinds: Record<string, number>;
  /** Frames received after welcome (an idle agent expects none). */
  unexpectedMessages: number;
}

export type SwarmRequest =
  | { id: number; type: 'prepare'; count: number }
  | ({ id: number; type: 'connect' } & ConnectOptions)
  | { id: number; type: 'close'; from: number; count: number }
  | { id: number; type: 'status' }
  | { id: number; type: 'exit' };

export type SwarmMessage =
  | { type: 'ready' }
  | { type: 'progress'; connected: number; failedAttempts: number; inFlight: number }
  | { id: number; type: 'prepared'; agents: PreparedAgent[] }
  | { id: number; type: 'connected'; report: ConnectReport }
  | { id: number; type: 'closed'; closed: number }
  | { id: number; type: 'status'; status: SwarmStatus }
  | { id: number; type: 'error'; message: string };

type Distribute<T> = T extends unknown ? Omit<T, 'id'> : never;

export class AgentSwarm {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (m: SwarmMessage) => void; reject: (e: Error) => void }>();
  private exited = false;
  private stopping: Promise<void> | undefined;
  /** Latest progress message during a connect. */
  progress = { connected: 0, failedAttempts: 0, inFlight: 0 };

  private constructor(readonly index: number, private readonly child: ChildProcess, readonly pid: number, readonly fdLimits: FdLimits) {}

  /** Starts swarm number `index`, waits for it to be ready and raises its open-file limit. */
  static async start(index: number, log: (line: string) => void): Promise<AgentSwarm> {
    const child = spawn(process.execPath, [AGENT_SWARM_SCRIPT], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    const killOnExit = (): void => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    };
    process.on('exit', killOnExit);
    child.once('exit', () => process.off('exit', killOnExit));
    const forward = (chunk: Buffer): void => {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') log(`[swarm ${index}] ${line}`);
    };
    child.stdout?.on('data', forward);
    child.stderr?.on('data', forward);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`swarm ${index} did not start within 15 s`)), 15_000);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`swarm ${index} exited (code ${String(code)}, signal ${String(signal)}) before it was ready`));
      });
      child.on('message', (m: SwarmMessage) => {
        if (m.type === 'ready') {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    if (child.pid === undefined) throw new Error(`swarm ${index} has no pid`);
    const fdLimits = await raiseFdLimit(child.pid);
    const swarm = new AgentSwarm(index, child, child.pid, fdLimits);
    child.on('message', (m: SwarmMessage) => swarm.onMessage(m));
    child.once('exit', (code, signal) => {
      swarm.exited = true;
      for (const p of swarm.pending.values()) p.reject(new Error(`swarm ${index} exited (code ${String(code)}, signal ${String(signal)})`));
      swarm.pending.clear();
    });
    return swarm;
  }

  private onMessage(m: SwarmMessage): void {
    if (m.type === 'ready') return;
    if (m.type === 'progress') {
      this.progress = { connected: m.connected, failedAttempts: m.failedAttempts, inFlight: m.inFlight };
      return;
    }
    const p = this.pending.get(m.id);
    if (p === undefined) return;
    this.pending.delete(m.id);
    if (m.type === 'error') p.reject(new Error(`swarm ${this.index}: ${m.message}`));
    else p.resolve(m);
  }

  private request(message: Distribute<SwarmRequest>): Promise<SwarmMessage> {
    if (this.exited) return Promise.reject(new Error(`swarm ${this.index} has exited`));
    const id = this.nextId;
    this.nextId += 1;
    return new Promise<SwarmMessage>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.send({ ...message, id } as SwarmRequest, (err) => {
        if (err !== null) {
          this.pending.delete(id);
          reject(err);
        }
      });
    });
  }

  /** Generates `count` identities (keys made in the swarm); returns what the database needs. */
  async prepare(count: number): Promise<PreparedAgent[]> {
    const m = await this.request({ type: 'prepare', count });
    if (m.type !== 'prepared') throw new Error(`swarm ${this.index}: unexpected answer ${m.type}`);
    return m.agents;
  }

  async connect(options: ConnectOptions): Promise<ConnectReport> {
    const m = await this.request({ type: 'connect', ...options });
    if (m.type !== 'connected') throw new Error(`swarm ${this.index}: unexpected answer ${m.type}`);
    return m.report;
  }

  /** Closes (code 1000) the open sockets of agents [from, from + count); resolves when they are closed. */
  async close(from: number, count: number): Promise<number> {
    const m = await this.request({ type: 'close', from, count });
    if (m.type !== 'closed') throw new Error(`swarm ${this.index}: unexpected answer ${m.type}`);
    return m.closed;
  }

  async status(): Promise<SwarmStatus> {
    const m = await this.request({ type: 'status' });
    if (m.type !== 'status') throw new Error(`swarm ${this.index}: unexpected answer ${m.type}`);
    return m.status;
  }

  /** Asks the swarm to drop every socket and exit; SIGKILL after 5 s. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      if (this.exited || this.child.exitCode !== null || this.child.signalCode !== null) return;
      const gone = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
      this.request({ type: 'exit' }).catch(() => undefined);
      const clean = await Promise.race([gone.then(() => true), sleep(5000).then(() => false)]);
      if (!clean) {
        this.child.kill('SIGKILL');
        await Promise.race([gone, sleep(2000)]);
      }
    })();
    return this.stopping;
  }
}

/** Adds up per-reason counts. */
export function mergeCounts(into: Record<string, number>, from: Record<string, number>): Record<string, number> {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
  return into;
}
