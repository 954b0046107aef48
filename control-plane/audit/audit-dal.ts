import type { Pool } from 'pg';
import type { AuditRecordRow } from './audit-types.js';

export interface AuditDbRow {
  seq: string;
  occurred_at: Date;
  identity_id: string | null;
  source_ip: string | null;
  action: string;
  project_id: string | null;
  secret_id: string | null;
  secret_version: number | null;
  outcome: string;
  detail: Record<string, unknown>;
  prev_hash: Buffer;
  record_hash: Buffer;
}

export function rowToRecord(r: AuditDbRow): AuditRecordRow {
  return {
    seq: Number(r.seq), occurredAt: r.occurred_at, identityId: r.identity_id, sourceIp: r.source_ip, action: r.action,
    projectId: r.project_id, secretId: r.secret_id, secretVersion: r.secret_version, outcome: r.outcome, detail: r.detail,
    prevHash: r.prev_hash, recordHash: r.record_hash,
  };
}

export interface AuditFilter {
  identityId?: string;
  projectId?: string;
  secretId?: string;
  version?: number;
  action?: string;
  from?: Date;
  to?: Date;
  limit: number;
}

export interface AuditRecordView extends AuditRecordRow {
  identityName: string | null;
  projectName: string | null;
  secretName: string | null;
}

/** Newest first, filtered; parameters only. Names are joined for display. */
export async function listAuditRecords(pool: Pool, f: AuditFilter): Promise<AuditRecordView[]> {
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (sql: string, value: unknown): void => {
    params.push(value);
    where.push(`a.${sql.replace('?', `$${params.length}`)}`);
  };
  if (f.identityId !== undefined) add('identity_id = ?', f.identityId);
  if (f.projectId !== undefined) add('project_id = ?', f.projectId);
  if (f.secretId !== undefined) add('secret_id = ?', f.secretId);
  if (f.version !== undefined) add('secret_version = ?', f.version);
  if (f.action !== undefined) add('action = ?', f.action);
  if (f.from !== undefined) add('occurred_at >= ?', f.from);
  if (f.to !== undefined) add('occurred_at <= ?', f.to);
  params.push(f.limit);
  const sql = `SELECT a.*, i.name AS identity_name, p.name AS project_name, s.name AS secret_name
    FROM audit_records a
    LEFT JOIN identities i ON i.identity_id = a.identity_id
    LEFT JOIN projects p ON p.project_id = a.project_id
    LEFT JOIN secrets s ON s.secret_id = a.secret_id
    ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY a.seq DESC LIMIT $${params.length}`;
  type Joined = AuditDbRow & { identity_name: string | null; project_name: string | null; secret_name: string | null };
  return (await pool.query<Joined>(sql, params)).rows.map((r) => ({
    ...rowToRecord(r), identityName: r.identity_name, projectName: r.project_name, secretName: r.secret_name,
  }));
}
