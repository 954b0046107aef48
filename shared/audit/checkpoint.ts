import { sign, verify, type KeyObject } from 'node:crypto';

/**
 * Signed audit checkpoints, shared by the control plane (signs, verifies the whole
 * chain) and the CLI (checks the newest checkpoint against its pinned server key, so a
 * database that was rewritten together with its server_keys table is still caught).
 */
/** What a checkpoint signs: its record and the previous checkpoint (0 / zero hash for the first). */
export interface CheckpointLink {
  seq: number;
  recordHash: Buffer;
  prevSeq: number;
  prevHash: Buffer;
}

function checkpointText(c: CheckpointLink): Buffer {
  return Buffer.from(`sikker-audit-checkpoint-v2\n${c.seq}\n${c.recordHash.toString('hex')}\n${c.prevSeq}\n${c.prevHash.toString('hex')}`, 'utf8');
}

export function signCheckpoint(key: KeyObject, c: CheckpointLink): Buffer {
  return sign(null, checkpointText(c), key);
}

export function verifyCheckpoint(publicKey: KeyObject, c: CheckpointLink, signature: Buffer): boolean {
  try {
    return verify(null, checkpointText(c), publicKey, signature);
  } catch {
    // A malformed stored signature is a failed verification, reported by the caller.
    return false;
  }
}
