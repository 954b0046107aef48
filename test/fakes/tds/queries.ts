/**
 * The fixed queries the fake answers, by exact text (whitespace and case aside):
 * a query the applier changes without changing the fake fails with 102, so the
 * two are kept in step on purpose. Each answer follows the real catalog views'
 * rules, including metadata visibility (a login without ALTER ANY LOGIN or
 * VIEW SERVER STATE sees only itself).
 */
import { hasServerPermission, principalName, sessionLogin, type Catalog, type Session } from './catalog.js';
import { SERVER_VERSION_TEXT } from './handshake.js';
import type { Column, Value } from './tokens.js';

export const QUERY_TEXTS = {
  probe: 'SELECT 1',
  loginFacts: `SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)) AS version,
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
  LEFT JOIN sys.sql_logins AS l ON l.name = @name`,
  userFacts: `SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)) AS version,
       CAST(SERVERPROPERTY('EngineEdition') AS int) AS engine_edition,
       USER_NAME() AS me,
       HAS_PERMS_BY_NAME(DB_NAME(), 'DATABASE', 'CONTROL') AS me_superuser,
       HAS_PERMS_BY_NAME(DB_NAME(), 'DATABASE', 'ALTER ANY USER') AS me_alter_any,
       HAS_PERMS_BY_NAME(@name, 'USER', 'CONTROL') AS me_control_principal,
       u.name AS name,
       CAST(u.authentication_type AS int) AS authentication_type
  FROM (SELECT 1 AS one) AS here
  LEFT JOIN sys.database_principals AS u ON u.name = @name AND u.type = 'S'`,
  sessionRights: `SELECT HAS_PERMS_BY_NAME(NULL, NULL, 'VIEW SERVER STATE') AS may_view,
       HAS_PERMS_BY_NAME(NULL, NULL, 'ALTER ANY CONNECTION') AS may_kill`,
  loginSessions: `SELECT session_id FROM sys.dm_exec_sessions
 WHERE original_login_name = @name AND is_user_process = 1 AND session_id <> @@SPID`,
  userSessions: `SELECT session_id FROM sys.dm_exec_sessions
 WHERE original_login_name = @name AND authenticating_database_id = DB_ID() AND is_user_process = 1 AND session_id <> @@SPID`,
} as const;

export type QueryId = keyof typeof QUERY_TEXTS;

/** The parameters each query declares (`@name nvarchar(128)` in sp_executesql's @params). */
export const QUERY_PARAMETERS: Readonly<Record<QueryId, readonly string[]>> = {
  probe: [],
  loginFacts: ['name'],
  userFacts: ['name'],
  sessionRights: [],
  loginSessions: ['name'],
  userSessions: ['name'],
};

export interface ResultSet {
  columns: Column[];
  rows: Value[][];
}

const nv = (name: string): Column => ({ name, type: 'nvarchar' });
const int = (name: string): Column => ({ name, type: 'int' });
const bit = (value: boolean): number => (value ? 1 : 0);
const same = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();

export function runQuery(id: QueryId, catalog: Catalog, session: Session, params: Record<string, Value>): ResultSet {
  const name = String(params['name'] ?? '');
  switch (id) {
    case 'probe':
      return { columns: [int('')], rows: [[1]] };
    case 'loginFacts':
      return loginFacts(catalog, session, name);
    case 'userFacts':
      return userFacts(catalog, session, name);
    case 'sessionRights': {
      const me = sessionLogin(session);
      return { columns: [int('may_view'), int('may_kill')], rows: [[bit(hasServerPermission(me, 'VIEW SERVER STATE')), bit(hasServerPermission(me, 'ALTER ANY CONNECTION'))]] };
    }
    case 'loginSessions':
    case 'userSessions':
      return { columns: [int('session_id')], rows: sessionsOf(catalog, session, name, id === 'userSessions').map((s) => [s.spid]) };
  }
}

function loginFacts(catalog: Catalog, session: Session, name: string): ResultSet {
  const me = sessionLogin(session);
  const target = catalog.login(name);
  const visible = target !== undefined && (hasServerPermission(me, 'ALTER ANY LOGIN') || (me !== undefined && same(me.name, target.name)));
  const shown = visible ? target : undefined;
  const columns = [nv('version'), int('engine_edition'), nv('me'), int('me_superuser'), int('me_alter_any'), int('me_control_principal'),
    int('target_superuser'), nv('name'), int('is_disabled'), int('policy_checked'), int('expiration_checked'), int('is_locked'), int('is_expired'), int('must_change')];
  return {
    columns,
    rows: [[
      SERVER_VERSION_TEXT, 3, principalName(session.identity), bit(me?.sysadmin ?? false), bit(hasServerPermission(me, 'ALTER ANY LOGIN')),
      // CONTROL on a login is implied by CONTROL SERVER; the fake grants it no other way
      shown === undefined ? null : bit(hasServerPermission(me, 'CONTROL SERVER')),
      shown === undefined ? null : bit(shown.sysadmin),
      shown?.name ?? null, shown === undefined ? null : bit(shown.disabled), shown === undefined ? null : bit(shown.checkPolicy),
      shown === undefined ? null : bit(shown.checkExpiration), shown === undefined ? null : bit(shown.locked), shown === undefined ? null : 0, shown === undefined ? null : 0,
    ]],
  };
}

function userFacts(catalog: Catalog, session: Session, name: string): ResultSet {
  const me = session.identity;
  const dbOwner = me.kind === 'login' && hasServerPermission(me.login, 'CONTROL SERVER');
  const alterAny = dbOwner || (me.kind === 'user' && me.user.alterAnyUser);
  const target = catalog.containedUser(session.database, name);
  const isSelf = me.kind === 'user' && target !== undefined && same(me.user.name, target.name) && same(me.user.database, target.database);
  const shown = target !== undefined && (alterAny || isSelf) ? target : undefined;
  return {
    columns: [nv('version'), int('engine_edition'), nv('me'), int('me_superuser'), int('me_alter_any'), int('me_control_principal'), nv('name'), int('authentication_type')],
    rows: [[
      SERVER_VERSION_TEXT, 3, dbOwner ? 'dbo' : principalName(me), bit(dbOwner), bit(alterAny),
      shown === undefined ? null : bit(dbOwner), shown?.name ?? null, shown === undefined ? null : 2,
    ]],
  };
}

/** sys.dm_exec_sessions: without VIEW SERVER STATE a login sees only its own session. */
function sessionsOf(catalog: Catalog, session: Session, name: string, containedOnly: boolean): Session[] {
  const seesAll = hasServerPermission(sessionLogin(session), 'VIEW SERVER STATE');
  return [...catalog.sessions.values()].filter((other) =>
    other.spid !== session.spid
    && (seesAll || other.spid === session.spid)
    && same(principalName(other.identity), name)
    && (!containedOnly || (other.identity.kind === 'user' && same(other.identity.user.database, session.database))));
}
