/**
 * What every engine's applier shares: the closed state, request checks, error
 * sanitising around each operation, the preflight report, and revoke for
 * engines that hold one password per user. Engines implement the `do*` steps.
 */
import type {
  Applier,
  ApplyRequest,
  ApplyResponse,
  PreflightFinding,
  PreflightRequest,
  PreflightResponse,
  PreflightWarningCode,
  RevokeRequest,
  RevokeResponse,
  RotationStrategy,
  TerminateSessionsRequest,
  TerminateSessionsResponse,
  VerifyRequest,
  VerifyResponse,
} from './applier.js';
import { ROTATION_STRATEGIES } from './applier.js';
import {
  applierError,
  sanitiseDriverError,
  type ApplierError,
  type ApplierErrorCode,
  type ApplierOperation,
  type Classification,
  type ErrorContext,
} from './applier-errors.js';
import type { ApplierOptions, Engine, Login, TargetConnection } from './target.js';

/** Longest password accepted, in UTF-8 bytes (PostgreSQL's SASLprep stops at 1024). */
export const MAX_PASSWORD_BYTES = 1024;

/** Collects preflight findings; see {@link Applier.preflight}. */
export class PreflightReport {
  readonly problems: PreflightFinding<ApplierErrorCode>[] = [];
  readonly warnings: PreflightFinding<PreflightWarningCode>[] = [];
  server: PreflightResponse['server'] = undefined;
  strategies: RotationStrategy[] = [];

  problem(code: ApplierErrorCode, message: string): void {
    this.problems.push({ code, message });
  }

  warn(code: PreflightWarningCode, message: string): void {
    this.warnings.push({ code, message });
  }

  result(): PreflightResponse {
    return {
      ok: this.problems.length === 0,
      problems: this.problems,
      warnings: this.warnings,
      server: this.server,
      strategies: this.strategies,
    };
  }
}

export abstract class ApplierBase implements Applier {
  abstract readonly engine: Engine;
  protected readonly target: TargetConnection;
  /** The admin login (admin mode) or undefined (self mode). */
  protected readonly adminLogin: Login | undefined;
  protected readonly options: ApplierOptions;
  private closed = false;

  constructor(target: TargetConnection, adminLogin: Login | undefined, options: ApplierOptions) {
    this.target = target;
    this.adminLogin = adminLogin;
    this.options = options;
  }

  /** Maps one driver error to our code; undefined falls back to the shared table. */
  protected abstract classify(err: unknown, operation: ApplierOperation): Classification | undefined;
  protected abstract doPreflight(req: PreflightRequest, report: PreflightReport): Promise<void>;
  protected abstract doApply(req: ApplyRequest): Promise<ApplyResponse>;
  protected abstract doVerify(req: VerifyRequest): Promise<VerifyResponse>;
  protected abstract doRevoke(req: RevokeRequest): Promise<RevokeResponse>;
  protected abstract doTerminateSessions(req: TerminateSessionsRequest): Promise<TerminateSessionsResponse>;
  protected abstract doClose(): Promise<void>;

  protected get selfMode(): boolean {
    return this.target.privilege.mode === 'self';
  }

  protected get server(): string {
    return `${this.target.host}:${this.target.port}`;
  }

  protected context(operation: ApplierOperation): ErrorContext {
    return { engine: this.engine, operation, server: this.server };
  }

  protected fail(code: ApplierErrorCode, operation: ApplierOperation, reason: string, retryable?: boolean): ApplierError {
    return applierError(code, this.context(operation), reason, retryable);
  }

  /** Any error → a sanitised ApplierError for `operation`. */
  protected sanitise(err: unknown, operation: ApplierOperation): ApplierError {
    return sanitiseDriverError(err, this.context(operation), (e) => this.classify(e, operation));
  }

  private async guarded<T>(operation: ApplierOperation, fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw this.fail('ERR_APPLIER_CLOSED', operation, 'the applier was closed');
    try {
      return await fn();
    } catch (err) {
      throw this.sanitise(err, operation);
    }
  }

  async preflight(req: PreflightRequest): Promise<PreflightResponse> {
    if (this.closed) throw this.fail('ERR_APPLIER_CLOSED', 'preflight', 'the applier was closed');
    const report = new PreflightReport();
    const invalid = userProblem(req.user) ?? (ROTATION_STRATEGIES.includes(req.strategy) ? undefined : 'strategy must be replace or dual');
    if (invalid !== undefined) {
      report.problem('ERR_APPLIER_CONFIG', `${this.engine} preflight: ${invalid}`);
      return report.result();
    }
    if (this.selfMode && !nonEmpty(req.currentPassword)) {
      report.problem('ERR_APPLIER_CONFIG', `${this.engine} preflight: self-rotation needs the current password`);
      return report.result();
    }
    if (this.target.tls.mode === 'disable' && !isLoopback(this.target.host)) {
      report.warn('WARN_APPLIER_TLS_DISABLED', `${this.engine} preflight: TLS is disabled towards ${this.server}; passwords cross the network in the clear`);
    }
    try {
      await this.doPreflight(req, report);
    } catch (err) {
      const safe = this.sanitise(err, 'preflight');
      report.problem(safe.code, safe.message);
    }
    return report.result();
  }

  apply(req: ApplyRequest): Promise<ApplyResponse> {
    return this.guarded('apply', async () => {
      this.checkUser(req.user, 'apply');
      if (!ROTATION_STRATEGIES.includes(req.strategy)) throw this.fail('ERR_APPLIER_CONFIG', 'apply', 'strategy must be replace or dual');
      this.checkNewPassword(req.newPassword);
      if (this.selfMode) this.checkCurrentPassword(req.currentPassword, 'apply');
      return this.doApply(req);
    });
  }

  verify(req: VerifyRequest): Promise<VerifyResponse> {
    return this.guarded('verify', async () => {
      this.checkUser(req.user, 'verify');
      // no managed password is empty, and some drivers refuse to even send one
      if (!nonEmpty(req.password)) return { outcome: 'refused' };
      return this.doVerify(req);
    });
  }

  revoke(req: RevokeRequest): Promise<RevokeResponse> {
    return this.guarded('revoke', async () => {
      this.checkUser(req.user, 'revoke');
      if (!nonEmpty(req.password)) return { outcome: 'absent' };
      if (this.selfMode) this.checkCurrentPassword(req.currentPassword, 'revoke');
      return this.doRevoke(req);
    });
  }

  terminateSessions(req: TerminateSessionsRequest): Promise<TerminateSessionsResponse> {
    return this.guarded('terminate', async () => {
      this.checkUser(req.user, 'terminate');
      if (this.selfMode) this.checkCurrentPassword(req.currentPassword, 'terminate');
      return this.doTerminateSessions(req);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.doClose();
    } catch {
      // closing a broken connection can fail; the socket is gone either way
    }
  }

  /**
   * Revoke for engines with one password per user: a password that still logs
   * in is the current one and is never removed; one that does not is `absent`.
   */
  protected async revokeSinglePassword(req: RevokeRequest, why: string): Promise<RevokeResponse> {
    const { outcome } = await this.doVerify({ user: req.user, password: req.password });
    if (outcome === 'ok') {
      throw this.fail('ERR_APPLIER_REVOKE_CURRENT', 'revoke', `the password still logs in, so it is the current one (${why}); nothing was changed`);
    }
    return { outcome: 'absent' };
  }

  /** Self mode: the login that acts, as `user` with `password`. */
  protected selfLogin(user: string, password: string): Login {
    return { host: this.target.host, port: this.target.port, user, password, database: this.target.database };
  }

  protected requireAdmin(operation: ApplierOperation): Login {
    if (this.adminLogin === undefined) throw this.fail('ERR_APPLIER_CONFIG', operation, 'no admin login configured');
    return this.adminLogin;
  }

  private checkUser(user: unknown, operation: ApplierOperation): void {
    const problem = userProblem(user);
    if (problem !== undefined) throw this.fail('ERR_APPLIER_CONFIG', operation, problem);
  }

  private checkNewPassword(password: unknown): void {
    if (!nonEmpty(password)) throw this.fail('ERR_APPLIER_REJECTED_PASSWORD', 'apply', 'the new password is empty');
    if (password.includes('\0')) throw this.fail('ERR_APPLIER_REJECTED_PASSWORD', 'apply', 'the new password contains a NUL character');
    if (Buffer.byteLength(password, 'utf8') > MAX_PASSWORD_BYTES) {
      throw this.fail('ERR_APPLIER_REJECTED_PASSWORD', 'apply', `the new password is longer than ${MAX_PASSWORD_BYTES} bytes`);
    }
  }

  private checkCurrentPassword(password: unknown, operation: ApplierOperation): void {
    if (!nonEmpty(password)) throw this.fail('ERR_APPLIER_CONFIG', operation, 'self-rotation needs the current password');
  }
}

function nonEmpty(value: unknown): value is string {
  return typeof value === 'string' && value !== '';
}

function userProblem(user: unknown): string | undefined {
  if (!nonEmpty(user)) return 'user must be a non-empty string';
  if (user.includes('\0')) return 'user contains a NUL character';
  if (user.length > 256) return 'user is longer than 256 characters';
  return undefined;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}
