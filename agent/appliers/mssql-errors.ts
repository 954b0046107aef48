/**
 * SQL Server error numbers → applier error codes. Only numbers and codes are
 * read (from {@link MssqlDriverError}); no server message ever is.
 */
import { classifyCommon, type ApplierOperation, type Classification } from './applier-errors.js';
import { MssqlDriverError } from './mssql-session.js';

/** Login failed (18456), disabled (18470), locked out (18486), password expired (18487) or to be changed (18488). */
const LOGIN_REFUSED = new Set([18456, 18470, 18486, 18487, 18488]);
/** The login's password was right but the database cannot be opened (4060), or its default database (4064). */
const DATABASE_REFUSED = new Set([4060, 4064]);

const LOGIN_REASONS: Readonly<Record<number, string>> = {
  18470: 'is disabled',
  18486: 'is locked out by the password policy',
  18487: 'has an expired password',
  18488: 'must change its password first',
};

/** Password policy refusals (CHECK_POLICY): a new password may pass. */
const POLICY_REASONS: Readonly<Record<number, string>> = {
  15114: 'the password was changed too recently (minimum password age)',
  15115: 'the password cannot be used at this time',
  15116: 'the password is too short for the server password policy',
  15117: 'the password is too long for the server password policy',
  15118: 'the password is not complex enough for the server password policy',
  15119: 'the password was refused by the password filter',
};

const REQUEST_CLASSIFICATION: Readonly<Record<number, Classification>> = {
  15151: { code: 'ERR_APPLIER_PRIVILEGE', reason: 'the principal does not exist or the login may not alter it' },
  15247: { code: 'ERR_APPLIER_PRIVILEGE', reason: 'the login lacks the permission for this action' },
  6102: { code: 'ERR_APPLIER_PRIVILEGE', reason: 'the login may not use KILL (needs ALTER ANY CONNECTION)' },
  229: { code: 'ERR_APPLIER_PRIVILEGE', reason: 'permission denied on a catalog object' },
  297: { code: 'ERR_APPLIER_PRIVILEGE', reason: 'the login may not perform this action' },
  300: { code: 'ERR_APPLIER_PRIVILEGE', reason: 'a server permission is missing (e.g. VIEW SERVER STATE)' },
  33233: { code: 'ERR_APPLIER_CONFIG', reason: 'users with passwords exist only in contained databases' },
  4060: { code: 'ERR_APPLIER_CONFIG', reason: 'the database cannot be opened' },
  102: { code: 'ERR_APPLIER_UNSUPPORTED', reason: 'the server did not understand the statement' },
  105: { code: 'ERR_APPLIER_UNSUPPORTED', reason: 'the server did not understand the statement' },
  156: { code: 'ERR_APPLIER_UNSUPPORTED', reason: 'the server did not understand the statement' },
  1205: { code: 'ERR_APPLIER_FAILED', reason: 'chosen as a deadlock victim', retryable: true },
  1222: { code: 'ERR_APPLIER_FAILED', reason: 'a lock request timed out', retryable: true },
};

const CONNECTION_CODES: Readonly<Record<string, Classification>> = {
  ENOTLS: { code: 'ERR_APPLIER_TLS', reason: 'the server does not offer TLS (PRELOGIN: encryption not supported); the login was not sent' },
  ETLSGUARD: { code: 'ERR_APPLIER_TLS', reason: 'this driver build cannot be made to refuse a server without TLS; not connecting' },
  EENCRYPT: { code: 'ERR_APPLIER_TLS', reason: 'the server requires encryption but the target\'s tls.mode is disable' },
  ETIMEOUT: { code: 'ERR_APPLIER_UNREACHABLE', reason: 'the server did not answer in time' },
  ESOCKET: { code: 'ERR_APPLIER_UNREACHABLE', reason: 'the connection failed' },
  ECLOSE: { code: 'ERR_APPLIER_UNREACHABLE', reason: 'the connection closed during the request' },
  EINVALIDSTATE: { code: 'ERR_APPLIER_UNREACHABLE', reason: 'the connection is closed (ended by the server, or its session was killed)' },
};

/** A login refused for its credentials or its state: `verify` reports it as `refused`. */
export function isLoginRefused(err: unknown): boolean {
  if (!(err instanceof MssqlDriverError) || err.phase !== 'login') return false;
  if (err.numbers.some((n) => DATABASE_REFUSED.has(n))) return false;
  return err.code === 'ELOGIN' || err.numbers.some((n) => LOGIN_REFUSED.has(n));
}

/** One of the server's error numbers for this failure. */
export function hasNumber(err: unknown, ...numbers: number[]): boolean {
  return err instanceof MssqlDriverError && err.numbers.some((n) => numbers.includes(n));
}

/** Classifies a driver error; `who` names the login that was refused (admin login or current password). */
export function classifyMssql(err: unknown, operation: ApplierOperation, who: string): Classification | undefined {
  if (!(err instanceof MssqlDriverError)) return classifyCommon(err);
  const during = ` (${err.code}, during ${operation})`;
  if (err.phase === 'login') {
    if (err.numbers.some((n) => DATABASE_REFUSED.has(n))) return { code: 'ERR_APPLIER_CONFIG', reason: `the login was accepted but cannot open the database${during}` };
    if (isLoginRefused(err)) {
      const state = err.numbers.map((n) => LOGIN_REASONS[n]).find((r) => r !== undefined);
      return { code: 'ERR_APPLIER_AUTH_FAILED', reason: `the ${who} was refused${state === undefined ? '' : `: the login ${state}`}${during}` };
    }
  }
  for (const number of err.numbers) {
    const policy = POLICY_REASONS[number];
    if (policy !== undefined) return { code: 'ERR_APPLIER_REJECTED_PASSWORD', reason: `${policy}${during}` };
    const known = REQUEST_CLASSIFICATION[number];
    if (known !== undefined) return { ...known, reason: `${known.reason}${during}` };
  }
  const connection = CONNECTION_CODES[err.code];
  if (connection !== undefined) return { ...connection, reason: `${connection.reason}${during}` };
  return classifyCommon(err);
}
