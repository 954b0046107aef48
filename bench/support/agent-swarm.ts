/**
 * A swarm of simulated agents: a child-process script (`node dist/bench/support/agent-swarm.js`,
 * started and driven over IPC by agent-swarm-control.ts) holding thousands of minimal
 * agent connections to the hub. Each simulated agent does exactly what an idle real
 * agent does on the wire and nothing else:
 *
 *   signed upgrade GET /v1/agent/connect → 101 → `welcome` → `hello` → idle
 *   (pings are answered by ws itself).
 *
 * Identities are generated here ("prepare"): the Ed25519 and X25519 private keys are
 * made from fresh random bytes and never leave this process; the parent gets the
 * identity ids and public keys to insert into the database. Keys are imported from
 * raw bytes rather than made with generateKeyPairSync, which is slow to decode and,
 * combined with JWK export in a tight loop, can deadlock Node 20 during GC.
 */
import { createPrivateKey, createPublicKey, randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import WebSocket from 'ws';
import { exportBoxPublicKey } from '../../shared/crypto/sealed-box.js';
import { AGENT_CONNECT_PATH, MAX_MESSAGE_BYTES, PROTOCOL_VERSION } from '../../shared/protocol/agent-messages.js';
import { exportPublicKey } from '../../shared/signing/ed25519-keys.js';
import { signRequest } from '../../shared/signing/request-signature.js';
import type { ConnectOptions, ConnectReport, PreparedAgent, SwarmMessage, SwarmRequest, SwarmStatus } from './agent-swarm-control.js';

interface SimAgent {
  identityId: string;
  privateKey: KeyObject;
  /** The welcomed socket, while open. */
  socket: WebSocket | null;
}

const EMPTY = Buffer.alloc(0);
const RETRY_DELAY_MS = 250;
const MAX_FAILURE_KINDS = 30;

const agents: SimAgent[] = [];
const dropKinds: Record<string, number> = {};
let dropped = 0;
let unexpectedMessages = 0;
let open = 0;

function send(message: SwarmMessage): void {
  if (process.connected) process.send?.(message);
}

function rawPrivateKey(crv: 'Ed25519' | 'X25519'): KeyObject {
  // Node reads only `d` for an OKP private JWK; `x` must be present but is not used.
  return createPrivateKey({ key: { kty: 'OKP', crv, d: randomBytes(32).toString('base64url'), x: '' }, format: 'jwk' });
}

function prepare(count: number): PreparedAgent[] {
  const out: PreparedAgent[] = [];
  for (let i = 0; i < count; i += 1) {
    const privateKey = rawPrivateKey('Ed25519');
    const identityId = randomUUID();
    const box = rawPrivateKey('X25519');
    agents.push({ identityId, privateKey, socket: null });
    out.push({ identityId, publicKey: exportPublicKey(createPublicKey(privateKey)), boxPublicKey: exportBoxPublicKey(createPublicKey(box)) });
  }
  return out;
}

/** Short, countable description of a failed attempt. */
function describeError(err: Error & { code?: string }): string {
  if (typeof err.code === 'string' && err.code !== '') return err.code;
  return err.message.slice(0, 80);
}

function readBody(res: IncomingMessage, limit = 4096): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (c: Buffer) => {
      if (size < limit) chunks.push(c);
      size += c.length;
    });
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8').slice(0, limit)));
    res.on('error', () => resolve(''));
    res.on('close', () => resolve(Buffer.concat(chunks).toString('utf8').slice(0, limit)));
  });
}

/** One attempt: resolves null when welcomed (and hello sent), else the reason it failed. */
function attempt(agent: SimAgent, o: ConnectOptions, localAddress: string | undefined): Promise<string | null> {
  return new Promise((resolve) => {
    const headers = signRequest(agent.privateKey, { method: 'GET', pathWithQuery: AGENT_CONNECT_PATH, body: EMPTY, identityId: agent.identityId });
    const ws = new WebSocket(o.url, {
      headers,
      perMessageDeflate: false,
      maxPayload: MAX_MESSAGE_BYTES,
      handshakeTimeout: o.handshakeTimeoutMs,
      followRedirects: false,
      ...(localAddress === undefined ? {} : { localAddress }),
    });
    let settled = false;
    const settle = (failure: string | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (failure === null) {
        agent.socket = ws;
        open += 1;
      } else {
        ws.terminate();
      }
      resolve(failure);
    };
    const timer = setTimeout(() => settle(`no welcome within ${o.handshakeTimeoutMs} ms`), o.handshakeTimeoutMs);
    ws.on('error', (err: Error) => settle(describeError(err)));
    ws.on('unexpected-response', (req, res) => {
      void readBody(res).then((body) => {
        let code = '';
        try {
          code = String((JSON.parse(body) as { error?: { code?: unknown } }).error?.code ?? '');
        } catch {
          // not JSON: the status says enough
        }
        settle(`HTTP ${res.statusCode ?? 0}${code === '' ? '' : ` ${code}`}`);
        req.destroy();
      });
    });
    ws.on('message', (data: WebSocket.RawData, isBinary: boolean) => {
      if (settled) {
        unexpectedMessages += 1;
        return;
      }
      let type: unknown;
      try {
        type = isBinary ? 'binary' : (JSON.parse(data.toString()) as { type?: unknown }).type;
      } catch {
        type = 'invalid JSON';
      }
      if (type !== 'welcome') {
        settle(`first frame was ${String(type)}, not welcome`);
        return;
      }
      ws.send(JSON.stringify({ type: 'hello', protocol: PROTOCOL_VERSION, agentVersion: o.agentVersion, highestGeneration: 0, results: [], inProgress: [] }));
      settle(null);
    });
    ws.on('close', (code: number) => {
      if (!settled) {
        settle(`closed before welcome (${code})`);
        return;
      }
      if (agent.socket !== ws) return;
      agent.socket = null;
      open -= 1;
      dropped += 1;
      const key = `close ${code}`;
      dropKinds[key] = (dropKinds[key] ?? 0) + 1;
    });
  });
}

async function connect(o: ConnectOptions): Promise<ConnectReport> {
  const started = Date.now();
  const deadline = started + o.deadlineMs;
  const end = Math.min(agents.length, o.from + o.count);
  const failureKinds: Record<string, number> = {};
  let failedAttempts = 0;
  let connected = 0;
  let notConnected = 0;
  let notAttempted = 0;
  let inFlight = 0;
  let next = o.from;
  const progress = setInterval(() => send({ type: 'progress', connected, failedAttempts, inFlight }), 1000);
  const worker = async (): Promise<void> => {
    while (next < end) {
      const i = next;
      next += 1;
      const agent = agents[i];
      if (agent === undefined) continue;
      if (agent.socket !== null) {
        connected += 1;
        continue;
      }
      if (Date.now() > deadline) {
        notAttempted += 1;
        continue;
      }
      let ok = false;
      for (let tries = 0; tries <= o.retries && Date.now() <= deadline; tries += 1) {
        if (tries > 0) await new Promise((r) => setTimeout(r, RETRY_DELAY_MS));
        const local = o.localAddresses.length === 0 ? undefined : o.localAddresses[i % o.localAddresses.length];
        inFlight += 1;
        const failure = await attempt(agent, o, local);
        inFlight -= 1;
        if (failure === null) {
          ok = true;
          break;
        }
        failedAttempts += 1;
        const key = failure in failureKinds || Object.keys(failureKinds).length < MAX_FAILURE_KINDS ? failure : '(other)';
        failureKinds[key] = (failureKinds[key] ?? 0) + 1;
      }
      if (ok) connected += 1;
      else notConnected += 1;
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, o.concurrency) }, () => worker()));
  } finally {
    clearInterval(progress);
  }
  send({ type: 'progress', connected, failedAttempts, inFlight });
  return { connected, notConnected, notAttempted, failedAttempts, failureKinds, elapsedMs: Date.now() - started };
}

async function close(from: number, count: number): Promise<number> {
  const closing: Array<Promise<void>> = [];
  for (const agent of agents.slice(from, from + count)) {
    const ws = agent.socket;
    if (ws === null) continue;
    // A deliberate close is not a drop.
    agent.socket = null;
    open -= 1;
    closing.push(new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        ws.terminate();
        resolve();
      }, 3000);
      ws.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      ws.close(1000, 'benchmark warm-up over');
    }));
  }
  await Promise.all(closing);
  return closing.length;
}

function status(): SwarmStatus {
  return { open, dropped, dropKinds: { ...dropKinds }, unexpectedMessages };
}

function exitNow(): never {
  for (const agent of agents) agent.socket?.terminate();
  process.exit(0);
}

process.on('message', (request: SwarmRequest) => {
  void (async () => {
    try {
      switch (request.type) {
        case 'prepare':
          send({ id: request.id, type: 'prepared', agents: prepare(request.count) });
          return;
        case 'connect': {
          const { id: _id, type: _type, ...options } = request;
          send({ id: request.id, type: 'connected', report: await connect(options) });
          return;
        }
        case 'close':
          send({ id: request.id, type: 'closed', closed: await close(request.from, request.count) });
          return;
        case 'status':
          send({ id: request.id, type: 'status', status: status() });
          return;
        case 'exit':
          exitNow();
      }
    } catch (err) {
      send({ id: request.id, type: 'error', message: err instanceof Error ? err.message : String(err) });
    }
  })();
});
// The parent went away: nothing is left to report to.
process.on('disconnect', () => exitNow());

if (process.send === undefined) {
  process.stderr.write('agent-swarm: run me through bench/support/agent-swarm-control.ts (needs an IPC channel)\n');
  process.exit(2);
}
send({ type: 'ready' });
