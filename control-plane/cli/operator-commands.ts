import type { Command } from 'commander';
import type * as z from 'zod';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { InitRequest, InitResponse, StatusResponse } from '../../shared/protocol/api.js';
import { exportPublicKey } from '../../shared/signing/ed25519-keys.js';
import { ENROLLING_IDENTITY } from '../../shared/signing/request-signature.js';
import { parseWholeNumber, parseWith } from './cli-arguments.js';
import type { CliContext } from './cli-context.js';
import { defaultIdentityName, prepareUnenrolledIdentity, saveEnrollment } from './identity-setup.js';
import { describeError, formatTable, orDash } from './output.js';
import { isInteractive, readSecretText } from '../../shared/terminal/stdin-input.js';

/** Registers `sikker operator init|unseal|seal|status`. */
export function registerOperatorCommands(program: Command, ctx: CliContext): void {
  const operator = ctx.group(program, 'operator', 'initialise, unseal, seal and inspect the vault');
  ctx
    .leaf(operator, 'init', 'initialise the vault, split the root key into shares and enroll this identity as admin')
    .requiredOption('--shares <n>', 'number of unseal shares to create (2-16)')
    .requiredOption('--threshold <k>', 'shares needed to unseal (2 up to --shares)')
    .option('--name <name>', 'name of this operator identity (default $USER@hostname)')
    .action((opts: InitFlags, cmd: Command) => initVault(ctx, cmd, opts));
  ctx
    .leaf(operator, 'unseal', 'submit ONE unseal share, read from stdin')
    .action((_opts: unknown, cmd: Command) => unsealVault(ctx, cmd));
  ctx
    .leaf(operator, 'seal', 'drop the root key from memory now (signed)')
    .action(async (_opts: unknown, cmd: Command) => {
      const status = await ctx.signedClient(cmd).request('POST', '/v1/sys/seal', undefined, StatusResponse);
      ctx.out.result(status, () => `vault sealed\n${formatStatus(status)}`);
    });
  ctx
    .leaf(operator, 'status', 'show whether the vault is initialised and sealed')
    .action(async (_opts: unknown, cmd: Command) => {
      const status = await ctx.unsignedClient(cmd).request('GET', '/v1/sys/status', undefined, StatusResponse, { signed: false });
      ctx.out.result(status, () => formatStatus(status));
    });
}

interface InitFlags {
  shares: string;
  threshold: string;
  name?: string;
}

/** Validates everything before the key file is created, so a typo leaves nothing behind. */
function checkInitFlags(ctx: CliContext, opts: InitFlags): { shares: number; threshold: number; name: string } {
  const shares = parseWith(InitRequest.shape.shares, parseWholeNumber(opts.shares, '--shares'), '--shares');
  const threshold = parseWith(InitRequest.shape.threshold, parseWholeNumber(opts.threshold, '--threshold'), '--threshold');
  if (threshold > shares) throw new SikkerError('ERR_VALIDATION', 'invalid --threshold: must not exceed --shares');
  const name = parseWith(InitRequest.shape.name, opts.name ?? defaultIdentityName(ctx.io.env), '--name');
  return { shares, threshold, name };
}

async function initVault(ctx: CliContext, cmd: Command, opts: InitFlags): Promise<void> {
  const config = ctx.config(cmd);
  const { shares, threshold, name } = checkInitFlags(ctx, opts);
  ctx.transport(config); // validates server URL, TLS settings and transport policy before a key file is created
  const identity = prepareUnenrolledIdentity(config.identityPath);
  const body = parseWith(InitRequest, { shares, threshold, publicKey: exportPublicKey(identity.privateKey), name }, 'init request');
  const response = await ctx
    .client(config, identity)
    .request('POST', '/v1/sys/init', body, InitResponse, { identityIdOverride: ENROLLING_IDENTITY });
  // The shares exist nowhere else: print them even if saving the identity fails.
  let saveError: unknown;
  try {
    saveEnrollment(identity, response.identityId, response.serverPublicKey);
  } catch (err) {
    saveError = err;
  }
  printShares(ctx, response, { threshold, identityPath: config.identityPath, saveError });
  if (saveError !== undefined) {
    ctx.exitCode = 1;
    if (!ctx.out.json) ctx.out.error(saveError);
  }
}

function printShares(
  ctx: CliContext,
  response: z.infer<typeof InitResponse>,
  facts: { threshold: number; identityPath: string; saveError: unknown },
): void {
  const warning =
    `These ${response.shares.length} unseal shares are shown only this once. Store each one apart ` +
    `(different people, different places): any ${facts.threshold} of them unseal the vault.`;
  const document = {
    identityId: response.identityId,
    serverPublicKey: response.serverPublicKey,
    identityFile: facts.identityPath,
    threshold: facts.threshold,
    shares: response.shares,
    warning,
    ...(facts.saveError === undefined ? {} : { identityFileError: describeError(facts.saveError) }),
  };
  if (!ctx.out.json) ctx.out.note(`WARNING: ${warning}`);
  ctx.out.result(document, () => {
    const saved = facts.saveError === undefined ? `saved in ${facts.identityPath}` : 'NOT saved (see error below)';
    const lines = response.shares.map((share, index) => `  share ${index + 1}: ${share}`);
    return [
      `vault initialised; admin identity ${response.identityId} ${saved}`,
      `unseal shares (${facts.threshold} of ${response.shares.length} needed):`,
      ...lines,
    ].join('\n');
  });
}

async function unsealVault(ctx: CliContext, cmd: Command): Promise<void> {
  const client = ctx.unsignedClient(cmd);
  if (isInteractive(ctx.io.stdin)) ctx.out.note('paste ONE unseal share (it is not shown), then press Ctrl-D');
  const share = (await readSecretText(ctx.io.stdin, 4096, 'unseal share')).trim();
  if (share === '') {
    throw new SikkerError('ERR_VALIDATION', 'no unseal share on stdin (e.g. sikker operator unseal < share.txt)');
  }
  if (share.length > 200 || /\s/.test(share)) {
    throw new SikkerError('ERR_VALIDATION', 'stdin must hold exactly ONE unseal share (at most 200 characters)');
  }
  const status = await client.request('POST', '/v1/sys/unseal', { share }, StatusResponse, { signed: false });
  ctx.out.result(status, () => formatStatus(status));
}

/** Human rendering of StatusResponse. */
function formatStatus(status: z.infer<typeof StatusResponse>): string {
  const yesNo = (value: boolean): string => (value ? 'yes' : 'no');
  const rows: string[][] = [
    ['initialised:', yesNo(status.initialised)],
    ['sealed:', yesNo(status.sealed)],
    ['threshold:', status.threshold === null ? '-' : `${status.threshold} of ${orDash(status.shares)} shares`],
  ];
  if (status.sealed && status.initialised) rows.push(['unseal progress:', `${status.progress} of ${orDash(status.threshold)}`]);
  return formatTable(rows);
}
