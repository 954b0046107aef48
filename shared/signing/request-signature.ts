import { createHash, randomBytes, sign, verify, type KeyObject } from 'node:crypto';

/**
 * Signed requests. Every HTTP request and WebSocket upgrade carries these headers;
 * the signature covers method, path with query, a SHA-256 of the body, the
 * timestamp, the nonce and the identity it claims, so changing any of them breaks it.
 */
export const SIGNATURE_HEADERS = {
  identity: 'x-sikker-identity',
  timestamp: 'x-sikker-timestamp',
  nonce: 'x-sikker-nonce',
  signature: 'x-sikker-signature',
} as const;

/** The identity header value used while redeeming a join token (the key is in the body). */
export const ENROLLING_IDENTITY = 'enrolling';

export interface SignedParts {
  method: string;
  pathWithQuery: string;
  body: Buffer;
  timestampMs: number;
  nonce: string;
  identityId: string;
}

export function bodySha256Hex(body: Buffer): string {
  return createHash('sha256').update(body).digest('hex');
}

/** The exact bytes that are signed. Newlines cannot occur inside any part (checked by the verifier). */
export function canonicalRequest(parts: SignedParts): Buffer {
  return Buffer.from(
    [
      'SIKKER-ED25519-V1',
      parts.method.toUpperCase(),
      parts.pathWithQuery,
      bodySha256Hex(parts.body),
      String(parts.timestampMs),
      parts.nonce,
      parts.identityId,
    ].join('\n'),
    'utf8',
  );
}

export function newNonce(): string {
  return randomBytes(18).toString('base64url');
}

/**
 * Returns the headers to send with a request signed by `privateKey`. The nonce is
 * fresh and random unless the caller supplies one: a caller that must bind something
 * else to this request's nonce (the rekey proof) generates it with `newNonce()` first.
 * Never pass a nonce that was already sent: the server refuses replays.
 */
export function signRequest(
  privateKey: KeyObject,
  request: { method: string; pathWithQuery: string; body: Buffer; identityId: string },
  now: number = Date.now(),
  nonce: string = newNonce(),
): Record<string, string> {
  const signature = sign(null, canonicalRequest({ ...request, timestampMs: now, nonce }), privateKey);
  return {
    [SIGNATURE_HEADERS.identity]: request.identityId,
    [SIGNATURE_HEADERS.timestamp]: String(now),
    [SIGNATURE_HEADERS.nonce]: nonce,
    [SIGNATURE_HEADERS.signature]: signature.toString('base64'),
  };
}

/** Ed25519 verification (constant time inside OpenSSL). False on any malformed input. */
export function verifySignature(publicKey: KeyObject, parts: SignedParts, signatureB64: string): boolean {
  const signature = Buffer.from(signatureB64, 'base64');
  if (signature.length !== 64) return false;
  try {
    return verify(null, canonicalRequest(parts), publicKey, signature);
  } catch {
    // A key of the wrong type or a malformed signature is simply "does not verify".
    return false;
  }
}
