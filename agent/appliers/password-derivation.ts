/**
 * Work an engine's applier does on a new password that needs no database — for
 * PostgreSQL the SCRAM-SHA-256 verifier and its login keys (PBKDF2, ~1 ms in the
 * thread pool) — started
 * as soon as the agent has accepted an apply command, so it overlaps with the journal
 * write and the rest, and handed to the applier in `ApplyRequest.derived`.
 *
 * Pure computation on node:crypto: importing this loads no database driver (the
 * command executors import it directly; see agent/commands/rotation-context.ts).
 */
import { scramCredential, zeroScramCredential, type ScramCredential } from './postgres-scram-verifier.js';
import type { Engine } from './target.js';

/**
 * The derivations started for one password. It keeps that password (in a private
 * field: not enumerable, not serialised, never logged) and hands a result out only
 * for that same password, so an applier cannot get a verifier for another one.
 */
export class PasswordDerivation {
  readonly #password: string;
  readonly #scram: Promise<ScramCredential>;

  private constructor(password: string, scram: Promise<ScramCredential>) {
    this.#password = password;
    this.#scram = scram;
  }

  /**
   * Starts what `engine`'s applier will need for `password`: undefined for an engine
   * that needs nothing (every one but PostgreSQL). Never throws; a failed derivation
   * is reported to whoever awaits it (the applier, which then fails as it would
   * computing it itself) and never as an unhandled rejection, so an object nobody
   * uses (the command was then refused) is simply dropped.
   */
  static start(engine: Engine, password: string): PasswordDerivation | undefined {
    if (engine !== 'postgres') return undefined;
    let scram: Promise<ScramCredential>;
    try {
      scram = scramCredential(password);
    } catch (err) {
      scram = Promise.reject(err);
    }
    scram.catch(() => undefined);
    return new PasswordDerivation(password, scram);
  }

  /**
   * PostgreSQL's SCRAM-SHA-256 verifier (random salt, 4096 iterations) and its login
   * keys when `password` is the password this was started for; undefined otherwise
   * (compute it yourself). Each call gets its own copy of the keys, which the caller
   * zeroes when done with them.
   */
  scramCredential(password: string): Promise<ScramCredential> | undefined {
    if (password !== this.#password) return undefined;
    return this.#scram.then((c) => ({ ...c, clientKey: Buffer.from(c.clientKey), serverKey: Buffer.from(c.serverKey) }));
  }

  /** Zeroes the derived keys (once they exist); call when the command is done. */
  dispose(): void {
    this.#scram.then(zeroScramCredential, () => undefined);
  }
}
