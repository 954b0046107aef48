/**
 * PostgreSQL applier (`pg`). The password travels as a SCRAM-SHA-256 verifier
 * computed on the agent (postgres-scram-verifier.ts), so `ALTER ROLE` text in the
 * server log or pg_stat_statements holds no plaintext. Identifiers are quoted with
 * the driver's escapeIdentifier; ALTER ROLE takes no bind parameters, so the
 * verifier is a literal escaped with escapeLiteral.
 *
 * Strategies: `replace` only — a role holds one password (`dual` is refused at
 * preflight and apply with ERR_APPLIER_UNSUPPORTED; use `alternate`).
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import pg from 'pg';
import type {
  ApplyRequest,
  ApplyResponse,
  PreflightRequest,
  RevokeRequest,
  RevokeResponse,
  TerminateSessionsRequest,
  TerminateSessionsResponse,
  VerifyRequest,
  VerifyResponse,
} from './applier.js';
import { ApplierBase, type PreflightReport } from './applier-base.js';
import { ApplierError, classifyCommon, driverCodeOf, type ApplierOperation, type Classification } from './applier-errors.js';
import { ConnectionCache } from './connection-cache.js';
import { watchPasswordRequest } from './postgres-password-request.js';
import { ScramKeyedClient } from './postgres-scram-login.js';
import { scramCredential, zeroScramCredential, type ScramCredential } from './postgres-scram-verifier.js';
import { WarmSocket } from './postgres-warm-socket.js';
import { tlsOptions, type Login } from './target.js';

/** SQLSTATEs of a refused login: invalid_password, invalid_authorization_specification. */
const LOGIN_REFUSED = new Set(['28P01', '28000']);
/** PostgreSQL 10 introduced SCRAM verifiers. */
const MIN_SCRAM_VERSION = 100000;

interface RoleFacts {
  version: string;
  version_num: number;
  me: string;
  me_super: boolean;
  me_createrole: boolean;
  exists: boolean;
  target_super: boolean | null;
  can_login: boolean | null;
  expires: boolean | null;
  expired: boolean | null;
}

export class PostgresApplier extends ApplierBase {
  readonly engine = 'postgres' as const;
  /** Opened by an admin-mode apply for the verify that follows it (taken once, closed if unused). */
  private warm: WarmSocket | null = null;
  /** The password the last apply set and its SCRAM keys, for the verify that follows (taken once, zeroed after). */
  private applied: { password: string; scram: ScramCredential } | null = null;
  private readonly admin = new ConnectionCache<pg.Client>(
    async () => {
      const client = await this.connect(this.requireAdmin('apply'));
      client.once('end', () => void this.admin.discard(client));
      return client;
    },
    (client) => client.end(),
  );

  protected classify(err: unknown, operation: ApplierOperation): Classification | undefined {
    const code = driverCodeOf(err) ?? '';
    if (LOGIN_REFUSED.has(code)) {
      return { code: 'ERR_APPLIER_AUTH_FAILED', reason: `the ${this.selfMode ? 'current password' : 'admin login'} was refused (SQLSTATE ${code})` };
    }
    if (code === '42501') return { code: 'ERR_APPLIER_PRIVILEGE', reason: `the login lacks the privilege to ${operation} (SQLSTATE 42501)` };
    if (code === '42704') return { code: 'ERR_APPLIER_UNKNOWN_USER', reason: 'the role does not exist (SQLSTATE 42704)' };
    if (code === '3D000') return { code: 'ERR_APPLIER_CONFIG', reason: 'the database does not exist (SQLSTATE 3D000)' };
    if (code === '57014') return { code: 'ERR_APPLIER_FAILED', reason: 'the statement timed out (SQLSTATE 57014)', retryable: true };
    if (/^(08|53|57P)/.test(code)) return { code: 'ERR_APPLIER_UNREACHABLE', reason: `the server cannot serve the request now (SQLSTATE ${code})` };
    if (/^(40|55P03)/.test(code)) return { code: 'ERR_APPLIER_FAILED', reason: `a lock or serialization conflict (SQLSTATE ${code})`, retryable: true };
    if (code === '22023') return { code: 'ERR_APPLIER_REJECTED_PASSWORD', reason: `the server refused the password (SQLSTATE ${code})` };
    return classifyCommon(err);
  }

  protected async doPreflight(req: PreflightRequest, report: PreflightReport): Promise<void> {
    const facts = await this.withSession(req.user, req.currentPassword, async (client) => {
      const { rows } = await client.query<RoleFacts>(
        `SELECT current_setting('server_version') AS version,
                current_setting('server_version_num')::int AS version_num,
                me.rolname AS me, me.rolsuper AS me_super, me.rolcreaterole AS me_createrole,
                r.oid IS NOT NULL AS exists, r.rolsuper AS target_super, r.rolcanlogin AS can_login,
                r.rolvaliduntil IS NOT NULL AND r.rolvaliduntil <> 'infinity' AS expires,
                r.rolvaliduntil < now() AS expired
           FROM pg_roles me LEFT JOIN pg_roles r ON r.rolname = $1
          WHERE me.rolname = current_user`,
        [req.user],
      );
      const facts = rows[0];
      if (facts === undefined) throw this.fail('ERR_APPLIER_FAILED', 'preflight', 'the server did not describe the current role');
      report.server = { flavour: 'postgresql', version: facts.version };
      report.strategies = facts.version_num >= MIN_SCRAM_VERSION ? ['replace'] : [];
      if (facts.version_num < MIN_SCRAM_VERSION) report.problem('ERR_APPLIER_UNSUPPORTED', `${facts.version} predates SCRAM-SHA-256 (PostgreSQL 10)`);
      this.checkRole(req, facts, report);
      if (facts.exists && !(await this.mayAlter(client, req.user, facts))) {
        report.problem('ERR_APPLIER_PRIVILEGE', `role "${facts.me}" may not change the password of "${req.user}" (needs superuser${facts.target_super ? '' : ', or CREATEROLE'}${facts.version_num >= 160000 ? ' with ADMIN OPTION on the role' : ''})`);
      }
      if (req.strategy === 'dual') {
        report.problem('ERR_APPLIER_UNSUPPORTED', 'PostgreSQL holds one password per role: dual is not possible (use replace, or alternate with two roles)');
      }
      return facts;
    });
    if (facts.exists && facts.can_login === true && facts.expired !== true) await this.checkPasswordChecked(req.user, report);
  }

  /**
   * A login as `user` with a wrong password must be refused for that password (28P01), or
   * no verify could prove anything (postgres-password-request.ts). The server logs the
   * failed login, as it would any other.
   */
  private async checkPasswordChecked(user: string, report: PreflightReport): Promise<void> {
    let client: pg.Client;
    try {
      client = await this.connect(this.selfLogin(user, randomBytes(24).toString('base64url')));
    } catch (err) {
      const code = driverCodeOf(err) ?? '';
      if (code === '28P01') return;
      if (code === '28000') {
        report.problem('ERR_APPLIER_CONFIG', `the server refuses role "${user}" from the agent's host before asking for a password (SQLSTATE 28000: no pg_hba.conf line lets it in?): no new password could be proved`);
        return;
      }
      throw err;
    }
    void client.end().catch(() => undefined);
    report.problem('ERR_APPLIER_CONFIG', `the server let role "${user}" log in with a wrong password (pg_hba.conf trust, ident or peer for the agent's host): a fresh login cannot prove a new password here`);
  }

  private checkRole(req: PreflightRequest, facts: RoleFacts, report: PreflightReport): void {
    if (!facts.exists) {
      report.problem('ERR_APPLIER_UNKNOWN_USER', `role "${req.user}" does not exist`);
      return;
    }
    if (facts.can_login === false) report.problem('ERR_APPLIER_LOGIN_DISABLED', `role "${req.user}" has NOLOGIN: no password can be verified`);
    if (facts.expired === true) report.problem('ERR_APPLIER_LOGIN_DISABLED', `role "${req.user}" is past its VALID UNTIL: logins are refused`);
    else if (facts.expires === true) report.warn('WARN_APPLIER_PASSWORD_EXPIRES', `role "${req.user}" has VALID UNTIL; rotation does not change it`);
  }

  private async mayAlter(client: pg.Client, user: string, facts: RoleFacts): Promise<boolean> {
    if (facts.me_super || facts.me === user) return true;
    if (!facts.me_createrole || facts.target_super === true) return false;
    if (facts.version_num < 160000) return true;
    // PostgreSQL 16: CREATEROLE only reaches roles it holds ADMIN OPTION on
    const { rows } = await client.query<{ ok: boolean }>(`SELECT pg_has_role(current_user, $1::name, 'MEMBER WITH ADMIN OPTION') AS ok`, [user]);
    return rows[0]?.ok === true;
  }

  protected async doApply(req: ApplyRequest): Promise<ApplyResponse> {
    if (req.strategy === 'dual') {
      throw this.fail('ERR_APPLIER_UNSUPPORTED', 'apply', 'PostgreSQL holds one password per role: dual is not possible');
    }
    const done: ApplyResponse = { strategy: 'replace', oldPasswordRetained: false, unchanged: false, persisted: true };
    // started when the command was accepted (apply-command.ts), for this very password; or computed now
    const scram = await (req.derived?.scramCredential(req.newPassword) ?? scramCredential(req.newPassword));
    this.forgetApplied();
    try {
      const unchanged = await this.alterRole(req, scram.verifier);
      // kept only when this verifier is now stored: the verify that follows logs in with its keys
      if (!unchanged) this.applied = { password: req.newPassword, scram };
      return { ...done, unchanged };
    } finally {
      if (this.applied?.scram !== scram) zeroScramCredential(scram);
    }
  }

  /** Stores `verifier` as the role's password; true when a self-rotation found the new password already in place. */
  private async alterRole(req: ApplyRequest, verifier: string): Promise<boolean> {
    const alter = (client: pg.Client) =>
      client.query(`ALTER ROLE ${client.escapeIdentifier(req.user)} PASSWORD ${client.escapeLiteral(verifier)}`);
    if (!this.selfMode) {
      // the connection for the verify that follows: opened when the command was accepted, or now (postgres-warm-socket.ts)
      this.warm?.close();
      this.warm = req.warm ?? WarmSocket.open(this.target.host, this.target.port);
      try {
        await this.withAdmin(alter);
      } catch (err) {
        this.warm?.close();
        this.warm = null;
        throw err;
      }
      return false;
    }
    let client: pg.Client;
    try {
      client = await this.connect(this.selfLogin(req.user, req.currentPassword ?? ''));
    } catch (err) {
      // a repeated self-rotation: the current password is already the new one
      if (LOGIN_REFUSED.has(driverCodeOf(err) ?? '') && (await this.doVerify({ user: req.user, password: req.newPassword })).outcome === 'ok') {
        return true;
      }
      throw err;
    }
    try {
      await alter(client);
      return false;
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  protected async doVerify(req: VerifyRequest): Promise<VerifyResponse> {
    const warm = this.warm?.take() ?? null;
    this.warm = null;
    // the keys of the verifier just set, when this verify proves that password (postgres-scram-login.ts)
    const keys = this.applied?.password === req.password ? this.applied.scram : null;
    let client: pg.Client;
    try {
      try {
        client = await this.connect(this.selfLogin(req.user, req.password), warm, keys, 'verify');
      } catch (err) {
        // a server's answer (a SQLSTATE, or a login it did not ask the password of) stands; a connection opened early that broke is replaced by a new one
        if (warm === null || err instanceof ApplierError || /^[0-9A-Z]{5}$/.test(driverCodeOf(err) ?? '')) throw err;
        client = await this.connect(this.selfLogin(req.user, req.password), null, keys, 'verify');
      }
    } catch (err) {
      if (LOGIN_REFUSED.has(driverCodeOf(err) ?? '')) return { outcome: 'refused' };
      throw err;
    } finally {
      this.forgetApplied();
    }
    // The login is the proof: pg's connect() resolves only at the server's first ReadyForQuery,
    // after it asked for the password (connect checks that it did) and accepted it (and pg checked the server's SCRAM signature) and set up
    // the session (database access, connection limits). A query after it would prove nothing
    // more. The goodbye (Terminate, then waiting for the server to close) is not awaited, so
    // the result reaches the control plane ~2 ms sooner.
    void client.end().catch(() => undefined);
    return { outcome: 'ok' };
  }

  protected doRevoke(req: RevokeRequest): Promise<RevokeResponse> {
    return this.revokeSinglePassword(req, 'PostgreSQL holds one password per role; the old one was replaced by apply');
  }

  /** Ends the user's sessions with pg_terminate_backend (superuser, pg_signal_backend, or the role itself). */
  protected async doTerminateSessions(req: TerminateSessionsRequest): Promise<TerminateSessionsResponse> {
    return this.withSession(req.user, req.currentPassword, async (client) => {
      const { rows } = await client.query<{ terminated: number }>(
        `SELECT count(*) FILTER (WHERE terminated)::int AS terminated
           FROM (SELECT pg_terminate_backend(pid) AS terminated
                   FROM pg_stat_activity
                  WHERE usename = $1 AND pid <> pg_backend_pid()) AS s`,
        [req.user],
      );
      return { terminated: rows[0]?.terminated ?? 0 };
    });
  }

  protected doClose(): Promise<void> {
    this.warm?.close();
    this.warm = null;
    this.forgetApplied();
    return this.admin.close();
  }

  private clientConfig(login: Login, stream: (() => Socket) | null = null): pg.ClientConfig {
    return {
      ...(stream === null ? {} : { stream }),
      host: login.host,
      port: login.port,
      user: login.user,
      password: login.password,
      database: login.database ?? this.target.database ?? 'postgres',
      ssl: tlsOptions(this.target) ?? false,
      connectionTimeoutMillis: this.options.connectTimeoutMs,
      statement_timeout: this.options.statementTimeoutMs,
      lock_timeout: this.options.statementTimeoutMs,
      query_timeout: this.options.statementTimeoutMs + 2000,
      application_name: 'sikker-agent',
    };
  }

  /** Zeroes and drops the last apply's SCRAM keys. */
  private forgetApplied(): void {
    if (this.applied !== null) zeroScramCredential(this.applied.scram);
    this.applied = null;
  }

  /**
   * A fresh, connected client (on `stream`, a socket opened ahead, when given; answering
   * the SCRAM exchange from `keys` when the server asks for their verifier). Its errors
   * surface through awaited calls. `proving`: the login is a proof of its password, so a
   * server that let it in without asking for the password is an ERR_APPLIER_CONFIG.
   */
  private async connect(login: Login, stream: (() => Socket) | null = null, keys: ScramCredential | null = null, proving: ApplierOperation | null = null): Promise<pg.Client> {
    const config = this.clientConfig(login, stream);
    const client = keys === null ? new pg.Client(config) : new ScramKeyedClient(config, keys);
    client.on('error', () => {
      // an idle client's socket broke; the next awaited query reports it
    });
    const asked = watchPasswordRequest(client);
    try {
      await client.connect();
    } catch (err) {
      await client.end().catch(() => undefined);
      throw err;
    }
    if (proving !== null && !asked()) {
      void client.end().catch(() => undefined);
      throw this.fail('ERR_APPLIER_CONFIG', proving, `the server let role "${login.user}" in without asking for its password (pg_hba.conf trust, ident or peer for the agent's host): a login cannot prove a password here`);
    }
    return client;
  }

  /** Runs `fn` on the admin session (admin mode) or a fresh session as the user (self mode). */
  private async withSession<T>(user: string, currentPassword: string | undefined, fn: (client: pg.Client) => Promise<T>): Promise<T> {
    if (!this.selfMode) return this.withAdmin(fn);
    const client = await this.connect(this.selfLogin(user, currentPassword ?? ''));
    try {
      return await fn(client);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  /** Runs `fn` on the cached admin client; any error that is not a plain SQL error drops it. */
  private withAdmin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
    return this.admin.use(fn, (err) => {
      const code = driverCodeOf(err) ?? '';
      return !/^[0-9A-Z]{5}$/.test(code) || /^(08|57P)/.test(code);
    });
  }
}
