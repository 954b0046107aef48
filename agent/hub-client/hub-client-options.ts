import type { KeyObject } from 'node:crypto';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { isLoopbackHost, normalisePin } from '../../shared/http-client/signed-client-options.js';
import type { Logger } from '../../shared/logging/logger.js';
import { AGENT_CONNECT_PATH } from '../../shared/protocol/agent-messages.js';
import type { AdminCredentials, MongodbCommandTemplate } from '../appliers/target.js';
import type { ApplierFactory } from '../commands/rotation-context.js';
import type { CommandJournal } from '../journal/command-journal.js';
import type { SinkConfig } from '../sinks/sink-config.js';

/** The keys an enrolled agent holds (see agent/state/agent-identity.ts to load them). */
export interface AgentIdentity {
  /** The agent's identity id; commands must be addressed to it. */
  identityId: string;
  /** Ed25519 key that signs the WebSocket upgrade. */
  privateKey: KeyObject;
  /** X25519 key that opens sealed secrets. */
  boxPrivateKey: KeyObject;
  /** The control plane's Ed25519 key pinned at enrollment; every command must verify with it. */
  serverPublicKey: KeyObject;
}

/** What callers pass to `new HubClient(...)`. */
export interface HubClientOptions {
  /** Control plane origin, `https://host:port` (`http://` only on loopback unless tls.allowInsecureHttp). */
  serverUrl: string;
  identity: AgentIdentity;
  journal: CommandJournal;
  sinks?: readonly SinkConfig[];
  /** Local admin logins that rotation targets name (`privilege.adminConnection`). Default: none. */
  adminConnections?: ReadonlyMap<string, AdminCredentials>;
  /** Custom MongoDB rotation commands from the local config. */
  mongodbCommands?: ReadonlyMap<string, MongodbCommandTemplate>;
  /** Tests only: builds the appliers instead of the real factory (fault injection). */
  createApplier?: ApplierFactory | undefined;
  /** Tests only: see RotationExecutorDeps.crashAfterApply. */
  crashAfterApply?: boolean | undefined;
  logger: Logger;
  tls?: {
    /** PEM of the CA (or self-signed certificate) to trust instead of the system roots. */
    caCertPem?: string | undefined;
    /** SHA-256 fingerprint of the server's leaf certificate, hex, colons optional. */
    pinSha256?: string | undefined;
    /** Allows ws:// to a non-loopback host. */
    allowInsecureHttp?: boolean | undefined;
  };
  /** Reconnect backoff with full jitter. Defaults 1000 and 60000. */
  backoff?: { startingDelayMs?: number; maxDelayMs?: number };
  /** Ping interval until the hub's welcome names one. Default 15000. */
  heartbeatMs?: number;
  /** Limit for the upgrade, and again for the welcome after it. Default 10000. */
  handshakeTimeoutMs?: number;
  /** Reported in hello and probes. Default: package.json's version. */
  agentVersion?: string;
}

/** Options after validation and defaults. */
export interface CompiledHubClientOptions {
  connectUrl: string;
  tls: { caCertPem: string | undefined; pinSha256: string | undefined };
  startingDelayMs: number;
  maxDelayMs: number;
  heartbeatMs: number;
  handshakeTimeoutMs: number;
}

function positiveInt(name: string, value: number | undefined, fallback: number, max: number): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < 1 || v > max) throw new SikkerError('ERR_CONFIG_INVALID', `${name} must be an integer between 1 and ${max}`);
  return v;
}

/**
 * Checks options once. Throws ERR_CONFIG_INVALID for a server URL that is not an
 * http(s) origin, a malformed pin, a CA or pin with plain http, or a bad duration;
 * ERR_TRANSPORT_INSECURE for ws:// to a non-loopback host without the opt-in.
 */
export function compileHubClientOptions(options: HubClientOptions): CompiledHubClientOptions {
  let url: URL;
  try {
    url = new URL(options.serverUrl);
  } catch {
    throw new SikkerError('ERR_CONFIG_INVALID', `server URL "${options.serverUrl}" is not a valid URL`);
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.pathname !== '/' || url.search !== '' || url.username !== '') {
    throw new SikkerError('ERR_CONFIG_INVALID', 'server URL must be an http:// or https:// origin without path, query or credentials');
  }
  const secure = url.protocol === 'https:';
  const tls = options.tls ?? {};
  if (!secure && tls.allowInsecureHttp !== true && !isLoopbackHost(url.hostname)) {
    throw new SikkerError('ERR_TRANSPORT_INSECURE', `refusing ws:// to ${url.host}: use https, or allow insecure http explicitly`);
  }
  if (!secure && (tls.caCertPem !== undefined || tls.pinSha256 !== undefined)) {
    throw new SikkerError('ERR_CONFIG_INVALID', 'a CA certificate or pin needs an https:// server URL');
  }
  const startingDelayMs = positiveInt('backoff.startingDelayMs', options.backoff?.startingDelayMs, 1000, 3_600_000);
  return {
    connectUrl: `${secure ? 'wss' : 'ws'}://${url.host}${AGENT_CONNECT_PATH}`,
    tls: { caCertPem: tls.caCertPem, pinSha256: tls.pinSha256 === undefined ? undefined : normalisePin(tls.pinSha256) },
    startingDelayMs,
    maxDelayMs: Math.max(startingDelayMs, positiveInt('backoff.maxDelayMs', options.backoff?.maxDelayMs, 60_000, 3_600_000)),
    heartbeatMs: positiveInt('heartbeatMs', options.heartbeatMs, 15_000, 600_000),
    handshakeTimeoutMs: positiveInt('handshakeTimeoutMs', options.handshakeTimeoutMs, 10_000, 600_000),
  };
}
