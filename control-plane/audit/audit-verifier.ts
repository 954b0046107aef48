import type { Pool } from 'pg';
import { importPublicKey } from '../../shared/signing/ed25519-keys.js';
import { chainHash, verifyCheckpoint } from './audit-chain.js';
import { rowToRecord, type AuditDbRow } from './audit-dal.js';

export interface CheckpointView {
  seq: number;
  recordHash: string;
  prevSeq: number;
  prevHash: string;
  keyVersion: number;
  signature: string;
}

export interface AuditVerifyResult {
  ok: boolean;
  checked: number;
  checkpoints: number;
  firstBadSeq: number | null;
  problem: string | null;
  /** The newest signed checkpoint, for clients to check against their pinned server key and remember. */
  latestCheckpoint: CheckpointView | null;
}

const PAGE = 5000;

/**
 * Walks the whole chain in sequence order and names the first record that was
 * changed, removed or reordered. Signed checkpoints catch a chain that was
 * recomputed after a change (the attacker cannot sign the new hashes).
 */
export async function verifyAuditChain(pool: Pool): Promise<AuditVerifyResult> {
  const keys = new Map<number, ReturnType<typeof importPublicKey>>();
  for (const row of (await pool.query<{ key_version: number; public_key: string }>('SELECT key_version, public_key FROM server_keys')).rows) {
    keys.set(row.key_version, importPublicKey(row.public_key));
  }
  const checkpoints = (await pool.query<{ seq: string; record_hash: Buffer; prev_seq: string; prev_hash: Buffer; server_key_version: number; signature: Buffer }>(
    'SELECT seq, record_hash, prev_seq, prev_hash, server_key_version, signature FROM audit_checkpoints ORDER BY seq',
  )).rows.map((c) => ({ seq: Number(c.seq), hash: c.record_hash, prevSeq: Number(c.prev_seq), prevHash: c.prev_hash, keyVersion: c.server_key_version, signature: c.signature }));
  const last = checkpoints.at(-1);
  const latestCheckpoint: CheckpointView | null = last === undefined ? null : {
    seq: last.seq, recordHash: last.hash.toString('hex'), prevSeq: last.prevSeq, prevHash: last.prevHash.toString('hex'), keyVersion: last.keyVersion, signature: last.signature.toString('base64'),
  };
  const bad = (seq: number, problem: string, checked: number): AuditVerifyResult =>
    ({ ok: false, checked, checkpoints: checkpoints.length, firstBadSeq: seq, problem, latestCheckpoint });

  let previous: { seq: number; hash: Buffer } = { seq: 0, hash: Buffer.alloc(32) };
  for (const c of checkpoints) {
    const key = keys.get(c.keyVersion);
    if (key === undefined || !verifyCheckpoint(key, { seq: c.seq, recordHash: c.hash, prevSeq: c.prevSeq, prevHash: c.prevHash }, c.signature)) {
      return bad(c.seq, `the signed checkpoint at record ${c.seq} does not verify`, 0);
    }
    if (c.prevSeq !== previous.seq || !c.prevHash.equals(previous.hash)) {
      return bad(previous.seq + 1, `signed checkpoints after record ${previous.seq} were removed (the checkpoint at ${c.seq} names ${c.prevSeq} as its predecessor)`, 0);
    }
    previous = { seq: c.seq, hash: c.hash };
  }
  const checkpointBySeq = new Map(checkpoints.map((c) => [c.seq, c]));
  let lastGoodCheckpoint = 0;
  let expectedSeq = 1;
  let prevHash: Buffer = Buffer.alloc(32);
  let checked = 0;
  for (;;) {
    const page = await pool.query<AuditDbRow>('SELECT * FROM audit_records WHERE seq >= $1 ORDER BY seq LIMIT $2', [expectedSeq, PAGE]);
    for (const dbRow of page.rows) {
      const r = rowToRecord(dbRow);
      if (r.seq !== expectedSeq) return bad(expectedSeq, `record ${expectedSeq} is missing (removed); the next record present is ${r.seq}`, checked);
      if (!r.prevHash.equals(prevHash)) return bad(r.seq, `record ${r.seq} does not follow record ${r.seq - 1} (removed, inserted or reordered)`, checked);
      if (!chainHash(prevHash, r).equals(r.recordHash)) return bad(r.seq, `record ${r.seq} was changed after it was written`, checked);
      const checkpoint = checkpointBySeq.get(r.seq);
      if (checkpoint !== undefined) {
        if (!checkpoint.hash.equals(r.recordHash)) {
          return bad(lastGoodCheckpoint + 1, `records ${lastGoodCheckpoint + 1}–${r.seq} were rewritten (the chain was recomputed; the signed checkpoint at ${r.seq} disagrees)`, checked);
        }
        lastGoodCheckpoint = r.seq;
      }
      prevHash = r.recordHash;
      expectedSeq += 1;
      checked += 1;
    }
    if (page.rows.length < PAGE) break;
  }
  const head = (await pool.query<{ seq: string; record_hash: Buffer }>('SELECT seq, record_hash FROM audit_chain_head')).rows[0];
  const headSeq = head === undefined ? 0 : Number(head.seq);
  if (headSeq > expectedSeq - 1) return bad(expectedSeq, `records ${expectedSeq}–${headSeq} were removed from the end of the log`, checked);
  if (head !== undefined && headSeq === expectedSeq - 1 && !head.record_hash.equals(prevHash)) {
    return bad(headSeq, `record ${headSeq} does not match the chain head`, checked);
  }
  const lastCheckpoint = checkpoints.at(-1);
  if (lastCheckpoint !== undefined && lastCheckpoint.seq > expectedSeq - 1) {
    return bad(expectedSeq, `records ${expectedSeq}–${lastCheckpoint.seq} were removed (a signed checkpoint covers them)`, checked);
  }
  return { ok: true, checked, checkpoints: checkpoints.length, firstBadSeq: null, problem: null, latestCheckpoint };
}
