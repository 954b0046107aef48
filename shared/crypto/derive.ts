import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';

/** Derives a purpose-specific 32-byte key from a parent key with HKDF-SHA256. */
export function deriveKey(parent: Buffer, purpose: string): Buffer {
  return Buffer.from(hkdfSync('sha256', parent, Buffer.alloc(0), Buffer.from(`sikker/${purpose}`, 'utf8'), 32));
}

export function hmacSha256(key: Buffer, data: Buffer | string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

/** Constant-time equality for byte strings of possibly different lengths. */
export function constantTimeEqual(a: Buffer, b: Buffer): boolean {
  if (a.length !== b.length) return false;
  return timingSafeEqual(a, b);
}
