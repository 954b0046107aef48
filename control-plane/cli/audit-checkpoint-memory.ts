import { readFileSync, writeFileSync, renameSync } from 'node:fs';
import * as z from 'zod';
import { verifyCheckpoint } from '../../shared/audit/checkpoint.js';
import { importPublicKey } from '../../shared/signing/ed25519-keys.js';
import type { AuditVerifyResponse } from '../../shared/protocol/api.js';

type Verdict = z.infer<typeof AuditVerifyResponse>;

const Memory = z.object({ seq: z.number().int().min(0), recordHash: z.string().regex(/^[0-9a-f]{64}$/) });

/**
 * What this operator's machine saw of the log last time: the newest checkpoint,
 * checked against the server key pinned at enrollment. A later verify that shows an
 * older checkpoint (truncation) or the same one with another hash (rewrite) is a
 * problem even if the server says "ok", because the server reads a database an
 * attacker may control. Returns a problem description, or null.
 */
export function checkAgainstMemory(verdict: Verdict, pinnedServerKey: string | null, memoryPath: string): string | null {
  const latest = verdict.latestCheckpoint;
  let remembered: z.infer<typeof Memory> | null = null;
  try {
    remembered = Memory.parse(JSON.parse(readFileSync(memoryPath, 'utf8')));
  } catch {
    remembered = null; // first verify from this machine, or an unreadable file: nothing to compare
  }
  if (latest !== null) {
    if (pinnedServerKey === null) return 'this identity file has no pinned server key; cannot check the checkpoint signature';
    const link = { seq: latest.seq, recordHash: Buffer.from(latest.recordHash, 'hex'), prevSeq: latest.prevSeq, prevHash: Buffer.from(latest.prevHash, 'hex') };
    if (!verifyCheckpoint(importPublicKey(pinnedServerKey), link, Buffer.from(latest.signature, 'base64'))) {
      return `the newest checkpoint (record ${latest.seq}) is not signed by the server key pinned in your identity file`;
    }
  }
  if (remembered !== null) {
    if (latest === null || latest.seq < remembered.seq) return `records up to ${remembered.seq} were signed when you last verified, but that checkpoint is gone (log truncated)`;
    if (latest.seq === remembered.seq && latest.recordHash !== remembered.recordHash) return `the checkpoint at record ${latest.seq} changed since you last verified`;
  }
  if (latest !== null && verdict.ok) {
    const temp = `${memoryPath}.tmp`;
    writeFileSync(temp, JSON.stringify({ seq: latest.seq, recordHash: latest.recordHash }) + '\n', { mode: 0o600 });
    renameSync(temp, memoryPath);
  }
  return null;
}
