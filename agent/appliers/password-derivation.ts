/**
 * Work an engine's applier does on a new password that needs no database — for
 * PostgreSQL the SCRAM-SHA-256 verifier (PBKDF2, ~1 ms in the thread pool) — started
 * as soon as the agent has accepted an apply command, so it overlaps with the journal
 * write and the rest, and handed to the applier in `ApplyRequest.derived`.
 *
 * Pure computation on node:crypto: importing this loads no database driver (the
 * command executors import it directly; see agent/commands/rotation-context.ts).
 */
import { scramSha256Verifier } from './postgres-scram-verifier.js';
import type { Engine } from './target.js';

/**
 * The derivations started for one password. It keeps that password (in a private
 * field: not enumerable, not serialised, never logged) and hands a result out only
 * for that same password, so an applier cannot get a verifier for another one.
 */
export class PasswordDerivation {
  readonly #password: string;
  readonly #scramVerifier: Promise<string>;

  private constructor(password: string, scramVerifier: Promise<string>) {
    this.#password = password;
    this.#scramVerifier = scramVerifier;
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
    let verifier: Promise<string>;
    try {
      verifier = scramSha256Verifier(password);
    } catch (err) {
      verifier = Promise.reject(err);
    }
    verifier.catch(() => undefined);
    return new PasswordDerivation(password, verifier);
  }

  /**
   * PostgreSQL's SCRAM-SHA-256 verifier (random salt, 4096 iterations) when `password`
   * is the password this was started for; undefined otherwise (compute it yourself).
   */
  scramSha256Verifier(password: string): Promise<string> | undefined {
    return password === this.#password ? this.#scramVerifier : undefined;
  }
}
