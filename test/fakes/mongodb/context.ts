/**
 * What a command handler of the fake server sees: the command, its database,
 * the connection's state (who is logged in, a SCRAM conversation in progress)
 * and the server's state. Handlers are synchronous, so replies leave in order.
 */
import { Binary, EJSON, type Document } from 'bson';
import { CommandError } from './errors.js';
import type { Target } from './roles.js';
import type { ScramConversation } from './scram.js';
import type { SessionRegistry } from './sessions.js';
import type { UserName, UserStore } from './users.js';

export interface ClientState {
  readonly connectionId: number;
  /** The authenticated user; one per connection, as since MongoDB 6.0. */
  user: UserName | undefined;
  conversation: { scram: ScramConversation; db: string; skipEmptyExchange: boolean; pendingUser?: string } | undefined;
}

export interface ServerState {
  readonly users: UserStore;
  readonly sessions: SessionRegistry;
  /** `db.collection` → documents. */
  readonly collections: Map<string, Document[]>;
  readonly version: string;
}

export interface CommandContext {
  /** The command's name as sent (its first field). */
  readonly name: string;
  readonly db: string;
  readonly body: Document;
  readonly client: ClientState;
  readonly server: ServerState;
  /** The key of the logical session the command runs in, if it named one. */
  readonly sessionKey: string | undefined;
}

export interface CommandSpec {
  run(ctx: CommandContext): Document;
  /** False for the commands mongod runs before authentication (hello, saslStart, ping, buildInfo…). */
  requiresAuth: boolean;
  /** False for commands that must not touch their own lsid (killAllSessions, killSessions, endSessions). */
  attachesSession?: boolean;
}

/**
 * Throws Unauthorized unless the logged-in user may do `action` on `target`.
 * Like older mongod releases, the message quotes the whole command — on
 * purpose without redacting `pwd`, so the tests prove the applier never
 * passes a server's errmsg on.
 */
export function requireAction(ctx: CommandContext, target: Target, action: string): void {
  if (!ctx.server.users.isAuthorized(ctx.client.user, target, action)) throw unauthorized(ctx);
}

export function unauthorized(ctx: CommandContext): CommandError {
  return new CommandError('Unauthorized', `not authorized on ${ctx.db} to execute command ${EJSON.stringify(ctx.body, { relaxed: true })}`);
}

/** The logged-in user; handlers with requiresAuth run only when there is one. */
export function currentUser(ctx: CommandContext): UserName {
  if (ctx.client.user === undefined) throw unauthorized(ctx);
  return ctx.client.user;
}

/** The bytes of a BSON binary field, or undefined. */
export function bytesOf(value: unknown): Buffer | undefined {
  if (value instanceof Binary) return Buffer.from(value.buffer.subarray(0, value.position));
  if (value instanceof Uint8Array) return Buffer.from(value);
  return undefined;
}

/** A string field, or TypeMismatch naming it. */
export function stringField(body: Document, field: string): string {
  const value = body[field];
  if (typeof value !== 'string') throw new CommandError('TypeMismatch', `"${field}" had the wrong type. Expected string`);
  return value;
}

/** `"name"` or `{ user|role, db }` → a name in `defaultDb` unless it says otherwise. */
export function nameOf(value: unknown, field: 'user' | 'role', defaultDb: string): { name: string; db: string } {
  if (typeof value === 'string') return { name: value, db: defaultDb };
  if (typeof value === 'object' && value !== null) {
    const doc = value as Document;
    if (typeof doc[field] === 'string' && typeof doc['db'] === 'string') return { name: doc[field] as string, db: doc['db'] as string };
  }
  throw new CommandError('BadValue', `${field} name must be a string or a { ${field}, db } document`);
}
