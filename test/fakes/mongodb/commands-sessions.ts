/**
 * Session commands of the fake server: `endSessions` (the driver sends it on
 * close), `killAllSessions` (needs `killAnySession` on the cluster),
 * `killSessions` (one's own sessions freely; another user's by `uid` needs
 * `killAnySession`) and the `$listLocalSessions` aggregation (another user's
 * sessions need `listSessions` on the cluster).
 */
import { Binary, Long, type Document } from 'bson';
import { CommandError } from './errors.js';
import { bytesOf, currentUser, nameOf, requireAction, type CommandContext, type CommandSpec } from './context.js';
import { sameUser, userDigest, type UserName } from './users.js';

function lsidIds(value: unknown, field: string): Document[] {
  if (!Array.isArray(value)) throw new CommandError('TypeMismatch', `"${field}" had the wrong type. Expected array`);
  return value.map((entry) => {
    if (typeof entry !== 'object' || entry === null || !((entry as Document)['id'] instanceof Binary)) {
      throw new CommandError('BadValue', `each entry of "${field}" must be a session id document`);
    }
    return entry as Document;
  });
}

function endSessions(ctx: CommandContext): Document {
  const user = ctx.client.user;
  const ids = lsidIds(ctx.body['endSessions'], 'endSessions').map((e) => e['id'] as Binary);
  if (user !== undefined) ctx.server.sessions.endById(ids, user);
  return { ok: 1 };
}

function userNames(value: unknown, field: string): UserName[] {
  if (!Array.isArray(value)) throw new CommandError('TypeMismatch', `"${field}" had the wrong type. Expected array`);
  return value.map((entry) => {
    const { name, db } = nameOf(entry, 'user', '');
    return { user: name, db };
  });
}

function killAllSessions(ctx: CommandContext): Document {
  requireAction(ctx, 'cluster', 'killAnySession');
  const users = userNames(ctx.body['killAllSessions'], 'killAllSessions');
  ctx.server.sessions.kill((s) => users.length === 0 || users.some((u) => sameUser(u, s.owner)));
  return { ok: 1 };
}

function killSessions(ctx: CommandContext): Document {
  const me = currentUser(ctx);
  const entries = lsidIds(ctx.body['killSessions'], 'killSessions');
  if (entries.length === 0) {
    ctx.server.sessions.kill((s) => sameUser(s.owner, me));
    return { ok: 1 };
  }
  for (const entry of entries) {
    const uid = bytesOf(entry['uid']);
    if (uid !== undefined && !uid.equals(userDigest(me))) requireAction(ctx, 'cluster', 'killAnySession');
    ctx.server.sessions.endById([entry['id'] as Binary], me, uid);
  }
  return { ok: 1 };
}

/** `{ $listLocalSessions: {} | { users: [...] } | { allUsers: true } }`, the only pipeline the fake runs. */
function aggregate(ctx: CommandContext): Document {
  const me = currentUser(ctx);
  const stages = Array.isArray(ctx.body['pipeline']) ? (ctx.body['pipeline'] as Document[]) : [];
  const stage = stages.length === 1 ? stages[0] : undefined;
  if (stage === undefined || Object.keys(stage)[0] !== '$listLocalSessions') {
    const names = stages.map((s) => Object.keys(s)[0] ?? '').join(', ');
    throw new CommandError('Location40324', `Unrecognized pipeline stage name: '${names}' (the fake server runs a lone $listLocalSessions only)`);
  }
  const spec = (stage['$listLocalSessions'] ?? {}) as Document;
  let owners: UserName[] | undefined = [me];
  if (spec['allUsers'] === true) owners = undefined;
  else if (spec['users'] !== undefined) owners = userNames(spec['users'], 'users');
  if (owners === undefined || owners.some((o) => !sameUser(o, me))) requireAction(ctx, 'cluster', 'listSessions');
  const sessions = ctx.server.sessions.list(owners).map((s) => ({
    _id: { id: s.id, uid: new Binary(s.uid) },
    lastUse: s.lastUse,
    user: { name: `${s.owner.user}@${s.owner.db}` },
  }));
  return { cursor: { id: Long.ZERO, ns: `${ctx.db}.$cmd.aggregate`, firstBatch: sessions }, ok: 1 };
}

export const SESSION_COMMANDS: Record<string, CommandSpec> = {
  endSessions: { run: endSessions, requiresAuth: false, attachesSession: false },
  killAllSessions: { run: killAllSessions, requiresAuth: true, attachesSession: false },
  killSessions: { run: killSessions, requiresAuth: true, attachesSession: false },
  aggregate: { run: aggregate, requiresAuth: true },
};
