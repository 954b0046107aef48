import { createHash, sign, verify, type KeyObject } from 'node:crypto';
import type { AuditRecordRow } from './audit-types.js';

/**
 * The tamper-evident chain: record_hash = SHA-256(prev_hash ‖ canonical(record)).
 * The canonical form includes the sequence number, so moving a record changes it.
 */
type HashedFields = Omit<AuditRecordRow, 'prevHash' | 'recordHash'>;

function sortedDetail(detail: Record<string, unknown>): Array<[string, unknown]> {
  return Object.keys(detail).sort().map((k) => [k, detail[k]]);
}

export function canonicalAuditRecord(r: HashedFields): Buffer {
  return Buffer.from(
    JSON.stringify([
      String(r.seq), r.occurredAt.getTime(), r.identityId, r.sourceIp, r.action,
      r.projectId, r.secretId, r.secretVersion, r.outcome, sortedDetail(r.detail),
    ]),
    'utf8',
  );
}

export function chainHash(prevHash: Buffer, record: HashedFields): Buffer {
  return createHash('sha256').update(prevHash).update(canonicalAuditRecord(record)).digest();
}

function checkpointText(seq: number, recordHash: Buffer): Buffer {
  return Buffer.from(`sikker-audit-checkpoint-v1\n${seq}\n${recordHash.toString('hex')}`, 'utf8');
}

export function signCheckpoint(key: KeyObject, seq: number, recordHash: Buffer): Buffer {
  return sign(null, checkpointText(seq, recordHash), key);
}

export function verifyCheckpoint(publicKey: KeyObject, seq: number, recordHash: Buffer, signature: Buffer): boolean {
  try {
    return verify(null, checkpointText(seq, recordHash), publicKey, signature);
  } catch {
    // A malformed stored signature is a failed verification, reported by the caller.
    return false;
  }
}
