/**
 * The fake server's users and custom roles, in memory. A user is identified by
 * name and database (`app@admin` and `app@shop` are different users), holds a
 * SCRAM-SHA-256 credential (never the password) and a list of roles.
 */
import { createHash, randomUUID } from 'node:crypto';
import { UUID } from 'bson';
import { CommandError } from './errors.js';
import { builtinPrivileges, grants, type Privilege, type RoleName, type Target } from './roles.js';
import { makeCredential, type ScramCredential } from './scram.js';

export interface UserName {
  user: string;
  db: string;
}

export interface UserRecord extends UserName {
  userId: UUID;
  roles: RoleName[];
  credential: ScramCredential;
  mechanisms: string[];
}

interface CustomRole extends RoleName {
  privileges: Privilege[];
  roles: RoleName[];
}

const key = (db: string, name: string): string => `${db}\u0000${name}`;

export const sameUser = (a: UserName, b: UserName): boolean => a.user === b.user && a.db === b.db;

/** The `uid` of a user's logical sessions: SHA-256 of `user@db`, as mongod computes it. */
export function userDigest(name: UserName): Buffer {
  return createHash('sha256').update(`${name.user}@${name.db}`).digest();
}

export class UserStore {
  private readonly users = new Map<string, UserRecord>();
  private readonly roles = new Map<string, CustomRole>();

  constructor(private readonly iterations: number) {}

  find(name: UserName): UserRecord | undefined {
    return this.users.get(key(name.db, name.user));
  }

  /** Every user of `db`. */
  inDatabase(db: string): UserRecord[] {
    return [...this.users.values()].filter((u) => u.db === db);
  }

  /** Throws Location51003 for a duplicate, RoleNotFound for an unknown role, Location50693 for a password SASLprep refuses. */
  create(name: UserName, password: string, roles: RoleName[]): UserRecord {
    if (this.find(name) !== undefined) throw new CommandError('Location51003', `User "${name.user}@${name.db}" already exists`);
    for (const role of roles) this.checkRole(role);
    const record: UserRecord = { ...name, userId: new UUID(randomUUID()), roles, credential: makeCredential(password, this.iterations), mechanisms: ['SCRAM-SHA-256'] };
    this.users.set(key(name.db, name.user), record);
    return record;
  }

  /** Replaces the credential. Throws UserNotFound, Location50693. */
  setPassword(name: UserName, password: string): void {
    const record = this.require(name);
    record.credential = makeCredential(password, this.iterations);
    record.mechanisms = ['SCRAM-SHA-256'];
  }

  /** Throws UserNotFound. */
  drop(name: UserName): void {
    this.require(name);
    this.users.delete(key(name.db, name.user));
  }

  require(name: UserName): UserRecord {
    const record = this.find(name);
    if (record === undefined) throw new CommandError('UserNotFound', `Could not find user "${name.user}" for db "${name.db}"`);
    return record;
  }

  createRole(role: CustomRole): void {
    if (builtinPrivileges(role) !== undefined || this.roles.has(key(role.db, role.role))) {
      throw new CommandError('Location51002', `Role "${role.role}@${role.db}" already exists`);
    }
    for (const inherited of role.roles) this.checkRole(inherited);
    this.roles.set(key(role.db, role.role), role);
  }

  dropRole(role: RoleName): void {
    if (!this.roles.delete(key(role.db, role.role))) throw new CommandError('RoleNotFound', `Could not find role: ${role.role}@${role.db}`);
    for (const user of this.users.values()) user.roles = user.roles.filter((r) => r.role !== role.role || r.db !== role.db);
  }

  /** Every privilege `name` holds through its roles (custom roles resolved recursively). */
  privileges(name: UserName): Privilege[] {
    const out: Privilege[] = [];
    const seen = new Set<string>();
    const visit = (role: RoleName): void => {
      if (seen.has(key(role.db, role.role))) return;
      seen.add(key(role.db, role.role));
      const builtin = builtinPrivileges(role);
      if (builtin !== undefined) {
        out.push(...builtin);
        return;
      }
      const custom = this.roles.get(key(role.db, role.role));
      if (custom === undefined) return;
      out.push(...custom.privileges);
      custom.roles.forEach(visit);
    };
    this.find(name)?.roles.forEach(visit);
    return out;
  }

  isAuthorized(name: UserName | undefined, target: Target, action: string): boolean {
    return name !== undefined && this.privileges(name).some((p) => grants(p, target, action));
  }

  private checkRole(role: RoleName): void {
    if (builtinPrivileges(role) === undefined && !this.roles.has(key(role.db, role.role))) {
      throw new CommandError('RoleNotFound', `Could not find role: ${role.role}@${role.db}`);
    }
  }
}
