/**
 * MongoDB applier (`mongodb` driver). The user lives in the target's
 * `authDatabase` (default `admin`); its password changes with
 * `updateUser { pwd, mechanisms: ['SCRAM-SHA-256'] }` run in that database,
 * so the server stores a fresh salted SCRAM-SHA-256 credential and drops any
 * SCRAM-SHA-1 one (MD5-based). SCRAM-SHA-256 needs the server to hash the
 * password (`passwordDigestor: server`), so the plaintext crosses the admin
 * connection inside the command: mongod redacts `pwd` from its logs and
 * profiler, and TLS keeps it off the wire.
 *
 * Strategies: `replace` only. A user holds one credential per mechanism, so
 * `dual` is refused at preflight and apply; `alternate` (two users taking
 * turns) is two `replace` rotations and needs nothing here. Passwords that
 * SASLprep refuses (e.g. emoji, unassigned in Unicode 3.2) can never log in
 * through a driver, and mongod refuses to store them: apply rejects them
 * before sending anything.
 *
 * terminateSessions ends the user's logical sessions — their running
 * operations, open cursors and transactions. MongoDB has no command that
 * closes another client's connection: an already authenticated connection
 * stays open (and authenticated) after a password change.
 */
import saslprep from '@mongodb-js/saslprep';
import { Binary, MongoClient, type Document, type MongoClientOptions } from 'mongodb';
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
import type { ApplierOperation, Classification } from './applier-errors.js';
import { ConnectionCache } from './connection-cache.js';
import { breaksClient, classifyMongodbError } from './mongodb-errors.js';
import { mayChangePassword, privilegesOf } from './mongodb-privileges.js';
import { tlsOptions, type Login } from './target.js';

const DUAL_REFUSED = 'MongoDB keeps one password per user (one SCRAM credential per mechanism): dual is not possible; use replace, or alternate with two users';
const EXTERNAL_REFUSED = 'users in $external (x.509, LDAP, Kerberos) have no password to rotate';

/** False for a password SASLprep refuses: no driver can log in with it, and mongod will not store it. */
function preparable(password: string): boolean {
  try {
    saslprep(password);
    return true;
  } catch {
    // saslprep's error names the rule broken, never the input; the answer is just "no"
    return false;
  }
}

/** A session id's bytes as hex ('' when it is not a BSON binary). */
function hex(id: unknown): string {
  return id instanceof Binary ? id.toString('hex') : '';
}

/**
 * How a client authenticates. `verify` insists on SCRAM-SHA-256: it proves the
 * credential apply stored. The acting login (admin, or self before its first
 * rotation) lets the driver negotiate, so a user that still has only SCRAM-SHA-1
 * credentials can act.
 */
type Mechanism = 'SCRAM-SHA-256' | 'negotiate';

export class MongodbApplier extends ApplierBase {
  readonly engine = 'mongodb' as const;
  private readonly admin = new ConnectionCache<MongoClient>(
    () => this.open(this.requireAdmin('apply'), this.adminAuthSource, 'negotiate'),
    (client) => client.close(),
  );

  /** The database the managed users are defined in. */
  private get authDatabase(): string {
    return this.target.authDatabase ?? 'admin';
  }

  /** The admin login's own authentication database: the admin URL's path (or `database` field), else `admin`. */
  private get adminAuthSource(): string {
    return this.adminLogin?.database || 'admin';
  }

  protected classify(err: unknown, operation: ApplierOperation): Classification | undefined {
    return classifyMongodbError(err, operation, this.selfMode);
  }

  protected async doPreflight(req: PreflightRequest, report: PreflightReport): Promise<void> {
    report.strategies = ['replace'];
    if (req.strategy === 'dual') report.problem('ERR_APPLIER_UNSUPPORTED', DUAL_REFUSED);
    if (this.authDatabase === '$external') {
      report.problem('ERR_APPLIER_UNSUPPORTED', EXTERNAL_REFUSED);
      return;
    }
    await this.withSession(req.user, req.currentPassword, async (client) => {
      const admin = client.db('admin');
      const info = await admin.command({ buildInfo: 1 });
      report.server = { flavour: 'mongodb', version: typeof info['version'] === 'string' ? info['version'] : 'unknown' };
      const status = await admin.command({ connectionStatus: 1, showPrivileges: true });
      if (!mayChangePassword(privilegesOf(status), this.authDatabase, this.selfMode)) {
        report.problem('ERR_APPLIER_PRIVILEGE', this.selfMode
          ? `the user may not change its own password: it needs changeOwnPassword (a custom role) or changePassword on "${this.authDatabase}"`
          : `the admin login may not change passwords in "${this.authDatabase}": it needs changePassword there (userAdmin, userAdminAnyDatabase, root)`);
        return;
      }
      // a self login already proved the user exists
      if (!this.selfMode && !(await this.userExists(client, req.user))) {
        report.problem('ERR_APPLIER_UNKNOWN_USER', `user "${req.user}" does not exist in "${this.authDatabase}"`);
      }
    });
  }

  protected async doApply(req: ApplyRequest): Promise<ApplyResponse> {
    if (req.strategy === 'dual') throw this.fail('ERR_APPLIER_UNSUPPORTED', 'apply', DUAL_REFUSED);
    if (this.authDatabase === '$external') throw this.fail('ERR_APPLIER_UNSUPPORTED', 'apply', EXTERNAL_REFUSED);
    if (!preparable(req.newPassword)) {
      throw this.fail('ERR_APPLIER_REJECTED_PASSWORD', 'apply', 'the new password has characters SASLprep refuses (prohibited, or unassigned in Unicode 3.2 such as emoji): no driver could log in with it');
    }
    const result: ApplyResponse = { strategy: 'replace', oldPasswordRetained: false, unchanged: false, persisted: true };
    try {
      const custom = this.target.mongodbCommand;
      await this.withSession(req.user, req.currentPassword, (client) => (custom === undefined
        ? client.db(this.authDatabase).command({
          updateUser: req.user,
          pwd: req.newPassword,
          mechanisms: ['SCRAM-SHA-256'],
          digestPassword: true,
          writeConcern: { w: 'majority', wtimeout: this.options.statementTimeoutMs },
        })
        : client.db(custom.database ?? this.authDatabase).command(fillTemplate(custom.command, req.user, req.newPassword))));
    } catch (err) {
      // self mode: the current password is refused but the new one logs in, so the change was already made
      if (this.selfMode && this.classify(err, 'apply')?.code === 'ERR_APPLIER_AUTH_FAILED'
        && (await this.doVerify({ user: req.user, password: req.newPassword })).outcome === 'ok') {
        return { ...result, unchanged: true };
      }
      throw err;
    }
    return result;
  }

  protected async doVerify(req: VerifyRequest): Promise<VerifyResponse> {
    if (!preparable(req.password)) return { outcome: 'refused' };
    let client: MongoClient;
    try {
      client = await this.open(this.selfLogin(req.user, req.password), this.authDatabase, 'SCRAM-SHA-256');
    } catch (err) {
      if (this.classify(err, 'verify')?.code === 'ERR_APPLIER_AUTH_FAILED') return { outcome: 'refused' };
      throw err;
    }
    try {
      await client.db(this.authDatabase).command({ ping: 1 });
      return { outcome: 'ok' };
    } finally {
      await client.close().catch(() => undefined);
    }
  }

  protected doRevoke(req: RevokeRequest): Promise<RevokeResponse> {
    return this.revokeSinglePassword(req, 'MongoDB keeps one password per user');
  }

  /**
   * Counts the user's sessions in the server's session cache (`$listLocalSessions`;
   * another user's need listSessions), then ends them: admin mode with
   * `killAllSessions` for the user (needs killAnySession; also reaches sessions
   * idle past the cache), self mode with `killSessions` by id (one's own need no
   * privilege). The applier's own session is neither counted nor ended.
   */
  protected async doTerminateSessions(req: TerminateSessionsRequest): Promise<TerminateSessionsResponse> {
    const owner = { user: req.user, db: this.authDatabase };
    const loginIsOwner = this.selfMode || (this.adminLogin?.user === req.user && this.adminAuthSource === this.authDatabase);
    return this.withSession(req.user, req.currentPassword, async (client) => {
      const session = client.startSession();
      try {
        const admin = client.db('admin');
        const mine = hex(session.id?.id);
        const listed = await admin.aggregate([{ $listLocalSessions: loginIsOwner ? {} : { users: [owner] } }], { session }).toArray();
        const others = listed.map((doc) => (doc['_id'] as Document | undefined)?.['id']).filter((id) => hex(id) !== '' && hex(id) !== mine);
        if (!loginIsOwner) await admin.command({ killAllSessions: [owner] }, { session });
        else if (others.length > 0) await admin.command({ killSessions: others.map((id) => ({ id })) }, { session });
        return { terminated: others.length };
      } finally {
        await session.endSession().catch(() => undefined);
      }
    });
  }

  protected doClose(): Promise<void> {
    return this.admin.close();
  }

  private async userExists(client: MongoClient, user: string): Promise<boolean> {
    const reply = await client.db(this.authDatabase).command({ usersInfo: { user, db: this.authDatabase } });
    return Array.isArray(reply['users']) && reply['users'].length > 0;
  }

  /** Runs `fn` with a client that may change `user`'s password: the cached admin one, or a fresh self login. */
  private async withSession<T>(user: string, currentPassword: string | undefined, fn: (client: MongoClient) => Promise<T>): Promise<T> {
    if (!this.selfMode) return this.admin.use(fn, breaksClient);
    const client = await this.open(this.selfLogin(user, currentPassword ?? ''), this.authDatabase, 'negotiate');
    try {
      return await fn(client);
    } finally {
      await client.close().catch(() => undefined);
    }
  }

  /** A connected client for one login; authentication happens inside connect(). */
  private async open(login: Login, authSource: string, mechanism: Mechanism): Promise<MongoClient> {
    const host = login.host.includes(':') ? `[${login.host}]` : login.host;
    const client = new MongoClient(`mongodb://${host}:${login.port}/`, this.clientOptions(login, authSource, mechanism));
    try {
      await client.connect();
      return client;
    } catch (err) {
      await client.close().catch(() => undefined);
      throw err;
    }
  }

  /** Credentials as options, never in the URL (no escaping, nothing for a parser error to echo). */
  private clientOptions(login: Login, authSource: string, mechanism: Mechanism): MongoClientOptions {
    const tls = tlsOptions(this.target);
    return {
      auth: { username: login.user, password: login.password },
      authSource,
      ...(mechanism === 'negotiate' ? {} : { authMechanism: mechanism }),
      directConnection: true,
      appName: 'sikkerkey-agent',
      connectTimeoutMS: this.options.connectTimeoutMs,
      serverSelectionTimeoutMS: this.options.connectTimeoutMs,
      socketTimeoutMS: this.options.statementTimeoutMs,
      waitQueueTimeoutMS: this.options.statementTimeoutMs,
      maxPoolSize: 2,
      serverMonitoringMode: 'poll',
      retryReads: false,
      retryWrites: false,
      monitorCommands: false,
      // the driver's own logger would otherwise obey MONGODB_LOG_* in the agent's environment, and a
      // failed command's log carries the server's errmsg, which can quote the password
      mongodbLogComponentSeverities: { default: 'off', command: 'off', topology: 'off', serverSelection: 'off', connection: 'off', client: 'off' },
      ...(tls === undefined
        ? { tls: false }
        : {
            tls: true,
            tlsAllowInvalidCertificates: !tls.rejectUnauthorized,
            tlsAllowInvalidHostnames: !tls.rejectUnauthorized,
            ...(tls.ca === undefined ? {} : { ca: tls.ca }),
            ...(tls.servername === undefined ? {} : { servername: tls.servername }),
          }),
    };
  }
}

/**
 * A custom rotation command with its `"$user"` and `"$password"` values bound: whole
 * values only, copied into a new document (the template is never changed, and the
 * password is never spliced into a string).
 */
export function fillTemplate(template: Record<string, unknown>, user: string, password: string): Record<string, unknown> {
  const fill = (value: unknown): unknown => {
    if (value === '$user') return user;
    if (value === '$password') return password;
    if (Array.isArray(value)) return value.map(fill);
    if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fill(v)]));
    return value;
  };
  return fill(template) as Record<string, unknown>;
}
