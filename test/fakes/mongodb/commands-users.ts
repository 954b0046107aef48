/**
 * User management commands of the fake server, with mongod's authorization
 * rules: `updateUser` with `pwd` needs `changePassword` on the user's
 * database, or — for one's own user — `changeOwnPassword` (which no built-in
 * role below userAdmin grants: real deployments give it through a custom
 * role). Authorization is checked before existence, as mongod does, so a
 * login without privilege learns nothing about which users exist.
 */
import type { Document } from 'bson';
import { CommandError } from './errors.js';
import { currentUser, nameOf, requireAction, stringField, unauthorized, type CommandContext, type CommandSpec } from './context.js';
import type { Privilege, RoleName } from './roles.js';
import { sameUser, type UserName, type UserRecord } from './users.js';

/** Fields every command may carry; the fake ignores them. */
const GENERIC = new Set(['$db', 'lsid', 'txnNumber', '$readPreference', '$clusterTime', 'writeConcern', 'comment', 'maxTimeMS', 'apiVersion', 'apiStrict', 'apiDeprecationErrors']);

function rejectUnknownFields(ctx: CommandContext, allowed: string[]): void {
  for (const field of Object.keys(ctx.body)) {
    if (field !== ctx.name && !GENERIC.has(field) && !allowed.includes(field)) {
      throw new CommandError('BadValue', `the fake server does not support "${field}" in ${ctx.name}`);
    }
  }
}

function password(body: Document): string {
  const pwd = body['pwd'];
  if (typeof pwd !== 'string') throw new CommandError('BadValue', 'pwd must be a string');
  if (pwd === '') throw new CommandError('BadValue', 'Password cannot be empty');
  if (body['digestPassword'] === false) throw new CommandError('BadValue', 'Use of SCRAM-SHA-256 requires undigested passwords');
  return pwd;
}

function checkMechanisms(body: Document): void {
  const mechanisms = body['mechanisms'];
  if (mechanisms === undefined) return;
  if (!Array.isArray(mechanisms) || mechanisms.length === 0) throw new CommandError('BadValue', 'mechanisms field must be a non-empty array');
  for (const m of mechanisms) {
    if (m !== 'SCRAM-SHA-256') throw new CommandError('BadValue', `Unknown auth mechanism '${String(m)}' (the fake server has SCRAM-SHA-256 only)`);
  }
}

function roleNames(value: unknown, db: string): RoleName[] {
  if (!Array.isArray(value)) throw new CommandError('BadValue', 'roles must be an array');
  return value.map((r) => {
    const { name, db: roleDb } = nameOf(r, 'role', db);
    return { role: name, db: roleDb };
  });
}

function describe(ctx: CommandContext, user: UserRecord): Document {
  const doc: Document = { _id: `${user.db}.${user.user}`, userId: user.userId, user: user.user, db: user.db, roles: user.roles.map((r) => ({ ...r })), mechanisms: [...user.mechanisms] };
  if (ctx.body['showPrivileges'] === true) doc['inheritedPrivileges'] = ctx.server.users.privileges(user);
  return doc;
}

function usersInfo(ctx: CommandContext): Document {
  const me = currentUser(ctx);
  const spec = ctx.body['usersInfo'];
  if (spec === 1) {
    requireAction(ctx, { db: ctx.db }, 'viewUser');
    return { users: ctx.server.users.inDatabase(ctx.db).map((u) => describe(ctx, u)), ok: 1 };
  }
  const wanted: UserName[] = (Array.isArray(spec) ? spec : [spec]).map((s) => {
    const { name, db } = nameOf(s, 'user', ctx.db);
    return { user: name, db };
  });
  // anyone may look at their own user; others need viewUser on that user's database
  for (const name of wanted) if (!sameUser(name, me)) requireAction(ctx, { db: name.db }, 'viewUser');
  const found = wanted.flatMap((name) => ctx.server.users.find(name) ?? []);
  return { users: found.map((u) => describe(ctx, u)), ok: 1 };
}

function createUser(ctx: CommandContext): Document {
  rejectUnknownFields(ctx, ['pwd', 'roles', 'mechanisms', 'digestPassword', 'customData']);
  const name: UserName = { user: stringField(ctx.body, 'createUser'), db: ctx.db };
  const roles = roleNames(ctx.body['roles'] ?? [], ctx.db);
  requireAction(ctx, { db: ctx.db }, 'createUser');
  for (const role of roles) requireAction(ctx, { db: role.db }, 'grantRole');
  checkMechanisms(ctx.body);
  ctx.server.users.create(name, password(ctx.body), roles);
  return { ok: 1 };
}

function updateUser(ctx: CommandContext): Document {
  rejectUnknownFields(ctx, ['pwd', 'mechanisms', 'digestPassword', 'customData', 'writeConcern']);
  const customData = ctx.body['customData'];
  if (customData !== undefined && (customData === null || typeof customData !== 'object' || Array.isArray(customData))) throw new CommandError('BadValue', 'customData must be an object');
  const me = currentUser(ctx);
  const name: UserName = { user: stringField(ctx.body, 'updateUser'), db: ctx.db };
  if (!('pwd' in ctx.body) && !('mechanisms' in ctx.body)) throw new CommandError('BadValue', 'Must specify at least one field to update in updateUser');
  if ('pwd' in ctx.body) {
    const users = ctx.server.users;
    const allowed = users.isAuthorized(me, { db: ctx.db }, 'changePassword')
      || (sameUser(me, name) && users.isAuthorized(me, { db: ctx.db }, 'changeOwnPassword'));
    if (!allowed) throw unauthorized(ctx);
  }
  checkMechanisms(ctx.body);
  const record = ctx.server.users.require(name);
  if ('pwd' in ctx.body) ctx.server.users.setPassword(record, password(ctx.body));
  return { ok: 1 };
}

function dropUser(ctx: CommandContext): Document {
  requireAction(ctx, { db: ctx.db }, 'dropUser');
  ctx.server.users.drop({ user: stringField(ctx.body, 'dropUser'), db: ctx.db });
  return { ok: 1 };
}

function createRole(ctx: CommandContext): Document {
  rejectUnknownFields(ctx, ['privileges', 'roles']);
  requireAction(ctx, { db: ctx.db }, 'createRole');
  const privileges = ctx.body['privileges'];
  if (!Array.isArray(privileges)) throw new CommandError('BadValue', 'privileges must be an array');
  ctx.server.users.createRole({
    role: stringField(ctx.body, 'createRole'),
    db: ctx.db,
    privileges: privileges as Privilege[],
    roles: roleNames(ctx.body['roles'] ?? [], ctx.db),
  });
  return { ok: 1 };
}

function dropRole(ctx: CommandContext): Document {
  requireAction(ctx, { db: ctx.db }, 'dropRole');
  ctx.server.users.dropRole({ role: stringField(ctx.body, 'dropRole'), db: ctx.db });
  return { ok: 1 };
}

export const USER_COMMANDS: Record<string, CommandSpec> = {
  usersInfo: { run: usersInfo, requiresAuth: true },
  createUser: { run: createUser, requiresAuth: true },
  updateUser: { run: updateUser, requiresAuth: true },
  dropUser: { run: dropUser, requiresAuth: true },
  createRole: { run: createRole, requiresAuth: true },
  dropRole: { run: dropRole, requiresAuth: true },
};
