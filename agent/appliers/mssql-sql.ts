/**
 * The T-SQL the SQL Server applier sends, in one place (pure: no driver).
 *
 * Lookups bind the principal name as a parameter (sp_executesql). `ALTER LOGIN` /
 * `ALTER USER … WITH PASSWORD` take no variable for the password, so it is an
 * escaped `N'…'` literal in a statement sent alone as a plain SQL batch: SQL
 * Server recognises a batch holding password DDL and replaces its text in
 * SQL Trace / Profiler and Extended Events with `--*ALTER LOGIN----…`. Wrapping
 * it in dynamic SQL (sp_executesql with the password as a parameter) would be
 * worse: the RPC event then shows the parameter values, and the engine cannot
 * tell that the dynamic statement inside is sensitive. See docs/appliers.md.
 */

/** sysname: the longest principal name. */
export const MAX_NAME_LENGTH = 128;
/** SQL Server refuses longer passwords (in UTF-16 code units). */
export const MAX_PASSWORD_LENGTH = 128;

/** QUOTENAME for a sysname: `[name]` with every `]` doubled. */
export function quoteName(name: string): string {
  return `[${name.replace(/\]/g, ']]')}]`;
}

/** A Unicode string literal: `N'…'` with every `'` doubled (T-SQL has no other escape). */
export function quoteNString(value: string): string {
  return `N'${value.replace(/'/g, "''")}'`;
}

/** Why SQL Server could not take `name` as a principal name, if it cannot. */
export function nameProblem(name: string): string | undefined {
  if (name.length > MAX_NAME_LENGTH) return `user is longer than ${MAX_NAME_LENGTH} characters (sysname)`;
  return undefined;
}

/**
 * Why `password` cannot be set through a T-SQL literal, if it cannot. Inside a
 * string literal a backslash followed by a line break is a line continuation:
 * T-SQL drops both, so the login would get a different password than the vault.
 */
export function passwordProblem(password: string): string | undefined {
  if (password.length > MAX_PASSWORD_LENGTH) return `the new password is longer than ${MAX_PASSWORD_LENGTH} characters (SQL Server's limit)`;
  if (/\\\r?\n/.test(password)) return 'the new password has a backslash before a line break, which T-SQL treats as a line continuation';
  return undefined;
}

export type MssqlPrincipal = 'login' | 'contained-user';

/**
 * `ALTER LOGIN [name] WITH PASSWORD = N'…'` (a contained user: `ALTER USER`).
 * With `oldPassword` (self-rotation): `… OLD_PASSWORD = N'…'`, which SQL Server
 * requires when a principal without ALTER ANY LOGIN / ALTER ANY USER changes its
 * own password.
 */
export function alterPasswordStatement(principal: MssqlPrincipal, name: string, password: string, oldPassword?: string): string {
  const kind = principal === 'login' ? 'LOGIN' : 'USER';
  const old = oldPassword === undefined ? '' : ` OLD_PASSWORD = ${quoteNString(oldPassword)}`;
  return `ALTER ${kind} ${quoteName(name)} WITH PASSWORD = ${quoteNString(password)}${old}`;
}

/** `KILL <spid>`: KILL takes no variable; `spid` is checked to be a session id. */
export function killStatement(spid: number): string {
  if (!Number.isInteger(spid) || spid < 1 || spid > 32767) throw new RangeError('not a session id');
  return `KILL ${spid}`;
}

/** Proves a login: any trivial query. */
export const PROBE_SQL = 'SELECT 1';

/**
 * Facts about the acting login and the target login (@name), in one row whether
 * or not the target exists. Without ALTER ANY LOGIN (or VIEW ANY DEFINITION) a
 * login sees only itself in sys.sql_logins, so a missing row is not proof that
 * the target does not exist.
 */
export const LOGIN_FACTS_SQL = `SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)) AS version,
       CAST(SERVERPROPERTY('EngineEdition') AS int) AS engine_edition,
       SUSER_SNAME() AS me,
       IS_SRVROLEMEMBER('sysadmin') AS me_superuser,
       HAS_PERMS_BY_NAME(NULL, NULL, 'ALTER ANY LOGIN') AS me_alter_any,
       HAS_PERMS_BY_NAME(@name, 'LOGIN', 'CONTROL') AS me_control_principal,
       IS_SRVROLEMEMBER('sysadmin', @name) AS target_superuser,
       l.name AS name,
       CAST(l.is_disabled AS int) AS is_disabled,
       CAST(l.is_policy_checked AS int) AS policy_checked,
       CAST(l.is_expiration_checked AS int) AS expiration_checked,
       CAST(LOGINPROPERTY(l.name, 'IsLocked') AS int) AS is_locked,
       CAST(LOGINPROPERTY(l.name, 'IsExpired') AS int) AS is_expired,
       CAST(LOGINPROPERTY(l.name, 'IsMustChange') AS int) AS must_change
  FROM (SELECT 1 AS one) AS here
  LEFT JOIN sys.sql_logins AS l ON l.name = @name`;

/** The same for a contained user (@name) of the connection's database; authentication_type 2 = password. */
export const USER_FACTS_SQL = `SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)) AS version,
       CAST(SERVERPROPERTY('EngineEdition') AS int) AS engine_edition,
       USER_NAME() AS me,
       HAS_PERMS_BY_NAME(DB_NAME(), 'DATABASE', 'CONTROL') AS me_superuser,
       HAS_PERMS_BY_NAME(DB_NAME(), 'DATABASE', 'ALTER ANY USER') AS me_alter_any,
       HAS_PERMS_BY_NAME(@name, 'USER', 'CONTROL') AS me_control_principal,
       u.name AS name,
       CAST(u.authentication_type AS int) AS authentication_type
  FROM (SELECT 1 AS one) AS here
  LEFT JOIN sys.database_principals AS u ON u.name = @name AND u.type = 'S'`;

/** Seeing other sessions needs VIEW SERVER STATE; ending them, ALTER ANY CONNECTION. */
export const SESSION_RIGHTS_SQL = `SELECT HAS_PERMS_BY_NAME(NULL, NULL, 'VIEW SERVER STATE') AS may_view,
       HAS_PERMS_BY_NAME(NULL, NULL, 'ALTER ANY CONNECTION') AS may_kill`;

/** The user sessions that authenticated as login @name, except this one. */
export const LOGIN_SESSIONS_SQL = `SELECT session_id FROM sys.dm_exec_sessions
 WHERE original_login_name = @name AND is_user_process = 1 AND session_id <> @@SPID`;

/** The same for a contained user: sessions authenticated by this database. */
export const USER_SESSIONS_SQL = `SELECT session_id FROM sys.dm_exec_sessions
 WHERE original_login_name = @name AND authenticating_database_id = DB_ID() AND is_user_process = 1 AND session_id <> @@SPID`;
