/**
 * A `pg` client that logs in with SCRAM keys the agent already holds.
 *
 * Right after `ALTER ROLE … PASSWORD '<verifier>'`, the applier proves the new password
 * with a fresh login. In that login the server sends back the salt and iteration count of
 * the verifier the agent itself just computed, and the client would run the same 4096
 * rounds of PBKDF2 again (~1.4 ms with pg's WebCrypto calls, on the rotation's critical
 * path). This client answers the server-first message from the ClientKey and ServerKey
 * computed with the verifier (postgres-scram-verifier.ts) when — and only when — the
 * salt and iteration count are exactly those; otherwise (another verifier is stored,
 * channel binding, anything unexpected) pg's own exchange runs with the password. The
 * proof is the same bytes either way, and the server's signature is still checked by pg
 * (`sasl.finalizeSession`), so the login proves the same thing.
 *
 * This overrides `_handleAuthSASLContinue`, an internal of `pg.Client` (pg 8): if a pg
 * release renames it, the override is simply not called and the login runs pg's own
 * PBKDF2 — slower, not wrong. test/integration/applier-postgres-scram-login.test.ts checks
 * that the keys are used, so such a change shows up there.
 */
import { createHash, createHmac } from 'node:crypto';
import pg from 'pg';
import type { ScramCredential } from './postgres-scram-verifier.js';

/** The keys of a login, for the verifier with this salt and iteration count. */
export type ScramLoginKeys = Pick<ScramCredential, 'salt' | 'iterations' | 'clientKey' | 'serverKey'>;

/** The parts of pg.Client this file relies on (pg/lib/client.js, pg/lib/crypto/sasl.js). */
interface SaslSession {
  mechanism: string;
  clientNonce: string;
  message: string;
  response: string;
  serverSignature?: string;
}
interface PgClientInternals {
  saslSession: SaslSession | null;
  enableChannelBinding: boolean;
  connection: { sendSCRAMClientFinalMessage(response: string): void; emit(event: 'error', err: unknown): void };
  _handleAuthSASLContinue(msg: { data: string }): Promise<void>;
}

/** server-first-message as PostgreSQL sends it: r=<nonce>,s=<salt>,i=<iterations> (RFC 5802 §7, no extensions). */
const SERVER_FIRST = /^r=([\x21-\x2b\x2d-\x7e]+),s=([A-Za-z0-9+/]+={0,2}),i=([1-9][0-9]{0,9})$/;

const pgContinue = (pg.Client.prototype as unknown as PgClientInternals)._handleAuthSASLContinue;

export class ScramKeyedClient extends pg.Client {
  readonly #keys: ScramLoginKeys;
  /** True once the login's proof came from the keys (tests read it). */
  provedWithKeys = false;

  constructor(config: pg.ClientConfig, keys: ScramLoginKeys) {
    super(config);
    this.#keys = keys;
  }

  /** Called by pg for AuthenticationSASLContinue (the server-first message). */
  _handleAuthSASLContinue(msg: { data: string }): Promise<void> {
    const self = this as unknown as PgClientInternals;
    const response = typeof msg?.data === 'string' ? this.#answer(self, msg.data) : undefined;
    if (response === undefined) return pgContinue.call(this, msg);
    try {
      self.connection.sendSCRAMClientFinalMessage(response);
      this.provedWithKeys = true;
    } catch (err) {
      self.connection.emit('error', err);
    }
    return Promise.resolve();
  }

  /** The client-final message from the keys, with the session updated as pg's continueSession leaves it; undefined to let pg do it. */
  #answer(self: PgClientInternals, serverFirst: string): string | undefined {
    const session = self.saslSession;
    if (session === null || session.mechanism !== 'SCRAM-SHA-256' || session.message !== 'SASLInitialResponse' || self.enableChannelBinding) return undefined;
    const match = SERVER_FIRST.exec(serverFirst);
    if (match === null) return undefined;
    const [, nonce, salt, iterations] = match as unknown as [string, string, string, string];
    // pg refuses these itself, with its own messages
    if (!nonce.startsWith(session.clientNonce) || nonce.length === session.clientNonce.length) return undefined;
    if (Number(iterations) !== this.#keys.iterations || salt !== this.#keys.salt.toString('base64')) return undefined;
    // gs2 header "n,," (no channel binding), base64 "biws"
    const finalWithoutProof = `c=biws,r=${nonce}`;
    const authMessage = `n=*,r=${session.clientNonce},${serverFirst},${finalWithoutProof}`;
    const storedKey = createHash('sha256').update(this.#keys.clientKey).digest();
    const signature = createHmac('sha256', storedKey).update(authMessage).digest();
    for (let i = 0; i < signature.length; i += 1) signature[i] = (signature[i] ?? 0) ^ (this.#keys.clientKey[i] ?? 0);
    const proof = signature.toString('base64');
    signature.fill(0);
    storedKey.fill(0);
    session.message = 'SASLResponse';
    session.serverSignature = createHmac('sha256', this.#keys.serverKey).update(authMessage).digest('base64');
    session.response = `${finalWithoutProof},p=${proof}`;
    return session.response;
  }
}
