/**
 * SQL Server applier. A target is a SQL login (`ALTER LOGIN … WITH PASSWORD`) or,
 * with `mssqlPrincipal: 'contained-user'`, a contained database user of
 * `target.database` (`ALTER USER … WITH PASSWORD`; every connection then opens
 * that database). Self-rotation adds `OLD_PASSWORD`, which SQL Server requires
 * from a principal changing its own password without ALTER ANY LOGIN/USER.
 *
 * How the password travels: T-SQL takes no variable there, so it is an escaped
 * `N'…'` literal in a statement sent alone as a SQL batch, which SQL Server's
 * trace and Extended Events redact (see mssql-sql.ts). Lookups bind names as
 * sp_executesql parameters. Driver: tedious, via mssql-session.ts.
 *
 * Strategies: `replace` only — a login or contained user holds one password, so
 * `dual` is refused at preflight and apply (ERR_APPLIER_UNSUPPORTED); `alternate`
 * with two principals needs nothing special here.
 */
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
import { isApplierError, type ApplierOperation, type Classification } from './applier-errors.js';
import { ConnectionCache } from './connection-cache.js';
import { classifyMssql, hasNumber, isLoginRefused } from './mssql-errors.js';
import { assessPrincipal, readFacts, serverFlavour, type AssessmentContext, type PrincipalFacts } from './mssql-facts.js';
import { MssqlDriverError, MssqlSession } from './mssql-session.js';
import {
  alterPasswordStatement,
  killStatement,
  LOGIN_FACTS_SQL,
  LOGIN_SESSIONS_SQL,
  nameProblem,
  passwordProblem,
  PROBE_SQL,
  SESSION_RIGHTS_SQL,
  USER_FACTS_SQL,
  USER_SESSIONS_SQL,
  type MssqlPrincipal,
} from './mssql-sql.js';
import type { Login } from './target.js';

const DUAL_REASON = 'SQL Server holds one password per login or contained user: dual is not possible (use replace, or alternate with two principals)';
/** KILL refusals that leave nothing to do: 6104 is this very session, 6106 a session that ended meanwhile. */
const KILL_NOTHING_LEFT = [6104, 6106];
/** "The password was changed too recently": on a re-apply, the password may already be the new one. */
const TOO_RECENT = 15114;

export class MssqlApplier extends ApplierBase {
  readonly engine = 'mssql' as const;
  private readonly admin = new ConnectionCache<MssqlSession>(
    async () => {
      const session = await this.open(this.adminSessionLogin());
      session.onEnd(() => void this.admin.discard(session));
      return session;
    },
    (session) => session.close(),
  );

  private get principal(): MssqlPrincipal {
    return this.target.mssqlPrincipal ?? 'login';
  }

  protected classify(err: unknown, operation: ApplierOperation): Classification | undefined {
    return classifyMssql(err, operation, this.selfMode ? 'current password' : 'admin login');
  }

  protected async doPreflight(req: PreflightRequest, report: PreflightReport): Promise<void> {
    const badName = nameProblem(req.user);
    if (badName !== undefined) {
      report.problem('ERR_APPLIER_CONFIG', `mssql preflight: ${badName}`);
      return;
    }
    if (req.strategy === 'dual') report.problem('ERR_APPLIER_UNSUPPORTED', DUAL_REASON);
    await this.withSession(req.user, req.currentPassword, async (session) => {
      const facts = await this.facts(session, req.user);
      report.server = { flavour: serverFlavour(facts.engineEdition), version: facts.version };
      report.strategies = ['replace'];
      const { problems, warnings } = assessPrincipal(facts, this.assessmentContext(req.user));
      for (const finding of problems) report.problem(finding.code, finding.message);
      for (const finding of warnings) report.warn(finding.code, finding.message);
    });
  }

  protected async doApply(req: ApplyRequest): Promise<ApplyResponse> {
    if (req.strategy === 'dual') throw this.fail('ERR_APPLIER_UNSUPPORTED', 'apply', DUAL_REASON);
    this.checkName(req.user, 'apply');
    const badPassword = passwordProblem(req.newPassword);
    if (badPassword !== undefined) throw this.fail('ERR_APPLIER_REJECTED_PASSWORD', 'apply', badPassword);
    const done: ApplyResponse = { strategy: 'replace', oldPasswordRetained: false, unchanged: false, persisted: true };
    const statement = alterPasswordStatement(this.principal, req.user, req.newPassword, this.selfMode ? req.currentPassword : undefined);
    try {
      await this.withSession(req.user, req.currentPassword, async (session) => {
        try {
          await session.batch(statement);
        } catch (err) {
          throw await this.explainAlterFailure(session, req.user, err);
        }
      });
      return done;
    } catch (err) {
      // a redelivered command: the current password no longer logs in (self), or the server
      // refuses a second change this soon; either way the new password may already be in place
      const mayBeDone = (this.selfMode && isLoginRefused(err)) || hasNumber(err, TOO_RECENT);
      if (mayBeDone && (await this.doVerify({ user: req.user, password: req.newPassword })).outcome === 'ok') return { ...done, unchanged: true };
      throw err;
    }
  }

  /**
   * 15151 says "does not exist or you do not have permission" without saying which:
   * ask the catalog (admin mode), so the caller learns UNKNOWN_USER or PRIVILEGE.
   */
  private async explainAlterFailure(session: MssqlSession, user: string, err: unknown): Promise<unknown> {
    if (this.selfMode || !hasNumber(err, 15151)) return err;
    let facts: PrincipalFacts;
    try {
      facts = await this.facts(session, user);
    } catch {
      // the explanation is a courtesy: the original error still says what failed
      return err;
    }
    const finding = assessPrincipal(facts, this.assessmentContext(user)).problems
      .find((p) => p.code === 'ERR_APPLIER_UNKNOWN_USER' || p.code === 'ERR_APPLIER_PRIVILEGE');
    return finding === undefined ? err : this.fail(finding.code, 'apply', finding.message);
  }

  protected async doVerify(req: VerifyRequest): Promise<VerifyResponse> {
    // no principal can have such a name, so no such login can succeed
    if (nameProblem(req.user) !== undefined) return { outcome: 'refused' };
    let session: MssqlSession;
    try {
      session = await this.open(this.selfLogin(req.user, req.password));
    } catch (err) {
      if (isLoginRefused(err)) return { outcome: 'refused' };
      throw err;
    }
    try {
      await session.batch(PROBE_SQL);
      return { outcome: 'ok' };
    } finally {
      await session.close();
    }
  }

  protected doRevoke(req: RevokeRequest): Promise<RevokeResponse> {
    return this.revokeSinglePassword(req, 'SQL Server holds one password per login; apply replaced the old one');
  }

  /**
   * KILL for each of the user's sessions except this one. Needs VIEW SERVER STATE
   * (otherwise sys.dm_exec_sessions shows only one's own session, and "0 ended"
   * would be a lie) and ALTER ANY CONNECTION: without them, ERR_APPLIER_PRIVILEGE.
   */
  protected async doTerminateSessions(req: TerminateSessionsRequest): Promise<TerminateSessionsResponse> {
    this.checkName(req.user, 'terminate');
    return this.withSession(req.user, req.currentPassword, async (session) => {
      const [rights] = await session.query(SESSION_RIGHTS_SQL);
      if (rights?.['may_view'] !== 1 || rights['may_kill'] !== 1) {
        throw this.fail('ERR_APPLIER_PRIVILEGE', 'terminate', 'the login may not see and end other sessions (needs VIEW SERVER STATE and ALTER ANY CONNECTION)');
      }
      const sessions = await session.query(this.principal === 'contained-user' ? USER_SESSIONS_SQL : LOGIN_SESSIONS_SQL, { name: req.user });
      let terminated = 0;
      for (const row of sessions) {
        try {
          await session.batch(killStatement(Number(row['session_id'])));
          terminated++;
        } catch (err) {
          if (!hasNumber(err, ...KILL_NOTHING_LEFT)) throw err;
        }
      }
      return { terminated };
    });
  }

  protected doClose(): Promise<void> {
    return this.admin.close();
  }

  private async facts(session: MssqlSession, user: string): Promise<PrincipalFacts> {
    const rows = await session.query(this.principal === 'contained-user' ? USER_FACTS_SQL : LOGIN_FACTS_SQL, { name: user });
    return readFacts(rows[0]);
  }

  private assessmentContext(user: string): AssessmentContext {
    return { principal: this.principal, user, selfMode: this.selfMode, database: this.target.database };
  }

  private checkName(user: string, operation: ApplierOperation): void {
    const problem = nameProblem(user);
    if (problem !== undefined) throw this.fail('ERR_APPLIER_CONFIG', operation, problem);
  }

  /** Admin mode: the shared admin session. Self mode: a session as `user` with the current password, closed after. */
  private async withSession<T>(user: string, currentPassword: string | undefined, fn: (session: MssqlSession) => Promise<T>): Promise<T> {
    if (!this.selfMode) return this.admin.use(fn, breaksSession);
    const session = await this.open(this.selfLogin(user, currentPassword ?? ''));
    try {
      return await fn(session);
    } finally {
      await session.close();
    }
  }

  /** The admin login; for a contained user, in the user's database (where ALTER USER acts). */
  private adminSessionLogin(): Login {
    const login = this.requireAdmin('apply');
    return this.principal === 'contained-user' ? { ...login, database: this.target.database } : login;
  }

  private open(login: Login): Promise<MssqlSession> {
    return MssqlSession.open({
      host: login.host,
      port: login.port,
      user: login.user,
      password: login.password,
      database: login.database,
      tls: this.target.tls,
      connectTimeoutMs: this.options.connectTimeoutMs,
      statementTimeoutMs: this.options.statementTimeoutMs,
    });
  }
}

/** Errors the server answered (and our own verdicts) leave the session usable; anything else drops it. */
function breaksSession(err: unknown): boolean {
  if (isApplierError(err)) return false;
  return !(err instanceof MssqlDriverError && err.serverAnswered);
}
