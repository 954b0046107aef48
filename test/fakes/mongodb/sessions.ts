/**
 * Logical sessions and the cursors they own, as mongod keeps them. A session
 * is keyed by its `lsid.id` and its user's digest (`uid`): the same id used by
 * another user is another session. Killing a session (`killAllSessions`,
 * `killSessions`, `endSessions`) kills its cursors, so the owner's next
 * `getMore` fails with CursorNotFound — while its connection stays open and
 * authenticated, exactly as on a real server.
 */
import { Binary, type Document } from 'bson';
import { sameUser, userDigest, type UserName } from './users.js';

export interface SessionRecord {
  id: Binary;
  owner: UserName;
  uid: Buffer;
  lastUse: Date;
}

export interface CursorRecord {
  ns: string;
  remaining: Document[];
  owner: UserName;
  sessionKey: string | undefined;
}

const sessionKey = (id: Binary, owner: UserName): string => `${id.toString('hex')}:${userDigest(owner).toString('hex')}`;

export class SessionRegistry {
  private readonly sessions = new Map<string, SessionRecord>();
  private readonly cursors = new Map<number, CursorRecord>();
  private nextCursorId = 7_000_000_000 + Math.floor(Math.random() * 1_000_000);

  /** Records a command's use of session `id` by `owner`; returns the session's key. */
  touch(id: Binary, owner: UserName): string {
    const key = sessionKey(id, owner);
    const existing = this.sessions.get(key);
    if (existing !== undefined) existing.lastUse = new Date();
    else this.sessions.set(key, { id, owner, uid: userDigest(owner), lastUse: new Date() });
    return key;
  }

  /** Sessions owned by one of `owners` (every session when undefined). */
  list(owners?: UserName[]): SessionRecord[] {
    return [...this.sessions.values()].filter((s) => owners === undefined || owners.some((o) => sameUser(o, s.owner)));
  }

  /** Ends `owner`'s sessions with these ids (endSessions, or killSessions by id). Returns how many existed. */
  endById(ids: Binary[], owner: UserName, uid?: Buffer): number {
    let ended = 0;
    for (const id of ids) {
      const key = uid === undefined ? sessionKey(id, owner) : `${id.toString('hex')}:${uid.toString('hex')}`;
      if (this.drop(key)) ended++;
    }
    return ended;
  }

  /** Kills every session `match` selects, with its cursors. Returns how many. */
  kill(match: (session: SessionRecord) => boolean): number {
    let killed = 0;
    for (const [key, session] of [...this.sessions]) {
      if (match(session) && this.drop(key)) killed++;
    }
    return killed;
  }

  openCursor(cursor: CursorRecord): number {
    const id = this.nextCursorId++;
    this.cursors.set(id, cursor);
    return id;
  }

  cursor(id: number): CursorRecord | undefined {
    return this.cursors.get(id);
  }

  closeCursor(id: number): boolean {
    return this.cursors.delete(id);
  }

  /** Cursors under `ns` prefix `db.` (dropDatabase). */
  closeCursorsIn(db: string): void {
    for (const [id, cursor] of [...this.cursors]) if (cursor.ns.startsWith(`${db}.`)) this.cursors.delete(id);
  }

  private drop(key: string): boolean {
    if (!this.sessions.delete(key)) return false;
    for (const [id, cursor] of [...this.cursors]) if (cursor.sessionKey === key) this.cursors.delete(id);
    return true;
  }
}
