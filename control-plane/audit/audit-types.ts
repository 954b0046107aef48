/** One audit record before it joins the chain. Never holds a secret value. */
export interface AuditDraft {
  identityId: string | null;
  sourceIp: string | null;
  /** Dotted verb, e.g. `secret.read`, `auth.failure`, `vault.unseal`. */
  action: string;
  projectId?: string | null;
  secretId?: string | null;
  secretVersion?: number | null;
  /** `success`, `denied`, `failure`, … */
  outcome: string;
  /** Small, flat, non-secret facts (error code, names). */
  detail?: Record<string, string | number | boolean | null>;
}

export interface AuditRecordRow {
  seq: number;
  occurredAt: Date;
  identityId: string | null;
  sourceIp: string | null;
  action: string;
  projectId: string | null;
  secretId: string | null;
  secretVersion: number | null;
  outcome: string;
  detail: Record<string, unknown>;
  prevHash: Buffer;
  recordHash: Buffer;
}

/** How many records between signed checkpoints. */
export const CHECKPOINT_INTERVAL = 1000;
