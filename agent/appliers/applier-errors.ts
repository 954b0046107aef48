/**
 * The appliers' one error type and the sanitiser every driver error passes
 * through. Driver errors are dangerous: PostgreSQL echoes statements, mysql2
 * attaches the whole SQL text (`err.sql`, with the escaped password), ioredis
 * attaches the command arguments (`err.command.args`), and Redis itself quotes a
 * bad ACL rule (`'<password'`) in its reply. So nothing of a driver error leaves
 * an applier except its class name and its stable code (SQLSTATE, MySQL error
 * name, Redis reply prefix, Node errno), and every message is written here.
 */
import { SikkerError, type ErrorCode } from '../../shared/errors/sikker-error.js';

/** The error codes an applier may throw or report as a preflight problem. */
export type ApplierErrorCode = Extract<ErrorCode, `ERR_APPLIER_${string}`>;

/** The applier operation an error came from (non-secret context for operators). */
export type ApplierOperation = 'create' | 'preflight' | 'apply' | 'verify' | 'revoke' | 'terminate' | 'close';

/** What {@link sanitiseDriverError} needs to know about where an error came from. */
export interface ErrorContext {
  engine: string;
  operation: ApplierOperation;
  /** `host:port` of the server (not secret). */
  server?: string | undefined;
}

/** An engine's verdict on one driver error: our code and a message we wrote. */
export interface Classification {
  code: ApplierErrorCode;
  reason: string;
  retryable?: boolean;
  /** Overrides the driver code read from `err.code` (e.g. a Redis reply's leading word). */
  driverCode?: string;
}

/**
 * Thrown by every applier method. `code` is stable (see ERROR_CODES);
 * `driverCode` is the driver's own non-secret code (SQLSTATE `42501`, MySQL
 * `ER_CANNOT_USER`, Redis `NOPERM`, `ECONNREFUSED`) when there was one. The
 * cause, when present, is a synthetic error carrying only that code.
 */
export class ApplierError extends SikkerError {
  declare readonly code: ApplierErrorCode;
  readonly engine: string;
  readonly operation: ApplierOperation;
  readonly driverCode: string | undefined;

  constructor(
    code: ApplierErrorCode,
    message: string,
    context: ErrorContext & { driverCode?: string | undefined; driverName?: string | undefined; retryable?: boolean },
  ) {
    const cause = context.driverCode === undefined && context.driverName === undefined
      ? undefined
      : driverCause(context.driverName ?? 'Error', context.driverCode);
    super(code, message, {
      retryable: context.retryable ?? code === 'ERR_APPLIER_UNREACHABLE',
      details: { engine: context.engine, operation: context.operation, ...(context.driverCode === undefined ? {} : { driverCode: context.driverCode }) },
      ...(cause === undefined ? {} : { cause }),
    });
    this.name = 'ApplierError';
    this.engine = context.engine;
    this.operation = context.operation;
    this.driverCode = context.driverCode;
  }
}

export function isApplierError(err: unknown): err is ApplierError {
  return err instanceof ApplierError;
}

/** A cause that says which driver error it was and nothing else. */
function driverCause(name: string, code: string | undefined): Error {
  const safeName = /^[A-Za-z][A-Za-z0-9_]{0,63}$/.test(name) ? name : 'Error';
  const cause = new Error(`${safeName}${code === undefined ? '' : ` ${code}`} (driver message withheld: it may quote secrets)`);
  cause.name = safeName;
  if (code !== undefined) (cause as { code?: string }).code = code;
  return cause;
}

/** The driver's own code, if it is a short token (never a message fragment). */
export function driverCodeOf(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  if ((typeof code === 'string' && /^[A-Za-z0-9_]{1,64}$/.test(code)) || typeof code === 'number') return String(code);
  return undefined;
}

/** The class name of a driver error (`DatabaseError`, `ReplyError`, …). */
function driverNameOf(err: unknown): string {
  if (err instanceof Error) return err.constructor?.name || err.name || 'Error';
  return typeof err;
}

/** Node-level failures to reach a server, by errno. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN',
  'EPIPE', 'ECONNABORTED', 'EADDRNOTAVAIL', 'PROTOCOL_CONNECTION_LOST', 'PROTOCOL_SEQUENCE_TIMEOUT',
]);

/**
 * Classifies failures every driver shares: network errnos, TLS failures and
 * timeouts. Returns undefined for anything engine-specific.
 */
export function classifyCommon(err: unknown): Classification | undefined {
  const code = driverCodeOf(err);
  const message = err instanceof Error ? err.message : '';
  if (code !== undefined && NETWORK_CODES.has(code)) return { code: 'ERR_APPLIER_UNREACHABLE', reason: `cannot reach the server (${code})` };
  if (code !== undefined && (/^ERR_TLS_|^ERR_SSL_|CERT|^UNABLE_TO_|^SELF_SIGNED/.test(code))) {
    return { code: 'ERR_APPLIER_TLS', reason: `TLS handshake failed (${code})` };
  }
  if (/timeout|timed out/i.test(message)) return { code: 'ERR_APPLIER_UNREACHABLE', reason: 'the server did not answer in time' };
  if (/connection (terminated|is closed|closed|ended)|socket hang up|server closed the connection/i.test(message)) {
    return { code: 'ERR_APPLIER_UNREACHABLE', reason: 'the connection was closed by the server or the network' };
  }
  if (/does not support SSL|server does not support ssl|SSL connection|HANDSHAKE_NO_SSL/i.test(message)) {
    return { code: 'ERR_APPLIER_TLS', reason: 'the server does not offer TLS' };
  }
  return undefined;
}

/**
 * Replaces any thrown value with an {@link ApplierError}. An ApplierError passes
 * through unchanged; anything else is classified by `classify` (the engine's
 * table), then by {@link classifyCommon}, else ERR_APPLIER_FAILED. The result
 * holds our message, the context, and the driver's code — never the driver's
 * message, properties, cause or stack.
 */
export function sanitiseDriverError(
  err: unknown,
  context: ErrorContext,
  classify: (err: unknown) => Classification | undefined,
): ApplierError {
  if (err instanceof ApplierError) return err;
  let verdict: Classification | undefined;
  try {
    verdict = classify(err) ?? classifyCommon(err);
  } catch {
    // a classifier tripping over an odd error object must not let that object escape
    verdict = undefined;
  }
  const driverCode = verdict?.driverCode ?? driverCodeOf(err);
  const where = context.server === undefined ? '' : ` on ${context.server}`;
  const reason = verdict?.reason ?? `the server or driver reported an error${driverCode === undefined ? '' : ` (${driverCode})`}`;
  return new ApplierError(verdict?.code ?? 'ERR_APPLIER_FAILED', `${context.engine} ${context.operation}${where}: ${reason}`, {
    ...context,
    driverCode,
    driverName: driverNameOf(err),
    ...(verdict?.retryable === undefined ? {} : { retryable: verdict.retryable }),
  });
}

/** Shorthand for an ApplierError raised by the applier itself (no driver error involved). */
export function applierError(code: ApplierErrorCode, context: ErrorContext, reason: string, retryable?: boolean): ApplierError {
  const where = context.server === undefined ? '' : ` on ${context.server}`;
  return new ApplierError(code, `${context.engine} ${context.operation}${where}: ${reason}`, {
    ...context,
    ...(retryable === undefined ? {} : { retryable }),
  });
}
