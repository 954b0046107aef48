/**
 * The server side of SCRAM-SHA-256 (RFC 5802 with RFC 7677's hash), as mongod
 * stores and checks it: per user a salt, an iteration count, StoredKey =
 * H(HMAC(SaltedPassword, "Client Key")) and ServerKey = HMAC(SaltedPassword,
 * "Server Key"); the password itself is never kept. A login proves itself by
 * a ClientProof that, XORed with HMAC(StoredKey, AuthMessage), hashes back to
 * StoredKey; the server answers with ServerSignature so the client can check
 * the server knew the credential too.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import saslprep from '@mongodb-js/saslprep';
import { CommandError, authenticationFailed } from './errors.js';

/** The `SCRAM-SHA-256` entry of a user's `credentials`, as in admin.system.users. */
export interface ScramCredential {
  iterationCount: number;
  salt: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}

/** mongod's default scramSHA256IterationCount. */
export const DEFAULT_ITERATIONS = 15_000;
/** mongod's salt length for SHA-256: the digest size minus four bytes. */
const SALT_BYTES = 28;

const hmac = (key: Buffer, text: string | Buffer): Buffer => createHmac('sha256', key).update(text).digest();
const sha256 = (data: Buffer): Buffer => createHash('sha256').update(data).digest();

/**
 * Derives the stored credential from `password` after SASLprep, as mongod
 * does for `createUser` / `updateUser`. A password SASLprep refuses (prohibited
 * or, in Unicode 3.2, unassigned code points such as emoji) is refused the way
 * mongod's ICU refuses it: Location50693, without echoing the password.
 */
export function makeCredential(password: string, iterationCount: number): ScramCredential {
  let prepped: string;
  try {
    prepped = saslprep(password);
  } catch (err) {
    const what = err instanceof Error && /unassigned/i.test(err.message) ? 'U_STRINGPREP_UNASSIGNED_ERROR' : 'U_STRINGPREP_PROHIBITED_ERROR';
    throw new CommandError('Location50693', `Failed normalizing string: ${what}`);
  }
  const salt = randomBytes(SALT_BYTES);
  const salted = pbkdf2Sync(Buffer.from(prepped, 'utf8'), salt, iterationCount, 32, 'sha256');
  return { iterationCount, salt, storedKey: sha256(hmac(salted, 'Client Key')), serverKey: hmac(salted, 'Server Key') };
}

/** `n=` of a client-first message: `=2C` and `=3D` are the only escapes (RFC 5802 §5.1). */
function decodeSaslName(name: string): string | undefined {
  if (/=(?!2C|3D)/.test(name)) return undefined;
  return name.replace(/=2C/g, ',').replace(/=3D/g, '=');
}

/** `a=x,b=y` → Map; attribute order is checked by the callers. */
function attributes(text: string): [string, string][] {
  return text.split(',').map((part) => {
    const eq = part.indexOf('=');
    return eq === 1 ? [part.slice(0, 1), part.slice(2)] : ['', part];
  });
}

/**
 * One SCRAM-SHA-256 conversation: `start` answers the client-first message,
 * `finish` checks the client-final one. Every failure is AuthenticationFailed
 * (mongod does not tell an unknown user from a wrong password).
 */
export class ScramConversation {
  private state: { user: string; bare: string; serverFirst: string; nonce: string; gs2: string; credential: ScramCredential } | undefined;

  /** @param lookup the stored credential of a user in this conversation's database. */
  constructor(private readonly lookup: (user: string) => ScramCredential | undefined) {}

  /** client-first-message → server-first-message. */
  start(payload: Buffer): Buffer {
    const text = payload.toString('utf8');
    const gs2 = /^[ny],(a=[^,]*)?,/.exec(text)?.[0];
    if (gs2 === undefined || gs2.length > 3) throw authenticationFailed(); // channel binding and authzid are not offered
    const bare = text.slice(gs2.length);
    const [name, nonce, ...extensions] = attributes(bare);
    const user = name?.[0] === 'n' ? decodeSaslName(name[1]) : undefined;
    if (user === undefined || nonce?.[0] !== 'r' || nonce[1] === '' || extensions.length > 0) throw authenticationFailed();
    const credential = this.lookup(user);
    if (credential === undefined) throw authenticationFailed();
    const combined = nonce[1] + randomBytes(24).toString('base64');
    const serverFirst = `r=${combined},s=${credential.salt.toString('base64')},i=${credential.iterationCount}`;
    this.state = { user, bare, serverFirst, nonce: combined, gs2, credential };
    return Buffer.from(serverFirst, 'utf8');
  }

  /** client-final-message → server-final-message (`v=ServerSignature`) and the authenticated user. */
  finish(payload: Buffer): { reply: Buffer; user: string } {
    const state = this.state;
    this.state = undefined;
    if (state === undefined) throw authenticationFailed();
    const text = payload.toString('utf8');
    const proofAt = text.lastIndexOf(',p=');
    if (proofAt < 0) throw authenticationFailed();
    const withoutProof = text.slice(0, proofAt);
    const [binding, nonce, ...extensions] = attributes(withoutProof);
    if (binding?.[0] !== 'c' || binding[1] !== Buffer.from(state.gs2).toString('base64')) throw authenticationFailed();
    if (nonce?.[0] !== 'r' || nonce[1] !== state.nonce || extensions.length > 0) throw authenticationFailed();
    const proof = Buffer.from(text.slice(proofAt + 3), 'base64');
    const authMessage = `${state.bare},${state.serverFirst},${withoutProof}`;
    const signature = hmac(state.credential.storedKey, authMessage);
    if (proof.length !== signature.length) throw authenticationFailed();
    const clientKey = Buffer.from(proof.map((byte, i) => byte ^ (signature[i] ?? 0)));
    if (!timingSafeEqual(sha256(clientKey), state.credential.storedKey)) throw authenticationFailed();
    const serverSignature = hmac(state.credential.serverKey, authMessage).toString('base64');
    return { reply: Buffer.from(`v=${serverSignature}`, 'utf8'), user: state.user };
  }
}
