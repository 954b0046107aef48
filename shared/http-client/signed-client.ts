import http from 'node:http';
import https from 'node:https';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import type { ZodType } from 'zod';
import { SikkerError } from '../errors/sikker-error.js';
import { signRequest } from '../signing/request-signature.js';
import { compileClientOptions, type CompiledClientOptions, type SignedClientOptions } from './signed-client-options.js';
import { errorFromResponse, parseSuccess, type RawResponse } from './server-response.js';

export type { ClientIdentity, SignedClientOptions } from './signed-client-options.js';

/** Per-request choices. */
export interface SignedRequestOptions {
  /** Sign the request (default true). Unsigned requests need no identity. */
  signed?: boolean;
  /** Identity header to sign with instead of the identity's own id (e.g. ENROLLING_IDENTITY). */
  identityIdOverride?: string;
  /**
   * Nonce to sign with instead of a fresh random one, for requests whose body must be
   * bound to the nonce (the rekey proof). It must come from `newNonce()` and be used once.
   */
  nonce?: string;
}

const PATH_PATTERN = /^\/[\x21-\x7e]*$/;
const TLS_ERROR_PATTERN = /CERT|SSL|TLS|SELF_SIGNED|ALTNAME|EPROTO/;

/**
 * An HTTP(S) client for the control plane API that signs every request with the
 * caller's Ed25519 identity (see shared/signing/request-signature.ts), verifies the
 * server (system roots or a given CA, optionally a pinned leaf fingerprint), and
 * returns schema-validated responses. Used by the CLI and the agent.
 *
 * Failure modes, all SikkerError: the server's own error code for a non-2xx answer
 * (`details.status` = HTTP status), ERR_SERVER_UNREACHABLE for connection, TLS and
 * timeout failures (message names the server URL only), ERR_TRANSPORT_PIN_MISMATCH,
 * ERR_VALIDATION for a response of the wrong shape or above the size cap.
 * Messages never contain request headers, bodies or key material.
 */
export class SignedClient {
  /** The server origin, e.g. `https://vault.example:8443`. */
  readonly server: string;
  readonly #options: CompiledClientOptions;
  readonly #agent: http.Agent;

  /** Throws ERR_CONFIG_INVALID / ERR_TRANSPORT_INSECURE for unusable options (see compileClientOptions). */
  constructor(options: SignedClientOptions) {
    this.#options = compileClientOptions(options);
    this.server = this.#options.origin;
    // One agent per client: pooled sockets and TLS sessions are never shared with
    // another client whose CA or pin differs, so every connection passes our checks.
    this.#agent = this.#options.tls
      ? new https.Agent({ keepAlive: false, maxCachedSessions: 0 })
      : new http.Agent({ keepAlive: false });
  }

  /**
   * Sends one request and returns the validated response body (`undefined` for 204,
   * which the schema must accept). The body is JSON-encoded once; exactly those bytes
   * are signed and sent. `pathWithQuery` must be absolute and already percent-encoded.
   */
  async request<T>(
    method: string,
    pathWithQuery: string,
    body: unknown,
    responseSchema: ZodType<T>,
    opts: SignedRequestOptions = {},
  ): Promise<T> {
    if (!PATH_PATTERN.test(pathWithQuery)) {
      throw new SikkerError('ERR_VALIDATION', 'request path must start with "/" and be percent-encoded ASCII');
    }
    const upperMethod = method.toUpperCase();
    const payload = body === undefined ? Buffer.alloc(0) : Buffer.from(JSON.stringify(body), 'utf8');
    const headers: Record<string, string> = {
      accept: 'application/json',
      'user-agent': this.#options.userAgent,
      'content-length': String(payload.length),
    };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (opts.signed ?? true) {
      Object.assign(headers, this.#signatureHeaders(upperMethod, pathWithQuery, payload, opts));
    }
    const response = await this.#send(upperMethod, pathWithQuery, headers, payload);
    if (response.status < 200 || response.status > 299) throw errorFromResponse(response);
    return parseSuccess(response, responseSchema);
  }

  /** Releases pooled sockets. Safe to call more than once; later requests still work. */
  close(): void {
    this.#agent.destroy();
  }

  #signatureHeaders(method: string, pathWithQuery: string, payload: Buffer, opts: SignedRequestOptions): Record<string, string> {
    const identity = this.#options.identity;
    const identityId = opts.identityIdOverride ?? identity?.identityId ?? null;
    if (identity === undefined || identityId === null) {
      throw new SikkerError(
        'ERR_IDENTITY_KEY_FILE',
        'this request must be signed by an enrolled identity (run "sikker identity enroll" or "sikker operator init" first)',
      );
    }
    return signRequest(identity.privateKey, { method, pathWithQuery, body: payload, identityId }, Date.now(), opts.nonce);
  }

  #requestOptions(method: string, path: string, headers: Record<string, string>): https.RequestOptions {
    const { url, tls, caCertPem, pinSha256 } = this.#options;
    const base: https.RequestOptions = {
      protocol: url.protocol,
      hostname: url.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: url.port === '' ? undefined : Number(url.port),
      method,
      path,
      headers,
      agent: this.#agent,
    };
    if (!tls) return base;
    return {
      ...base,
      ...(caCertPem === undefined ? {} : { ca: caCertPem }),
      rejectUnauthorized: true,
      checkServerIdentity: (host: string, cert: PeerCertificate) => checkPinnedIdentity(host, cert, pinSha256, this.server),
    };
  }

  #send(method: string, path: string, headers: Record<string, string>, payload: Buffer): Promise<RawResponse> {
    const { tls, timeoutMs, maxResponseBytes } = this.#options;
    return new Promise<RawResponse>((resolve, reject) => {
      let settled = false;
      let req: http.ClientRequest | undefined;
      const timer = setTimeout(() => {
        settle(new SikkerError('ERR_SERVER_UNREACHABLE', `${this.server} did not answer within ${timeoutMs} ms`, { retryable: true }));
      }, timeoutMs);
      const settle = (err: Error | undefined, response?: RawResponse): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err === undefined) {
          resolve(response!);
          return;
        }
        req?.destroy();
        reject(this.#transportError(err));
      };
      try {
        req = (tls ? https.request : http.request)(this.#requestOptions(method, path, headers), (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > maxResponseBytes) {
              settle(new SikkerError('ERR_VALIDATION', `unexpected response from server: body exceeds ${maxResponseBytes} bytes`));
              return;
            }
            chunks.push(chunk);
          });
          res.on('end', () => settle(undefined, { status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
          res.on('error', (err) => settle(err));
          res.on('aborted', () => settle(new Error('connection closed before the response was complete')));
        });
      } catch (err) {
        // Node validates options and headers synchronously; report it like any transport failure.
        settle(err instanceof Error ? err : new Error('request could not be created'));
        return;
      }
      req.on('error', (err) => settle(err));
      req.end(payload);
    });
  }

  /** Our own errors pass through; anything from the socket names the server and its cause only. */
  #transportError(err: Error): SikkerError {
    if (err instanceof SikkerError) return err;
    const code = (err as { code?: unknown }).code;
    const codeText = typeof code === 'string' ? code : '';
    const tlsProblem = TLS_ERROR_PATTERN.test(codeText);
    return new SikkerError('ERR_SERVER_UNREACHABLE', `cannot reach ${this.server}: ${err.message.slice(0, 200)}`, {
      cause: err,
      retryable: !tlsProblem,
    });
  }
}

/**
 * Standard hostname verification, then (if pinned) the leaf certificate's SHA-256
 * fingerprint must equal the pin. Returns the error rather than throwing, as tls expects.
 */
function checkPinnedIdentity(host: string, cert: PeerCertificate, pin: string | undefined, server: string): Error | undefined {
  const hostError = checkServerIdentity(host, cert);
  if (hostError !== undefined) return hostError;
  if (pin === undefined) return undefined;
  if (typeof cert.fingerprint256 !== 'string' || cert.fingerprint256.toUpperCase() !== pin) {
    return new SikkerError(
      'ERR_TRANSPORT_PIN_MISMATCH',
      `certificate of ${server} has fingerprint ${cert.fingerprint256 ?? 'unknown'}, not the pinned one`,
    );
  }
  return undefined;
}
