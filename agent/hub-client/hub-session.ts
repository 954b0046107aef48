import type WebSocket from 'ws';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import type { Logger } from '../../shared/logging/logger.js';
import { AgentToHub, HubToAgent, type CommandEnvelope } from '../../shared/protocol/agent-messages.js';

/** The hub's first message. */
export interface Welcome {
  replicaId: string;
  serverTime: number;
  heartbeatMs: number;
}

/** Called synchronously for each valid frame, in arrival order. */
export interface HubSessionHandlers {
  onWelcome(welcome: Welcome): void;
  onCommand(envelope: CommandEnvelope, signature: string): void;
  onResultAck(commandId: string): void;
}

export interface HubSessionOptions {
  /** Ping interval until the welcome names one. */
  heartbeatMs: number;
  /** The hub must say welcome within this time after the upgrade. */
  welcomeTimeoutMs: number;
  logger: Logger;
  handlers: HubSessionHandlers;
}

/** How a session ended. */
export interface SessionClose {
  code: number;
  reason: string;
}

const POLICY_VIOLATION = 1008;

/**
 * One open connection to the hub: validates every frame (text JSON matching
 * HubToAgent, welcome first and once; anything else closes with 1008), validates every
 * message sent against AgentToHub, and pings every heartbeat interval — if no pong
 * arrived since the previous ping, the socket is terminated, so a silent half-open
 * connection is dropped within two intervals.
 */
export class HubSession {
  /** Resolves at the welcome; rejects if the socket closes or the timeout passes first. */
  readonly welcomed: Promise<Welcome>;
  /** Resolves once when the socket has closed, however that happened. */
  readonly closed: Promise<SessionClose>;
  readonly #socket: WebSocket;
  readonly #options: HubSessionOptions;
  #welcome: Welcome | null = null;
  #heartbeat: NodeJS.Timeout | undefined;
  #awaitingPong = false;
  /** Set after a protocol violation: later frames are ignored while the close completes. */
  #refusing = false;

  constructor(socket: WebSocket, options: HubSessionOptions) {
    this.#socket = socket;
    this.#options = options;
    let onWelcome: (w: Welcome) => void = () => undefined;
    let onNoWelcome: (err: SikkerError) => void = () => undefined;
    this.welcomed = new Promise<Welcome>((resolve, reject) => {
      onWelcome = resolve;
      onNoWelcome = reject;
    });
    this.welcomed.catch(() => undefined); // observed by the caller; avoid an unhandled rejection when it is not
    const welcomeTimer = setTimeout(() => {
      onNoWelcome(new SikkerError('ERR_HUB_PROTOCOL', `no welcome from the hub within ${options.welcomeTimeoutMs} ms`, { retryable: true }));
      this.close(POLICY_VIOLATION, 'no welcome');
    }, options.welcomeTimeoutMs);
    this.closed = new Promise<SessionClose>((resolve) => {
      socket.on('close', (code: number, reason: Buffer) => {
        clearTimeout(welcomeTimer);
        clearInterval(this.#heartbeat);
        const info = { code, reason: reason.toString('utf8').slice(0, 123) };
        onNoWelcome(new SikkerError('ERR_SERVER_UNREACHABLE', `the hub closed the connection before its welcome (${code} ${info.reason})`, { retryable: true }));
        resolve(info);
      });
    });
    socket.on('pong', () => {
      this.#awaitingPong = false;
    });
    socket.on('message', (data: WebSocket.RawData, isBinary: boolean) => {
      const welcome = this.#onFrame(data, isBinary);
      if (welcome !== null) {
        clearTimeout(welcomeTimer);
        onWelcome(welcome);
      }
    });
    this.#startHeartbeat(options.heartbeatMs);
  }

  /** The hub's welcome, once received. */
  get welcome(): Welcome | null {
    return this.#welcome;
  }

  /**
   * Sends one message if the socket is open. Returns false when it is not, or when
   * the message does not match AgentToHub (a bug: logged with field paths only).
   */
  send(message: AgentToHub): boolean {
    if (this.#socket.readyState !== this.#socket.OPEN) return false;
    const checked = AgentToHub.safeParse(message);
    if (!checked.success) {
      this.#options.logger.error({ type: message.type, paths: checked.error.issues.map((i) => i.path.join('.')) }, 'refusing to send a malformed message');
      return false;
    }
    this.#socket.send(JSON.stringify(checked.data));
    return true;
  }

  /** Starts a close handshake; `closed` resolves when it completes. */
  close(code: number, reason: string): void {
    this.#socket.close(code, reason);
  }

  /** Destroys the socket at once. */
  terminate(): void {
    this.#socket.terminate();
  }

  #startHeartbeat(intervalMs: number): void {
    clearInterval(this.#heartbeat);
    this.#awaitingPong = false;
    this.#heartbeat = setInterval(() => {
      if (this.#awaitingPong) {
        this.#options.logger.warn({ intervalMs }, 'no pong from the hub within a heartbeat interval; dropping the connection');
        this.#socket.terminate();
        return;
      }
      this.#awaitingPong = true;
      this.#socket.ping();
    }, intervalMs);
    this.#heartbeat.unref();
  }

  /** Dispatches one frame; returns the welcome if this frame was it. */
  #onFrame(data: WebSocket.RawData, isBinary: boolean): Welcome | null {
    if (this.#refusing) return null;
    const message = this.#parse(data, isBinary);
    if (message === null) return null;
    if (message.type === 'welcome') {
      if (this.#welcome !== null) return this.#violation('a second welcome');
      const { type: _type, ...welcome } = message;
      this.#welcome = welcome;
      this.#startHeartbeat(welcome.heartbeatMs);
      this.#options.handlers.onWelcome(welcome);
      return welcome;
    }
    if (this.#welcome === null) return this.#violation(`${message.type} before welcome`);
    if (message.type === 'command') this.#options.handlers.onCommand(message.envelope, message.signature);
    else this.#options.handlers.onResultAck(message.commandId);
    return null;
  }

  #parse(data: WebSocket.RawData, isBinary: boolean): HubToAgent | null {
    if (isBinary) return this.#violation('a binary frame');
    let json: unknown;
    try {
      json = JSON.parse(Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.concat(Array.isArray(data) ? data : [Buffer.from(data)]).toString('utf8'));
    } catch {
      return this.#violation('a frame that is not JSON');
    }
    const parsed = HubToAgent.safeParse(json);
    if (!parsed.success) return this.#violation(`an invalid message (${parsed.error.issues.slice(0, 3).map((i) => i.path.join('.') || '(root)').join(', ')})`);
    return parsed.data;
  }

  #violation(what: string): null {
    this.#refusing = true;
    this.#options.logger.warn({ problem: what }, 'the hub sent an unacceptable frame; closing with 1008');
    this.close(POLICY_VIOLATION, 'invalid message');
    return null;
  }
}
