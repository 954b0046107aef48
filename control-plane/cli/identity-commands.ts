import type { Command } from 'commander';
import * as z from 'zod';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import {
  Cidr,
  CreateTokenRequest,
  CreateTokenResponse,
  IdentityList,
  IdentityName,
  ProjectName,
  ROLES,
  Role,
  Uuid,
  WhoAmI,
} from '../../shared/protocol/api.js';
import { collect, parseDurationSeconds, parseWith } from './cli-arguments.js';
import type { CliContext } from './cli-context.js';
import { registerIdentityKeyCommands } from './identity-key-commands.js';
import { formatTable, orDash } from './output.js';

type Identity = z.infer<typeof WhoAmI>;

const MIN_TTL_SECONDS = 30;
const MAX_TTL_SECONDS = 7 * 24 * 3600;

/** Registers `sikker identity token|enroll|list|disable|whoami|rekey`. */
export function registerIdentityCommands(program: Command, ctx: CliContext): void {
  const identity = ctx.group(program, 'identity', 'join tokens, enrollment and identity management');

  ctx
    .leaf(identity, 'token', 'create a one-time join token for a new identity')
    .requiredOption('--project <project>', 'project the new identity joins')
    .requiredOption('--role <role>', `role in that project: ${ROLES.join(', ')}`)
    .option('--ttl <duration>', 'how long the token stays valid (30s to 7d), e.g. 15m, 2h, 900s', '15m')
    .option('--cidr <cidr>', 'source network the identity may connect from (repeatable)', collect)
    .option('--name <name>', 'name for the new identity')
    .action((opts: TokenFlags, cmd: Command) => createToken(ctx, cmd, opts));

  registerIdentityKeyCommands(identity, ctx);

  ctx.leaf(identity, 'list', 'list identities and their grants').action(async (_opts: unknown, cmd: Command) => {
    const list = await ctx.signedClient(cmd).request('GET', '/v1/identities', undefined, IdentityList);
    ctx.out.result(list, () => {
      const rows = list.identities.map((i) => [i.name, i.identityId, i.disabled ? 'disabled' : 'active', formatGrants(i), orDash(i.cidrs.join(','))]);
      return formatTable([['NAME', 'ID', 'STATE', 'GRANTS', 'CIDRS'], ...rows]);
    });
  });

  ctx.leaf(identity, 'disable <id>', 'disable an identity at once').action(async (id: string, _opts: unknown, cmd: Command) => {
    const identityId = parseWith(Uuid, id, 'identity id');
    await ctx.signedClient(cmd).request('POST', `/v1/identities/${encodeURIComponent(identityId)}/disable`, undefined, z.unknown());
    ctx.out.result({ identityId, disabled: true }, () => `identity ${identityId} disabled`);
  });

  ctx.leaf(identity, 'whoami', 'show the identity this key file speaks for').action(async (_opts: unknown, cmd: Command) => {
    const me = await ctx.signedClient(cmd).request('GET', '/v1/whoami', undefined, WhoAmI);
    ctx.out.result(me, () =>
      formatTable([
        ['name:', me.name],
        ['id:', me.identityId],
        ['state:', me.disabled ? 'disabled' : 'active'],
        ['grants:', orDash(formatGrants(me))],
        ['cidrs:', orDash(me.cidrs.join(', '))],
        ['public key:', me.publicKey],
      ]),
    );
  });
}

interface TokenFlags {
  project: string;
  role: string;
  ttl: string;
  cidr?: string[];
  name?: string;
}

/** Validates each flag on its own so the message names the flag, then the whole request. */
function tokenRequest(opts: TokenFlags): z.infer<typeof CreateTokenRequest> {
  const ttlSeconds = parseDurationSeconds(opts.ttl, '--ttl');
  if (ttlSeconds < MIN_TTL_SECONDS || ttlSeconds > MAX_TTL_SECONDS) {
    throw new SikkerError('ERR_VALIDATION', 'invalid --ttl: must be between 30s and 7d');
  }
  const request = {
    project: parseWith(ProjectName, opts.project, '--project'),
    role: parseWith(Role, opts.role, '--role'),
    ttlSeconds,
    cidrs: (opts.cidr ?? []).map((cidr) => parseWith(Cidr, cidr, '--cidr')),
    name: opts.name === undefined ? undefined : parseWith(IdentityName, opts.name, '--name'),
  };
  return parseWith(CreateTokenRequest, request, 'token request');
}

async function createToken(ctx: CliContext, cmd: Command, opts: TokenFlags): Promise<void> {
  const body = tokenRequest(opts);
  const created = await ctx.signedClient(cmd).request('POST', '/v1/tokens', body, CreateTokenResponse);
  if (!ctx.out.json) ctx.out.note('the token works once; hand it over a private channel');
  ctx.out.result({ ...created, project: body.project, role: body.role }, () =>
    [
      `token:   ${created.token}`,
      `expires: ${created.expiresAt}`,
      `redeem on the new machine with: sikker identity enroll --token - (token on stdin)`,
    ].join('\n'),
  );
}

function formatGrants(identity: Identity): string {
  return identity.grants.map((grant) => `${grant.project ?? '*'}:${grant.role}`).join(',');
}
