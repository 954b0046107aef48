import * as z from 'zod';
import type { Pool } from 'pg';
import * as api from '../../../shared/protocol/api.js';
import { SikkerError } from '../../../shared/errors/sikker-error.js';
import { isGlobalAdmin, requireProjectAction } from '../../auth/authorize.js';
import { findAgent, listAgents, type AgentRow } from '../../hub/agent-dal.js';
import { findCommand, recentCommands, type CommandRow } from '../../hub/command-dal.js';
import type { CommandService } from '../../hub/command-service.js';
import type { AuthIdentity } from '../../identity/identity-types.js';
import type { ProjectService } from '../../vault/project-service.js';
import type { RouteKit } from '../route-kit.js';

const iso = (d: Date | null): string | null => (d === null ? null : d.toISOString());

function agentView(a: AgentRow): z.infer<typeof api.Agent> {
  return {
    agentId: a.agent_id, name: a.name, project: a.project_name, online: a.online && a.disabled_at === null, disabled: a.disabled_at !== null,
    agentVersion: a.agent_version, replica: a.replica_id, address: a.remote_address, connectedAt: iso(a.connected_at), lastHeartbeatAt: iso(a.last_heartbeat_at),
  };
}

export function commandView(c: CommandRow): z.infer<typeof api.AgentCommand> {
  return {
    commandId: c.command_id, generation: Number(c.generation), kind: c.kind, state: c.state, payload: c.payload,
    issuedAt: c.issued_at.toISOString(), expiresAt: c.expires_at.toISOString(), deliveries: c.deliveries,
    completedAt: iso(c.completed_at), result: c.result, error: c.error,
  };
}

/** Agents: list, show, issue a command, follow a command. */
export function registerAgentRoutes(kit: RouteKit, deps: { pool: Pool; projects: ProjectService; commands: CommandService; staleSeconds: number }): void {
  const visibleAgent = async (identity: AuthIdentity, agentId: string): Promise<AgentRow> => {
    const agent = await findAgent(deps.pool, deps.staleSeconds, agentId);
    if (agent === null || !(isGlobalAdmin(identity) || identity.grants.some((g) => g.projectId === agent.project_id))) {
      throw new SikkerError('ERR_NOT_FOUND', 'no such agent that you can see');
    }
    requireProjectAction(identity, 'agent.read', agent.project_id);
    return agent;
  };
  const AgentParams = z.object({ agentId: api.Uuid });

  kit.add({
    method: 'GET', url: '/v1/agents', summary: 'List agents with their online state', auth: 'identity',
    query: z.object({ project: api.ProjectName.optional() }), response: api.AgentList,
    handler: async ({ identity, query }) => {
      let projectId: string | null = null;
      if (query.project !== undefined) {
        projectId = (await deps.projects.resolve(identity, query.project)).project_id;
        requireProjectAction(identity, 'agent.read', projectId);
      } else if (!isGlobalAdmin(identity)) {
        throw new SikkerError('ERR_VALIDATION', 'query.project is required unless you are a control-plane admin');
      }
      return { agents: (await listAgents(deps.pool, deps.staleSeconds, projectId)).map(agentView) };
    },
  });
  kit.add({
    method: 'GET', url: '/v1/agents/:agentId', summary: 'One agent and its recent commands', auth: 'identity',
    params: AgentParams, response: api.AgentDetail,
    handler: async ({ identity, params }) => {
      const agent = await visibleAgent(identity, params.agentId);
      return { ...agentView(agent), commands: (await recentCommands(deps.pool, agent.agent_id, 20)).map(commandView) };
    },
  });
  kit.add({
    method: 'POST', url: '/v1/agents/:agentId/commands', summary: 'Queue a command for an agent (delivered now or when it reconnects)', auth: 'identity',
    params: AgentParams, body: api.IssueCommandRequest, response: api.AgentCommand,
    handler: async ({ identity, sourceIp, params, body }) => {
      await visibleAgent(identity, params.agentId);
      const ttlMs = body.ttlSeconds === undefined ? undefined : body.ttlSeconds * 1000;
      const issued = await deps.commands.issue(identity, sourceIp, params.agentId, body.kind === 'agent.probe' ? { kind: body.kind } : { kind: body.kind, sink: body.sink, secret: body.secret, version: body.version, project: body.project }, ttlMs);
      const row = await findCommand(deps.pool, issued.commandId);
      if (row === null) throw new SikkerError('ERR_INTERNAL', 'the command vanished after it was stored');
      return commandView(row);
    },
  });
  kit.add({
    method: 'GET', url: '/v1/agents/:agentId/commands/:commandId', summary: 'A command\'s delivery state and result', auth: 'identity',
    params: z.object({ agentId: api.Uuid, commandId: api.Uuid }), response: api.AgentCommand,
    handler: async ({ identity, params }) => {
      await visibleAgent(identity, params.agentId);
      const row = await findCommand(deps.pool, params.commandId);
      if (row === null || row.agent_id !== params.agentId) throw new SikkerError('ERR_NOT_FOUND', 'no such command');
      return commandView(row);
    },
  });
}
