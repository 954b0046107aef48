import type { KeyObject } from 'node:crypto';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { ENROLLING_IDENTITY, SIGNATURE_HEADERS, verifySignature } from '../../shared/signing/request-signature.js';
import { sourceAllowed } from '../identity/identity-dal.js';
import type { IdentityService } from '../identity/identity-service.js';
import type { AuthIdentity } from '../identity/identity-types.js';
import type { NonceStore } from './nonce-store.js';

export interface IncomingSignedRequest {
  method: string;
  /** Path with query exactly as received. */
  url: string;
  headers: Record<string, string | string[] | undefined>;
  rawBody: Buffer;
  sourceIp: string;
}

export interface SignatureHeaders {
  identityId: string;
  timestampMs: number;
  nonce: string;
  signature: string;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function header(headers: IncomingSignedRequest['headers'], name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? undefined : v;
}

/** Parses the signature headers with bounds; ERR_AUTH_MISSING / ERR_AUTH_MALFORMED otherwise. */
export function parseSignatureHeaders(headers: IncomingSignedRequest['headers']): SignatureHeaders {
  const identityId = header(headers, SIGNATURE_HEADERS.identity);
  const timestamp = header(headers, SIGNATURE_HEADERS.timestamp);
  const nonce = header(headers, SIGNATURE_HEADERS.nonce);
  const signature = header(headers, SIGNATURE_HEADERS.signature);
  if (identityId === undefined || timestamp === undefined || nonce === undefined || signature === undefined) {
    throw new SikkerError('ERR_AUTH_MISSING', 'this request must be signed (x-sikker-identity, -timestamp, -nonce, -signature)');
  }
  if (!(identityId === ENROLLING_IDENTITY || UUID_RE.test(identityId)) || !/^\d{10,16}$/.test(timestamp)
    || !/^[A-Za-z0-9_-]{16,64}$/.test(nonce) || !/^[A-Za-z0-9+/]{86}==$/.test(signature)) {
    throw new SikkerError('ERR_AUTH_MALFORMED', 'the signature headers are malformed');
  }
  return { identityId, timestampMs: Number(timestamp), nonce, signature };
}

/**
 * Checks a signed request: headers, clock skew, the signature over method, path and
 * query, body hash, timestamp, nonce and identity, then the nonce (once only), then
 * the identity's state and source CIDRs. Order matters: nothing is recorded for a
 * request whose signature does not verify.
 */
export class RequestAuthenticator {
  constructor(private readonly identities: Pick<IdentityService, 'forAuthentication'>, private readonly nonces: NonceStore, private readonly clockSkewMs: number, private readonly now: () => number = Date.now) {}

  private checkSignature(req: IncomingSignedRequest, h: SignatureHeaders, publicKey: KeyObject): void {
    const skew = Math.abs(this.now() - h.timestampMs);
    if (skew > this.clockSkewMs) {
      throw new SikkerError('ERR_AUTH_CLOCK_SKEW', `clock skew of ${Math.round(skew / 1000)} s exceeds the allowed ${this.clockSkewMs / 1000} s; check the client's clock (NTP)`, { details: { serverTime: new Date(this.now()).toISOString() } });
    }
    const ok = verifySignature(publicKey, { method: req.method, pathWithQuery: req.url, body: req.rawBody, timestampMs: h.timestampMs, nonce: h.nonce, identityId: h.identityId }, h.signature);
    if (!ok) throw new SikkerError('ERR_AUTH_BAD_SIGNATURE', 'the request signature does not verify');
  }

  private async claimNonce(identityKey: string, nonce: string): Promise<void> {
    if (!(await this.nonces.claim(identityKey, nonce))) throw new SikkerError('ERR_AUTH_REPLAY', 'this request was already received (nonce reused)');
  }

  /** Authenticates a request by an enrolled identity. */
  async authenticate(req: IncomingSignedRequest): Promise<{ identity: AuthIdentity; nonce: string }> {
    const h = parseSignatureHeaders(req.headers);
    if (h.identityId === ENROLLING_IDENTITY) throw new SikkerError('ERR_AUTH_UNKNOWN_IDENTITY', 'this request needs an enrolled identity');
    const identity = await this.identities.forAuthentication(h.identityId);
    if (identity === null) throw new SikkerError('ERR_AUTH_UNKNOWN_IDENTITY', 'unknown identity');
    this.checkSignature(req, h, identity.publicKey);
    await this.claimNonce(h.identityId, h.nonce);
    if (identity.disabled) throw new SikkerError('ERR_AUTH_IDENTITY_DISABLED', 'this identity is disabled');
    if (!sourceAllowed(identity.allowedSources, req.sourceIp)) throw new SikkerError('ERR_AUTH_SOURCE_DENIED', 'requests from this address are not allowed for this identity');
    return { identity, nonce: h.nonce };
  }

  /** Authenticates a request signed by a key not yet enrolled (init, join-token redemption). */
  async authenticateEnrolling(req: IncomingSignedRequest, publicKey: KeyObject, publicKeyText: string): Promise<void> {
    const h = parseSignatureHeaders(req.headers);
    if (h.identityId !== ENROLLING_IDENTITY) throw new SikkerError('ERR_AUTH_MALFORMED', `enrollment requests carry x-sikker-identity: ${ENROLLING_IDENTITY}`);
    this.checkSignature(req, h, publicKey);
    await this.claimNonce(`enroll:${publicKeyText}`, h.nonce);
  }
}
