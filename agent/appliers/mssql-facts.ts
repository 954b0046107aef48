/**
 * What preflight concludes from the facts row (LOGIN_FACTS_SQL / USER_FACTS_SQL
 * in mssql-sql.ts). Pure functions: tested without a server.
 */
import type { PreflightFinding, PreflightWarningCode } from './applier.js';
import type { ApplierErrorCode } from './applier-errors.js';
import type { Row } from './mssql-session.js';
import type { MssqlPrincipal } from './mssql-sql.js';

/** Facts about the acting principal ("me") and the target, as the server let us see them. */
export interface PrincipalFacts {
  version: string;
  /** SERVERPROPERTY('EngineEdition'): 5 Azure SQL Database, 8 Managed Instance, 9 Edge, else on-premises. */
  engineEdition: number;
  me: string;
  /** sysadmin (logins), CONTROL on the database (contained users). */
  meSuperuser: boolean;
  /** ALTER ANY LOGIN / ALTER ANY USER. */
  meAlterAny: boolean;
  meControlPrincipal: boolean;
  targetSuperuser: boolean;
  /** The target's name, or undefined when it does not exist or is not visible to "me". */
  name: string | undefined;
  disabled: boolean;
  policyChecked: boolean;
  expirationChecked: boolean;
  locked: boolean;
  expired: boolean;
  mustChange: boolean;
  /** Contained users: 2 = DATABASE (a password of its own). */
  authenticationType: number | undefined;
}

export interface Assessment {
  problems: PreflightFinding<ApplierErrorCode>[];
  warnings: PreflightFinding<PreflightWarningCode>[];
}

export interface AssessmentContext {
  principal: MssqlPrincipal;
  user: string;
  selfMode: boolean;
  database: string | undefined;
}

const flag = (value: unknown): boolean => value === 1 || value === true;

export function readFacts(row: Row | undefined): PrincipalFacts {
  const text = (key: string) => (typeof row?.[key] === 'string' ? (row[key] as string) : undefined);
  const type = row?.['authentication_type'];
  return {
    version: text('version') ?? 'unknown',
    engineEdition: Number(row?.['engine_edition'] ?? 0),
    me: text('me') ?? '',
    meSuperuser: flag(row?.['me_superuser']),
    meAlterAny: flag(row?.['me_alter_any']),
    meControlPrincipal: flag(row?.['me_control_principal']),
    targetSuperuser: flag(row?.['target_superuser']),
    name: text('name'),
    disabled: flag(row?.['is_disabled']),
    policyChecked: flag(row?.['policy_checked']),
    expirationChecked: flag(row?.['expiration_checked']),
    locked: flag(row?.['is_locked']),
    expired: flag(row?.['is_expired']),
    mustChange: flag(row?.['must_change']),
    authenticationType: typeof type === 'number' ? type : undefined,
  };
}

export function serverFlavour(engineEdition: number): string {
  switch (engineEdition) {
    case 5:
      return 'azure-sql-database';
    case 8:
      return 'azure-sql-managed-instance';
    case 9:
      return 'azure-sql-edge';
    default:
      return 'sql-server';
  }
}

const same = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();

/**
 * May "me" set the target's password? Self mode: only as the target itself (with
 * OLD_PASSWORD). Admin mode, logins: sysadmin; ALTER ANY LOGIN unless the target
 * is sysadmin (that needs CONTROL SERVER); or CONTROL on the login. Contained
 * users: CONTROL on the database, ALTER ANY USER, or CONTROL on the user.
 */
export function mayChangePassword(facts: PrincipalFacts, context: AssessmentContext): boolean {
  if (context.selfMode) return same(facts.me, context.user);
  if (facts.meSuperuser || facts.meControlPrincipal) return true;
  return facts.meAlterAny && (context.principal === 'contained-user' || !facts.targetSuperuser);
}

/** Whether a missing facts row means "does not exist" rather than "not visible to me". */
function canSeeTarget(facts: PrincipalFacts, context: AssessmentContext): boolean {
  return context.selfMode || facts.meSuperuser || facts.meAlterAny;
}

export function assessPrincipal(facts: PrincipalFacts, context: AssessmentContext): Assessment {
  const result: Assessment = { problems: [], warnings: [] };
  const problem = (code: ApplierErrorCode, message: string) => result.problems.push({ code, message });
  const warn = (code: PreflightWarningCode, message: string) => result.warnings.push({ code, message });
  const user = `"${context.user}"`;
  const contained = context.principal === 'contained-user';
  const what = contained ? `contained user ${user} of database "${context.database ?? ''}"` : `login ${user}`;
  if (facts.name === undefined && canSeeTarget(facts, context)) {
    problem('ERR_APPLIER_UNKNOWN_USER', contained ? `${what} does not exist` : `${what} does not exist or is not a SQL Server authentication login`);
  }
  if (!mayChangePassword(facts, context)) {
    problem('ERR_APPLIER_PRIVILEGE', context.selfMode
      ? `logged in as "${facts.me}", which is not ${user}`
      : contained
        ? `"${facts.me}" may not change the password of ${what} (needs ALTER ANY USER there, or CONTROL on the user)`
        : `login "${facts.me}" may not change the password of ${what} (needs ALTER ANY LOGIN — CONTROL SERVER if the login is sysadmin — or CONTROL on the login)`);
  }
  if (facts.name === undefined) return result;
  if (contained && facts.authenticationType !== 2) {
    problem('ERR_APPLIER_CONFIG', `${what} has no password of its own (authentication type ${facts.authenticationType ?? 'unknown'}); manage its login with mssqlPrincipal "login"`);
  }
  if (facts.disabled) problem('ERR_APPLIER_LOGIN_DISABLED', `${what} is disabled: no password can be verified`);
  if (facts.locked) problem('ERR_APPLIER_LOGIN_DISABLED', `${what} is locked out by the password policy (ALTER LOGIN … UNLOCK): no password can be verified`);
  if (facts.expired) warn('WARN_APPLIER_PASSWORD_EXPIRES', `the password of ${what} has expired; the next rotation sets a new one`);
  if (facts.mustChange) warn('WARN_APPLIER_PASSWORD_POLICY', `${what} is marked MUST_CHANGE; a password set by the applier clears it`);
  if (facts.expirationChecked) {
    warn('WARN_APPLIER_PASSWORD_EXPIRES', `CHECK_EXPIRATION is ON for ${what}: its password expires after the Windows maximum password age; rotate more often than that`);
  }
  if (facts.policyChecked) {
    warn('WARN_APPLIER_PASSWORD_POLICY', `CHECK_POLICY is ON for ${what}: new passwords must meet the Windows policy (8+ characters, 3 of 4 character classes, not containing the name), and failed logins — including the applier's check that an old password is refused — count toward the lockout threshold`);
  }
  return result;
}
