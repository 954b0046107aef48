import { constants, mkdirSync, openSync, readFileSync, renameSync, statSync, writeSync, closeSync, fsyncSync } from 'node:fs';
import { dirname } from 'node:path';
import { randomBytes, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { SikkerError } from '../errors/sikker-error.js';
import { generateIdentityKeyPair, privateKeyFromPem, privateKeyToPem } from './ed25519-keys.js';
import { boxPrivateKeyFromPem, boxPrivateKeyToPem } from '../crypto/sealed-box.js';

/**
 * An identity file holds one Ed25519 private key (generated on this host, never sent
 * anywhere) and, once enrolled, the identity id the control plane gave it. It must be
 * a regular file of mode 0600 (or stricter) owned by the current user: anything
 * looser is refused, because someone else may already have copied the key.
 */
const IdentityFileSchema = z.object({
  format: z.literal('sikker-identity-v1'),
  privateKeyPem: z.string().min(32).max(4096),
  identityId: z.string().uuid().nullable(),
  serverPublicKey: z.string().max(64).nullable().optional(),
  /** Agents only: the X25519 key that commands' sealed secrets are addressed to. */
  boxPrivateKeyPem: z.string().min(32).max(4096).nullable().optional(),
});
export type IdentityFileContent = z.infer<typeof IdentityFileSchema>;

export interface LoadedIdentity {
  path: string;
  privateKey: KeyObject;
  identityId: string | null;
  serverPublicKey: string | null;
  boxPrivateKey?: KeyObject | null;
}

export function checkPrivateFileMode(path: string): void {
  const stat = statSync(path);
  if (!stat.isFile()) throw new SikkerError('ERR_IDENTITY_KEY_FILE', `${path} is not a regular file`);
  if ((stat.mode & 0o077) !== 0) {
    throw new SikkerError(
      'ERR_IDENTITY_KEY_FILE',
      `${path} has mode ${(stat.mode & 0o777).toString(8)}; it must be 0600 (run: chmod 600 ${path})`,
    );
  }
  if (typeof process.getuid === 'function' && stat.uid !== process.getuid()) {
    throw new SikkerError('ERR_IDENTITY_KEY_FILE', `${path} is owned by uid ${stat.uid}, not by this user`);
  }
}

export function loadIdentityFile(path: string): LoadedIdentity {
  try {
    checkPrivateFileMode(path);
  } catch (err) {
    if (err instanceof SikkerError) throw err;
    throw new SikkerError('ERR_IDENTITY_KEY_FILE', `cannot read identity file ${path}`, { cause: err });
  }
  let parsed: IdentityFileContent;
  try {
    parsed = IdentityFileSchema.parse(JSON.parse(readFileSync(path, 'utf8')));
  } catch (err) {
    throw new SikkerError('ERR_IDENTITY_KEY_FILE', `identity file ${path} is not a valid SikkerKey identity`);
  }
  return {
    path,
    privateKey: privateKeyFromPem(parsed.privateKeyPem),
    identityId: parsed.identityId,
    serverPublicKey: parsed.serverPublicKey ?? null,
    boxPrivateKey: parsed.boxPrivateKeyPem == null ? null : boxPrivateKeyFromPem(parsed.boxPrivateKeyPem),
  };
}

/** Writes the file atomically with mode 0600 (temp file, fsync, rename). */
export function writeIdentityFile(path: string, identity: Omit<LoadedIdentity, 'path'>): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const content: IdentityFileContent = {
    format: 'sikker-identity-v1',
    privateKeyPem: privateKeyToPem(identity.privateKey),
    identityId: identity.identityId,
    serverPublicKey: identity.serverPublicKey,
    boxPrivateKeyPem: identity.boxPrivateKey == null ? null : boxPrivateKeyToPem(identity.boxPrivateKey),
  };
  // A fresh random name opened exclusively and without following links: nobody can redirect the key.
  const temp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
  const fd = openSync(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    writeSync(fd, JSON.stringify(content, null, 2) + '\n');
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temp, path);
}

/** Creates a fresh identity file (no identity id yet). Refuses to overwrite. */
export function createIdentityFile(path: string): LoadedIdentity {
  let exists = true;
  try {
    statSync(path);
  } catch {
    exists = false; // the normal case: nothing there yet
  }
  if (exists) throw new SikkerError('ERR_IDENTITY_KEY_FILE', `${path} already exists; refusing to overwrite a key`);
  const { privateKey } = generateIdentityKeyPair();
  const identity = { privateKey, identityId: null, serverPublicKey: null };
  writeIdentityFile(path, identity);
  return { path, ...identity };
}
