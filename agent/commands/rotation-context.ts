/**
 * What the four rotation executors (preflight, apply, check, revoke) share: opening
 * the sealed secrets, validating payloads, and building — then always closing — the
 * applier for a target. Nothing is cached across commands: each command builds its
 * applier and closes it, so no admin connection stays open while the agent idles.
 *
 * Only types are imported from agent/appliers: the factory (and with it the drivers
 * pg, mysql2, ioredis) is loaded at the first rotation command, not at start. (The
 * one value the executors import from there, PasswordDerivation in apply-command.ts,
 * needs only node:crypto.)
 */
import type { ApplierPool } from './applier-pool.js';
import type { MongodbCommandTemplate } from '../appliers/target.js';
import type { KeyObject } from 'node:crypto';
import type * as z from 'zod';
import { zero } from '../../shared/crypto/aead.js';
import { openSealed } from '../../shared/crypto/sealed-box.js';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import type { Logger } from '../../shared/logging/logger.js';
import type { CommandEnvelope } from '../../shared/protocol/agent-messages.js';
import type { TargetSpec } from '../../shared/protocol/rotation-commands.js';
import type { Applier } from '../appliers/applier.js';
import type { WarmSocket } from '../appliers/postgres-warm-socket.js';
import type { AdminCredentials, TargetConnection } from '../appliers/target.js';

/** Builds an applier; the default is `createApplier` from agent/appliers, loaded on first use. */
export type ApplierFactory = (target: TargetConnection, admin: AdminCredentials | undefined) => Promise<Applier>;

/** What every rotation executor needs. */
export interface RotationExecutorDeps {
  /** This agent's id: the sealed box is bound to it. */
  agentId: string;
  /** X25519 key that opens the sealed secrets. */
  boxPrivateKey: KeyObject;
  /** Admin logins from the local config, by the name targets give in `privilege.adminConnection`. */
  adminConnections: ReadonlyMap<string, AdminCredentials>;
  /** Tests inject a fake applier here. */
  createApplier?: ApplierFactory | undefined;
  /** Custom MongoDB rotation commands from the local config, by name (targets name one in `mongodbCommand`). */
  mongodbCommands?: ReadonlyMap<string, MongodbCommandTemplate> | undefined;
  /** Keeps admin appliers between commands; without it every command opens and closes its own. */
  appliers?: ApplierPool | undefined;
  /**
   * Opens the PostgreSQL verify login's connection when an admin-mode apply is accepted
   * (WarmSocket.open; postgres-warm-socket.ts). Absent (tests with fake appliers): the
   * applier opens it itself, just before ALTER ROLE.
   */
  openWarmSocket?: ((host: string, port: number) => WarmSocket | null) | undefined;
  /** Tests only (SIKKER_AGENT_TEST_CRASH_AT=after-apply): SIGKILL the agent after the database changed, before it verifies or reports. */
  crashAfterApply?: boolean | undefined;
}

/**
 * Returns `payload` parsed by `schema`, or throws ERR_VALIDATION naming the first
 * offending field (the payload is signed and non-secret; values are not echoed anyway).
 */
export function parsePayload<S extends z.ZodTypeAny>(kind: string, schema: S, payload: unknown): z.infer<S> {
  const parsed = schema.safeParse(payload);
  if (parsed.success) return parsed.data as z.infer<S>;
  const issue = parsed.error.issues[0];
  const field = issue === undefined || issue.path.length === 0 ? '(root)' : issue.path.join('.');
  throw new SikkerError('ERR_VALIDATION', `${kind} payload is invalid at ${field}`);
}

/**
 * Opens the command's sealed box (bound to its command id and this agent) and
 * validates the JSON inside with `schema`. The plaintext buffer is zeroed whatever
 * happens. `required: false` returns undefined when nothing is sealed.
 *
 * Throws ERR_VALIDATION "<kind> carries no sealed secrets" when required and absent,
 * ERR_CRYPTO_DECRYPT / ERR_CRYPTO_FORMAT when the box was not sealed for this agent
 * and command, and ERR_VALIDATION "sealed secrets are malformed" when the JSON or
 * its shape is wrong — without a cause, since a parser's message quotes content.
 */
export function openSecrets<S extends z.ZodTypeAny>(deps: RotationExecutorDeps, envelope: CommandEnvelope, schema: S): z.infer<S>;
export function openSecrets<S extends z.ZodTypeAny>(deps: RotationExecutorDeps, envelope: CommandEnvelope, schema: S, required: false): z.infer<S> | undefined;
export function openSecrets<S extends z.ZodTypeAny>(deps: RotationExecutorDeps, envelope: CommandEnvelope, schema: S, required = true): z.infer<S> | undefined {
  if (envelope.sealed === null) {
    if (!required) return undefined;
    throw new SikkerError('ERR_VALIDATION', `${envelope.kind} carries no sealed secrets`);
  }
  const plaintext = openSealed(deps.boxPrivateKey, Buffer.from(envelope.sealed, 'base64'), { commandId: envelope.commandId, agentId: deps.agentId });
  try {
    let json: unknown;
    try {
      json = JSON.parse(plaintext.toString('utf8'));
    } catch {
      // SyntaxError messages quote the text around the error: the password
      throw new SikkerError('ERR_VALIDATION', 'sealed secrets are malformed');
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) throw new SikkerError('ERR_VALIDATION', 'sealed secrets are malformed');
    return parsed.data as z.infer<S>;
  } finally {
    zero(plaintext);
  }
}

/** The applier's view of a target from the protocol's TargetSpec (TLS without a CA: system roots). */
export function toTargetConnection(spec: TargetSpec, mongodbCommands: ReadonlyMap<string, MongodbCommandTemplate> = new Map()): TargetConnection {
  const mongodbCommand = spec.mongodbCommand === undefined ? undefined : mongodbCommands.get(spec.mongodbCommand);
  if (spec.mongodbCommand !== undefined && mongodbCommand === undefined) {
    throw new SikkerError('ERR_APPLIER_CONFIG', `MongoDB rotation command "${spec.mongodbCommand}" is not configured on this agent (mongodbCommands in its config file)`);
  }
  return {
    mongodbCommand,
    engine: spec.engine,
    host: spec.host,
    port: spec.port,
    database: spec.database,
    user: spec.user,
    tls: { mode: spec.tls.mode, serverName: spec.tls.serverName },
    privilege: spec.privilege,
    mysqlAccountHost: spec.mysqlAccountHost,
    redisPasswordMode: spec.redisPasswordMode,
    authDatabase: spec.authDatabase,
    mssqlPrincipal: spec.mssqlPrincipal,
  };
}

/**
 * Builds the applier for `spec` — with the named admin connection in admin mode —
 * runs `fn` with it and closes it afterwards, whatever happened.
 *
 * Throws ERR_APPLIER_CONFIG naming the admin connection when this agent has none of
 * that name, the factory's errors (ERR_APPLIER_CONFIG, ERR_APPLIER_UNSUPPORTED), and
 * whatever `fn` throws. A failure to close is logged, never thrown over fn's outcome.
 */
export async function withApplier<T>(deps: RotationExecutorDeps, spec: TargetSpec, logger: Logger, fn: (applier: Applier) => Promise<T>): Promise<T> {
  let admin: AdminCredentials | undefined;
  if (spec.privilege.mode === 'admin') {
    admin = deps.adminConnections.get(spec.privilege.adminConnection);
    if (admin === undefined) {
      throw new SikkerError('ERR_APPLIER_CONFIG', `admin connection "${spec.privilege.adminConnection}" is not configured on this agent (adminConnections in its config file)`);
    }
  }
  // Admin appliers are kept for the next command (their login is the costly part); self-rotation ones log in as the user each time.
  const pool = spec.privilege.mode === 'admin' ? deps.appliers : undefined;
  // The user is left out: one admin applier serves every user of a server (requests name theirs).
  const { user: _user, ...server } = spec;
  const key = JSON.stringify(server);
  const pooled = pool?.take(key);
  const factory = deps.createApplier ?? (await import('../appliers/index.js')).createApplier;
  const applier = pooled ?? await factory(toTargetConnection(spec, deps.mongodbCommands), admin);
  if (pool !== undefined) {
    try {
      return await fn(applier);
    } finally {
      pool.give(key, applier);
    }
  }
  try {
    return await fn(applier);
  } finally {
    await applier.close().catch((err: unknown) => {
      // the command's outcome is already decided; an admin connection that did not close
      // cleanly is dropped by the server, so it is worth a warning, not a failure
      logger.warn({ code: err instanceof SikkerError ? err.code : undefined }, 'the applier did not close cleanly');
    });
  }
}
