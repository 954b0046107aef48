/**
 * The one interface every database engine implements (one file per engine:
 * postgres.ts, mysql.ts, redis.ts; built by `createApplier` in index.ts).
 *
 * Requests and responses are objects so fields can be added without breaking
 * callers. Every method is bounded by the applier's timeouts, is safe to call
 * again with the same request (BullMQ delivers at least once; the agent may
 * retry after a crash), and throws only {@link ApplierError}s whose message,
 * cause and stack hold no password (driver errors are sanitised; see
 * applier-errors.ts). A password never appears in a log line written here.
 */
import type { ApplierErrorCode } from './applier-errors.js';
import type { PasswordDerivation } from './password-derivation.js';
import type { WarmSocket } from './postgres-warm-socket.js';
import type { Engine } from './target.js';

/**
 * - `replace`: the new password replaces the old at once.
 * - `dual`: old and new both log in until `revoke` drops the old.
 */
export type RotationStrategy = 'replace' | 'dual';

export const ROTATION_STRATEGIES: readonly RotationStrategy[] = ['replace', 'dual'];

/** Codes for preflight findings that do not block a rotation. */
export type PreflightWarningCode =
  | 'WARN_APPLIER_NOT_PERSISTED'
  | 'WARN_APPLIER_PASSWORD_EXPIRES'
  /** The server applies a password policy to this user (complexity, lockout): SQL Server CHECK_POLICY. */
  | 'WARN_APPLIER_PASSWORD_POLICY'
  | 'WARN_APPLIER_TLS_DISABLED';

/** One preflight finding. `message` is written by the applier and holds no secret. */
export interface PreflightFinding<Code extends string> {
  code: Code;
  message: string;
}

export interface PreflightRequest {
  user: string;
  strategy: RotationStrategy;
  /** Self-rotation: the password that logs in now. Ignored in admin mode. */
  currentPassword?: string | undefined;
}

export interface PreflightResponse {
  /** True when `problems` is empty: a policy with this strategy may be enabled. */
  ok: boolean;
  /** Blocking findings, e.g. ERR_APPLIER_UNREACHABLE, ERR_APPLIER_PRIVILEGE, ERR_APPLIER_UNKNOWN_USER, ERR_APPLIER_UNSUPPORTED. */
  problems: PreflightFinding<ApplierErrorCode>[];
  /** Findings worth showing a DBA that do not block (e.g. a Redis change that does not survive a restart). */
  warnings: PreflightFinding<PreflightWarningCode>[];
  /** The server as it described itself (`SELECT VERSION()`, INFO), when it was reached. */
  server: { flavour: string; version: string } | undefined;
  /** The strategies this server supports for this user, when it was reached. */
  strategies: RotationStrategy[];
}

export interface ApplyRequest {
  user: string;
  newPassword: string;
  strategy: RotationStrategy;
  /** Self-rotation: the password that logs in now. Ignored in admin mode. */
  currentPassword?: string | undefined;
  /**
   * Work on a new password started ahead of time (PasswordDerivation.start). An applier
   * takes what it needs from it for `newPassword` (it hands nothing out for another
   * password) and computes the rest itself; engines with nothing to derive ignore it.
   */
  derived?: PasswordDerivation | undefined;
  /**
   * PostgreSQL, admin mode: the connection for the verify that follows, opened when the
   * command was accepted (postgres-warm-socket.ts). The applier takes it over (it closes it
   * when unused); without one it opens its own just before ALTER ROLE. Others ignore it.
   */
  warm?: WarmSocket | null | undefined;
}

export interface ApplyResponse {
  strategy: RotationStrategy;
  /** True when the previous password still logs in (`dual`). */
  oldPasswordRetained: boolean;
  /** True when the applier found `newPassword` already in place and sent no change. False means "changed" or "cannot tell". */
  unchanged: boolean;
  /** True when the change survives a server restart (always for SQL engines; Redis: ACL SAVE / CONFIG REWRITE succeeded). */
  persisted: boolean;
}

export interface VerifyRequest {
  user: string;
  password: string;
}

export interface VerifyResponse {
  /** `ok`: a fresh login with this password succeeded and ran a trivial query. `refused`: the server rejected the login. */
  outcome: 'ok' | 'refused';
}

export interface RevokeRequest {
  user: string;
  /** The password to stop accepting (the previous one, after `dual`). */
  password: string;
  /** Self-rotation: a password that logs in and stays (the new one). Ignored in admin mode. */
  currentPassword?: string | undefined;
}

export interface RevokeResponse {
  /** `removed`: it logged in before and no longer does. `absent`: it already did not log in; nothing was changed. */
  outcome: 'removed' | 'absent';
}

export interface TerminateSessionsRequest {
  user: string;
  /** Self-rotation: a password that logs in now. Ignored in admin mode. */
  currentPassword?: string | undefined;
}

export interface TerminateSessionsResponse {
  /** Sessions of the user that the server ended (the applier's own session is never counted nor ended). */
  terminated: number;
}

/**
 * Changes, proves and revokes one database user's password. Built per target by
 * `createApplier`; holds at most one admin connection, opened lazily and
 * re-opened after a failure. Not tied to one user: requests name theirs.
 */
export interface Applier {
  readonly engine: Engine;

  /**
   * Checks, without changing anything, that a rotation with `strategy` can work:
   * the server is reachable, the admin (or self) login is accepted and holds the
   * privilege to change `user`'s password, `user` exists and can log in, and the
   * server supports the strategy. Never throws for "not ok": every finding is a
   * problem with a stable code. Throws only ERR_APPLIER_CLOSED.
   */
  preflight(req: PreflightRequest): Promise<PreflightResponse>;

  /**
   * Sets `newPassword` for `user`. Idempotent: applying the same password again is
   * not an error (and, for `dual`, does not push the old password out). With
   * `dual` the previous password keeps working until {@link revoke}.
   * Self-rotation logs in with `currentPassword`; when that is refused but
   * `newPassword` logs in, the change was already made and this succeeds.
   * Throws ERR_APPLIER_UNSUPPORTED (strategy), ERR_APPLIER_UNKNOWN_USER,
   * ERR_APPLIER_PRIVILEGE, ERR_APPLIER_AUTH_FAILED (admin/current login refused),
   * ERR_APPLIER_REJECTED_PASSWORD (server policy; retry with a new password),
   * ERR_APPLIER_UNREACHABLE (retryable). After a throw the outcome may be unknown
   * (e.g. the connection broke mid-statement): call {@link verify} to find out.
   */
  apply(req: ApplyRequest): Promise<ApplyResponse>;

  /**
   * Opens a fresh connection as `user` with `password` (never a pooled or admin
   * one) and runs a trivial query. A refused login is a result (`refused`), not
   * an error; an unknown user is `refused` too (servers do not tell). Throws
   * ERR_APPLIER_UNREACHABLE / ERR_APPLIER_TLS when the server cannot be asked.
   */
  verify(req: VerifyRequest): Promise<VerifyResponse>;

  /**
   * Stops `password` from logging in while the current password keeps working.
   * Revoking a password that no longer logs in is not an error (`absent`).
   * Never removes the user's current password: on engines that hold one password
   * per user, a `password` that still logs in IS the current one, and this throws
   * ERR_APPLIER_REVOKE_CURRENT without changing anything.
   */
  revoke(req: RevokeRequest): Promise<RevokeResponse>;

  /**
   * Ends every live session of `user` (leak response), except the applier's own.
   * Throws ERR_APPLIER_PRIVILEGE when the login may not (e.g. a Redis user
   * without CLIENT KILL), and the connection errors of the other methods.
   */
  terminateSessions(req: TerminateSessionsRequest): Promise<TerminateSessionsResponse>;

  /** Closes the admin connection. Idempotent; afterwards every method throws ERR_APPLIER_CLOSED. */
  close(): Promise<void>;
}
