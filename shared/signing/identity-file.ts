import { constants, fstatSync, lstatSync, mkdirSync, openSync, readFileSync, renameSync, statSync, writeSync, closeSync, fsyncSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Stats } from 'node:fs';
import { randomBytes, type KeyObject } from 'node:crypto';
import * as z from 'zod';
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

/** The checks on a key file's metadata: a regular file (not a link), no group/other bits, ours. */
function checkPrivateStat(path: string, stat: Stats): void {
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

/** Refuses a symlink, a looser mode than 0600, or another owner (lstat: a link is not followed). */
export function checkPrivateFileMode(path: string): void {
  checkPrivateStat(path, lstatSync(path));
}

/**
 * Reads a private file through one descriptor opened without following links and
 * checked with fstat, so the file checked is the file read (no swap in between).
 */
function readPrivateFile(path: string): string {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    checkPrivateStat(path, fstatSync(fd));
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

export function loadIdentityFile(path: string): LoadedIdentity {
  let text: string;
  try {
    text = readPrivateFile(path);
  } catch (err) {
    if (err instanceof SikkerError) throw err;
    const code = (err as { code?: unknown }).code;
    throw new SikkerError('ERR_IDENTITY_KEY_FILE', code === 'ELOOP' ? `${path} is a symbolic link; use the file itself` : `cannot read identity file ${path}`, { cause: err });
  }
  let parsed: IdentityFileContent;
  try {
    parsed = IdentityFileSchema.parse(JSON.parse(text));
  } catch {
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
