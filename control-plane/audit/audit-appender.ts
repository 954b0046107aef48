import type { PoolClient } from 'pg';
import type { KeyObject } from 'node:crypto';
import { chainHash, signCheckpoint } from './audit-chain.js';
import { CHECKPOINT_INTERVAL, type AuditDraft, type AuditRecordRow } from './audit-types.js';

export type CheckpointSigner = () => { key: KeyObject; version: number } | null;

/**
 * Writes audit records into the hash chain. One instance per control plane; services
 * call `append` inside the transaction whose effect the records describe.
 */
export class AuditChainWriter {
  constructor(private readonly signer: CheckpointSigner, private readonly checkpointEvery: number = CHECKPOINT_INTERVAL) {}

  /** See appendAuditRecords. */
  append(client: PoolClient, drafts: AuditDraft[]): Promise<number[]> {
    return appendAuditRecords(client, drafts, this.signer, this.checkpointEvery);
  }
}

/**
 * Appends records to the chain inside the caller's open transaction. Locks the chain
 * head row once for the whole batch (not once per record), so group commits keep
 * the chain linear across replicas without serialising each request. Returns the
 * sequence numbers in draft order. Adds a signed checkpoint when one is due and the
 * signing key is available (it is not while sealed).
 */
export async function appendAuditRecords(client: PoolClient, drafts: AuditDraft[], signer: CheckpointSigner, checkpointEvery: number): Promise<number[]> {
  if (drafts.length === 0) return [];
  const head = await client.query<{ seq: string; record_hash: Buffer; checkpoint_seq: string; checkpoint_hash: Buffer }>(
    'SELECT seq, record_hash, checkpoint_seq, checkpoint_hash FROM audit_chain_head WHERE singleton FOR UPDATE',
  );
  const headRow = head.rows[0];
  if (headRow === undefined) throw new Error('audit chain head row is missing');
  let seq = Number(headRow.seq);
  let prevHash = headRow.record_hash;
  const occurredAt = new Date();
  const rows: AuditRecordRow[] = drafts.map((d) => {
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
  await client.query(
    `INSERT INTO audit_records (seq, occurred_at, identity_id, source_ip, action, project_id, secret_id, secret_version, outcome, detail, prev_hash, record_hash)
     SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::uuid[], $4::text[], $5::text[], $6::uuid[], $7::uuid[], $8::int[], $9::text[], $10::jsonb[], $11::bytea[], $12::bytea[])`,
    [
      rows.map((r) => r.seq), rows.map((r) => r.occurredAt), rows.map((r) => r.identityId), rows.map((r) => r.sourceIp),
      rows.map((r) => r.action), rows.map((r) => r.projectId), rows.map((r) => r.secretId), rows.map((r) => r.secretVersion),
      rows.map((r) => r.outcome), rows.map((r) => JSON.stringify(r.detail)), rows.map((r) => r.prevHash), rows.map((r) => r.recordHash),
    ],
  );
  let checkpointSeq = Number(headRow.checkpoint_seq);
  let checkpointHash = headRow.checkpoint_hash;
  const key = signer();
  if (key !== null && seq - checkpointSeq >= checkpointEvery) {
    const link = { seq, recordHash: prevHash, prevSeq: checkpointSeq, prevHash: checkpointHash };
    await client.query(
      'INSERT INTO audit_checkpoints (seq, record_hash, prev_seq, prev_hash, server_key_version, signature) VALUES ($1, $2, $3, $4, $5, $6)',
      [seq, prevHash, checkpointSeq, checkpointHash, key.version, signCheckpoint(key.key, link)],
    );
    checkpointSeq = seq;
    checkpointHash = prevHash;
  }
  await client.query('UPDATE audit_chain_head SET seq = $1, record_hash = $2, checkpoint_seq = $3, checkpoint_hash = $4 WHERE singleton', [seq, prevHash, checkpointSeq, checkpointHash]);
  return rows.map((r) => r.seq);
}
