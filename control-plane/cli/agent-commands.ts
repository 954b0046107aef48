import type { Command } from 'commander';
import type * as z from 'zod';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { AgentCommand, AgentDetail, AgentList, IssueCommandRequest, ProjectName, Uuid } from '../../shared/protocol/api.js';
import { parseDurationSeconds, parseSecretRef, parseWholeNumber, parseWith, queryString } from './cli-arguments.js';
import type { CliContext } from './cli-context.js';
import type { SignedClient } from '../../shared/http-client/signed-client.js';
import { formatTable, orDash } from './output.js';

type CommandView = z.infer<typeof AgentCommand>;
const FINAL_STATES = new Set(['succeeded', 'failed', 'rejected', 'expired']);

/** Registers `sikker agent list|show|probe|deliver`. */
export function registerAgentCommands(program: Command, ctx: CliContext): void {
  const agent = ctx.group(program, 'agent', 'see agents and send them commands');

  ctx.leaf(agent, 'list', 'agents with online state, last heartbeat, version, replica, address')
    .option('--project <project>', 'only the agents of this project (required unless you are a control-plane admin)')
    .action(async (opts: { project?: string }, cmd: Command) => {
      const project = opts.project === undefined ? undefined : parseWith(ProjectName, opts.project, '--project');
      const list = await ctx.signedClient(cmd).request('GET', `/v1/agents${queryString({ project })}`, undefined, AgentList);
      ctx.out.result(list, () => {
        if (list.agents.length === 0) return 'no agents';
        const rows = list.agents.map((a) => [a.name, a.agentId, a.project, a.disabled ? 'disabled' : a.online ? 'online' : 'offline', orDash(a.lastHeartbeatAt), orDash(a.agentVersion), orDash(a.replica), orDash(a.address)]);
        return formatTable([['NAME', 'ID', 'PROJECT', 'STATE', 'LAST HEARTBEAT', 'VERSION', 'REPLICA', 'ADDRESS'], ...rows]);
      });
    });

  ctx.leaf(agent, 'show <agent-id>', 'one agent and its recent commands').action(async (id: string, _opts: unknown, cmd: Command) => {
    const agentId = parseWith(Uuid, id, 'agent id');
    const detail = await ctx.signedClient(cmd).request('GET', `/v1/agents/${agentId}`, undefined, AgentDetail);
    ctx.out.result(detail, () => [
      `${detail.name} (${detail.agentId}) in ${detail.project}: ${detail.disabled ? 'disabled' : detail.online ? 'online' : 'offline'}`,
      `version ${orDash(detail.agentVersion)}, replica ${orDash(detail.replica)}, address ${orDash(detail.address)}, last heartbeat ${orDash(detail.lastHeartbeatAt)}`,
      detail.commands.length === 0 ? 'no commands' : formatCommands(detail.commands),
    ].join('\n'));
  });

  ctx.leaf(agent, 'probe <agent-id>', 'ask the agent to answer (queued until it is online)')
    .option('--wait <duration>', 'wait up to this long for the answer (e.g. 30s)')
    .action((id: string, opts: { wait?: string }, cmd: Command) => issue(ctx, cmd, id, { kind: 'agent.probe' }, opts.wait));

  ctx.leaf(agent, 'deliver <agent-id>', "seal a secret to the agent's key and have it written to one of its configured sinks")
    .requiredOption('--secret <project/name>', 'the secret (must be in the agent\'s project)')
    .requiredOption('--sink <name>', 'a sink name from the agent\'s configuration')
    .option('--version <n>', 'a specific version (default: current)')
    .option('--wait <duration>', 'wait up to this long for the result (e.g. 30s)')
    .action((id: string, opts: { secret: string; sink: string; version?: string; wait?: string }, cmd: Command) => {
      const ref = parseSecretRef(opts.secret);
      const version = opts.version === undefined ? undefined : parseWholeNumber(opts.version, '--version');
      return issue(ctx, cmd, id, { kind: 'secret.deliver', project: ref.project, secret: ref.name, sink: opts.sink, ...(version === undefined ? {} : { version }) }, opts.wait);
    });
}

async function issue(ctx: CliContext, cmd: Command, id: string, request: unknown, wait: string | undefined): Promise<void> {
  const agentId = parseWith(Uuid, id, 'agent id');
  const body = parseWith(IssueCommandRequest, request, 'command');
  const waitSeconds = wait === undefined ? 0 : parseDurationSeconds(wait, '--wait');
  const client = ctx.signedClient(cmd);
  let command = await client.request('POST', `/v1/agents/${agentId}/commands`, body, AgentCommand);
  if (waitSeconds > 0) command = await waitForFinal(client, agentId, command, waitSeconds * 1000);
  if (waitSeconds > 0 && command.state !== 'succeeded') ctx.exitCode = 1;
  ctx.out.result(command, () => formatCommands([command]));
}

/** Polls once a second until the command reaches a final state or the wait runs out (it stays queued). */
async function waitForFinal(client: SignedClient, agentId: string, first: CommandView, waitMs: number): Promise<CommandView> {
  const deadline = Date.now() + waitMs;
  let command = first;
  while (!FINAL_STATES.has(command.state)) {
    if (Date.now() > deadline) throw new SikkerError('ERR_CONFLICT', `command ${command.commandId} is still ${command.state}; it stays queued for the agent`, { retryable: true });
    await new Promise((r) => setTimeout(r, 1000));
    command = await client.request('GET', `/v1/agents/${agentId}/commands/${command.commandId}`, undefined, AgentCommand);
  }
  return command;
}

function formatCommands(commands: CommandView[]): string {
  const rows = commands.map((c) => [
    c.commandId, String(c.generation), c.kind, c.state, String(c.deliveries), c.issuedAt, orDash(c.completedAt),
    c.error === null ? (c.result === null ? '-' : JSON.stringify(c.result)) : `${c.error.code}: ${c.error.message}`,
  ]);
  return formatTable([['COMMAND', 'GEN', 'KIND', 'STATE', 'SENT', 'ISSUED', 'DONE', 'RESULT'], ...rows]);
}
