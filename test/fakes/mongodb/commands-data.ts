/**
 * Just enough data commands for a client to hold an open cursor — the thing a
 * leaked credential's "dump in progress" is, and what killing its sessions
 * must cut off: `insert`, `find` (top-level equality filters only), `getMore`,
 * `killCursors`, `dropDatabase`. Cursors belong to the logged-in user and the
 * logical session that opened them (see sessions.ts).
 */
import { Long, ObjectId, type Document } from 'bson';
import { CommandError } from './errors.js';
import { currentUser, requireAction, stringField, unauthorized, type CommandContext, type CommandSpec } from './context.js';
import { sameUser } from './users.js';

const DEFAULT_BATCH = 101;

function collection(ctx: CommandContext, ns: string): Document[] {
  let docs = ctx.server.collections.get(ns);
  if (docs === undefined) {
    docs = [];
    ctx.server.collections.set(ns, docs);
  }
  return docs;
}

function batchSize(value: unknown): number {
  return typeof value === 'number' && value > 0 ? value : DEFAULT_BATCH;
}

function cursorId(value: unknown): number {
  if (value instanceof Long) return value.toNumber();
  if (typeof value === 'number') return value;
  throw new CommandError('TypeMismatch', 'cursor id must be a long');
}

function matches(doc: Document, filter: Document): boolean {
  return Object.entries(filter).every(([field, value]) => {
    if (typeof value === 'object' && value !== null && !(value instanceof ObjectId)) {
      throw new CommandError('BadValue', 'the fake server filters by top-level equality only');
    }
    return doc[field] === value || (value instanceof ObjectId && doc[field] instanceof ObjectId && value.equals(doc[field] as ObjectId));
  });
}

function insert(ctx: CommandContext): Document {
  requireAction(ctx, { db: ctx.db }, 'insert');
  const documents = ctx.body['documents'];
  if (!Array.isArray(documents)) throw new CommandError('TypeMismatch', '"documents" had the wrong type. Expected array');
  const docs = collection(ctx, `${ctx.db}.${stringField(ctx.body, 'insert')}`);
  for (const doc of documents as Document[]) docs.push({ _id: new ObjectId(), ...doc });
  return { n: documents.length, ok: 1 };
}

function find(ctx: CommandContext): Document {
  requireAction(ctx, { db: ctx.db }, 'find');
  const ns = `${ctx.db}.${stringField(ctx.body, 'find')}`;
  const filter = (ctx.body['filter'] ?? {}) as Document;
  const limit = typeof ctx.body['limit'] === 'number' && ctx.body['limit'] > 0 ? ctx.body['limit'] : Infinity;
  const all = (ctx.server.collections.get(ns) ?? []).filter((d) => matches(d, filter)).slice(0, limit);
  const size = batchSize(ctx.body['batchSize']);
  const firstBatch = all.slice(0, size);
  const remaining = all.slice(size);
  const single = ctx.body['singleBatch'] === true || remaining.length === 0;
  const id = single ? 0 : ctx.server.sessions.openCursor({ ns, remaining, owner: currentUser(ctx), sessionKey: ctx.sessionKey });
  return { cursor: { id: Long.fromNumber(id), ns, firstBatch }, ok: 1 };
}

function getMore(ctx: CommandContext): Document {
  const id = cursorId(ctx.body['getMore']);
  const ns = `${ctx.db}.${stringField(ctx.body, 'collection')}`;
  const cursor = ctx.server.sessions.cursor(id);
  if (cursor === undefined || cursor.ns !== ns) throw new CommandError('CursorNotFound', `cursor id ${id} not found`);
  if (!sameUser(cursor.owner, currentUser(ctx))) throw unauthorized(ctx);
  const nextBatch = cursor.remaining.splice(0, batchSize(ctx.body['batchSize']));
  const exhausted = cursor.remaining.length === 0;
  if (exhausted) ctx.server.sessions.closeCursor(id);
  return { cursor: { id: Long.fromNumber(exhausted ? 0 : id), ns, nextBatch }, ok: 1 };
}

function killCursors(ctx: CommandContext): Document {
  const me = currentUser(ctx);
  const ids = ctx.body['cursors'];
  if (!Array.isArray(ids)) throw new CommandError('TypeMismatch', '"cursors" had the wrong type. Expected array');
  const killed: Long[] = [];
  const notFound: Long[] = [];
  for (const raw of ids) {
    const id = cursorId(raw);
    const cursor = ctx.server.sessions.cursor(id);
    if (cursor !== undefined && !sameUser(cursor.owner, me)) requireAction(ctx, 'cluster', 'killAnyCursor');
    (cursor !== undefined && ctx.server.sessions.closeCursor(id) ? killed : notFound).push(Long.fromNumber(id));
  }
  return { cursorsKilled: killed, cursorsNotFound: notFound, cursorsAlive: [], cursorsUnknown: [], ok: 1 };
}

function dropDatabase(ctx: CommandContext): Document {
  requireAction(ctx, { db: ctx.db }, 'dropDatabase');
  for (const ns of [...ctx.server.collections.keys()]) if (ns.startsWith(`${ctx.db}.`)) ctx.server.collections.delete(ns);
  ctx.server.sessions.closeCursorsIn(ctx.db);
  return { ok: 1 };
}

export const DATA_COMMANDS: Record<string, CommandSpec> = {
  insert: { run: insert, requiresAuth: true },
  find: { run: find, requiresAuth: true },
  getMore: { run: getMore, requiresAuth: true },
  killCursors: { run: killCursors, requiresAuth: true },
  dropDatabase: { run: dropDatabase, requiresAuth: true },
};
