import type { PoolClient } from 'pg';
import type { KeyObject } from 'node:crypto';
import { RunAgainError } from '../db/transaction.js';
import { standalone, type Queryable, type StatementWrite } from '../db/queryable.js';
import { chainHash, signCheckpoint } from './audit-chain.js';
import { CHECKPOINT_INTERVAL, type AuditDraft, type AuditRecordRow } from './audit-types.js';

export type CheckpointSigner = () => { key: KeyObject; version: number } | null;

/** The chain head as stored in `audit_chain_head`. */
export interface ChainHead {
  seq: number;
  recordHash: Buffer;
  checkpointSeq: number;
  checkpointHash: Buffer;
}

interface HeadRow {
  seq: string;
  record_hash: Buffer;
  checkpoint_seq: string;
  checkpoint_hash: Buffer;
}

const toHead = (r: HeadRow): ChainHead => ({ seq: Number(r.seq), recordHash: r.record_hash, checkpointSeq: Number(r.checkpoint_seq), checkpointHash: r.checkpoint_hash });

const INSERT_COLUMNS = 'seq, occurred_at, identity_id, source_ip, action, project_id, secret_id, secret_version, outcome, detail, prev_hash, record_hash';
const UNNEST = 'unnest($1::bigint[], $2::timestamptz[], $3::uuid[], $4::text[], $5::text[], $6::uuid[], $7::uuid[], $8::int[], $9::text[], $10::jsonb[], $11::bytea[], $12::bytea[])';

/**
 * Writes audit records into the hash chain. One instance per control plane; services
 * call `append` inside the transaction whose effect the records describe.
 *
 * It remembers the head this process last wrote. An append first tries to link onto
 * that head with one conditional statement ({@link appendIfHeadUnchanged}); only when
 * the head has moved (another replica, a rolled-back transaction, a checkpoint due) does
 * it lock and re-read the head (three statements). Inside a transaction the conditional
 * UPDATE takes the head row's lock just as `FOR UPDATE` would, and under READ COMMITTED
 * it re-checks its condition against the committed head after any wait, so the chain
 * stays linear either way; a stale memory costs one extra statement, never a wrong link.
 */
export class AuditChainWriter {
  #head: ChainHead | null = null;
  /** Until when statements may not link records with `failIfMoved` (see {@link inlineAllowed}). */
  #inlinePausedUntil = 0;

  constructor(private readonly signer: CheckpointSigner, readonly checkpointEvery: number = CHECKPOINT_INTERVAL) {}

  /** Appends `drafts` in the caller's open transaction; returns their sequence numbers in order. */
  async append(client: PoolClient, drafts: AuditDraft[]): Promise<number[]> {
    if (drafts.length === 0) return [];
    const known = this.#head;
    if (known !== null && !this.checkpointDue(known, drafts.length)) {
      this.#head = null; // unknown until this append is done (a concurrent append re-reads)
      const done = await appendIfHeadUnchanged(client, known, drafts);
      if (done !== null) {
        this.#head = done.head;
        return done.seqs;
      }
    }
    this.#head = null;
    const locked = await appendAuditRecords(client, drafts, this.signer, this.checkpointEvery);
    this.#head = locked.head;
    return locked.seqs;
  }

  /**
   * {@link append} for a statement that carries other writes too (a rotation step's): the
   * records linked onto the head this process last wrote, as a write that stores them only
   * if that is still the head. Once the statement ran, `settle` with the rows it changed
   * records the new head — or, when the head had moved, appends the records the locked way
   * in the same transaction. Null when the head is unknown or a checkpoint is due: call
   * {@link append}. Until `settle`, this writer assumes no head (a concurrent append locks).
   */
  appendWrite(drafts: AuditDraft[], options: { failIfMoved?: boolean } = {}): { write: StatementWrite; settle: (client: PoolClient, changed: number) => Promise<void> } | null {
    const known = this.#head;
    if (drafts.length === 0 || known === null || this.checkpointDue(known, drafts.length)) return null;
    this.#head = null;
    const linked = linkIfHeadUnchanged(known, drafts);
    // `failIfMoved`: no statement may follow (COMMIT travels with this one), so a moved head fails the statement instead of being settled after it
    const moved = (): AuditHeadMovedError => {
      this.#inlinePausedUntil = Date.now() + INLINE_PAUSE_MS;
      return new AuditHeadMovedError();
    };
    return {
      write: options.failIfMoved === true ? { ...linked.write, expect: { sql: '(SELECT count(*) FROM self) = $1', values: [drafts.length], error: moved } } : linked.write,
      settle: async (client, changed) => {
        if (changed === drafts.length) {
          this.#head = linked.head;
          return;
        }
        await this.append(client, drafts); // the head had moved: #head is null, so this locks and re-reads it
      },
    };
  }

  /**
   * Whether a statement may link records with `failIfMoved` now. Not for a while after a
   * moved head failed one: another writer is busy (many runs at once, a leak of a whole
   * project), and a statement that fails must run its whole transaction again, where one
   * that settles only appends after itself.
   */
  inlineAllowed(): boolean {
    return Date.now() >= this.#inlinePausedUntil;
  }

  /** The head this process last wrote, if it still believes it current (for the group-commit path). */
  knownHead(): ChainHead | null {
    return this.#head;
  }

  /** Records the head after a write outside {@link append}, or forgets it (null). */
  remember(head: ChainHead | null): void {
    this.#head = head;
  }

  /** Whether appending `count` records after `head` makes a signed checkpoint due (and possible). */
  checkpointDue(head: ChainHead, count: number): boolean {
    return this.signer() !== null && head.seq + count - head.checkpointSeq >= this.checkpointEvery;
  }
}

/** How long statements settle their records (no `failIfMoved`) after a moved head failed one. */
const INLINE_PAUSE_MS = 10_000;

/**
 * A statement that was to link audit records onto the head this process last wrote found
 * the head moved (another writer got in between) and failed, so nothing of it was stored.
 * The writer has forgotten its head; the same work done again links onto the real one
 * (transaction.ts runs the transaction again).
 */
export class AuditHeadMovedError extends RunAgainError {
  constructor() {
    super('ERR_CONFLICT', 'the audit chain\'s head moved while the statement was built; nothing was stored, try again', { retryable: true });
    this.name = 'AuditHeadMovedError';
  }
}

/** Links `drafts` onto `head`: sequence numbers and hashes, in draft order. */
export function chainRows(head: Pick<ChainHead, 'seq' | 'recordHash'>, drafts: AuditDraft[]): AuditRecordRow[] {
  let seq = head.seq;
  let prevHash = head.recordHash;
  const occurredAt = new Date();
  return drafts.map((d) => {
    seq += 1;
    const fields = {
      seq, occurredAt, identityId: d.identityId, sourceIp: d.sourceIp, action: d.action,
      projectId: d.projectId ?? null, secretId: d.secretId ?? null, secretVersion: d.secretVersion ?? null,
      outcome: d.outcome, detail: d.detail ?? {},
    };
    const recordHash = chainHash(prevHash, fields);
    const row = { ...fields, prevHash, recordHash };
    prevHash = recordHash;
    return row;
  });
}

function insertParams(rows: AuditRecordRow[]): unknown[] {
  return [
    rows.map((r) => r.seq), rows.map((r) => r.occurredAt), rows.map((r) => r.identityId), rows.map((r) => r.sourceIp),
    rows.map((r) => r.action), rows.map((r) => r.projectId), rows.map((r) => r.secretId), rows.map((r) => r.secretVersion),
    rows.map((r) => r.outcome), rows.map((r) => JSON.stringify(r.detail)), rows.map((r) => r.prevHash), rows.map((r) => r.recordHash),
  ];
}

export async function readChainHead(db: Queryable): Promise<ChainHead> {
  const row = (await db.query<HeadRow>({ name: 'audit-head-read', text: 'SELECT seq, record_hash, checkpoint_seq, checkpoint_hash FROM audit_chain_head WHERE singleton' })).rows[0];
  if (row === undefined) throw new Error('audit chain head row is missing');
  return toHead(row);
}

/**
 * Appends records to the chain inside the caller's open transaction. Locks the chain
 * head row once for the whole batch (not once per record), so group commits keep
 * the chain linear across replicas without serialising each request. Returns the
 * sequence numbers in draft order. Adds a signed checkpoint when one is due and the
 * signing key is available (it is not while sealed).
 */
export async function appendAuditRecords(client: PoolClient, drafts: AuditDraft[], signer: CheckpointSigner, checkpointEvery: number): Promise<{ seqs: number[]; head: ChainHead }> {
  const headRow = (await client.query<HeadRow>({ name: 'audit-head-lock', text: 'SELECT seq, record_hash, checkpoint_seq, checkpoint_hash FROM audit_chain_head WHERE singleton FOR UPDATE' })).rows[0];
  if (headRow === undefined) throw new Error('audit chain head row is missing');
  const head = toHead(headRow);
  const rows = chainRows(head, drafts);
  const last = rows[rows.length - 1]!;
  await client.query({ name: 'audit-insert', text: `INSERT INTO audit_records (${INSERT_COLUMNS}) SELECT * FROM ${UNNEST}`, values: insertParams(rows) });
  let checkpointSeq = head.checkpointSeq;
  let checkpointHash = head.checkpointHash;
  const key = signer();
  if (key !== null && last.seq - checkpointSeq >= checkpointEvery) {
    const link = { seq: last.seq, recordHash: last.recordHash, prevSeq: checkpointSeq, prevHash: checkpointHash };
    await client.query(
      'INSERT INTO audit_checkpoints (seq, record_hash, prev_seq, prev_hash, server_key_version, signature) VALUES ($1, $2, $3, $4, $5, $6)',
      [last.seq, last.recordHash, checkpointSeq, checkpointHash, key.version, signCheckpoint(key.key, link)],
    );
    checkpointSeq = last.seq;
    checkpointHash = last.recordHash;
  }
  await client.query({ name: 'audit-head-update', text: 'UPDATE audit_chain_head SET seq = $1, record_hash = $2, checkpoint_seq = $3, checkpoint_hash = $4 WHERE singleton', values: [last.seq, last.recordHash, checkpointSeq, checkpointHash] });
  return { seqs: rows.map((r) => r.seq), head: { seq: last.seq, recordHash: last.recordHash, checkpointSeq, checkpointHash } };
}

/**
 * The group-commit fast path: one statement, one round trip, its own implicit
 * transaction. It moves the head only if the head is still exactly `head` (no other
 * writer, on this or another replica, got in between) and inserts the records only
 * if it did. Returns the new head, or null when the head had moved (the caller
 * re-reads it and tries again). Never used when a checkpoint is due.
 */
export async function appendIfHeadUnchanged(db: Queryable, head: ChainHead, drafts: AuditDraft[]): Promise<{ seqs: number[]; head: ChainHead } | null> {
  const linked = linkIfHeadUnchanged(head, drafts);
  const result = await db.query(standalone(linked.write));
  if (result.rowCount !== drafts.length) return null;
  return { seqs: linked.seqs, head: linked.head };
}

/** {@link appendIfHeadUnchanged}'s statement as a write (one row per record stored), with the head it leaves. */
function linkIfHeadUnchanged(head: ChainHead, drafts: AuditDraft[]): { write: StatementWrite; seqs: number[]; head: ChainHead } {
  const rows = chainRows(head, drafts);
  const last = rows[rows.length - 1]!;
  return {
    write: {
      name: 'audit-append-optimistic',
      before: [['audit_head_moved', 'UPDATE audit_chain_head SET seq = $13, record_hash = $14 WHERE singleton AND seq = $15 AND record_hash = $16 RETURNING 1']],
      sql: `INSERT INTO audit_records (${INSERT_COLUMNS}) SELECT u.* FROM ${UNNEST} AS u, audit_head_moved RETURNING 1`,
      values: [...insertParams(rows), last.seq, last.recordHash, head.seq, head.recordHash],
    },
    seqs: rows.map((r) => r.seq),
    head: { ...head, seq: last.seq, recordHash: last.recordHash },
  };
}
