/**
 * Builds the applier for a target. Each engine's module — and with it its
 * driver (pg, mysql2, ioredis) — is imported on first use only, so an agent
 * without targets of an engine never loads that driver (the agent's memory
 * budget depends on it). Import types from './applier.js' and './target.js'.
 */
import type { Applier } from './applier.js';
import { ApplierError, applierError } from './applier-errors.js';
import {
  checkTarget,
  DEFAULT_APPLIER_OPTIONS,
  resolveAdminLogin,
  type AdminCredentials,
  type ApplierOptions,
  type TargetConnection,
} from './target.js';

export type * from './applier.js';
export type { AdminCredentials, ApplierOptions, Engine, TargetConnection, TargetTls, PrivilegeSource } from './target.js';
export { ApplierError, isApplierError, type ApplierErrorCode } from './applier-errors.js';

/**
 * Returns an applier for `target`, with `admin` (from the agent's local config)
 * when `target.privilege.mode` is `admin`. Opens no connection: the first
 * method call does.
 *
 * Failure modes: ERR_APPLIER_CONFIG for an invalid target, admin credentials
 * missing in admin mode or given in self mode, or a malformed admin URL (never
 * echoed); ERR_APPLIER_UNSUPPORTED if the engine's driver cannot be loaded.
 */
export async function createApplier(
  target: TargetConnection,
  admin: AdminCredentials | undefined,
  options: Partial<ApplierOptions> = {},
): Promise<Applier> {
  checkTarget(target);
  const login = resolveAdminLogin(target, admin);
  const compiled: ApplierOptions = { ...DEFAULT_APPLIER_OPTIONS, ...definedOnly(options) };
  for (const [name, value] of Object.entries(compiled)) {
    if (!Number.isInteger(value) || value < 1 || value > 600_000) {
      throw applierError('ERR_APPLIER_CONFIG', { engine: target.engine, operation: 'create' }, `option ${name} must be 1–600000 ms`);
    }
  }
  try {
    switch (target.engine) {
      case 'postgres':
        return new (await import('./postgres.js')).PostgresApplier(target, login, compiled);
      case 'mysql':
        return new (await import('./mysql.js')).MysqlApplier(target, login, compiled);
      case 'redis':
        return new (await import('./redis.js')).RedisApplier(target, login, compiled);
      case 'mssql':
        return new (await import('./mssql.js')).MssqlApplier(target, login, compiled);
      case 'mongodb':
        return new (await import('./mongodb.js')).MongodbApplier(target, login, compiled);
      default:
        throw applierError('ERR_APPLIER_UNSUPPORTED', { engine: target.engine, operation: 'create' }, `this agent has no ${target.engine} applier yet`);
    }
  } catch (err) {
    if (err instanceof ApplierError) throw err;
    // only a missing or broken driver package lands here; its message names a path, not a secret
    throw applierError('ERR_APPLIER_UNSUPPORTED', { engine: target.engine, operation: 'create' },
      `the ${target.engine} driver could not be loaded (${err instanceof Error && 'code' in err ? String(err.code) : 'load error'})`);
  }
}

function definedOnly(options: Partial<ApplierOptions>): Partial<ApplierOptions> {
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
}
