/**
 * MySQL / MariaDB applier (`mysql2`). Neither server takes a placeholder in
 * `IDENTIFIED BY` (a prepared `IDENTIFIED BY ?` is a syntax error), so the
 * password is a literal escaped with mysql2's escape — on a session whose
 * sql_mode has NO_BACKSLASH_ESCAPES removed, since that escaping relies on
 * backslashes (see {@link MysqlApplier.openSession}).
 *
 * Strategies: `replace` everywhere; `dual` on MySQL ≥ 8.0.14 (`RETAIN CURRENT
 * PASSWORD`, revoke by `DISCARD OLD PASSWORD`). MariaDB has no secondary
 * password: `dual` is refused at preflight and apply with ERR_APPLIER_UNSUPPORTED.
 */
import mysql from 'mysql2/promise';
import type { Connection, RowDataPacket } from 'mysql2/promise';
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
import { classifyCommon, driverCodeOf, type ApplierOperation, type Classification } from './applier-errors.js';
import { ConnectionCache } from './connection-cache.js';
import { describeMysqlServer, grantsAllowPasswordChange, type MysqlServer } from './mysql-server.js';
import { tlsOptions, type Login } from './target.js';

/** A refused login, a locked account, an expired password: the credential does not work. */
const LOGIN_REFUSED = new Set([
  'ER_ACCESS_DENIED_ERROR',
  // MariaDB, for an unknown user, may offer a made-up auth plugin and then refuse this way
  'ER_ACCESS_DENIED_NO_PASSWORD_ERROR',
  'ER_ACCOUNT_HAS_BEEN_LOCKED',
  'ER_MUST_CHANGE_PASSWORD',
  'ER_MUST_CHANGE_PASSWORD_LOGIN',
]);

const CLASSIFICATION: Record<string, Classification> = {
  ER_DBACCESS_DENIED_ERROR: { code: 'ERR_APPLIER_PRIVILEGE', reason: 'access to the database is denied' },
  ER_SPECIFIC_ACCESS_DENIED_ERROR: { code: 'ERR_APPLIER_PRIVILEGE', reason: 'the login lacks a needed privilege (e.g. CREATE USER)' },
  ER_TABLEACCESS_DENIED_ERROR: { code: 'ERR_APPLIER_PRIVILEGE', reason: 'the login may not read the grant tables' },
  ER_KILL_DENIED_ERROR: { code: 'ERR_APPLIER_PRIVILEGE', reason: 'the login may not end those sessions' },
  ER_CANNOT_USER: { code: 'ERR_APPLIER_UNKNOWN_USER', reason: 'the account does not exist' },
  ER_NONEXISTING_GRANT: { code: 'ERR_APPLIER_UNKNOWN_USER', reason: 'the account does not exist' },
  ER_NOT_VALID_PASSWORD: { code: 'ERR_APPLIER_REJECTED_PASSWORD', reason: 'the password does not satisfy the server password policy' },
  ER_PASSWORD_FORMAT: { code: 'ERR_APPLIER_REJECTED_PASSWORD', reason: 'the server refused the password format' },
  ER_CREDENTIALS_CONTRADICT_TO_HISTORY: { code: 'ERR_APPLIER_REJECTED_PASSWORD', reason: 'the password was used recently (password history)' },
  AUTH_SWITCH_PLUGIN_ERROR: { code: 'ERR_APPLIER_UNSUPPORTED', reason: 'the account uses an authentication plugin mysql2 does not support' },
  ER_BAD_DB_ERROR: { code: 'ERR_APPLIER_CONFIG', reason: 'the database does not exist' },
  ER_PARSE_ERROR: { code: 'ERR_APPLIER_UNSUPPORTED', reason: 'the server does not understand the statement' },
  ER_CON_COUNT_ERROR: { code: 'ERR_APPLIER_UNREACHABLE', reason: 'too many connections' },
  ER_HOST_IS_BLOCKED: { code: 'ERR_APPLIER_UNREACHABLE', reason: 'this host is blocked by the server' },
  ER_SERVER_SHUTDOWN: { code: 'ERR_APPLIER_UNREACHABLE', reason: 'the server is shutting down' },
  ER_LOCK_WAIT_TIMEOUT: { code: 'ERR_APPLIER_FAILED', reason: 'a lock wait timed out', retryable: true },
  ER_LOCK_DEADLOCK: { code: 'ERR_APPLIER_FAILED', reason: 'a deadlock was detected', retryable: true },
};

export class MysqlApplier extends ApplierBase {
  readonly engine = 'mysql' as const;
  private serverInfo: MysqlServer | undefined;
  private readonly admin = new ConnectionCache<Connection>(
    async () => {
      const connection = await this.openSession(this.requireAdmin('apply'));
      connection.once('end', () => void this.admin.discard(connection));
      connection.once('error', () => void this.admin.discard(connection));
      return connection;
    },
    (connection) => connection.end(),
  );

  protected classify(err: unknown, operation: ApplierOperation): Classification | undefined {
    const code = driverCodeOf(err) ?? '';
    if (code === 'ER_ACCESS_DENIED_ERROR' || code === 'ER_ACCESS_DENIED_NO_PASSWORD_ERROR') {
      return { code: 'ERR_APPLIER_AUTH_FAILED', reason: `the ${this.selfMode ? 'current password' : 'admin login'} was refused` };
    }
    const known = CLASSIFICATION[code];
    if (known !== undefined) return { ...known, reason: `${known.reason} (${code}, during ${operation})` };
    return classifyCommon(err);
  }

  protected async doPreflight(req: PreflightRequest, report: PreflightReport): Promise<void> {
    await this.withSession(req.user, req.currentPassword, async (connection) => {
      const server = await this.describe(connection);
      report.server = { flavour: server.flavour, version: server.version };
      report.strategies = server.dual ? ['replace', 'dual'] : ['replace'];
      const account = await this.preflightAccount(connection, req, report);
      const grants = (await this.rows(connection, 'SHOW GRANTS')).map((row) => String(Object.values(row)[0] ?? ''));
      const need = this.selfMode ? (req.strategy === 'dual' ? 'dual-self' : 'none') : 'alter-others';
      if (!grantsAllowPasswordChange(grants, need)) {
        report.problem('ERR_APPLIER_PRIVILEGE', this.selfMode
          ? 'keeping the old password of one\'s own account needs APPLICATION_PASSWORD_ADMIN'
          : `the admin login may not change other accounts' passwords (needs CREATE USER, or UPDATE on mysql.*)`);
      }
      if (req.strategy === 'dual' && !server.dual) {
        report.problem('ERR_APPLIER_UNSUPPORTED', server.flavour === 'mariadb'
          ? `MariaDB ${server.version} keeps one password per account (no RETAIN CURRENT PASSWORD): dual is not possible; use replace or alternate`
          : `MySQL ${server.version} predates RETAIN CURRENT PASSWORD (8.0.14): dual is not possible`);
      }
      if (account !== undefined && await this.isLocked(connection, server, req.user, account)) {
        report.problem('ERR_APPLIER_LOGIN_DISABLED', `account ${req.user}@${account} is locked: no password can be verified`);
      }
    });
  }

  /** The account's host part, or undefined after reporting why it is not known. */
  private async preflightAccount(connection: Connection, req: PreflightRequest, report: PreflightReport): Promise<string | undefined> {
    if (this.selfMode) {
      const [row] = await this.rows(connection, 'SELECT CURRENT_USER() AS me');
      return String(row?.['me'] ?? '').split('@').pop();
    }
    try {
      return await this.accountHost(connection, req.user);
    } catch (err) {
      const safe = this.sanitise(err, 'preflight');
      report.problem(safe.code, safe.message);
      return undefined;
    }
  }

  /** Admin mode only (a logged-in self cannot be locked). Needs SELECT on the grant tables. */
  private async isLocked(connection: Connection, server: MysqlServer, user: string, host: string): Promise<boolean> {
    if (this.selfMode) return false;
    const [row] = server.flavour === 'mariadb'
      ? await this.rows(connection, `SELECT COALESCE(JSON_VALUE(Priv, '$.account_locked') IN ('1', 'true'), 0) AS locked FROM mysql.global_priv WHERE User = ? AND Host = ?`, [user, host])
      : await this.rows(connection, `SELECT account_locked = 'Y' AS locked FROM mysql.user WHERE User = ? AND Host = ?`, [user, host]);
    return Number(row?.['locked'] ?? 0) === 1;
  }

  protected async doApply(req: ApplyRequest): Promise<ApplyResponse> {
    const dual = req.strategy === 'dual';
    const result: ApplyResponse = { strategy: req.strategy, oldPasswordRetained: dual, unchanged: false, persisted: true };
    return this.withSelfFallback(req, result, async (connection) => {
      const server = await this.describe(connection);
      if (dual && !server.dual) throw this.fail('ERR_APPLIER_UNSUPPORTED', 'apply', `${server.flavour} ${server.version} cannot keep the old password (dual)`);
      // a second RETAIN with the same password would push the real old password out
      if (dual && (await this.doVerify({ user: req.user, password: req.newPassword })).outcome === 'ok') return { ...result, unchanged: true };
      const sql = await this.alterStatement(connection, server, req);
      try {
        await connection.query({ sql, timeout: this.options.statementTimeoutMs });
      } catch (err) {
        const historyRefusal = driverCodeOf(err) === 'ER_CREDENTIALS_CONTRADICT_TO_HISTORY';
        if (historyRefusal && (await this.doVerify({ user: req.user, password: req.newPassword })).outcome === 'ok') return { ...result, unchanged: true };
        throw err;
      }
      return result;
    });
  }

  /** The password-changing statement; the password is escaped by mysql2, never bound into a log-visible prepare. */
  private async alterStatement(connection: Connection, server: MysqlServer, req: ApplyRequest): Promise<string> {
    const password = connection.escape(req.newPassword);
    const retain = req.strategy === 'dual' ? ' RETAIN CURRENT PASSWORD' : '';
    if (!this.selfMode) {
      const host = await this.accountHost(connection, req.user);
      return `ALTER USER ${connection.escape(req.user)}@${connection.escape(host)} IDENTIFIED BY ${password}${retain}`;
    }
    // MariaDB reserves ALTER USER for CREATE USER holders, even for one's own account
    if (server.flavour === 'mariadb') return `SET PASSWORD = PASSWORD(${password})`;
    const replace = server.replaceClause ? ` REPLACE ${connection.escape(req.currentPassword ?? '')}` : '';
    return `ALTER USER USER() IDENTIFIED BY ${password}${replace}${retain}`;
  }

  protected async doVerify(req: VerifyRequest): Promise<VerifyResponse> {
    let connection: Connection;
    try {
      connection = await this.openConnection(this.selfLogin(req.user, req.password));
    } catch (err) {
      if (LOGIN_REFUSED.has(driverCodeOf(err) ?? '')) return { outcome: 'refused' };
      throw err;
    }
    try {
      await connection.query({ sql: 'SELECT 1', timeout: this.options.statementTimeoutMs });
      return { outcome: 'ok' };
    } catch (err) {
      if (LOGIN_REFUSED.has(driverCodeOf(err) ?? '')) return { outcome: 'refused' };
      throw err;
    } finally {
      connection.destroy();
    }
  }

  protected async doRevoke(req: RevokeRequest): Promise<RevokeResponse> {
    const server = await this.withSession(req.user, req.currentPassword, (connection) => this.describe(connection));
    if (!server.dual) return this.revokeSinglePassword(req, `${server.flavour} ${server.version} keeps one password per account`);
    if ((await this.doVerify({ user: req.user, password: req.password })).outcome === 'refused') return { outcome: 'absent' };
    await this.withSession(req.user, req.currentPassword, async (connection) => {
      const account = this.selfMode ? 'USER()' : `${connection.escape(req.user)}@${connection.escape(await this.accountHost(connection, req.user))}`;
      await connection.query({ sql: `ALTER USER ${account} DISCARD OLD PASSWORD`, timeout: this.options.statementTimeoutMs });
    });
    // DISCARD drops the secondary password whichever it is: if this one still logs in, it was the primary
    if ((await this.doVerify({ user: req.user, password: req.password })).outcome === 'ok') {
      throw this.fail('ERR_APPLIER_REVOKE_CURRENT', 'revoke', 'the password is the account\'s current (primary) password; only the retained old one was discarded');
    }
    return { outcome: 'removed' };
  }

  /** KILL CONNECTION for each of the user's threads visible to the login (PROCESS privilege shows other users'). */
  protected async doTerminateSessions(req: TerminateSessionsRequest): Promise<TerminateSessionsResponse> {
    return this.withSession(req.user, req.currentPassword, async (connection) => {
      const threads = await this.rows(connection, 'SELECT ID AS id FROM information_schema.PROCESSLIST WHERE USER = ? AND ID <> CONNECTION_ID()', [req.user]);
      let terminated = 0;
      for (const thread of threads) {
        try {
          await connection.query({ sql: `KILL CONNECTION ${Number(thread['id'])}`, timeout: this.options.statementTimeoutMs });
          terminated++;
        } catch (err) {
          if (driverCodeOf(err) !== 'ER_NO_SUCH_THREAD') throw err; // ended on its own meanwhile
        }
      }
      return { terminated };
    });
  }

  protected doClose(): Promise<void> {
    return this.admin.close();
  }

  private async describe(connection: Connection): Promise<MysqlServer> {
    if (this.serverInfo === undefined) {
      const [row] = await this.rows(connection, 'SELECT VERSION() AS version');
      this.serverInfo = describeMysqlServer(String(row?.['version'] ?? ''));
    }
    return this.serverInfo;
  }

  /** The host part of `user`'s account: configured, or the single one in mysql.user. */
  private async accountHost(connection: Connection, user: string): Promise<string> {
    if (this.target.mysqlAccountHost !== undefined) return this.target.mysqlAccountHost;
    const rows = await this.rows(connection, `SELECT Host AS host FROM mysql.user WHERE User = ? AND Host <> ''`, [user]);
    const [first, second] = rows;
    if (first === undefined) throw this.fail('ERR_APPLIER_UNKNOWN_USER', 'apply', `no account named "${user}" exists`);
    if (second !== undefined) {
      throw this.fail('ERR_APPLIER_AMBIGUOUS_USER', 'apply', `"${user}" exists for ${rows.length} hosts; set the target's mysqlAccountHost`);
    }
    return String(first['host']);
  }

  private async rows(connection: Connection, sql: string, values: unknown[] = []): Promise<RowDataPacket[]> {
    const [rows] = await connection.query<RowDataPacket[]>({ sql, timeout: this.options.statementTimeoutMs }, values);
    return rows;
  }

  /**
   * Runs `fn` with privilege to change the password. Self mode: when the current
   * password is refused but the new one logs in, the change was already made.
   */
  private async withSelfFallback(req: ApplyRequest, unchanged: ApplyResponse, fn: (connection: Connection) => Promise<ApplyResponse>): Promise<ApplyResponse> {
    try {
      return await this.withSession(req.user, req.currentPassword, fn);
    } catch (err) {
      if (this.selfMode && LOGIN_REFUSED.has(driverCodeOf(err) ?? '')
        && (await this.doVerify({ user: req.user, password: req.newPassword })).outcome === 'ok') {
        return { ...unchanged, unchanged: true };
      }
      throw err;
    }
  }

  private async withSession<T>(user: string, currentPassword: string | undefined, fn: (connection: Connection) => Promise<T>): Promise<T> {
    if (!this.selfMode) return this.admin.use(fn, (err) => !/^ER_/.test(driverCodeOf(err) ?? ''));
    const connection = await this.openSession(this.selfLogin(user, currentPassword ?? ''));
    try {
      return await fn(connection);
    } finally {
      await connection.end().catch(() => connection.destroy());
    }
  }

  /** A connection fit for statements that carry an escaped password: backslash escapes must be in force. */
  private async openSession(login: Login): Promise<Connection> {
    const connection = await this.openConnection(login);
    try {
      const [row] = await this.rows(connection, 'SELECT @@SESSION.sql_mode AS mode');
      const modes = String(row?.['mode'] ?? '').split(',').filter((m) => m !== '');
      if (modes.includes('NO_BACKSLASH_ESCAPES')) {
        await this.rows(connection, 'SET SESSION sql_mode = ?', [modes.filter((m) => m !== 'NO_BACKSLASH_ESCAPES').join(',')]);
      }
      return connection;
    } catch (err) {
      connection.destroy();
      throw err;
    }
  }

  private async openConnection(login: Login): Promise<Connection> {
    const tls = tlsOptions(this.target);
    const connection = await mysql.createConnection({
      host: login.host,
      port: login.port,
      user: login.user,
      password: login.password,
      ...(login.database === undefined ? {} : { database: login.database }),
      ...(tls === undefined ? {} : { ssl: { rejectUnauthorized: tls.rejectUnauthorized, ...(tls.ca === undefined ? {} : { ca: tls.ca }) } }),
      connectTimeout: this.options.connectTimeoutMs,
      charset: 'utf8mb4_general_ci',
      multipleStatements: false,
      supportBigNumbers: true,
    });
    connection.on('error', () => {
      // a broken idle connection; the next awaited query reports it
    });
    return connection;
  }
}
