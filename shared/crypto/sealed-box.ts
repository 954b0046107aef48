import { createCipheriv, createDecipheriv, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, randomBytes, type KeyObject } from 'node:crypto';
import { SikkerError } from '../errors/sikker-error.js';
import { zero } from './aead.js';

/**
 * Sealing a credential to one agent on top of TLS: an ephemeral X25519 key agrees a
 * secret with the agent's registered X25519 public key, HKDF derives an AES-256-GCM
 * key, and the command id and agent id are the additional data. Only the agent's
 * private key (never leaving its host) opens it; a proxy or socket log sees ciphertext.
 *
 *   sealed = ephemeralPublic(32) | nonce(12) | tag(16) | ciphertext
 */
const PUBLIC_LENGTH = 32;
const HEADER = PUBLIC_LENGTH + 12 + 16;

export function generateBoxKeyPair(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync('x25519');
}

export function exportBoxPublicKey(key: KeyObject): string {
  const jwk = key.export({ format: 'jwk' });
  if (jwk.crv !== 'X25519' || typeof jwk.x !== 'string') throw new SikkerError('ERR_INTERNAL', 'not an X25519 key');
  return jwk.x;
}

export function importBoxPublicKey(raw: string): KeyObject {
  if (!/^[A-Za-z0-9_-]{43}$/.test(raw)) throw new SikkerError('ERR_VALIDATION', 'box public key must be 32 bytes of base64url');
  try {
    return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: raw }, format: 'jwk' });
  } catch (err) {
    throw new SikkerError('ERR_VALIDATION', 'box public key is not a valid X25519 key', { cause: err });
  }
}

export function boxPrivateKeyToPem(key: KeyObject): string {
  return key.export({ format: 'pem', type: 'pkcs8' }).toString();
}

export function boxPrivateKeyFromPem(pem: string): KeyObject {
  const key = createPrivateKey({ key: pem, format: 'pem' });
  if (key.asymmetricKeyType !== 'x25519') throw new SikkerError('ERR_IDENTITY_KEY_FILE', 'box key is not an X25519 key');
  return key;
}

function rawPublic(key: KeyObject): Buffer {
  return Buffer.from(exportBoxPublicKey(key), 'base64url');
}

/** The raw public half of a long-lived key (a recipient's public key, or an agent's private key), derived once per KeyObject. */
const rawPublicOf = new WeakMap<KeyObject, Buffer>();
function cachedRawPublic(key: KeyObject): Buffer {
  let raw = rawPublicOf.get(key);
  if (raw === undefined) {
    raw = rawPublic(key.type === 'private' ? createPublicKey(key) : key);
    rawPublicOf.set(key, raw);
  }
  return raw;
}

function deriveKey(shared: Buffer, ephemeralPublic: Buffer, recipientPublic: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', shared, Buffer.concat([ephemeralPublic, recipientPublic]), Buffer.from('sikker/sealed-box/v1'), 32));
}

function aad(context: { commandId: string; agentId: string }): Buffer {
  return Buffer.from(`sikker-sealed-box-v1\n${context.commandId}\n${context.agentId}`, 'utf8');
}

/** Seals `plaintext` to `recipient` (an X25519 public key), bound to the command and agent. */
export function sealTo(recipient: KeyObject, plaintext: Buffer, context: { commandId: string; agentId: string }): Buffer {
  const ephemeral = generateBoxKeyPair();
  const ephemeralPublic = rawPublic(ephemeral.publicKey);
  const shared = diffieHellman({ privateKey: ephemeral.privateKey, publicKey: recipient });
  const key = deriveKey(shared, ephemeralPublic, cachedRawPublic(recipient));
  try {
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: 16 });
    cipher.setAAD(aad(context));
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return Buffer.concat([ephemeralPublic, nonce, cipher.getAuthTag(), body]);
  } finally {
    zero(shared);
    zero(key);
  }
}

/** Opens a sealed box with the recipient's private key. ERR_CRYPTO_DECRYPT on any change or wrong binding. */
export function openSealed(recipientPrivate: KeyObject, sealed: Buffer, context: { commandId: string; agentId: string }): Buffer {
  if (sealed.length < HEADER) throw new SikkerError('ERR_CRYPTO_FORMAT', 'sealed box is too short');
  const ephemeralPublic = sealed.subarray(0, PUBLIC_LENGTH);
  let ephemeral: KeyObject;
  try {
    ephemeral = importBoxPublicKey(Buffer.from(ephemeralPublic).toString('base64url'));
  } catch (err) {
    throw new SikkerError('ERR_CRYPTO_FORMAT', 'sealed box has a malformed ephemeral key', { cause: err });
  }
  const shared = diffieHellman({ privateKey: recipientPrivate, publicKey: ephemeral });
  const key = deriveKey(shared, Buffer.from(ephemeralPublic), cachedRawPublic(recipientPrivate));
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(PUBLIC_LENGTH, PUBLIC_LENGTH + 12), { authTagLength: 16 });
    decipher.setAAD(aad(context));
    decipher.setAuthTag(sealed.subarray(PUBLIC_LENGTH + 12, HEADER));
    return Buffer.concat([decipher.update(sealed.subarray(HEADER)), decipher.final()]);
  } catch {
    // OpenSSL's message carries nothing useful; ours is stable.
    throw new SikkerError('ERR_CRYPTO_DECRYPT', 'sealed box failed authentication (tampered, or not for this agent or command)');
  } finally {
    zero(shared);
    zero(key);
  }
}
