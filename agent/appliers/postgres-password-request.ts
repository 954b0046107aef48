/**
 * Whether a PostgreSQL login was asked for its password.
 *
 * pg's `connect()` resolves at the server's first ReadyForQuery however the server let the
 * client in. Where pg_hba.conf says `trust` (or `ident`, `peer`) for the agent's host and
 * the user, the server never asks for the password, and a "fresh login with the new
 * password" then proves nothing: any password logs in. A rotation's verify, and the check
 * that reconciles an uncertain run, must be able to tell; so must the preflight, which
 * refuses such a target before any policy can rotate it.
 *
 * The server asks with one of these messages; pg's Connection emits each by this name
 * (pg/lib/client.js `_attachListeners`). Should a pg release rename them, no login would
 * count as asked and every verify would fail loudly: fail-closed, never a false proof.
 */
import type pg from 'pg';

const PASSWORD_REQUESTS = ['authenticationSASL', 'authenticationMD5Password', 'authenticationCleartextPassword'] as const;

/** Watches `client`'s login (call before `connect()`); the result says whether the server asked for the password. */
export function watchPasswordRequest(client: pg.Client): () => boolean {
  let asked = false;
  const mark = (): void => {
    asked = true;
  };
  for (const event of PASSWORD_REQUESTS) client.connection.once(event, mark);
  return () => asked;
}
