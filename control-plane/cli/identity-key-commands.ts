import { sign } from 'node:crypto';
import { existsSync, renameSync, rmSync } from 'node:fs';
import type { Command } from 'commander';
import * as z from 'zod';
import { SikkerError, isSikkerError } from '../../shared/errors/sikker-error.js';
import { EnrollRequest, EnrollResponse, IdentityName, RekeyRequest, rekeyProofText } from '../../shared/protocol/api.js';
import { exportPublicKey, generateIdentityKeyPair } from '../../shared/signing/ed25519-keys.js';
import { writeIdentityFile } from '../../shared/signing/identity-file.js';
import { ENROLLING_IDENTITY, newNonce } from '../../shared/signing/request-signature.js';
import { parseWith } from './cli-arguments.js';
import type { CliContext } from './cli-context.js';
import { defaultIdentityName, prepareUnenrolledIdentity, saveEnrollment } from './identity-setup.js';
import { isInteractive, readSecretText } from '../../shared/terminal/stdin-input.js';

/** Registers `sikker identity enroll|rekey` (the commands that create or replace this host's key). */
export function registerIdentityKeyCommands(identity: Command, ctx: CliContext): void {
  ctx
    .leaf(identity, 'enroll', 'create this host\'s key (if absent) and redeem a join token with it')
    .requiredOption('--token <token>', 'the join token; "-" reads it from stdin (keeps it out of shell history)')
    .option('--name <name>', 'name of this identity (default $USER@hostname)')
    .action((opts: { token: string; name?: string }, cmd: Command) => enroll(ctx, cmd, opts));
  ctx
    .leaf(identity, 'rekey', 'replace this identity\'s key pair; the old key signs the change')
    .action((_opts: unknown, cmd: Command) => rekey(ctx, cmd));
}

async function enroll(ctx: CliContext, cmd: Command, opts: { token: string; name?: string }): Promise<void> {
  const config = ctx.config(cmd);
  if (opts.token === '-' && isInteractive(ctx.io.stdin)) ctx.out.note('paste the join token (it is not shown), then press Ctrl-D');
  const tokenText = opts.token === '-' ? (await readSecretText(ctx.io.stdin, 4096, 'join token')).trim() : opts.token;
  const token = parseWith(EnrollRequest.shape.token, tokenText, '--token');
  const name = parseWith(IdentityName, opts.name ?? defaultIdentityName(ctx.io.env), '--name');
  ctx.transport(config); // validates server URL and transport policy before a key file is created
  const identity = prepareUnenrolledIdentity(config.identityPath);
  const body = parseWith(EnrollRequest, { token, publicKey: exportPublicKey(identity.privateKey), name }, 'enroll request');
  const enrolled = await ctx
    .client(config, identity)
    .request('POST', '/v1/enroll', body, EnrollResponse, { identityIdOverride: ENROLLING_IDENTITY });
  try {
    saveEnrollment(identity, enrolled.identityId, enrolled.serverPublicKey);
  } catch (err) {
    throw new SikkerError(
      'ERR_IDENTITY_KEY_FILE',
      `enrolled as identity ${enrolled.identityId} but could not record it in ${identity.path}`,
      { cause: err },
    );
  }
  ctx.out.result({ ...enrolled, identityFile: identity.path }, () =>
    `enrolled as ${enrolled.identityId} (${enrolled.role} in ${enrolled.project}); key in ${identity.path}`,
  );
}

/**
 * Re-keys in an order that never loses a working key: the new key is first written
 * to `<file>.rekey-pending` (0600), the server is asked with the old key, and only
 * once it accepts does the pending file replace the identity file (atomic rename).
 * A definite refusal removes the pending file; an unknown outcome (timeout, 5xx)
 * keeps it and says how to check which key the server holds.
 */
async function rekey(ctx: CliContext, cmd: Command): Promise<void> {
  const config = ctx.config(cmd);
  const current = ctx.enrolledIdentity(config);
  const pendingPath = `${current.path}.rekey-pending`;
  if (existsSync(pendingPath)) {
    throw new SikkerError(
      'ERR_CONFLICT',
      `${pendingPath} is left from an earlier rekey with an unknown outcome; run "sikker identity whoami --identity ${pendingPath}", ` +
        'keep the file whose key works as the identity file and delete the other',
    );
  }
  const client = ctx.client(config, current);
  const next = generateIdentityKeyPair();
  const publicKey = exportPublicKey(next.publicKey);
  const nonce = newNonce();
  const proof = sign(null, rekeyProofText(current.identityId, publicKey, nonce), next.privateKey).toString('base64');
  const body = parseWith(RekeyRequest, { publicKey, proof }, 'rekey request');
  writeIdentityFile(pendingPath, { privateKey: next.privateKey, identityId: current.identityId, serverPublicKey: current.serverPublicKey });
  try {
    await client.request('POST', '/v1/identities/self/rekey', body, z.unknown(), { nonce });
  } catch (err) {
    if (serverRefused(err)) {
      rmSync(pendingPath, { force: true });
      throw err;
    }
    const code = isSikkerError(err) ? err.code : 'ERR_INTERNAL';
    const reason = err instanceof Error ? err.message : 'unexpected failure';
    throw new SikkerError(code, `${reason}; the rekey outcome is unknown, the new key is kept in ${pendingPath}`, { cause: err });
  }
  renameSync(pendingPath, current.path);
  const document = { identityId: current.identityId, publicKey, identityFile: current.path };
  ctx.out.result(document, () => `identity ${current.identityId} re-keyed; new public key ${publicKey} saved in ${current.path}`);
}

const NOT_SENT_CAUSES = /^(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH)$|CERT|SELF_SIGNED|ALTNAME/;

/**
 * True when the rekey certainly did not happen: the server answered 4xx, or the
 * request never left (connection refused, name not resolved, TLS or pin refused).
 */
function serverRefused(err: unknown): boolean {
  if (!isSikkerError(err)) return false;
  if (err.code === 'ERR_TRANSPORT_PIN_MISMATCH') return true;
  const status = err.details?.['status'];
  if (typeof status === 'number') return status >= 400 && status < 500;
  const causeCode = (err.cause as { code?: unknown } | undefined)?.code;
  return err.code === 'ERR_SERVER_UNREACHABLE' && typeof causeCode === 'string' && NOT_SENT_CAUSES.test(causeCode);
}
