import type { KeyObject } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { createRequire } from 'node:module';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import type WebSocketType from 'ws';
import { ERROR_CODES, SikkerError, type ErrorCode } from '../../shared/errors/sikker-error.js';
import { AGENT_CONNECT_PATH, MAX_FRAGMENTS, MAX_MESSAGE_BYTES } from '../../shared/protocol/agent-messages.js';
import { signRequest } from '../../shared/signing/request-signature.js';

/** How to open one signed connection to the hub. */
export interface HubSocketOptions {
  /** ws:// or wss:// URL ending in AGENT_CONNECT_PATH. */
  connectUrl: string;
  identityId: string;
  privateKey: KeyObject;
  caCertPem: string | undefined;
  /** Normalised `AB:CD:…` fingerprint, or undefined. */
  pinSha256: string | undefined;
  handshakeTimeoutMs: number;
}

const MAX_ERROR_BODY_BYTES = 4096;

// ws is CommonJS. Loading it with require() instead of `import` spares node its
// CommonJS-to-ESM translation; that keeps the agent's resident memory measurably lower.
const WebSocket = createRequire(import.meta.url)('ws') as typeof WebSocketType;
type WebSocket = WebSocketType;

/**
 * Opens the WebSocket with the upgrade request signed like any API request (GET,
 * AGENT_CONNECT_PATH, empty body). `hooks.onSocket` receives the socket as soon as it
 * exists (so the caller can terminate a pending attempt); `hooks.onOpen` runs
 * synchronously inside the 'open' event and must attach the message handlers there —
 * a frame sent right after the 101 is emitted before any promise continuation runs.
 * Resolves with what `onOpen` returned. An 'error' listener stays attached.
 *
 * Rejects with a SikkerError: the server's code (e.g. ERR_AUTH_BAD_SIGNATURE, with
 * `details.status`) for a non-101 answer; ERR_TRANSPORT_PIN_MISMATCH; otherwise
 * ERR_SERVER_UNREACHABLE naming the URL and the socket error (retryable).
 */
export function openHubSocket<T>(options: HubSocketOptions, hooks: { onSocket?: (socket: WebSocket) => void; onOpen: (socket: WebSocket) => T }): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const headers = signRequest(options.privateKey, {
      method: 'GET',
      pathWithQuery: AGENT_CONNECT_PATH,
      body: Buffer.alloc(0),
      identityId: options.identityId,
    });
    let settled = false;
    const settle = (err: SikkerError | null): void => {
      if (settled) return;
      settled = true;
      if (err === null) resolve(hooks.onOpen(socket));
      else {
        socket.terminate();
        reject(err);
      }
    };
    const socket = new WebSocket(options.connectUrl, {
      headers,
      maxPayload: MAX_MESSAGE_BYTES,
      maxFragments: MAX_FRAGMENTS,
      perMessageDeflate: false,
      handshakeTimeout: options.handshakeTimeoutMs,
      followRedirects: false,
      ...(options.connectUrl.startsWith('wss:') ? tlsOptions(options) : {}),
    });
    hooks.onSocket?.(socket);
    socket.on('error', (err: Error) => settle(transportError(options.connectUrl, err)));
    socket.on('close', () => settle(new SikkerError('ERR_SERVER_UNREACHABLE', `${options.connectUrl} closed the connection during the handshake`, { retryable: true })));
    socket.on('unexpected-response', (_req, res) => {
      readErrorBody(res, options.handshakeTimeoutMs)
        .then((body) => settle(refusal(options.connectUrl, res.statusCode ?? 0, body)))
        .catch(() => settle(refusal(options.connectUrl, res.statusCode ?? 0, Buffer.alloc(0))));
    });
    socket.once('open', () => settle(null));
  });
}

function tlsOptions(options: HubSocketOptions): WebSocketType.ClientOptions {
  const check = (host: string, cert: PeerCertificate): Error | undefined => {
    const hostError = checkServerIdentity(host, cert);
    if (hostError !== undefined) return hostError;
    if (options.pinSha256 === undefined) return undefined;
    if (cert.fingerprint256?.toUpperCase() === options.pinSha256) return undefined;
    return new SikkerError('ERR_TRANSPORT_PIN_MISMATCH', `certificate of ${options.connectUrl} has fingerprint ${cert.fingerprint256 ?? 'unknown'}, not the pinned one`);
  };
  return {
    rejectUnauthorized: true,
    ...(options.caCertPem === undefined ? {} : { ca: options.caCertPem }),
    // ws hands this to tls.connect, which expects Error | undefined; its typing says boolean.
    checkServerIdentity: check as unknown as WebSocketType.ClientOptions['checkServerIdentity'],
  };
}

/**
 * The body of a non-101 answer, for its error code: at most MAX_ERROR_BODY_BYTES, within
 * `timeoutMs`. Whatever came by then is used and the response is dropped, so an endless
 * or stalled body (a proxy, a wrong endpoint) cannot hold up the reconnect loop.
 */
function readErrorBody(res: IncomingMessage, timeoutMs: number): Promise<Buffer> {
  return new Promise<Buffer>((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (): void => {
      clearTimeout(timer);
      res.destroy();
      resolve(Buffer.concat(chunks).subarray(0, MAX_ERROR_BODY_BYTES));
    };
    const timer = setTimeout(done, timeoutMs);
    res.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      if (size >= MAX_ERROR_BODY_BYTES) done();
    });
    res.on('end', done);
    res.on('error', done);
    res.on('aborted', done);
  });
}

/** A non-101 answer: keep the server's code when it is one of ours. */
function refusal(url: string, status: number, body: Buffer): SikkerError {
  let code: unknown;
  let message: unknown;
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { error?: { code?: unknown; message?: unknown } };
    code = parsed.error?.code;
    message = parsed.error?.message;
  } catch {
    // not our JSON error body (a proxy's page): the status alone describes it
  }
  const known = typeof code === 'string' && Object.prototype.hasOwnProperty.call(ERROR_CODES, code);
  const text = typeof message === 'string' ? message.slice(0, 300) : 'no error description';
  return new SikkerError(known ? (code as ErrorCode) : 'ERR_SERVER_UNREACHABLE', `${url} refused the connection with HTTP ${status}: ${text}`, {
    retryable: true,
    details: { status, serverCode: typeof code === 'string' ? code.slice(0, 64) : null },
  });
}

function transportError(url: string, err: Error): SikkerError {
  if (err instanceof SikkerError) return err;
  return new SikkerError('ERR_SERVER_UNREACHABLE', `cannot reach ${url}: ${err.message.slice(0, 200)}`, { cause: err, retryable: true });
}
