import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { SikkerError } from '../errors/sikker-error.js';

/**
 * Authenticated encryption for every layer of the vault: AES-256-GCM, 12-byte random
 * nonce, 16-byte tag. An envelope is
 *
 *   format(1) | keyVersion(uint32 BE) | nonce(12) | tag(16) | ciphertext
 *
 * The header (format and key version) and a canonical encoding of what the
 * ciphertext belongs to are the additional data, so a ciphertext copied to another
 * row, or with its key version edited, fails to open.
 */
const FORMAT_V1 = 1;
const HEADER_LENGTH = 1 + 4;
const NONCE_LENGTH = 12;
const TAG_LENGTH = 16;
export const KEY_LENGTH = 32;
const MIN_ENVELOPE_LENGTH = HEADER_LENGTH + NONCE_LENGTH + TAG_LENGTH;

/** What a ciphertext is bound to. Every field is part of the additional data. */
export interface AeadBinding {
  purpose: 'secret-value' | 'data-key' | 'project-key' | 'server-signing-key' | 'fingerprint-key';
  projectId: string;
  secretId?: string;
  secretVersion?: number;
  /** For wrapped project keys: which version of the project key this is. */
  keyVersion?: number;
}

function bindingBytes(header: Buffer, binding: AeadBinding): Buffer {
  // Fixed field order and explicit empties: two different bindings never encode alike.
  const text = JSON.stringify([
    binding.purpose,
    binding.projectId,
    binding.secretId ?? '',
    binding.secretVersion ?? -1,
    binding.keyVersion ?? -1,
  ]);
  return Buffer.concat([header, Buffer.from(text, 'utf8')]);
}

const ZERO_KEY = Buffer.alloc(KEY_LENGTH);

/**
 * A key that is all zeroes was dropped by a seal while a request still held it: refuse
 * rather than encrypt something nobody can ever decrypt (or everybody can).
 */
function checkKey(key: Buffer): void {
  if (key.length !== KEY_LENGTH) {
    throw new SikkerError('ERR_INTERNAL', `encryption key must be ${KEY_LENGTH} bytes`);
  }
  if (key.equals(ZERO_KEY)) {
    throw new SikkerError('ERR_VAULT_SEALED', 'the vault was sealed while this request was in flight', { retryable: true });
  }
}

/** Encrypts `plaintext` under `key` (version `keyVersion`), bound to `binding`. */
export function seal(key: Buffer, keyVersion: number, plaintext: Buffer, binding: AeadBinding): Buffer {
  checkKey(key);
  if (!Number.isInteger(keyVersion) || keyVersion < 1 || keyVersion > 0xffffffff) {
    throw new SikkerError('ERR_INTERNAL', 'key version must be a positive 32-bit integer');
  }
  const header = Buffer.alloc(HEADER_LENGTH);
  header.writeUInt8(FORMAT_V1, 0);
  header.writeUInt32BE(keyVersion, 1);
  const nonce = randomBytes(NONCE_LENGTH);
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_LENGTH });
  cipher.setAAD(bindingBytes(header, binding));
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([header, nonce, cipher.getAuthTag(), body]);
}

/** Reads the key version an envelope claims, so the caller can fetch that key. */
export function envelopeKeyVersion(envelope: Buffer): number {
  if (envelope.length < MIN_ENVELOPE_LENGTH || envelope.readUInt8(0) !== FORMAT_V1) {
    throw new SikkerError('ERR_CRYPTO_FORMAT', 'ciphertext is malformed or of an unknown format');
  }
  return envelope.readUInt32BE(1);
}

/**
 * Decrypts an envelope. Fails with ERR_CRYPTO_DECRYPT on any change to header,
 * nonce, tag, ciphertext or binding. The caller owns (and should zero) the result.
 */
export function open(key: Buffer, envelope: Buffer, binding: AeadBinding): Buffer {
  checkKey(key);
  envelopeKeyVersion(envelope);
  const header = envelope.subarray(0, HEADER_LENGTH);
  const nonce = envelope.subarray(HEADER_LENGTH, HEADER_LENGTH + NONCE_LENGTH);
  const tag = envelope.subarray(HEADER_LENGTH + NONCE_LENGTH, MIN_ENVELOPE_LENGTH);
  const body = envelope.subarray(MIN_ENVELOPE_LENGTH);
  const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_LENGTH });
  decipher.setAAD(bindingBytes(Buffer.from(header), binding));
  decipher.setAuthTag(tag);
  try {
    return Buffer.concat([decipher.update(body), decipher.final()]);
  } catch {
    // The OpenSSL error says nothing useful and nothing secret; replace it with ours.
    throw new SikkerError('ERR_CRYPTO_DECRYPT', 'ciphertext failed authentication (tampered, moved or wrong key)');
  }
}

/** Overwrites a buffer holding key material. Safe to call on undefined. */
export function zero(buffer: Buffer | Uint8Array | undefined | null): void {
  buffer?.fill(0);
}

export function newKey(): Buffer {
  return randomBytes(KEY_LENGTH);
}
