import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { SikkerError } from '../errors/sikker-error.js';

/** Raw Ed25519 public keys travel as 32 bytes, base64url (the JWK `x`). */
export function exportPublicKey(key: KeyObject): string {
  const jwk = key.export({ format: 'jwk' });
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string') {
    throw new SikkerError('ERR_INTERNAL', 'not an Ed25519 key');
  }
  return jwk.x;
}

export function importPublicKey(raw: string): KeyObject {
  if (!/^[A-Za-z0-9_-]{43}$/.test(raw)) {
    throw new SikkerError('ERR_VALIDATION', 'public key must be 32 bytes of base64url');
  }
  try {
    return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw }, format: 'jwk' });
  } catch (err) {
    throw new SikkerError('ERR_VALIDATION', 'public key is not a valid Ed25519 key', { cause: err });
  }
}

export function generateIdentityKeyPair(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync('ed25519');
}

export function privateKeyToPem(key: KeyObject): string {
  return key.export({ format: 'pem', type: 'pkcs8' }).toString();
}

export function privateKeyFromPem(pem: string): KeyObject {
  const key = createPrivateKey({ key: pem, format: 'pem' });
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new SikkerError('ERR_IDENTITY_KEY_FILE', 'identity key is not an Ed25519 key');
  }
  return key;
}
