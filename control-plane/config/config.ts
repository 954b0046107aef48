import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import * as z from 'zod';
import { SikkerError } from '../../shared/errors/sikker-error.js';

/**
 * The control plane's configuration, read once at start from the environment (and
 * flags mapped onto the same names by main.ts), validated, and passed down typed.
 * Durations become milliseconds here, at the edge. No module reads process.env itself.
 */
const EnvSchema = z.object({
  SIKKER_DATABASE_URL: z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL'),
  SIKKER_REDIS_URL: z.string().regex(/^rediss?:\/\//, 'must be a redis:// URL'),
  SIKKER_REDIS_PREFIX: z.string().regex(/^[A-Za-z0-9:_.-]{1,100}$/).default('sikker:'),
  SIKKER_LISTEN: z.string().regex(/^[^\s:]*:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, 'must be host:port').default('127.0.0.1:8200'),
  SIKKER_TLS_CERT: z.string().min(1).optional(),
  SIKKER_TLS_KEY: z.string().min(1).optional(),
  SIKKER_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  SIKKER_CLOCK_SKEW_SECONDS: z.coerce.number().int().min(5).max(600).default(60),
  SIKKER_DB_POOL_SIZE: z.coerce.number().int().min(2).max(200).default(20),
  SIKKER_AUDIT_CHECKPOINT_EVERY: z.coerce.number().int().min(1).max(1_000_000).default(1000),
  SIKKER_AGENT_HEARTBEAT_SECONDS: z.coerce.number().int().min(1).max(300).default(15),
  SIKKER_TRUSTED_PROXIES: z.string().max(2000).default('').refine((v) => v === '' || v.split(',').every((p) => isIP(p.trim().split('/')[0] ?? '') !== 0), 'a comma-separated list of proxy addresses or CIDRs'),
  SIKKER_ALLOW_REMOTE_INIT: z.enum(['true', 'false']).default('false'),
  SIKKER_REPLICA_ID: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/).optional(),
  SIKKER_ALERT_WEBHOOK_URL: z.string().max(2000).regex(/^https?:\/\/[^\s]+$/, 'must be an http:// or https:// URL').optional(),
  SIKKER_ROTATION_SWEEP_MS: z.coerce.number().int().min(50).max(60_000).default(500),
  SIKKER_ROTATION_COMMAND_SECONDS: z.coerce.number().int().min(5).max(3600).default(120),
  /** Tests only: kill this process (SIGKILL) at a named point of a rotation run. */
  SIKKER_TEST_CRASH_AT: z.enum(['before-announce', 'before-commit']).optional(),
});

export interface ControlPlaneConfig {
  databaseUrl: string;
  redisUrl: string;
  redisPrefix: string;
  listenHost: string;
  listenPort: number;
  tls: { cert: Buffer; key: Buffer } | null;
  logLevel: string;
  clockSkewMs: number;
  dbPoolSize: number;
  replicaId: string;
  /** Load balancers whose X-Forwarded-For is believed (source address for CIDRs and audit). */
  trustedProxies: string[];
  /** Accept `init` from non-loopback addresses (default: loopback only, so nobody else claims a fresh vault). */
  allowRemoteInit: boolean;
  /** Ping interval on agent sockets; a silent socket is dropped after two. */
  agentHeartbeatMs: number;
  /** Records between signed audit checkpoints. */
  auditCheckpointEvery: number;
  rotation: {
    /** Where parked runs and other alerts are POSTed (JSON, no secrets); none: logged only. */
    alertWebhookUrl: string | null;
    /** How often the BullMQ job scheduler runs the sweep (due policies, stalled runs). */
    sweepMs: number;
    /** How long an agent has to answer a rotation command before the run is reconciled. */
    commandTimeoutMs: number;
    crashAt: 'before-announce' | 'before-commit' | null;
  };
}

/** Parses and checks the environment. Throws ERR_CONFIG_INVALID naming every bad variable (values never echoed). */
export function loadConfig(env: Record<string, string | undefined>): ControlPlaneConfig {
  const parsed = EnvSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new SikkerError('ERR_CONFIG_INVALID', `invalid configuration: ${problems}`);
  }
  const c = parsed.data;
  const port = Number(c.SIKKER_LISTEN.slice(c.SIKKER_LISTEN.lastIndexOf(':') + 1));
  if (port > 65535) throw new SikkerError('ERR_CONFIG_INVALID', 'invalid configuration: SIKKER_LISTEN: port out of range');
  const host = c.SIKKER_LISTEN.slice(0, c.SIKKER_LISTEN.lastIndexOf(':')).replace(/^\[|\]$/g, '') || '0.0.0.0';
  if ((c.SIKKER_TLS_CERT === undefined) !== (c.SIKKER_TLS_KEY === undefined)) {
    throw new SikkerError('ERR_CONFIG_INVALID', 'invalid configuration: SIKKER_TLS_CERT and SIKKER_TLS_KEY go together');
  }
  let tls: ControlPlaneConfig['tls'] = null;
  if (c.SIKKER_TLS_CERT !== undefined && c.SIKKER_TLS_KEY !== undefined) {
    try {
      tls = { cert: readFileSync(c.SIKKER_TLS_CERT), key: readFileSync(c.SIKKER_TLS_KEY) };
    } catch (err) {
      throw new SikkerError('ERR_CONFIG_INVALID', 'invalid configuration: cannot read the TLS certificate or key file', { cause: err });
    }
  }
  return {
    databaseUrl: c.SIKKER_DATABASE_URL,
    redisUrl: c.SIKKER_REDIS_URL,
    redisPrefix: c.SIKKER_REDIS_PREFIX,
    listenHost: host,
    listenPort: port,
    tls,
    logLevel: c.SIKKER_LOG_LEVEL,
    clockSkewMs: c.SIKKER_CLOCK_SKEW_SECONDS * 1000,
    dbPoolSize: c.SIKKER_DB_POOL_SIZE,
    replicaId: c.SIKKER_REPLICA_ID ?? `cp-${process.pid}`,
    auditCheckpointEvery: c.SIKKER_AUDIT_CHECKPOINT_EVERY,
    agentHeartbeatMs: c.SIKKER_AGENT_HEARTBEAT_SECONDS * 1000,
    trustedProxies: c.SIKKER_TRUSTED_PROXIES === '' ? [] : c.SIKKER_TRUSTED_PROXIES.split(',').map((p) => p.trim()),
    allowRemoteInit: c.SIKKER_ALLOW_REMOTE_INIT === 'true',
    rotation: {
      alertWebhookUrl: c.SIKKER_ALERT_WEBHOOK_URL ?? null,
      sweepMs: c.SIKKER_ROTATION_SWEEP_MS,
      commandTimeoutMs: c.SIKKER_ROTATION_COMMAND_SECONDS * 1000,
      crashAt: c.SIKKER_TEST_CRASH_AT ?? null,
    },
  };
}
