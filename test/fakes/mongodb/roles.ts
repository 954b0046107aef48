/**
 * The built-in roles the fake knows, as privileges (resource + actions) the
 * way mongod's role graph defines them — a subset of each role's actions: the
 * ones the applier, the tests and the driver touch. Resources:
 * `{ db, collection: '' }` is one database, `{ db: '', collection: '' }` every
 * database, `{ cluster: true }` the cluster.
 */

export type Resource = { db: string; collection: string } | { cluster: true } | { anyResource: true };

export interface Privilege {
  resource: Resource;
  actions: string[];
}

export interface RoleName {
  role: string;
  db: string;
}

const READ = ['changeStream', 'collStats', 'dbHash', 'dbStats', 'find', 'killCursors', 'listCollections', 'listIndexes'];
const READ_WRITE = [...READ, 'convertToCapped', 'createCollection', 'createIndex', 'dropCollection', 'dropIndex', 'insert', 'remove', 'renameCollectionSameDB', 'update'];
const DB_ADMIN = ['collMod', 'collStats', 'compact', 'createCollection', 'createIndex', 'dbStats', 'dropCollection', 'dropDatabase', 'dropIndex', 'listCollections', 'listIndexes', 'validate'];
const USER_ADMIN = ['changeCustomData', 'changePassword', 'createRole', 'createUser', 'dropRole', 'dropUser', 'grantRole', 'revokeRole', 'setAuthenticationRestriction', 'viewRole', 'viewUser'];
const CLUSTER_MONITOR = ['connPoolStats', 'getCmdLineOpts', 'getLog', 'getParameter', 'hostInfo', 'inprog', 'listDatabases', 'listSessions', 'netstat', 'serverStatus', 'top'];
const HOST_MANAGER = ['dropConnections', 'flushRouterConfig', 'fsync', 'invalidateUserCache', 'killAnyCursor', 'killAnySession', 'killop', 'logRotate', 'setParameter', 'shutdown', 'unlock'];
const CLUSTER_MANAGER = ['listSessions', 'listShards', 'replSetConfigure', 'replSetGetConfig', 'replSetGetStatus', 'replSetStateChange', 'resync'];

const onDb = (db: string, actions: string[]): Privilege => ({ resource: { db, collection: '' }, actions });
const anyDb = (actions: string[]): Privilege => ({ resource: { db: '', collection: '' }, actions });
const cluster = (actions: string[]): Privilege => ({ resource: { cluster: true }, actions });

/** Roles defined in every database. */
const DATABASE_ROLES: Record<string, (db: string) => Privilege[]> = {
  read: (db) => [onDb(db, READ)],
  readWrite: (db) => [onDb(db, READ_WRITE)],
  dbAdmin: (db) => [onDb(db, DB_ADMIN)],
  userAdmin: (db) => [onDb(db, USER_ADMIN)],
  dbOwner: (db) => [onDb(db, [...READ_WRITE, ...DB_ADMIN, ...USER_ADMIN])],
};

/** Roles that exist only in the `admin` database. */
const ADMIN_ROLES: Record<string, () => Privilege[]> = {
  readAnyDatabase: () => [anyDb(READ), cluster(['listDatabases'])],
  readWriteAnyDatabase: () => [anyDb(READ_WRITE), cluster(['listDatabases'])],
  dbAdminAnyDatabase: () => [anyDb(DB_ADMIN), cluster(['listDatabases'])],
  userAdminAnyDatabase: () => [anyDb(USER_ADMIN), cluster(['authSchemaUpgrade', 'invalidateUserCache', 'listDatabases'])],
  clusterMonitor: () => [cluster(CLUSTER_MONITOR)],
  hostManager: () => [cluster(HOST_MANAGER), anyDb(['killCursors'])],
  clusterManager: () => [cluster(CLUSTER_MANAGER)],
  clusterAdmin: () => [cluster([...CLUSTER_MONITOR, ...HOST_MANAGER, ...CLUSTER_MANAGER]), anyDb(['dropDatabase', 'killCursors'])],
  root: () => [
    anyDb([...READ_WRITE, ...DB_ADMIN, ...USER_ADMIN]),
    cluster([...CLUSTER_MONITOR, ...HOST_MANAGER, ...CLUSTER_MANAGER, 'authSchemaUpgrade']),
  ],
};

/** The privileges of built-in role `role` in `db`, or undefined when no such built-in role exists there. */
export function builtinPrivileges(role: RoleName): Privilege[] | undefined {
  const perDb = DATABASE_ROLES[role.role];
  if (perDb !== undefined) return perDb(role.db);
  return role.db === 'admin' ? ADMIN_ROLES[role.role]?.() : undefined;
}

/** What an action is checked against: a database, or the cluster. */
export type Target = { db: string } | 'cluster';

/** True when `privilege` grants `action` on `target` (mongod's resource-pattern matching, simplified). */
export function grants(privilege: Privilege, target: Target, action: string): boolean {
  if (!privilege.actions.includes(action) && !privilege.actions.includes('anyAction')) return false;
  const resource = privilege.resource;
  if ('anyResource' in resource) return true;
  if (target === 'cluster') return 'cluster' in resource;
  if (!('db' in resource) || resource.collection !== '') return false;
  return resource.db === '' || resource.db === target.db;
}
