/**
 * Where a managed database user lives and how the agent gets the right to change
 * its password. The control plane sends a {@link TargetConnection} (no secrets);
 * the admin login, when there is one, comes from the agent's own local config as
 * {@link AdminCredentials} and never leaves the host.
 */
import { applierError, type ApplierError } from './applier-errors.js';

/** Database engines that have an applier. */
export type Engine = 'postgres' | 'mysql' | 'redis' | 'mongodb' | 'mssql';

export const ENGINES: readonly Engine[] = ['postgres', 'mysql', 'redis', 'mongodb', 'mssql'];

/** The port each engine listens on unless told otherwise. */
export const DEFAULT_PORTS: Readonly<Record<Engine, number>> = { postgres: 5432, mysql: 3306, redis: 6379, mongodb: 27017, mssql: 1433 };

/**
 * TLS to the database server.
 * - `disable`: plain TCP (loopback or a private network only).
 * - `require`: encrypted, but the server certificate is not checked (protects
 *   against passive capture only).
 * - `verify-full`: the chain must lead to `caPem` (or the system store) and the
 *   certificate must name `serverName` (default: the target host).
 */
export interface TargetTls {
  mode: 'disable' | 'require' | 'verify-full';
  caPem?: string | undefined;
  serverName?: string | undefined;
}

/**
 * How the agent obtains the privilege to change the password.
 * - `admin`: a login configured on the agent's host (never held by the control
 *   plane); `adminConnection` names it in the agent's local config, and the
 *   agent passes the resolved {@link AdminCredentials} to `createApplier`.
 * - `self`: the user changes its own password, logging in with the current one
 *   (`currentPassword` in each request).
 */
export type PrivilegeSource = { mode: 'admin'; adminConnection: string } | { mode: 'self' };

/**
 * A MongoDB rotation command configured by the agent host's operator (never sent by
 * the control plane): run on `database` (default: the target's auth database), with
 * every string value exactly `"$user"` or `"$password"` replaced by the user name or
 * the new password as a BSON value — never spliced into a string.
 */
export interface MongodbCommandTemplate {
  name: string;
  database: string | undefined;
  command: Record<string, unknown>;
}

/** Redis: which mechanism holds the user's password. */
export type RedisPasswordMode = 'acl' | 'requirepass';

/** One managed database user, as a rotation target describes it. Holds no secret. */
export interface TargetConnection {
  engine: Engine;
  host: string;
  port: number;
  /** PostgreSQL: the database to connect to (default `postgres`). MySQL: optional default schema. Redis: unused. */
  database?: string | undefined;
  /**
   * The managed user. Requests name their user explicitly (normally this one; the
   * `alternate` strategy's partner account lives on the same server).
   */
  user: string;
  tls: TargetTls;
  privilege: PrivilegeSource;
  /** MySQL/MariaDB: the account's host part (`'user'@'host'`). Default: looked up, must be unique. */
  mysqlAccountHost?: string | undefined;
  /** Redis: `acl` (default) for ACL users; `requirepass` for the default user without ACLs. */
  redisPasswordMode?: RedisPasswordMode | undefined;
  /** MongoDB: the database the user is defined in (default `admin`). */
  authDatabase?: string | undefined;
  /** MongoDB: a custom rotation command (from the agent's local config) used instead of `updateUser`. */
  mongodbCommand?: MongodbCommandTemplate | undefined;
  /** SQL Server: a server `login` (default) or a `contained-user` of `database`. */
  mssqlPrincipal?: 'login' | 'contained-user' | undefined;
}

/**
 * The admin login from the agent's local config: a URL
 * (`postgres://u:p@h:5432/db`, `mysql://u:p@h:3306`, `redis://u:p@h:6379`) or
 * fields. Host and port default to the target's. Never logged, never in an error.
 */
export type AdminCredentials =
  | { url: string }
  | { host?: string | undefined; port?: number | undefined; user: string; password: string; database?: string | undefined };

/** A resolved login: everything a driver needs except TLS. Holds a password: never log it. */
export interface Login {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string | undefined;
}

/** Per-applier limits; every operation is bounded by them. */
export interface ApplierOptions {
  /** TCP connect + handshake + authentication. Default 10 s. */
  connectTimeoutMs: number;
  /** One statement or command. Default 15 s. */
  statementTimeoutMs: number;
}

export const DEFAULT_APPLIER_OPTIONS: Readonly<ApplierOptions> = { connectTimeoutMs: 10_000, statementTimeoutMs: 15_000 };

const URL_PROTOCOLS: Readonly<Record<Engine, readonly string[]>> = {
  postgres: ['postgres:', 'postgresql:'],
  mysql: ['mysql:', 'mariadb:'],
  redis: ['redis:', 'rediss:'],
  mongodb: ['mongodb:'],
  mssql: ['mssql:', 'sqlserver:'],
};

/**
 * Checks a target once, before an applier is built. Throws ERR_APPLIER_CONFIG
 * naming the field (values that could be secret are never echoed).
 */
export function checkTarget(target: TargetConnection): void {
  const problem = targetProblem(target);
  if (problem !== undefined) throw configError(target, `target ${problem}`);
}

function targetProblem(target: TargetConnection): string | undefined {
  if (!ENGINES.includes(target.engine)) return 'engine: must be postgres, mysql, redis, mongodb or mssql';
  if (typeof target.host !== 'string' || target.host === '' || /[\s/]/.test(target.host)) return 'host: must be a host name or address';
  if (!Number.isInteger(target.port) || target.port < 1 || target.port > 65535) return 'port: must be 1–65535';
  if (typeof target.user !== 'string' || target.user === '' || target.user.includes('\0')) return 'user: must be a non-empty name';
  if (!['disable', 'require', 'verify-full'].includes(target.tls?.mode)) return 'tls.mode: must be disable, require or verify-full';
  const mode = target.privilege?.mode;
  if (mode !== 'admin' && mode !== 'self') return 'privilege.mode: must be admin or self';
  if (target.redisPasswordMode !== undefined && target.engine !== 'redis') return 'redisPasswordMode: applies to redis only';
  if (target.redisPasswordMode === 'requirepass' && target.user !== 'default') return 'user: requirepass manages the "default" user only';
  if (target.mysqlAccountHost !== undefined && target.engine !== 'mysql') return 'mysqlAccountHost: applies to mysql only';
  if (target.authDatabase !== undefined && target.engine !== 'mongodb') return 'authDatabase: applies to mongodb only';
  if (target.mongodbCommand !== undefined && target.engine !== 'mongodb') return 'mongodbCommand: applies to mongodb only';
  if (target.mssqlPrincipal !== undefined && target.engine !== 'mssql') return 'mssqlPrincipal: applies to mssql only';
  if (target.mssqlPrincipal === 'contained-user' && (target.database === undefined || target.database === '')) return 'database: a contained-user lives in a database; name it';
  return undefined;
}

function configError(target: TargetConnection, reason: string): ApplierError {
  return applierError('ERR_APPLIER_CONFIG', { engine: String(target.engine), operation: 'create' }, reason);
}

/**
 * Turns the agent's admin credentials into a login for `target`. Throws
 * ERR_APPLIER_CONFIG when they are missing for `admin` mode, given for `self`
 * mode, or malformed (the URL itself is never echoed: it holds a password).
 */
export function resolveAdminLogin(target: TargetConnection, admin: AdminCredentials | undefined): Login | undefined {
  if (target.privilege.mode === 'self') {
    if (admin !== undefined) throw configError(target, 'admin credentials given for a self-rotation target (refusing to guess which login to use)');
    return undefined;
  }
  if (admin === undefined) throw configError(target, `admin credentials missing for admin connection "${target.privilege.adminConnection}"`);
  if ('url' in admin) return loginFromUrl(target, admin.url);
  if (typeof admin.user !== 'string' || typeof admin.password !== 'string') {
    throw configError(target, 'admin credentials: user and password must be strings');
  }
  return {
    host: admin.host ?? target.host,
    port: admin.port ?? target.port,
    user: admin.user,
    password: admin.password,
    database: admin.database ?? target.database,
  };
}

function loginFromUrl(target: TargetConnection, raw: string): Login {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    // the URL holds a password: say only that it is malformed
    throw configError(target, 'admin credentials: url is not a valid URL');
  }
  const protocols = URL_PROTOCOLS[target.engine];
  if (!protocols.includes(url.protocol)) throw configError(target, `admin credentials: url must use ${protocols.join(' or ')}`);
  const decode = (part: string): string => {
    try {
      return decodeURIComponent(part);
    } catch {
      throw configError(target, 'admin credentials: url has a malformed %-escape');
    }
  };
  const path = decode(url.pathname.replace(/^\//, ''));
  return {
    host: url.hostname.replace(/^\[|\]$/g, '') || target.host,
    port: url.port === '' ? target.port : Number(url.port),
    user: decode(url.username) || (target.engine === 'redis' ? 'default' : ''),
    password: decode(url.password),
    database: target.engine === 'redis' || path === '' ? target.database : path,
  };
}

/**
 * Node TLS options for a target, or `undefined` for `disable`. Shared by the
 * three drivers, which all hand these to `tls.connect`.
 */
export function tlsOptions(target: TargetConnection): { rejectUnauthorized: boolean; ca?: string; servername?: string } | undefined {
  const { tls } = target;
  if (tls.mode === 'disable') return undefined;
  if (tls.mode === 'require') return { rejectUnauthorized: false };
  return {
    rejectUnauthorized: true,
    ...(tls.caPem === undefined ? {} : { ca: tls.caPem }),
    servername: tls.serverName ?? target.host,
  };
}
