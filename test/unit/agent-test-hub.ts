/**
 * Test support for the agent's unit tests (not a test itself): a hub played by a
 * ws WebSocketServer on 127.0.0.1:0 with its own Ed25519 server key, an agent
 * identity, signed command builders, and a HubClient with a captured logger.
 */
import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import type { Duplex } from 'node:stream';
import type { Test } from 'tap';
import { WebSocketServer, type WebSocket } from 'ws';
import { createLogger, type Logger } from '../../shared/logging/logger.js';
import { AGENT_CONNECT_PATH, AgentToHub, signCommand, type CommandEnvelope } from '../../shared/protocol/agent-messages.js';
import { SIGNATURE_HEADERS, verifySignature } from '../../shared/signing/request-signature.js';
import { HubClient, type AgentIdentity, type HubClientOptions } from '../../agent/hub-client/hub-client.js';
import type { CommandJournal } from '../../agent/journal/command-journal.js';
import { MemoryCommandJournal } from '../../agent/journal/memory-command-journal.js';

export interface TestKeys {
  identity: AgentIdentity;
  serverPrivateKey: KeyObject;
  agentPublicKey: KeyObject;
  boxPublicKey: KeyObject;
}

export function makeKeys(): TestKeys {
  const agent = generateKeyPairSync('ed25519');
  const box = generateKeyPairSync('x25519');
  const server = generateKeyPairSync('ed25519');
  return {
    identity: { identityId: randomUUID(), privateKey: agent.privateKey, boxPrivateKey: box.privateKey, serverPublicKey: server.publicKey },
    serverPrivateKey: server.privateKey,
    agentPublicKey: agent.publicKey,
    boxPublicKey: box.publicKey,
  };
}

/** One agent connection as the fake hub sees it. */
export interface HubSide {
  socket: WebSocket;
  request: IncomingMessage;
  received: AgentToHub[];
  /** Resolves with the next received message matching `match` (already received ones count). */
  next(match: (m: AgentToHub) => boolean, timeoutMs?: number): Promise<AgentToHub>;
  send(message: unknown): void;
}

export interface FakeHubOptions {
  /** Sent on connect unless null. */
  welcome?: { heartbeatMs: number; serverTimeOffsetMs?: number } | null;
  /** Answer the upgrade with this HTTP status and JSON error instead of 101. */
  refuse?: { status: number; code: string } | undefined;
  /** Serve https (wss) with this certificate. */
  tls?: { certPem: string; keyPem: string };
}

export class FakeHub {
  readonly connections: HubSide[] = [];
  readonly #waiters: ((side: HubSide) => void)[] = [];
  upgradeSignatureValid: boolean[] = [];
  options: FakeHubOptions;

  private constructor(readonly server: Server, readonly url: string, options: FakeHubOptions, agentPublicKey: KeyObject | undefined) {
    this.options = options;
    const wss = new WebSocketServer({ noServer: true });
    server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
      const refuse = this.options.refuse;
      if (refuse === undefined && request.url === AGENT_CONNECT_PATH) {
        wss.handleUpgrade(request, socket, head, (ws) => this.#onConnection(ws, request, agentPublicKey));
        return;
      }
      const body = JSON.stringify({ error: { code: refuse?.code ?? 'ERR_NOT_FOUND', message: 'refused by the test hub' } });
      socket.end(`HTTP/1.1 ${refuse?.status ?? 404} Refused\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    });
  }

  static async start(t: Test, options: FakeHubOptions = {}, agentPublicKey?: KeyObject): Promise<FakeHub> {
    const notFound = (_req: IncomingMessage, res: ServerResponse): void => void res.writeHead(404).end();
    const server: Server = options.tls === undefined ? createServer(notFound) : createHttpsServer({ cert: options.tls.certPem, key: options.tls.keyPem }, notFound);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const scheme = options.tls === undefined ? 'http' : 'https';
    const hub = new FakeHub(server, `${scheme}://127.0.0.1:${(server.address() as AddressInfo).port}`, options, agentPublicKey);
    t.teardown(() => hub.close());
    return hub;
  }

  /** Resolves with the next (or an already open, not yet claimed) connection. */
  nextConnection(index = this.connections.length): Promise<HubSide> {
    const existing = this.connections[index];
    if (existing !== undefined) return Promise.resolve(existing);
    return new Promise((resolve) => this.#waiters.push((side) => {
      if (this.connections.indexOf(side) === index) resolve(side);
    }));
  }

  close(): void {
    for (const c of this.connections) c.socket.terminate();
    this.server.closeAllConnections();
    this.server.close();
  }

  #onConnection(socket: WebSocket, request: IncomingMessage, agentPublicKey: KeyObject | undefined): void {
    if (agentPublicKey !== undefined) this.upgradeSignatureValid.push(checkUpgradeSignature(request, agentPublicKey));
    const received: AgentToHub[] = [];
    const listeners: (() => void)[] = [];
    const side: HubSide = {
      socket,
      request,
      received,
      next: (match, timeoutMs = 15_000) => new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('timed out waiting for an agent message')), timeoutMs);
        const check = (): boolean => {
          const found = received.find(match);
          if (found === undefined) return false;
          clearTimeout(timer);
          resolve(found);
          return true;
        };
        if (!check()) listeners.push(() => void check());
      }),
      send: (message) => socket.send(JSON.stringify(message)),
    };
    socket.on('message', (data) => {
      received.push(AgentToHub.parse(JSON.parse(String(data))));
      for (const l of listeners) l();
    });
    socket.on('error', () => undefined); // terminated sockets in teardown
    this.connections.push(side);
    if (this.options.welcome !== null) side.send({ type: 'welcome', replicaId: 'replica-test', serverTime: Date.now() + (this.options.welcome?.serverTimeOffsetMs ?? 0), heartbeatMs: this.options.welcome?.heartbeatMs ?? 15_000 });
    for (const w of this.#waiters) w(side);
  }
}

function checkUpgradeSignature(request: IncomingMessage, publicKey: KeyObject): boolean {
  const h = (name: string): string => String(request.headers[name] ?? '');
  return verifySignature(publicKey, {
    method: 'GET',
    pathWithQuery: request.url ?? '',
    body: Buffer.alloc(0),
    timestampMs: Number(h(SIGNATURE_HEADERS.timestamp)),
    nonce: h(SIGNATURE_HEADERS.nonce),
    identityId: h(SIGNATURE_HEADERS.identity),
  }, h(SIGNATURE_HEADERS.signature));
}

let generation = 0;

/** A valid envelope for `agentId` with a fresh id and an increasing generation. */
export function envelope(agentId: string, overrides: Partial<CommandEnvelope> = {}): CommandEnvelope {
  generation += 1;
  const now = Date.now();
  return { commandId: randomUUID(), agentId, kind: 'agent.probe', generation: 1000 + generation, issuedAt: now, expiresAt: now + 60_000, payload: {}, sealed: null, ...overrides };
}

export function commandFrame(serverKey: KeyObject, e: CommandEnvelope): { type: 'command'; envelope: CommandEnvelope; signature: string } {
  return { type: 'command', envelope: e, signature: signCommand(serverKey, e) };
}

/** A pino logger whose JSON lines are collected in `lines`. */
export function captureLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter((l) => l !== ''));
      done();
    },
  });
  return { logger: createLogger({ name: 'agent-test', level: 'trace', destination }), lines };
}

/** A started HubClient against `hub`, stopped in teardown. */
export function startClient(t: Test, hub: FakeHub, keys: TestKeys, extra: Partial<HubClientOptions> & { journal?: CommandJournal } = {}): { client: HubClient; lines: string[]; journal: CommandJournal } {
  const { logger, lines } = extra.logger === undefined ? captureLogger() : { logger: extra.logger, lines: [] };
  const journal = extra.journal ?? new MemoryCommandJournal();
  const client = new HubClient({
    serverUrl: hub.url,
    identity: keys.identity,
    journal,
    logger,
    backoff: { startingDelayMs: 10, maxDelayMs: 50 },
    ...extra,
  });
  client.start();
  t.teardown(() => client.stop(100));
  return { client, lines, journal };
}
