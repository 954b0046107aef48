/**
 * Reads `connectionStatus { showPrivileges: true }` to tell, before changing
 * anything, whether the login may change a user's password. mongod grants
 * `changePassword` on a database (userAdmin, dbOwner, userAdminAnyDatabase,
 * root) for any user there, and `changeOwnPassword` for one's own user only —
 * a privilege no built-in role below userAdmin holds, so self-rotating users
 * need a custom role granting it.
 */
import type { Document } from 'mongodb';

interface Privilege {
  resource: Document;
  actions: string[];
}

/** The privileges in a connectionStatus reply (malformed entries ignored). */
export function privilegesOf(status: Document): Privilege[] {
  const authInfo = status['authInfo'] as Document | undefined;
  const list = authInfo?.['authenticatedUserPrivileges'];
  if (!Array.isArray(list)) return [];
  return list.flatMap((entry: unknown) => {
    if (typeof entry !== 'object' || entry === null) return [];
    const { resource, actions } = entry as Document;
    if (typeof resource !== 'object' || resource === null || !Array.isArray(actions)) return [];
    return [{ resource: resource as Document, actions: actions.filter((a): a is string => typeof a === 'string') }];
  });
}

/** True when `privilege` holds `action` on database `db` as a whole (`{ db, collection: '' }`, any database, or anyResource). */
function onDatabase(privilege: Privilege, db: string, action: string): boolean {
  if (!privilege.actions.includes(action) && !privilege.actions.includes('anyAction')) return false;
  const { resource } = privilege;
  if (resource['anyResource'] === true) return true;
  return resource['collection'] === '' && (resource['db'] === '' || resource['db'] === db);
}

/**
 * True when the login may set a new password for a user of `db`: any user's
 * with `changePassword`, its own (`self`) also with `changeOwnPassword`.
 */
export function mayChangePassword(privileges: Privilege[], db: string, self: boolean): boolean {
  return privileges.some((p) => onDatabase(p, db, 'changePassword') || (self && onDatabase(p, db, 'changeOwnPassword')));
}
