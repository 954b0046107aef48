/**
 * SCRAM-SHA-256 verifiers (RFC 5802, RFC 7677) in PostgreSQL's storage format,
 * computed on the agent so that `ALTER ROLE … PASSWORD` carries a verifier and
 * the plaintext never reaches the server's logs or pg_stat_statements:
 *
 *   SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey b64>:<ServerKey b64>
 *
 * A verifier lets nobody log in (it is not password-equivalent), but it allows
 * an offline guessing attack, so it is still handled as sensitive.
 */
import { createHash, createHmac, pbkdf2, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const pbkdf2Async = promisify(pbkdf2);

/** PostgreSQL's default (scram_iterations) and the RFC 7677 minimum. */
export const SCRAM_ITERATIONS = 4096;
export const SCRAM_SALT_BYTES = 16;

/** The intermediate values of RFC 5802 §3, exported for tests against published vectors. */
export interface ScramKeys {
  saltedPassword: Buffer;
  clientKey: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}

/**
 * SaltedPassword = PBKDF2-HMAC-SHA-256(SASLprep(password), salt, iterations);
 * ClientKey = HMAC(SaltedPassword, "Client Key"); StoredKey = H(ClientKey);
 * ServerKey = HMAC(SaltedPassword, "Server Key").
 * Throws RangeError for fewer than 1 iteration or an empty salt.
 */
export async function scramKeys(password: string, salt: Buffer, iterations: number): Promise<ScramKeys> {
  if (!Number.isInteger(iterations) || iterations < 1) throw new RangeError('iterations must be a positive integer');
  if (salt.length === 0) throw new RangeError('salt must not be empty');
  // a small Buffer.from() is carved from node's shared pool, where it would outlive this call: zeroed once PBKDF2 is done
  const input = Buffer.from(saslPrepPassword(password), 'utf8');
  let saltedPassword: Buffer;
  try {
    saltedPassword = await pbkdf2Async(input, salt, iterations, 32, 'sha256');
  } finally {
    input.fill(0);
  }
  const clientKey = createHmac('sha256', saltedPassword).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', saltedPassword).update('Server Key').digest();
  return { saltedPassword, clientKey, storedKey, serverKey };
}

/**
 * What the agent keeps of a password it sets: the verifier `ALTER ROLE` stores, and the
 * two keys a SCRAM login needs with that verifier's salt and iteration count — so the
 * verify login that follows (postgres-scram-login.ts) does not run the same PBKDF2 again.
 * The keys are password-equivalent for a login: zero them ({@link zeroScramCredential})
 * once the login is done.
 */
export interface ScramCredential {
  verifier: string;
  salt: Buffer;
  iterations: number;
  clientKey: Buffer;
  serverKey: Buffer;
}

/**
 * The verifier for `password` that PostgreSQL (10+) stores as-is and checks SCRAM
 * logins against, with the login keys behind it. Salt: 16 random bytes unless given
 * (tests); iterations: 4096. The SaltedPassword is zeroed before this returns.
 */
export async function scramCredential(password: string, options: { salt?: Buffer; iterations?: number } = {}): Promise<ScramCredential> {
  const salt = options.salt ?? randomBytes(SCRAM_SALT_BYTES);
  const iterations = options.iterations ?? SCRAM_ITERATIONS;
  const { saltedPassword, clientKey, storedKey, serverKey } = await scramKeys(password, salt, iterations);
  saltedPassword.fill(0);
  const verifier = `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
  return { verifier, salt, iterations, clientKey, serverKey };
}

/** Overwrites the credential's keys with zeros (its verifier, a string, is not secret enough to matter and cannot be). */
export function zeroScramCredential(credential: ScramCredential): void {
  credential.clientKey.fill(0);
  credential.serverKey.fill(0);
}

/** {@link scramCredential}'s verifier alone (its keys zeroed). */
export async function scramSha256Verifier(password: string, options: { salt?: Buffer; iterations?: number } = {}): Promise<string> {
  const credential = await scramCredential(password, options);
  zeroScramCredential(credential);
  return credential.verifier;
}

/** The parts of a stored verifier, or undefined if `text` is not one. */
export function parseScramVerifier(text: string): { iterations: number; salt: Buffer; storedKey: Buffer; serverKey: Buffer } | undefined {
  const match = /^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$/.exec(text);
  if (match === null) return undefined;
  const [, iterations, salt, storedKey, serverKey] = match as unknown as [string, string, string, string, string];
  return {
    iterations: Number(iterations),
    salt: Buffer.from(salt, 'base64'),
    storedKey: Buffer.from(storedKey, 'base64'),
    serverKey: Buffer.from(serverKey, 'base64'),
  };
}

// RFC 3454 C.1.2: non-ASCII spaces, mapped to U+0020 by SASLprep.
const NON_ASCII_SPACE = /[\u00A0\u1680\u2000-\u200B\u202F\u205F\u3000]/g;
// RFC 3454 B.1: "commonly mapped to nothing".
// eslint-disable-next-line no-misleading-character-class
const MAPPED_TO_NOTHING = /[\u00AD\u034F\u1806\u180B-\u180D\u200C\u200D\u2060\uFE00-\uFE0F\uFEFF]/g;
// RFC 3454 C.2–C.9 (prohibited output), checked after mapping and NFKC.
const PROHIBITED =
  // eslint-disable-next-line no-control-regex
  /[\u0000-\u001F\u007F-\u009F\u06DD\u070F\u180E\u200E\u200F\u2028-\u202E\u2060-\u2063\u206A-\u206F\u2FF0-\u2FFB\uD800-\uDFFF\uE000-\uF8FF\uFDD0-\uFDEF\uFEFF\uFFF9-\uFFFF]|[\u{1D173}-\u{1D17A}\u{E0001}\u{E0020}-\u{E007F}\u{F0000}-\u{10FFFF}]|[\u{1FFFE}\u{1FFFF}\u{2FFFE}\u{2FFFF}\u{3FFFE}\u{3FFFF}\u{EFFFE}\u{EFFFF}]/u;

/**
 * SASLprep (RFC 4013) as PostgreSQL's server and libpq apply it to passwords:
 * pure ASCII is used unchanged; otherwise non-ASCII spaces become U+0020,
 * "mapped to nothing" characters are removed and the result is NFKC-normalised;
 * if that result holds a prohibited character, PostgreSQL falls back to the raw
 * password, and so does this. Not implemented: the unassigned-code-point and
 * bidirectional checks (both also fall back to raw in PostgreSQL), so passwords
 * with unassigned or mixed-direction characters may differ — generated
 * passwords should stay ASCII.
 */
export function saslPrepPassword(password: string): string {
  // eslint-disable-next-line no-control-regex
  if (/^[\u0000-\u007F]*$/.test(password)) return password;
  const prepared = password.replace(NON_ASCII_SPACE, ' ').replace(MAPPED_TO_NOTHING, '').normalize('NFKC');
  return PROHIBITED.test(prepared) ? password : prepared;
}
