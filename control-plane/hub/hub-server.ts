import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import proxyaddr from 'proxy-addr';
import type { Pool, PoolClient } from 'pg';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import type { Logger } from '../../shared/logging/logger.js';
import { AGENT_CONNECT_PATH, AgentToHub, MAX_FRAGMENTS, MAX_MESSAGE_BYTES, type CommandResult } from '../../shared/protocol/agent-messages.js';
import type { AuditChainWriter } from '../audit/audit-appender.js';
import type { AuditBatcher } from '../audit/audit-batcher.js';
import type { RequestAuthenticator } from '../auth/request-authenticator.js';
import { withTransaction } from '../db/transaction.js';
import { statusFor } from '../http/error-mapping.js';
import type { RootKeyHolder } from '../vault/root-key-holder.js';
import { AgentConnection } from './agent-connection.js';
import { disabledAmong, isActiveAgent, markConnected, markDisconnected, recordHello, touchHeartbeats } from './agent-dal.js';
import { agentsWithOpenCommands, claimOpenCommands, completeCommand, expireCommands, markAccepted, markDelivered, openCommands, type CommandRow } from './command-dal.js';
import type { CommandService } from './command-service.js';

export interface HubOptions {
  replicaId: string;
  /** Same list as the HTTP routes: whose X-Forwarded-For is believed for the agent's address. */
  trustedProxies?: string[];
  heartbeatMs: number;
  /** How often disabled identities and undelivered commands are swept. */
  sweepMs?: number;
}

type AgentMessage = ReturnType<typeof AgentToHub.parse>;

/** Commands counted as delivered in a transaction, to send on `conn` once it commits ({@link HubServer.claimWithin}). */
export interface ClaimedDelivery {
  readonly conn: AgentConnection;
  readonly rows: CommandRow[];
}

/** See {@link HubServer.claimTicket}. */
export interface ClaimTicket {
  readonly conn: AgentConnection;
  readonly except: string[];
}

/** See {@link HubServer.setResultClaimer}. */
export type ResultClaimer = (agentId: string, result: CommandResult, origin: { sourceIp: string | null; projectId: string | null }) => Promise<boolean> | null;

/**
 * Messages one agent may have waiting for handling beyond two per command sent to it and
 * not yet finished (its `accepted` and `result`); more means a misbehaving agent. A burst
 * of commands (a project-wide leak) is answered by a burst of messages: that is not abuse.
 */
const MAX_QUEUED_MESSAGES = 256;

/**
 * How long the hub waits before recording an agent's `accepted`. The mark only keeps the
 * expiry sweep off a command the agent is running (commands live for minutes); most commands
 * report their result well within this, and then the mark is never written — one database
 * write fewer while the agent works on the database.
 */
const ACCEPTED_MARK_DELAY_MS = 1000;

/** Agent refusals that say "not now" rather than "never". */
const RETRYABLE_REFUSALS = new Set(['ERR_AGENT_STATE']);

/**
 * The WebSocket hub: authenticates each agent's signed upgrade before answering 101,
 * holds one socket per agent, pings both ways, and delivers the commands stored in
 * PostgreSQL — on hello (what the agent reports it holds is not sent again), when a
 * replica announces one through Redis, and in a periodic sweep.
 */
export class HubServer {
  // Bounded both ways: a message is at most MAX_MESSAGE_BYTES and at most MAX_FRAGMENTS frames (ws closes 1009 / 1008 past them).
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE_BYTES, maxFragments: MAX_FRAGMENTS, perMessageDeflate: false, clientTracking: false });
  private readonly connections = new Map<string, AgentConnection>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly trust: ((addr: string, i: number) => boolean) | null;
  private readonly finishedListeners: Array<(commandId: string) => void> = [];
  private resultClaimer: ResultClaimer | null = null;

  constructor(
    private readonly deps: { pool: Pool; authenticator: RequestAuthenticator; audit: AuditBatcher; chain: AuditChainWriter; root: RootKeyHolder; commands: CommandService; logger: Logger },
    private readonly options: HubOptions,
  ) {
    this.trust = (options.trustedProxies ?? []).length > 0 ? proxyaddr.compile(options.trustedProxies ?? []) : null;
  }

  /** Called after a command's final state (result, or refusal by the agent) is recorded on this replica. */
  onCommandFinished(listener: (commandId: string) => void): void {
    this.finishedListeners.push(listener);
  }

  /**
   * Offers each agent result, as soon as its frame is read, to `claimer` (the rotation
   * engine: a run waiting for the command stores the result with its next step). A claimed
   * result is acknowledged to the agent once the claimer's promise says it was stored, and
   * stored here when it says it was not; an unclaimed one (null) is stored here at once, and
   * `onCommandFinished` follows. Results re-sent in a hello are always stored here.
   */
  setResultClaimer(claimer: ResultClaimer): void {
    this.resultClaimer = claimer;
  }

  private commandFinished(commandId: string): void {
    for (const listener of this.finishedListeners) listener(commandId);
  }

  get connectedCount(): number {
    return this.connections.size;
  }

  isConnected(agentId: string): boolean {
    return this.connections.has(agentId);
  }

  /** Starts answering upgrades on `server` and the heartbeat and sweep timers. */
  attach(server: Server): void {
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => void this.handleUpgrade(req, socket, head));
    this.timers.push(setInterval(() => this.heartbeat(), this.options.heartbeatMs));
    this.timers.push(setInterval(() => void this.sweep(), this.options.sweepMs ?? 2000));
    for (const t of this.timers) t.unref();
  }

  /** Delivers waiting commands if this replica holds the agent's socket (bus hint or sweep). */
  deliverIfHere(agentId: string): void {
    const conn = this.connections.get(agentId);
    if (conn !== undefined) this.deliverSafely(conn);
  }

  /**
   * For a transaction that stores a command for `agentId`: when this replica holds the
   * agent's socket, counts every open command not yet sent on it as delivered within
   * that transaction, to be sent by {@link sendClaimed} right after the commit — no
   * reading back, no second commit. null when the agent is elsewhere (announce it then).
   * As with {@link deliver}, a command is counted before it is sent, never the reverse.
   */
  async claimWithin(client: PoolClient, agentId: string): Promise<ClaimedDelivery | null> {
    const ticket = this.claimTicket(agentId);
    return ticket === null ? null : { conn: ticket.conn, rows: await claimOpenCommands(client, agentId, ticket.except) };
  }

  /**
   * What a statement that stores a command and claims in the same go needs (the commands
   * not to claim: sent on or held by this socket), when this replica holds the agent's
   * socket; null otherwise. The rows it claims make a {@link ClaimedDelivery} with `conn`.
   */
  claimTicket(agentId: string): ClaimTicket | null {
    const conn = this.connections.get(agentId);
    if (conn === undefined || !conn.ready || this.deps.root.isSealed()) return null;
    return { conn, except: [...conn.sent, ...conn.held] };
  }

  /** After the claiming transaction committed: sends the claimed commands, in generation order. What cannot be sent now, the sweep or the next hello sends. */
  sendClaimed(claim: ClaimedDelivery): void {
    const { conn, rows } = claim;
    if (this.connections.get(conn.agentId) !== conn) return; // that socket is gone; its successor's hello gets them
    try {
      for (const row of rows) {
        if (conn.sent.has(row.command_id)) continue;
        if (!conn.send({ type: 'command', ...this.deps.commands.envelopeFor(row) })) return;
        conn.sent.add(row.command_id);
      }
    } catch (err) {
      this.deps.logger.warn({ err, agentId: conn.agentId }, 'sending a claimed command failed; the sweep retries');
    }
  }

  /** Delivery never throws into the event loop: a database or seal error is logged and the sweep tries again. */
  private deliverSafely(conn: AgentConnection): void {
    this.deliver(conn).catch((err: unknown) => this.deps.logger.warn({ err, agentId: conn.agentId }, 'delivery failed; the sweep retries'));
  }

  /** Sealing drops every agent socket: commands cannot be signed here, so agents should move to an unsealed replica. */
  dropAllForSeal(): void {
    for (const conn of this.connections.values()) conn.socket.close(1013, 'control plane sealed');
  }

  /** Closes the socket of a disabled identity if this replica holds it. */
  dropIfHere(identityId: string): void {
    const conn = this.connections.get(identityId);
    if (conn !== undefined) {
      this.deps.logger.info({ agentId: identityId }, 'closing the socket of a disabled agent');
      conn.socket.close(4003, 'identity disabled');
      setTimeout(() => conn.socket.terminate(), 1000).unref();
    }
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    for (const conn of this.connections.values()) for (const timer of conn.acceptedLater.values()) clearTimeout(timer);
    for (const conn of this.connections.values()) conn.socket.close(1001, 'control plane stopping');
    this.connections.clear();
    this.wss.close();
  }

  private async handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const sourceIp = this.trust === null ? (req.socket.remoteAddress ?? '') : proxyaddr(req, this.trust);
    socket.on('error', () => socket.destroy()); // a client that vanishes mid-handshake
    try {
      if ((req.url ?? '').split('?')[0] !== AGENT_CONNECT_PATH) throw new SikkerError('ERR_NOT_FOUND', 'no such endpoint');
      if (this.deps.root.isSealed()) throw new SikkerError('ERR_VAULT_SEALED', 'the vault is sealed', { retryable: true });
      const { identity } = await this.authenticate(req, sourceIp);
      if (!identity.grants.some((g) => g.role === 'agent') || !(await isActiveAgent(this.deps.pool, identity.identityId))) {
        await this.auditRefusal(identity.identityId, sourceIp, 'ERR_AUTH_FORBIDDEN');
        throw new SikkerError('ERR_AUTH_FORBIDDEN', 'this identity is not an enrolled agent');
      }
      const projectId = identity.grants.find((g) => g.role === 'agent')?.projectId ?? null;
      this.wss.handleUpgrade(req, socket, head, (ws) => void this.onConnection(ws, identity.identityId, sourceIp, projectId));
    } catch (err) {
      const e = err instanceof SikkerError ? err : new SikkerError('ERR_INTERNAL', 'internal error', { cause: err });
      if (e.code === 'ERR_INTERNAL') this.deps.logger.error({ err }, 'agent upgrade failed');
      const body = JSON.stringify({ error: { code: e.code, message: e.message } });
      const status = statusFor(e.code);
      socket.end(`HTTP/1.1 ${status} ${status === 401 ? 'Unauthorized' : 'Refused'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    }
  }

  private async authenticate(req: IncomingMessage, sourceIp: string) {
    try {
      return await this.deps.authenticator.authenticate({ method: req.method ?? 'GET', url: req.url ?? '', headers: req.headers, rawBody: Buffer.alloc(0), sourceIp });
    } catch (err) {
      if (err instanceof SikkerError) await this.auditRefusal(null, sourceIp, err.code);
      throw err;
    }
  }

  private async auditRefusal(identityId: string | null, sourceIp: string, code: string): Promise<void> {
    await this.deps.audit.append({ identityId, sourceIp, action: code === 'ERR_AUTH_FORBIDDEN' ? 'auth.forbidden' : 'auth.failure', outcome: 'denied', detail: { code, method: 'GET', path: AGENT_CONNECT_PATH } })
      .catch((auditErr: unknown) => this.deps.logger.error({ err: auditErr }, 'could not audit a refused agent upgrade'));
  }

  private async onConnection(ws: WebSocket, agentId: string, remoteAddress: string, projectId: string | null): Promise<void> {
    const conn = new AgentConnection(agentId, ws, remoteAddress, projectId);
    const previous = this.connections.get(agentId);
    if (previous !== undefined) previous.socket.close(4000, 'replaced by a newer connection');
    this.connections.set(agentId, conn);
    const log = this.deps.logger.child({ agentId });
    ws.on('pong', () => { conn.alive = true; });
    ws.on('message', (data: RawData, isBinary: boolean) => void this.onMessage(conn, data, isBinary, log));
    ws.on('error', (err: Error) => log.warn({ err: { message: err.message } }, 'agent socket error'));
    ws.on('close', () => {
      if (this.connections.get(agentId) !== conn) return;
      this.connections.delete(agentId);
      markDisconnected(this.deps.pool, agentId, this.options.replicaId).catch((err: unknown) => log.warn({ err }, 'could not record a disconnect'));
    });
    conn.send({ type: 'welcome', replicaId: this.options.replicaId, serverTime: Date.now(), heartbeatMs: this.options.heartbeatMs });
    await markConnected(this.deps.pool, agentId, this.options.replicaId, remoteAddress).catch((err: unknown) => log.warn({ err }, 'could not record a connect'));
  }

  private async onMessage(conn: AgentConnection, data: RawData, isBinary: boolean, log: Logger): Promise<void> {
    let message: AgentMessage;
    try {
      if (isBinary) throw new Error('binary frame');
      message = AgentToHub.parse(JSON.parse(data.toString()));
    } catch {
      log.warn('agent sent an invalid message; closing');
      conn.socket.close(1008, 'invalid message');
      return;
    }
    if (conn.queued >= MAX_QUEUED_MESSAGES + 2 * conn.sent.size) {
      log.warn('agent is sending faster than it is answered; closing');
      conn.socket.close(1008, 'too many messages');
      return;
    }
    conn.queued += 1;
    conn.queue = conn.queue.then(async () => {
      try {
        await this.handle(conn, message, log);
      } catch (err) {
        log.error({ err }, 'handling an agent message failed');
      } finally {
        conn.queued -= 1;
      }
    });
    await conn.queue;
  }

  private async handle(conn: AgentConnection, m: AgentMessage, log: Logger): Promise<void> {
    const pool = this.deps.pool;
    switch (m.type) {
      case 'hello':
        try {
          conn.held = new Set([...m.inProgress, ...m.results.map((r) => r.commandId)]);
          for (const r of m.results) await this.recordResult(conn, r, log);
          for (const commandId of m.inProgress) await markAccepted(pool, conn.agentId, commandId);
          await recordHello(pool, conn.agentId, m.agentVersion);
        } catch (err) {
          // Not ready, so nothing would ever be sent on this socket: the agent connects again and says hello anew.
          log.error({ err }, 'recording the agent\'s hello failed; closing its socket so that it connects again');
          conn.socket.close(1011, 'hello not recorded; connect again');
          return;
        }
        conn.ready = true;
        await this.deliver(conn);
        return;
      case 'accepted': {
        if (conn.acceptedLater.has(m.commandId) || conn.acceptedLater.size >= MAX_QUEUED_MESSAGES) {
          await markAccepted(pool, conn.agentId, m.commandId); // a repeat, or very many in flight: at once
          return;
        }
        const timer = setTimeout(() => {
          conn.acceptedLater.delete(m.commandId);
          markAccepted(pool, conn.agentId, m.commandId).catch((err: unknown) => log.warn({ err, commandId: m.commandId }, 'could not record an accepted command'));
        }, ACCEPTED_MARK_DELAY_MS);
        timer.unref();
        conn.acceptedLater.set(m.commandId, timer);
        return;
      }
      case 'result': {
        this.dropAcceptedMark(conn, m.commandId); // the result supersedes it
        const claim = this.resultClaimer?.(conn.agentId, m, { sourceIp: conn.remoteAddress, projectId: conn.projectId }) ?? null;
        if (claim === null) {
          await this.recordResult(conn, m, log);
          return;
        }
        // The waiting run stores it; this socket's next messages need not wait for that.
        conn.sent.delete(m.commandId);
        void claim
          .then(async (storedByRun) => {
            if (!storedByRun) return this.recordResult(conn, m, log);
            log.info({ commandId: m.commandId, outcome: m.outcome }, 'command finished');
            conn.send({ type: 'result-ack', commandId: m.commandId });
          })
          .catch((err: unknown) => log.error({ err, commandId: m.commandId }, 'storing an agent result failed; the agent sends it again at its next hello'));
        return;
      }
      case 'rejected': {
        conn.sent.delete(m.commandId);
        log.warn({ commandId: m.commandId, code: m.code }, 'agent rejected a command');
        // The agent could not journal it (disk full, …): leave it open, the sweep sends it again.
        if (RETRYABLE_REFUSALS.has(m.code)) return;
        const state = m.code === 'ERR_COMMAND_EXPIRED' ? 'expired' : 'rejected';
        if (/^[0-9a-f-]{36}$/.test(m.commandId) && await completeCommand(pool, conn.agentId, m.commandId, state, null, { code: m.code, message: m.message })) {
          this.commandFinished(m.commandId);
        }
        return;
      }
    }
  }

  private dropAcceptedMark(conn: AgentConnection, commandId: string): void {
    const timer = conn.acceptedLater.get(commandId);
    if (timer === undefined) return;
    clearTimeout(timer);
    conn.acceptedLater.delete(commandId);
  }

  private async recordResult(conn: AgentConnection, r: CommandResult, log: Logger): Promise<void> {
    conn.sent.delete(r.commandId);
    // The result and its audit record commit together: a result stored without its record would
    // never get one (the agent's re-sent result then changes nothing, so it is not audited).
    const changed = await withTransaction(this.deps.pool, this.deps.logger, async (client) => {
      if (!(await completeCommand(client, conn.agentId, r.commandId, r.outcome, r.result, r.error, { evenIfExpired: true }))) return false;
      await this.deps.chain.append(client, [{ identityId: conn.agentId, sourceIp: conn.remoteAddress, action: 'agent.command.result', projectId: conn.projectId, outcome: r.outcome, detail: { commandId: r.commandId, code: r.error?.code ?? null } }]);
      return true;
    });
    if (changed) {
      log.info({ commandId: r.commandId, outcome: r.outcome }, 'command finished');
      this.commandFinished(r.commandId);
    }
    conn.send({ type: 'result-ack', commandId: r.commandId });
  }

  /**
   * Sends every open command not yet sent on this socket, in generation order. An id
   * joins `sent` only once its frame went out on an open socket, so a failure (sealed,
   * database) leaves it for the next attempt instead of skipping a generation.
   */
  private async deliver(conn: AgentConnection): Promise<void> {
    if (!conn.ready || this.deps.root.isSealed()) return;
    const rows = (await openCommands(this.deps.pool, conn.agentId)).filter((row) => !conn.sent.has(row.command_id) && !conn.held.has(row.command_id));
    if (rows.length === 0) return;
    const messages = rows.map((row) => ({ type: 'command' as const, ...this.deps.commands.envelopeFor(row) }));
    // Counted as delivered before the frames go out: a crash in between then leaves a command
    // counted but perhaps never sent (the engine asks the agent what happened: safe), never one
    // sent but counted as never sent (which the engine would take as "certainly changed nothing").
    // Only those still open when counted go out: one cancelled since the read above stays unsent.
    const counted = await markDelivered(this.deps.pool, rows.map((row) => row.command_id));
    for (const [i, message] of messages.entries()) {
      const commandId = rows[i]!.command_id;
      if (!counted.has(commandId)) continue;
      if (!conn.send(message)) break;
      conn.sent.add(commandId);
    }
  }

  private heartbeat(): void {
    const alive: string[] = [];
    for (const conn of this.connections.values()) {
      if (!conn.alive) {
        conn.socket.terminate(); // silent for a whole interval: half-open
        continue;
      }
      alive.push(conn.agentId);
      conn.alive = false;
      conn.socket.ping();
    }
    touchHeartbeats(this.deps.pool, alive, this.options.replicaId).catch((err: unknown) => this.deps.logger.warn({ err }, 'could not record heartbeats'));
  }

  private async sweep(): Promise<void> {
    try {
      const connected = [...this.connections.keys()];
      for (const id of await disabledAmong(this.deps.pool, connected)) this.dropIfHere(id);
      if (connected.length > 0) for (const id of await agentsWithOpenCommands(this.deps.pool)) this.deliverIfHere(id);
      await expireCommands(this.deps.pool);
    } catch (err) {
      this.deps.logger.warn({ err }, 'hub sweep failed; retrying next interval');
    }
  }
}
