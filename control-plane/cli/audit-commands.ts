import type { Command } from 'commander';
import type * as z from 'zod';
import { AuditList, AuditQuery, AuditRecord, AuditVerifyResponse } from '../../shared/protocol/api.js';
import { parseWith, queryString } from './cli-arguments.js';
import { checkAgainstMemory } from './audit-checkpoint-memory.js';
import type { CliContext } from './cli-context.js';
import { formatTable, orDash } from './output.js';

interface AuditFlags {
  identity?: string;
  project?: string;
  secret?: string;
  version?: string;
  action?: string;
  from?: string;
  to?: string;
  limit?: string;
}

/** Registers `sikker audit list|verify`. */
export function registerAuditCommands(program: Command, ctx: CliContext): void {
  const audit = ctx.group(program, 'audit', 'search and verify the audit log');

  ctx
    .leaf(audit, 'list', 'list audit records matching the filters', { ownIdentityUuid: true })
    .option('--identity <uuid>', 'only records of this identity')
    .option('--project <project>', 'only records about this project')
    .option('--secret <name>', 'only records about this secret')
    .option('--version <n>', 'only records about this secret version (who could hold it?)')
    .option('--action <action>', 'only this action, e.g. secret.read')
    .option('--from <iso>', 'records at or after this time (ISO 8601 with offset)')
    .option('--to <iso>', 'records before this time (ISO 8601 with offset)')
    .option('--limit <n>', 'at most this many records (1-1000, default 100)')
    .action(async (opts: AuditFlags, cmd: Command) => {
      const query = parseWith(AuditQuery, { ...opts }, 'audit filter');
      const client = ctx.signedClient(cmd);
      const list = await client.request('GET', `/v1/audit${queryString(query)}`, undefined, AuditList);
      ctx.out.result(list, () => formatRecords(list.records));
    });

  ctx.leaf(audit, 'verify', 'check the hash chain and signed checkpoints; exit 1 if broken').action(async (_opts: unknown, cmd: Command) => {
    const config = ctx.config(cmd);
    const identity = ctx.enrolledIdentity(config);
    const verdict = await ctx.client(config, identity).request('POST', '/v1/audit/verify', undefined, AuditVerifyResponse);
    const localProblem = checkAgainstMemory(verdict, identity.serverPublicKey, `${config.identityPath}.audit-checkpoint.json`);
    if (localProblem !== null) Object.assign(verdict, { ok: false, problem: `${localProblem}${verdict.problem === null ? '' : `; server: ${verdict.problem}`}` });
    if (!verdict.ok) ctx.exitCode = 1;
    ctx.out.result(verdict, () => formatVerdict(verdict));
  });
}

type AuditEntry = z.infer<typeof AuditRecord>;

/** Names when the server joined them, ids otherwise. */
function subject(record: AuditEntry): string {
  const project = record.projectName ?? record.projectId;
  const secret = record.secretName ?? record.secretId;
  if (project === null && secret === null) return '-';
  const version = record.secretVersion === null ? '' : `@${record.secretVersion}`;
  return secret === null ? `${orDash(project)}` : `${orDash(project)}/${secret}${version}`;
}

function formatRecords(records: readonly AuditEntry[]): string {
  if (records.length === 0) return 'no audit records match';
  const rows = records.map((r) => [
    r.occurredAt,
    String(r.seq),
    orDash(r.identityName ?? r.identityId),
    orDash(r.sourceIp),
    r.action,
    subject(r),
    r.outcome,
  ]);
  return formatTable([['TIME', 'SEQ', 'IDENTITY', 'IP', 'ACTION', 'SUBJECT', 'OUTCOME'], ...rows]);
}

function formatVerdict(verdict: z.infer<typeof AuditVerifyResponse>): string {
  const counts = `${verdict.checked} records, ${verdict.checkpoints} checkpoints checked`;
  if (verdict.ok) return `audit chain intact (${counts})`;
  return [
    `audit chain BROKEN: ${verdict.problem ?? 'no description'}`,
    `first bad record: seq ${orDash(verdict.firstBadSeq)}`,
    `(${counts})`,
  ].join('\n');
}
