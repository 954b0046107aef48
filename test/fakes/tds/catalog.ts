/**
 * The fake server's state: SQL logins, contained database users, their passwords
 * and permissions, the password policy (CHECK_POLICY), and live sessions.
 * Names compare case-insensitively, as under the default CI collation.
 * Passwords are held in memory only and never written anywhere.
 */
import { SqlError } from './sql-error.js';

/** Server permissions the fake models (granted to a login, or implied by sysadmin). */
export type ServerPermission = 'ALTER ANY LOGIN' | 'CONTROL SERVER' | 'ALTER ANY CONNECTION' | 'VIEW SERVER STATE';

export interface LoginOptions {
  sysadmin?: boolean;
  permissions?: readonly ServerPermission[];
  /** CHECK_POLICY (default ON): complexity and length checked when the password changes. */
  checkPolicy?: boolean;
  checkExpiration?: boolean;
  disabled?: boolean;
  /** Locked out by the lockout policy: logins are refused with 18486. */
  locked?: boolean;
}

export interface ContainedUserOptions {
  /** ALTER ANY USER in the user's database. */
  alterAnyUser?: boolean;
  /** Contained users are always checked against the policy on a real server; OFF exists for tests of other rules. */
  checkPolicy?: boolean;
}

export interface Principal {
  name: string;
  password: string;
  checkPolicy: boolean;
}

export interface Login extends Principal {
  sysadmin: boolean;
  permissions: Set<ServerPermission>;
  checkExpiration: boolean;
  disabled: boolean;
  locked: boolean;
}

export interface ContainedUser extends Principal {
  database: string;
  alterAnyUser: boolean;
}

/** Who a session authenticated as. */
export type Identity = { kind: 'login'; login: Login } | { kind: 'user'; user: ContainedUser };

export interface Session {
  spid: number;
  identity: Identity;
  database: string;
  /** Ends the session the way KILL does: the server closes the connection. */
  kill(): void;
}

const key = (name: string) => name.toLowerCase();

export class Catalog {
  readonly logins = new Map<string, Login>();
  /** database (lower-case) → user (lower-case) → user */
  readonly databases = new Map<string, Map<string, ContainedUser>>([['master', new Map()]]);
  readonly sessions = new Map<number, Session>();
  private nextSpid = 51;

  addLogin(name: string, password: string, options: LoginOptions = {}): void {
    this.logins.set(key(name), {
      name,
      password,
      sysadmin: options.sysadmin ?? false,
      permissions: new Set(options.permissions ?? []),
      checkPolicy: options.checkPolicy ?? true,
      checkExpiration: options.checkExpiration ?? false,
      disabled: options.disabled ?? false,
      locked: options.locked ?? false,
    });
  }

  addContainedUser(database: string, name: string, password: string, options: ContainedUserOptions = {}): void {
    const users = this.databases.get(key(database)) ?? new Map<string, ContainedUser>();
    this.databases.set(key(database), users);
    users.set(key(name), { name, password, database, alterAnyUser: options.alterAnyUser ?? false, checkPolicy: options.checkPolicy ?? true });
  }

  login(name: string): Login | undefined {
    return this.logins.get(key(name));
  }

  containedUser(database: string, name: string): ContainedUser | undefined {
    return this.databases.get(key(database))?.get(key(name));
  }

  /**
   * LOGIN7: a contained user of the requested database first, then a server login
   * (SQL Server's order). Returns the identity, or the error tokens to send.
   */
  authenticate(userName: string, password: string, database: string): Identity | SqlError[] {
    const refused = (reason = '') => [new SqlError(18456, `Login failed for user '${userName}'.${reason}`, 14)];
    const dbName = database === '' ? 'master' : database;
    const user = this.containedUser(dbName, userName);
    if (user !== undefined) return user.password === password ? { kind: 'user', user } : refused();
    const login = this.login(userName);
    if (login === undefined || login.password !== password) return refused();
    if (login.disabled) return [new SqlError(18470, `Login failed for user '${userName}'. Reason: The account is disabled.`, 14)];
    if (login.locked) return [new SqlError(18486, `Login failed for user '${userName}' because the account is currently locked out.`, 14)];
    if (!this.databases.has(key(dbName))) {
      return [new SqlError(4060, `Cannot open database "${dbName}" requested by the login. The login failed.`, 11), ...refused()];
    }
    return { kind: 'login', login };
  }

  openSession(identity: Identity, database: string, kill: () => void): Session {
    const session: Session = { spid: this.nextSpid++, identity, database, kill };
    this.sessions.set(session.spid, session);
    return session;
  }

  closeSession(spid: number): void {
    this.sessions.delete(spid);
  }
}

/** Does `login` hold `permission` (sysadmin and CONTROL SERVER imply every server permission)? */
export function hasServerPermission(login: Login | undefined, permission: ServerPermission): boolean {
  if (login === undefined) return false;
  return login.sysadmin || login.permissions.has('CONTROL SERVER') || login.permissions.has(permission);
}

/** The login behind a session, when it authenticated as one. */
export function sessionLogin(session: Session): Login | undefined {
  return session.identity.kind === 'login' ? session.identity.login : undefined;
}

export function principalName(identity: Identity): string {
  return identity.kind === 'login' ? identity.login.name : identity.user.name;
}

/**
 * CHECK_POLICY as the Windows default policy applies it: 8–128 characters,
 * three of four classes, not containing the principal's name.
 */
export function policyError(principal: Principal, password: string): SqlError | undefined {
  const prefix = 'Password validation failed. The password does not meet the operating system policy requirements because it';
  if (password.length > 128) return new SqlError(15117, `${prefix} is too long.`);
  if (!principal.checkPolicy) return undefined;
  if (password.length < 8) return new SqlError(15116, `${prefix} is too short.`);
  const classes = [/[a-z]/, /[A-Z]/, /[0-9]/, /[^a-zA-Z0-9]/].filter((re) => re.test(password)).length;
  if (classes < 3 || password.toLowerCase().includes(principal.name.toLowerCase())) {
    return new SqlError(15118, `${prefix} is not complex enough.`);
  }
  return undefined;
}
