import { createHash } from 'node:crypto';
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

export { signCheckpoint, verifyCheckpoint, type CheckpointLink } from '../../shared/audit/checkpoint.js';
