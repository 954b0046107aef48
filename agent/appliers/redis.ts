/**
 * Redis applier (`ioredis`), two modes (target.redisPasswordMode):
 * - `acl` (Redis ≥ 6): an ACL user. Passwords are sent as SHA-256 hashes
 *   (`#<hex>` adds, `!<hex>` removes), so plaintext never crosses the admin
 *   connection or MONITOR. `replace` = `resetpass #new`; `dual` = `#new` while the
 *   old one stays; revoke = `!old`. `dual` is native: a user holds many passwords.
 * - `requirepass`: the `default` user without ACLs (`CONFIG SET requirepass`);
 *   one password, `replace` only.
 * ACL and CONFIG changes live in memory: after each change the applier saves them
 * (`ACL SAVE` with an aclfile, else `CONFIG REWRITE` with a config file) and
 * reports `persisted: false` when neither exists, since a restart would bring the
 * old password back.
 */
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
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
import { classifyCommon, type ApplierOperation, type Classification } from './applier-errors.js';
import { ConnectionCache } from './connection-cache.js';
import { tlsOptions, type Login } from './target.js';

/** What `ACL GETUSER` says about a user (only the parts the applier needs). */
interface AclUser {
  flags: string[];
  /** SHA-256 hex of each password. */
  passwords: string[];
}

const REPLY_CODES: Record<string, Classification> = {
  WRONGPASS: { code: 'ERR_APPLIER_AUTH_FAILED', reason: 'the login was refused (WRONGPASS)' },
  NOAUTH: { code: 'ERR_APPLIER_AUTH_FAILED', reason: 'the server requires a password (NOAUTH)' },
  NOPERM: { code: 'ERR_APPLIER_PRIVILEGE', reason: 'the login lacks a needed ACL permission (NOPERM)' },
  READONLY: { code: 'ERR_APPLIER_CONFIG', reason: 'the server is a read-only replica; point the target at the primary (READONLY)' },
  LOADING: { code: 'ERR_APPLIER_UNREACHABLE', reason: 'the server is loading its dataset (LOADING)' },
  BUSY: { code: 'ERR_APPLIER_UNREACHABLE', reason: 'the server is busy running a script (BUSY)' },
  MASTERDOWN: { code: 'ERR_APPLIER_UNREACHABLE', reason: 'the replica lost its primary (MASTERDOWN)' },
};

export class RedisApplier extends ApplierBase {
  readonly engine = 'redis' as const;
  private readonly admin = new ConnectionCache<Redis>(
    async () => {
      const redis = await this.connect(this.requireAdmin('apply'));
      redis.once('end', () => void this.admin.discard(redis));
      return redis;
    },
    async (redis) => close(redis),
  );

  private get passwordMode(): 'acl' | 'requirepass' {
    return this.target.redisPasswordMode ?? 'acl';
  }

  protected classify(err: unknown, operation: ApplierOperation): Classification | undefined {
    if (!(err instanceof Error) || err.name !== 'ReplyError') return classifyCommon(err);
    // Redis replies quote arguments (a bad ACL rule echoes '<password'): keep only the leading code word
    const prefix = /^([A-Z]{2,20})\b/.exec(err.message)?.[1] ?? 'ERR';
    const known = REPLY_CODES[prefix];
    if (known !== undefined) return { ...known, driverCode: prefix };
    if (prefix === 'ERR' && /^ERR invalid password/.test(err.message)) return { code: 'ERR_APPLIER_AUTH_FAILED', reason: 'the login was refused', driverCode: prefix };
    if (prefix === 'ERR' && /unknown (sub)?command/i.test(err.message)) {
      return { code: 'ERR_APPLIER_UNSUPPORTED', reason: `the server does not know a command the ${operation} needs (Redis < 6 has no ACL)`, driverCode: prefix };
    }
    return { code: 'ERR_APPLIER_FAILED', reason: `the server refused the command (${prefix})`, driverCode: prefix };
  }

  protected async doPreflight(req: PreflightRequest, report: PreflightReport): Promise<void> {
    if (this.passwordMode === 'requirepass' && req.user !== 'default') {
      report.problem('ERR_APPLIER_UNKNOWN_USER', `requirepass mode manages the "default" user only, not "${req.user}"`);
      return;
    }
    await this.withSession(req.user, req.currentPassword, async (redis) => {
      const version = await this.serverVersion(redis);
      report.server = { flavour: 'redis', version: version ?? 'unknown' };
      // without +info the version is unknown: assume a current server, so the permission checks still run
      const major = version === undefined ? 7 : Number(version.split('.')[0]);
      const me = major >= 6 ? String(await redis.call('ACL', 'WHOAMI')) : 'default';
      if (this.passwordMode === 'requirepass') {
        report.strategies = ['replace'];
        if (req.strategy === 'dual') report.problem('ERR_APPLIER_UNSUPPORTED', 'requirepass holds one password: dual is not possible (use an ACL user)');
        if (major >= 7) await this.dryRun(redis, me, ['CONFIG', 'SET', 'requirepass', 'x'], report);
      } else {
        report.strategies = ['replace', 'dual'];
        if (version !== undefined && major < 6) report.problem('ERR_APPLIER_UNSUPPORTED', `Redis ${version} has no ACL users (needs 6.0)`);
        const user = await this.aclUser(redis, req.user);
        if (user === undefined) report.problem('ERR_APPLIER_UNKNOWN_USER', `ACL user "${req.user}" does not exist`);
        else this.checkAclUser(req, user, report);
        if (major >= 7) await this.dryRun(redis, me, ['ACL', 'SETUSER', req.user], report);
      }
      if (!(await this.canPersist(redis))) {
        report.warn('WARN_APPLIER_NOT_PERSISTED', 'the server has no aclfile or config file (or the login may not read them): a changed password is lost on restart, and the old one comes back');
      }
    });
  }

  private checkAclUser(req: PreflightRequest, user: AclUser, report: PreflightReport): void {
    if (user.flags.includes('off')) report.problem('ERR_APPLIER_LOGIN_DISABLED', `ACL user "${req.user}" is off: no password can be verified`);
    if (user.flags.includes('nopass') && req.strategy === 'dual') {
      report.problem('ERR_APPLIER_UNSUPPORTED', `ACL user "${req.user}" has nopass (any password logs in): rotate with replace first`);
    }
  }

  private async dryRun(redis: Redis, me: string, command: string[], report: PreflightReport): Promise<void> {
    const answer = String(await redis.call('ACL', 'DRYRUN', me, ...command));
    if (answer !== 'OK') report.problem('ERR_APPLIER_PRIVILEGE', `the login "${me}" may not run ${command.slice(0, 2).join(' ')}`);
  }

  protected async doApply(req: ApplyRequest): Promise<ApplyResponse> {
    const dual = req.strategy === 'dual';
    const base: ApplyResponse = { strategy: req.strategy, oldPasswordRetained: dual, unchanged: false, persisted: false };
    if (this.passwordMode === 'requirepass') {
      if (req.user !== 'default') throw this.fail('ERR_APPLIER_UNKNOWN_USER', 'apply', 'requirepass mode manages the "default" user only');
      if (dual) throw this.fail('ERR_APPLIER_UNSUPPORTED', 'apply', 'requirepass holds one password: dual is not possible');
    }
    return this.withSelfFallback(req, base, async (redis) => {
      if (this.passwordMode === 'requirepass') {
        await redis.call('CONFIG', 'SET', 'requirepass', req.newPassword);
        return { ...base, persisted: await this.persist(redis, 'config') };
      }
      const user = await this.aclUser(redis, req.user);
      if (user === undefined) throw this.fail('ERR_APPLIER_UNKNOWN_USER', 'apply', `ACL user "${req.user}" does not exist`);
      if (dual && user.flags.includes('nopass')) throw this.fail('ERR_APPLIER_UNSUPPORTED', 'apply', 'the user has nopass: rotate with replace first');
      const hash = sha256(req.newPassword);
      const inPlace = dual ? user.passwords.includes(hash) : user.passwords.length === 1 && user.passwords[0] === hash && !user.flags.includes('nopass');
      if (!inPlace) await redis.call('ACL', 'SETUSER', req.user, ...(dual ? [] : ['resetpass']), `#${hash}`);
      return { ...base, unchanged: inPlace, persisted: await this.persist(redis, 'acl') };
    });
  }

  protected async doVerify(req: VerifyRequest): Promise<VerifyResponse> {
    let redis: Redis;
    try {
      redis = await this.connect(this.selfLogin(req.user, req.password));
    } catch (err) {
      if (this.classify(err, 'verify')?.code === 'ERR_APPLIER_AUTH_FAILED') return { outcome: 'refused' };
      throw err;
    }
    try {
      await redis.call('PING');
      return { outcome: 'ok' };
    } catch (err) {
      // AUTH already succeeded: a user not allowed to PING still proved its password
      if (this.classify(err, 'verify')?.driverCode === 'NOPERM') return { outcome: 'ok' };
      throw err;
    } finally {
      close(redis);
    }
  }

  protected async doRevoke(req: RevokeRequest): Promise<RevokeResponse> {
    if (this.passwordMode === 'requirepass') return this.revokeSinglePassword(req, 'requirepass holds one password');
    return this.withSession(req.user, req.currentPassword, async (redis) => {
      const user = await this.aclUser(redis, req.user);
      const hash = sha256(req.password);
      if (user === undefined || !user.passwords.includes(hash)) return { outcome: 'absent' };
      if (user.passwords.length === 1 && !user.flags.includes('nopass')) {
        throw this.fail('ERR_APPLIER_REVOKE_CURRENT', 'revoke', 'it is the user\'s only password; nothing was changed');
      }
      await redis.call('ACL', 'SETUSER', req.user, `!${hash}`);
      await this.persist(redis, 'acl');
      return { outcome: 'removed' };
    });
  }

  /** `CLIENT KILL USER <user>` (Redis ≥ 6; needs +client|kill); the applier's own connection is skipped. */
  protected async doTerminateSessions(req: TerminateSessionsRequest): Promise<TerminateSessionsResponse> {
    return this.withSession(req.user, req.currentPassword, async (redis) => {
      const killed = await redis.call('CLIENT', 'KILL', 'USER', req.user, 'SKIPME', 'yes');
      return { terminated: Number(killed) };
    });
  }

  protected doClose(): Promise<void> {
    return this.admin.close();
  }

  /** `ACL GETUSER`, or undefined for an unknown user. */
  private async aclUser(redis: Redis, name: string): Promise<AclUser | undefined> {
    const reply = await redis.call('ACL', 'GETUSER', name);
    if (!Array.isArray(reply)) return undefined;
    const fields = new Map<string, unknown>();
    for (let i = 0; i + 1 < reply.length; i += 2) fields.set(String(reply[i]), reply[i + 1]);
    const list = (key: string) => (Array.isArray(fields.get(key)) ? (fields.get(key) as unknown[]).map(String) : []);
    return { flags: list('flags'), passwords: list('passwords') };
  }

  private async serverVersion(redis: Redis): Promise<string | undefined> {
    try {
      return /redis_version:([^\r\n]+)/.exec(String(await redis.call('INFO', 'server')))?.[1];
    } catch {
      // a login without +info: the version stays unknown and the ACL checks below still run
      return undefined;
    }
  }

  private async canPersist(redis: Redis): Promise<boolean> {
    try {
      const [, aclfile] = (await redis.call('CONFIG', 'GET', 'aclfile')) as string[];
      const info = String(await redis.call('INFO', 'server'));
      return (this.passwordMode === 'acl' && aclfile !== undefined && aclfile !== '') || /config_file:[^\r\n\s]/.test(info);
    } catch {
      // without +config|get or +info the answer is "cannot tell", which the warning covers
      return false;
    }
  }

  /** Saves an ACL / requirepass change where the server keeps one; false when it cannot. */
  private async persist(redis: Redis, what: 'acl' | 'config'): Promise<boolean> {
    try {
      if (what === 'acl') {
        const [, aclfile] = (await redis.call('CONFIG', 'GET', 'aclfile')) as string[];
        if (aclfile !== undefined && aclfile !== '') {
          await redis.call('ACL', 'SAVE');
          return true;
        }
      }
      if (!/config_file:[^\r\n\s]/.test(String(await redis.call('INFO', 'server')))) return false;
      await redis.call('CONFIG', 'REWRITE');
      return true;
    } catch {
      // the password did change; the caller learns it is not saved from persisted: false
      return false;
    }
  }

  /** Self mode: when the current password is refused but the new one logs in, the change was already made. */
  private async withSelfFallback(req: ApplyRequest, base: ApplyResponse, fn: (redis: Redis) => Promise<ApplyResponse>): Promise<ApplyResponse> {
    try {
      return await this.withSession(req.user, req.currentPassword, fn);
    } catch (err) {
      if (this.selfMode && this.classify(err, 'apply')?.code === 'ERR_APPLIER_AUTH_FAILED'
        && (await this.doVerify({ user: req.user, password: req.newPassword })).outcome === 'ok') {
        return { ...base, unchanged: true };
      }
      throw err;
    }
  }

  private async withSession<T>(user: string, currentPassword: string | undefined, fn: (redis: Redis) => Promise<T>): Promise<T> {
    if (!this.selfMode) return this.admin.use(fn, (err) => !(err instanceof Error && err.name === 'ReplyError'));
    const redis = await this.connect(this.selfLogin(user, currentPassword ?? ''));
    try {
      return await fn(redis);
    } finally {
      close(redis);
    }
  }

  /** A fresh connection, authenticated explicitly so a refusal arrives as a typed reply, not a reconnect loop. */
  private async connect(login: Login): Promise<Redis> {
    const tls = tlsOptions(this.target);
    const redis = new Redis({
      host: login.host,
      port: login.port,
      lazyConnect: true,
      enableReadyCheck: false,
      enableOfflineQueue: false,
      autoResubscribe: false,
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      disableClientInfo: true,
      connectTimeout: this.options.connectTimeoutMs,
      commandTimeout: this.options.statementTimeoutMs,
      ...(tls === undefined ? {} : { tls }),
    });
    redis.on('error', () => {
      // surfaced through the awaited connect() or command instead
    });
    try {
      await redis.connect();
      if (login.password !== '') {
        // AUTH <password> reaches the default user on every version; AUTH <user> <password> needs Redis 6
        await redis.call('AUTH', ...(login.user === 'default' || login.user === '' ? [] : [login.user]), login.password);
      }
      return redis;
    } catch (err) {
      close(redis);
      throw err;
    }
  }
}

/**
 * Disconnects unless the connection already ended: ioredis arms a 2 s "destroy
 * the socket" timer on every disconnect, which never clears for a socket that
 * already closed and would hold the process open.
 */
function close(redis: Redis): void {
  if (redis.status !== 'end') redis.disconnect();
}

function sha256(password: string): string {
  return createHash('sha256').update(password, 'utf8').digest('hex');
}
