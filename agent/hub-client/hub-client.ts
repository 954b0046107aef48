import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import type * as ExponentialBackoff from 'exponential-backoff';
import type WebSocket from 'ws';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import type { Logger } from '../../shared/logging/logger.js';
import { WarmSocket } from '../appliers/postgres-warm-socket.js';
import { createApplyExecutor } from '../commands/apply-command.js';
import { createCheckExecutor } from '../commands/check-command.js';
import { ApplierPool } from '../commands/applier-pool.js';
import { createTerminateExecutor } from '../commands/terminate-command.js';
import { createDeliverExecutor } from '../commands/deliver-command.js';
import type { CommandExecutor } from '../commands/command-executor.js';
import { createPreflightExecutor } from '../commands/preflight-command.js';
import { createProbeExecutor } from '../commands/probe-command.js';
import { createRevokeExecutor } from '../commands/revoke-command.js';
import type { RotationExecutorDeps } from '../commands/rotation-context.js';
import { agentVersion } from '../version.js';
import { CommandProcessor, type CommandDecision, type CommandFinished } from './command-processor.js';
import { compileHubClientOptions, type CompiledHubClientOptions, type HubClientOptions } from './hub-client-options.js';
import { HubSession, type SessionClose, type Welcome } from './hub-session.js';
import { openHubSocket } from './hub-socket.js';

export type { AgentIdentity, HubClientOptions } from './hub-client-options.js';

// CommonJS package loaded with require(): see hub-socket.ts for why.
const { backOff } = createRequire(import.meta.url)('exponential-backoff') as typeof ExponentialBackoff;
export type { CommandFinished } from './command-processor.js';

/** CREATED → RUNNING → STOPPING → STOPPED. */
export type HubClientState = 'CREATED' | 'RUNNING' | 'STOPPING' | 'STOPPED';

/** Events a HubClient emits (listeners must not throw). */
export interface HubClientEvents {
  /** The hub said welcome and the hello (and any results left over from it) was sent. */
  connected: [{ replicaId: string; heartbeatMs: number }];
  /** An established connection ended. */
  disconnected: [SessionClose];
  /** One connection attempt failed (non-101 answer, network, TLS, no welcome). */
  'connect-failed': [{ error: SikkerError; attempt: number }];
  /** A received command was decided on (accepted, duplicate, rejected, ignored). */
  'command-received': [{ commandId: string; decision: CommandDecision }];
  /** A command's final result was recorded (and sent if connected). */
  'command-finished': [CommandFinished];
  /** stop() completed. */
  stopped: [{ drained: boolean }];
}

/**
 * The agent's one outbound connection to the control plane's hub: signed upgrade,
 * heartbeats, reconnection with exponential backoff and full jitter (the attempt
 * counter restarts after each welcome), and command handling through a journal.
 * Many instances can run in one process (tests, benchmarks); each holds one socket,
 * one timer and small bookkeeping.
 *
 * Failure modes: the constructor throws ERR_CONFIG_INVALID / ERR_TRANSPORT_INSECURE for
 * unusable options; start() throws ERR_AGENT_STATE if called twice. Connection
 * failures never throw: they are logged, emitted as 'connect-failed' and retried
 * until stop(). After stop(), a pending backoff timer (at most maxDelayMs) may keep
 * the event loop alive; it does nothing when it fires.
 */
export class HubClient extends EventEmitter<HubClientEvents> {
  readonly #options: HubClientOptions;
  readonly #compiled: CompiledHubClientOptions;
  readonly #logger: Logger;
  readonly #processor: CommandProcessor;
  readonly #appliers = new ApplierPool();
  /** Control-plane clock minus ours, from the last welcome (0 until then). */
  #clockOffsetMs = 0;
  #state: HubClientState = 'CREATED';
  #session: HubSession | null = null;
  #connecting: WebSocket | null = null;
  #stopping: Promise<{ drained: boolean }> | null = null;

  constructor(options: HubClientOptions) {
    super();
    this.#options = options;
    this.#compiled = compileHubClientOptions(options);
    this.#logger = options.logger.child({ agentId: options.identity.identityId });
    const version = options.agentVersion ?? agentVersion();
    const rotation: RotationExecutorDeps = {
      agentId: options.identity.identityId,
      boxPrivateKey: options.identity.boxPrivateKey,
      adminConnections: options.adminConnections ?? new Map(),
      mongodbCommands: options.mongodbCommands ?? new Map(),
      createApplier: options.createApplier,
      // real appliers get the verify login's connection opened at accept; injected (fake) ones do not
      openWarmSocket: options.createApplier === undefined ? (host, port) => WarmSocket.open(host, port) : undefined,
      crashAfterApply: options.crashAfterApply,
      appliers: this.#appliers,
    };
    const executors: CommandExecutor[] = [
      createProbeExecutor(version),
      createDeliverExecutor({ agentId: options.identity.identityId, boxPrivateKey: options.identity.boxPrivateKey, sinks: options.sinks ?? [] }),
      createPreflightExecutor(rotation),
      createApplyExecutor(rotation),
      createCheckExecutor(rotation),
      createRevokeExecutor(rotation),
      createTerminateExecutor(rotation),
    ];
    this.#processor = new CommandProcessor({
      agentId: options.identity.identityId,
      serverPublicKey: options.identity.serverPublicKey,
      journal: options.journal,
      executors: new Map(executors.map((e) => [e.kind, e])),
      logger: this.#logger,
      agentVersion: version,
      onFinished: (finished) => this.emit('command-finished', finished),
      // Expiry is judged on the control plane's clock (offset learnt from each welcome), so a
      // host whose clock drifts neither refuses valid commands nor accepts expired ones.
      now: () => Date.now() + this.#clockOffsetMs,
    });
  }

  get state(): HubClientState {
    return this.#state;
  }

  /** True while a welcomed session is open. */
  get connected(): boolean {
    return this.#session?.welcome != null;
  }

  /** Commands queued or running. */
  get inFlight(): number {
    return this.#processor.inFlight;
  }

  /**
   * Re-runs commands a previous run left unfinished, then connects (after a first
   * jittered delay) and keeps reconnecting until stop(). Returns at once.
   */
  start(): void {
    if (this.#state !== 'CREATED') throw new SikkerError('ERR_AGENT_STATE', `cannot start a hub client that is ${this.#state}`);
    this.#state = 'RUNNING';
    this.#processor.resumeInterrupted();
    void this.#connectLoop();
  }

  /**
   * Stops accepting new commands (they are left undelivered, without answer), waits up
   * to `graceMs` for the ones in flight, closes the socket with 1001 and resolves with
   * whether everything finished. Unfinished commands stay accepted in the journal and
   * run again at the next start. Calling it again returns the same promise.
   */
  stop(graceMs: number): Promise<{ drained: boolean }> {
    if (this.#stopping !== null) return this.#stopping;
    this.#stopping = this.#stop(graceMs);
    return this.#stopping;
  }

  async #stop(graceMs: number): Promise<{ drained: boolean }> {
    const wasRunning = this.#state === 'RUNNING';
    this.#state = 'STOPPING';
    this.#processor.stopAccepting();
    const drained = wasRunning ? await this.#processor.drain(graceMs) : true;
    if (!drained) this.#logger.warn({ inFlight: this.#processor.inFlight }, 'shutdown grace period over; unfinished commands will resume at the next start');
    this.#connecting?.terminate();
    const session = this.#session;
    if (session !== null) {
      session.close(1001, 'agent stopping');
      const timer = setTimeout(() => session.terminate(), 2000);
      await session.closed;
      clearTimeout(timer);
    }
    await this.#appliers.closeAll();
    this.#state = 'STOPPED';
    this.emit('stopped', { drained });
    return { drained };
  }

  async #connectLoop(): Promise<void> {
    // Consecutive sessions that ended soon after their welcome: they count as failed
    // attempts, so a hub that accepts and then drops us is not hammered every second.
    let shortSessions = 0;
    while (this.#state === 'RUNNING') {
      let session: HubSession;
      try {
        session = await backOff(() => this.#attempt(), {
          jitter: 'full',
          delayFirstAttempt: true,
          startingDelay: Math.min(this.#compiled.maxDelayMs, this.#compiled.startingDelayMs * 2 ** Math.min(shortSessions, 16)),
          maxDelay: this.#compiled.maxDelayMs,
          numOfAttempts: Number.MAX_SAFE_INTEGER,
          retry: (err: unknown, attempt: number) => this.#onAttemptFailed(err, attempt),
        });
      } catch {
        return; // retry() said stop: the client is stopping
      }
      const openedAt = Date.now();
      const closed = await session.closed;
      // A session that lasted two heartbeats was healthy: the backoff starts over.
      shortSessions = Date.now() - openedAt >= 2 * this.#compiled.heartbeatMs ? 0 : shortSessions + 1;
      this.#logger.info({ code: closed.code, reason: closed.reason, shortSessions }, 'disconnected from the hub');
    }
  }

  #onAttemptFailed(err: unknown, attempt: number): boolean {
    if (this.#state !== 'RUNNING') return false;
    const error = err instanceof SikkerError ? err : new SikkerError('ERR_SERVER_UNREACHABLE', 'connection attempt failed', { cause: err, retryable: true });
    this.#logger.warn({ code: error.code, status: error.details?.status, serverCode: error.details?.serverCode, attempt }, `cannot connect to the hub: ${error.message}`);
    this.emit('connect-failed', { error, attempt });
    return true;
  }

  /** One connection attempt: resolves with a welcomed session, rejects otherwise. */
  async #attempt(): Promise<HubSession> {
    if (this.#state !== 'RUNNING') throw new SikkerError('ERR_AGENT_STATE', 'the agent is stopping');
    const { identity } = this.#options;
    const session = await openHubSocket(
      {
        connectUrl: this.#compiled.connectUrl,
        identityId: identity.identityId,
        privateKey: identity.privateKey,
        caCertPem: this.#compiled.tls.caCertPem,
        pinSha256: this.#compiled.tls.pinSha256,
        handshakeTimeoutMs: this.#compiled.handshakeTimeoutMs,
      },
      {
        onSocket: (s) => {
          this.#connecting = s;
        },
        onOpen: (s) => this.#openSession(s),
      },
    ).finally(() => {
      this.#connecting = null;
    });
    if (this.#state !== 'RUNNING') {
      session.close(1001, 'agent stopping');
      throw new SikkerError('ERR_AGENT_STATE', 'the agent is stopping');
    }
    await session.welcomed;
    return session;
  }

  #openSession(socket: WebSocket): HubSession {
    const session: HubSession = new HubSession(socket, {
      heartbeatMs: this.#compiled.heartbeatMs,
      welcomeTimeoutMs: this.#compiled.handshakeTimeoutMs,
      logger: this.#logger,
      handlers: {
        onWelcome: (welcome) => this.#onWelcome(session, welcome),
        onCommand: (envelope, signature) => {
          const decision = this.#processor.handleCommand(envelope, signature);
          this.emit('command-received', { commandId: envelope.commandId, decision });
        },
        onResultAck: (commandId) => this.#processor.handleResultAck(commandId),
      },
    });
    this.#session = session;
    void session.closed.then((info) => {
      if (this.#session === session) {
        this.#session = null;
        this.#processor.attach(null);
      }
      if (session.welcome !== null) this.emit('disconnected', info);
    });
    return session;
  }

  /** Runs synchronously inside the frame handler, so hello precedes any answer to a command. */
  #onWelcome(session: HubSession, welcome: Welcome): void {
    this.#clockOffsetMs = welcome.serverTime - Date.now();
    this.#processor.attach((message) => session.send(message));
    for (const message of this.#processor.greeting()) session.send(message);
    this.#logger.info({ replicaId: welcome.replicaId, heartbeatMs: welcome.heartbeatMs }, 'connected to the hub');
    this.emit('connected', { replicaId: welcome.replicaId, heartbeatMs: welcome.heartbeatMs });
  }
}
