import { statSync } from 'node:fs';
import { hostname } from 'node:os';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { IdentityName } from '../../shared/protocol/api.js';
import { createIdentityFile, loadIdentityFile, writeIdentityFile, type LoadedIdentity } from '../../shared/signing/identity-file.js';

function fileExists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return false;
    throw new SikkerError('ERR_IDENTITY_KEY_FILE', `cannot inspect identity file ${path}`, { cause: err });
  }
}

/**
 * The identity to enroll with: a new key file (0600) when `path` does not exist, or
 * the existing one if it was never enrolled (an earlier attempt that the server
 * refused). An already-enrolled file is refused with ERR_CONFLICT: enrolling again
 * would silently replace which identity this file speaks for.
 */
export function prepareUnenrolledIdentity(path: string): LoadedIdentity {
  if (!fileExists(path)) return createIdentityFile(path);
  const identity = loadIdentityFile(path);
  if (identity.identityId !== null) {
    throw new SikkerError(
      'ERR_CONFLICT',
      `${path} is already enrolled as identity ${identity.identityId}; use --identity with another file path`,
    );
  }
  return identity;
}

/** Writes the server-assigned identity id and server key into the identity file (atomic, 0600). */
export function saveEnrollment(identity: LoadedIdentity, identityId: string, serverPublicKey: string): void {
  writeIdentityFile(identity.path, { privateKey: identity.privateKey, identityId, serverPublicKey });
}

/**
 * `$USER@hostname` made into a valid IdentityName: other characters become "-",
 * leading non-alphanumerics are dropped, length capped at 100. Falls back to
 * "operator" when nothing usable is left.
 */
export function defaultIdentityName(env: Record<string, string | undefined>, host: string = hostname()): string {
  const raw = `${env['USER'] ?? env['LOGNAME'] ?? 'operator'}@${host}`;
  const cleaned = raw.replace(/[^A-Za-z0-9_.@-]/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 100);
  return IdentityName.safeParse(cleaned).success ? cleaned : 'operator';
}
