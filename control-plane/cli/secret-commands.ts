import type { Command } from 'commander';
import * as z from 'zod';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import {
  GrantSecretRequest,
  ProjectName,
  PutSecretRequest,
  PutSecretResponse,
  ReadSecretQuery,
  ReadSecretResponse,
  SecretList,
  SecretVersions,
} from '../../shared/protocol/api.js';
import { parseSecretRef, parseWith, projectPath, queryString, secretPath } from './cli-arguments.js';
import type { CliContext } from './cli-context.js';
import { formatTable, orDash } from './output.js';
import { isInteractive, readSecretText, stripOneNewline } from '../../shared/terminal/stdin-input.js';

const MAX_VALUE_CHARS = 65536;
/** UTF-8 needs at most 4 bytes per UTF-16 unit counted by the schema, plus a CR LF. */
const MAX_VALUE_BYTES = MAX_VALUE_CHARS * 4 + 2;

/** Registers `sikker secret put|get|list|versions|grant`. */
export function registerSecretCommands(program: Command, ctx: CliContext): void {
  const secret = ctx.group(program, 'secret', 'store, read and share secrets');

  ctx
    .leaf(secret, 'put <project/name>', 'store a new version; the value is read from stdin, never from arguments')
    .option('--pending', 'store it as the pending version instead of making it current')
    .action((ref: string, opts: { pending?: boolean }, cmd: Command) => putSecret(ctx, cmd, ref, opts.pending === true));

  ctx
    .leaf(secret, 'get <project/name>', 'print a secret value (the read is audited)')
    .option('--version <n>', 'a specific version')
    .option('--label <label>', 'current, previous or pending')
    .action(async (ref: string, opts: { version?: string; label?: string }, cmd: Command) => {
      const target = parseSecretRef(ref);
      const query = parseWith(ReadSecretQuery, { version: opts.version, label: opts.label }, '--version/--label');
      const client = ctx.signedClient(cmd);
      const read = await client.request('GET', `${secretPath(target)}${queryString(query)}`, undefined, ReadSecretResponse);
      ctx.out.result(read, () => `${read.value}\n`);
    });

  ctx.leaf(secret, 'list <project>', 'list the secrets of a project').action(async (project: string, _opts: unknown, cmd: Command) => {
    const projectName = parseWith(ProjectName, project, 'project name');
    const list = await ctx.signedClient(cmd).request('GET', `${projectPath(projectName)}/secrets`, undefined, SecretList);
    ctx.out.result(list, () => {
      if (list.secrets.length === 0) return `no secrets in ${projectName}`;
      const rows = list.secrets.map((s) => [s.name, orDash(s.currentVersion), s.createdAt]);
      return formatTable([['NAME', 'CURRENT', 'CREATED'], ...rows]);
    });
  });

  ctx
    .leaf(secret, 'versions <project/name>', 'list the versions of a secret')
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const target = parseSecretRef(ref);
      const list = await ctx.signedClient(cmd).request('GET', `${secretPath(target)}/versions`, undefined, SecretVersions);
      ctx.out.result(list, () => {
        const rows = list.versions.map((v) => [String(v.version), orDash(v.label), v.state, v.createdAt]);
        return formatTable([['VERSION', 'LABEL', 'STATE', 'CREATED'], ...rows]);
      });
    });

  ctx
    .leaf(secret, 'grant <project/name>', 'allow an identity to read a secret', { ownIdentityUuid: true })
    .requiredOption('--identity <uuid>', 'the identity id to grant')
    .action(async (ref: string, opts: { identity: string }, cmd: Command) => {
      const target = parseSecretRef(ref);
      const body = parseWith(GrantSecretRequest, { identityId: opts.identity }, '--identity');
      // The server answers 204; accept any body so a future payload does not break old CLIs.
      await ctx.signedClient(cmd).request('POST', `${secretPath(target)}/grants`, body, z.unknown());
      const document = { granted: true, project: target.project, secret: target.name, identityId: body.identityId };
      ctx.out.result(document, () => `granted ${body.identityId} read access to ${target.project}/${target.name}`);
    });
}

/** Reads the value from stdin (one trailing newline stripped), refuses empty or oversized values, never echoes it. */
async function putSecret(ctx: CliContext, cmd: Command, ref: string, pending: boolean): Promise<void> {
  const target = parseSecretRef(ref);
  const client = ctx.signedClient(cmd);
  if (isInteractive(ctx.io.stdin)) ctx.out.note('type or paste the secret value (it is not shown), then press Ctrl-D');
  const value = stripOneNewline(await readSecretText(ctx.io.stdin, MAX_VALUE_BYTES, 'secret value'));
  if (value === '') throw new SikkerError('ERR_VALIDATION', 'secret value on stdin is empty');
  if (value.length > MAX_VALUE_CHARS) {
    throw new SikkerError('ERR_VALIDATION', `secret value is longer than ${MAX_VALUE_CHARS} characters`);
  }
  const body = parseWith(PutSecretRequest, { value, label: pending ? 'pending' : 'current' }, 'secret value');
  const stored = await client.request('PUT', secretPath(target), body, PutSecretResponse);
  ctx.out.result(stored, () => `stored ${target.project}/${target.name} version ${stored.version} (${stored.label})`);
}
