import { isIPv4 } from 'node:net';
import type { KeyObject } from 'node:crypto';
import { SikkerError } from '../errors/sikker-error.js';

/** The signing half of an identity: a `LoadedIdentity` fits, so does a bare key + id. */
export interface ClientIdentity {
  privateKey: KeyObject;
  /** Null until enrolled; then only unsigned requests or an `identityIdOverride` work. */
  identityId: string | null;
}

/** What callers pass to `new SignedClient(...)`. */
export interface SignedClientOptions {
  /** Base URL of the control plane, `https://host[:port]` (or `http://` on loopback). No path. */
  server: string;
  /** Needed for signed requests only. */
  identity?: ClientIdentity | undefined;
  /** Allows plain HTTP to a non-loopback host. Everything, including shares, then travels in clear. */
  allowInsecureHttp?: boolean | undefined;
  /** PEM of the CA (or self-signed certificate) to trust instead of the system roots. */
  caCertPem?: string | undefined;
  /** SHA-256 fingerprint of the server's leaf certificate, hex or colon-separated hex. */
  pinSha256?: string | undefined;
  /** Deadline for the whole exchange (connect, send, receive). Default 15000. */
  timeoutMs?: number | undefined;
  /** Response bodies above this size are refused. Default 1 MiB. */
  maxResponseBytes?: number | undefined;
  /** Sent as `user-agent`. */
  userAgent?: string | undefined;
}

/** Options after validation: the URL is parsed, the pin normalised, defaults applied. */
export interface CompiledClientOptions {
  url: URL;
  origin: string;
  tls: boolean;
  identity: ClientIdentity | undefined;
  caCertPem: string | undefined;
  /** Upper-case colon-separated hex, the format of `PeerCertificate.fingerprint256`. */
  pinSha256: string | undefined;
  timeoutMs: number;
  maxResponseBytes: number;
  userAgent: string;
}

export const DEFAULT_TIMEOUT_MS = 15_000;
export const DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024;

/**
 * Validates options once. Throws ERR_CONFIG_INVALID for a malformed URL, a URL with
 * a path, query or credentials, a malformed pin, or a pin/CA on plain HTTP; throws
 * ERR_TRANSPORT_INSECURE for plain HTTP to a non-loopback host without the opt-in.
 */
export function compileClientOptions(options: SignedClientOptions): CompiledClientOptions {
  const url = parseServerUrl(options.server);
  const tls = url.protocol === 'https:';
  if (!tls && !options.allowInsecureHttp && !isLoopbackHost(url.hostname)) {
    throw new SikkerError(
      'ERR_TRANSPORT_INSECURE',
      `refusing plain HTTP to ${url.origin}: use https, or pass --insecure-http if you accept that secrets travel in clear`,
    );
  }
  if (!tls && (options.pinSha256 !== undefined || options.caCertPem !== undefined)) {
    throw new SikkerError('ERR_CONFIG_INVALID', 'a CA certificate or pin needs an https:// server URL');
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 600_000) {
    throw new SikkerError('ERR_CONFIG_INVALID', 'timeoutMs must be an integer between 1 and 600000');
  }
  return {
    url,
    origin: url.origin,
    tls,
    identity: options.identity,
    caCertPem: options.caCertPem,
    pinSha256: options.pinSha256 === undefined ? undefined : normalisePin(options.pinSha256),
    timeoutMs,
    maxResponseBytes: options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES,
    userAgent: options.userAgent ?? 'sikkerkey-client/0.1',
  };
}

function parseServerUrl(server: string): URL {
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    throw new SikkerError('ERR_CONFIG_INVALID', `server URL "${server}" is not a valid URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new SikkerError('ERR_CONFIG_INVALID', `server URL must start with https:// (got ${url.protocol})`);
  }
  if (url.username !== '' || url.password !== '') {
    throw new SikkerError('ERR_CONFIG_INVALID', 'server URL must not contain credentials');
  }
  if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '') {
    throw new SikkerError('ERR_CONFIG_INVALID', `server URL must be an origin such as https://host:8443, without path or query`);
  }
  return url;
}

/**
 * True for `localhost`, 127.0.0.0/8 and ::1: traffic that never leaves the host.
 * Accepts URL hostnames, where IPv6 literals keep their brackets.
 */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (host === 'localhost' || host === '::1' || host === '0:0:0:0:0:0:0:1') return true;
  return isIPv4(host) && host.startsWith('127.');
}

/**
 * Normalises a SHA-256 fingerprint given as 64 hex digits, with or without colons,
 * to `AB:CD:...`. Throws ERR_CONFIG_INVALID for anything else.
 */
export function normalisePin(pin: string): string {
  const hex = pin.trim().replace(/:/g, '');
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) {
    throw new SikkerError('ERR_CONFIG_INVALID', 'pin must be a SHA-256 fingerprint: 64 hex digits, colons optional');
  }
  return hex.toUpperCase().match(/../g)!.join(':');
}
