/**
 * Runs one parsed statement for a session against the catalog, with SQL
 * Server's permission rules and error numbers:
 * - ALTER LOGIN … WITH PASSWORD: CONTROL SERVER (sysadmin), or ALTER ANY LOGIN
 *   for a login that is not sysadmin; a login may change its own password only
 *   with the right OLD_PASSWORD. Anything else — including a login that does not
 *   exist — is 15151, which does not say which.
 * - ALTER USER … WITH PASSWORD (contained users of the session's database): ALTER
 *   ANY USER there, or CONTROL SERVER; a user changes its own with OLD_PASSWORD.
 * - The password policy (15116/15117/15118) is checked after the permissions.
 * - KILL: ALTER ANY CONNECTION (6102), never one's own session (6104), only a
 *   live session id (6106).
 */
import { hasServerPermission, policyError, sessionLogin, type Catalog, type Principal, type Session } from './catalog.js';
import { QUERY_PARAMETERS, runQuery, type ResultSet } from './queries.js';
import { SqlError } from './sql-error.js';
import type { Statement } from './tsql.js';
import type { Value } from './tokens.js';

export type Outcome = { kind: 'rows'; result: ResultSet } | { kind: 'done' };

const same = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();

export function execute(catalog: Catalog, session: Session, statement: Statement, params: Record<string, Value>): Outcome {
  switch (statement.kind) {
    case 'set-options':
      return { kind: 'done' };
    case 'query': {
      const missing = QUERY_PARAMETERS[statement.id].find((name) => !(name in params));
      if (missing !== undefined) throw new SqlError(137, `Must declare the scalar variable "@${missing}".`, 15);
      return { kind: 'rows', result: runQuery(statement.id, catalog, session, params) };
    }
    case 'kill':
      kill(catalog, session, statement.spid);
      return { kind: 'done' };
    case 'alter-password':
      if (statement.principal === 'login') alterLogin(catalog, session, statement);
      else alterUser(catalog, session, statement);
      return { kind: 'done' };
  }
}

type AlterPassword = Extract<Statement, { kind: 'alter-password' }>;

function alterLogin(catalog: Catalog, session: Session, statement: AlterPassword): void {
  const me = sessionLogin(session);
  const target = catalog.login(statement.name);
  const denied = new SqlError(15151, `Cannot alter the login '${statement.name}', because it does not exist or you do not have permission.`);
  if (target === undefined) throw denied;
  const isSelf = me !== undefined && same(me.name, target.name);
  const privileged = hasServerPermission(me, 'CONTROL SERVER') || (me?.permissions.has('ALTER ANY LOGIN') === true && !target.sysadmin);
  changePassword(target, statement, isSelf, privileged, denied);
}

function alterUser(catalog: Catalog, session: Session, statement: AlterPassword): void {
  const me = session.identity;
  const target = catalog.containedUser(session.database, statement.name);
  const denied = new SqlError(15151, `Cannot alter the user '${statement.name}', because it does not exist or you do not have permission.`);
  if (target === undefined) throw denied;
  const isSelf = me.kind === 'user' && me.user === target;
  const privileged = (me.kind === 'login' && hasServerPermission(me.login, 'CONTROL SERVER')) || (me.kind === 'user' && me.user.alterAnyUser);
  changePassword(target, statement, isSelf, privileged, denied);
}

function changePassword(target: Principal, statement: AlterPassword, isSelf: boolean, privileged: boolean, denied: SqlError): void {
  // an OLD_PASSWORD given for one's own password must be right, privileged or not
  if (isSelf && statement.oldPassword !== undefined && statement.oldPassword !== target.password) throw denied;
  // without privilege, one's own password changes only by proving the current one
  if (!privileged && !(isSelf && statement.oldPassword !== undefined)) throw denied;
  const refused = policyError(target, statement.password);
  if (refused !== undefined) throw refused;
  target.password = statement.password;
}

function kill(catalog: Catalog, session: Session, spid: number): void {
  if (!hasServerPermission(sessionLogin(session), 'ALTER ANY CONNECTION')) {
    throw new SqlError(6102, 'User does not have permission to use the KILL statement.', 14);
  }
  if (spid === session.spid) throw new SqlError(6104, 'Cannot use KILL to kill your own process.');
  const victim = catalog.sessions.get(spid);
  if (victim === undefined) throw new SqlError(6106, `Process ID ${spid} is not an active process ID.`);
  catalog.closeSession(spid);
  victim.kill();
}
