import type { Pool } from 'pg';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import type { StatusSummary, TargetFlag } from '../../shared/protocol/status-api.js';
import { isGlobalAdmin, requireProjectAction } from '../auth/authorize.js';
import { listAgents, type AgentRow } from '../hub/agent-dal.js';
import type { AuthIdentity } from '../identity/identity-types.js';
import type { StatusFigures } from '../metrics/metrics.js';
import type { ProjectService } from '../vault/project-service.js';
import { lastRotations, statusCounts, targetStatuses, unresolvedLeaks, type LeakStatusRow, type StatusThresholds, type TargetStatusRow } from './status-dal.js';

/**
 * Overdue: an active policy whose next rotation is 5 minutes late means the sweep is not
 * claiming due policies (every replica sealed or down, Redis away). Stuck: a run holding
 * its target for an hour (after commit: an hour beyond its grace period) is not moving.
 */
export const DEFAULT_STATUS_THRESHOLDS: StatusThresholds = { overdueAfterSeconds: 300, stuckAfterSeconds: 3600 };
/** Leaks listed at most (the summary counts all). */
const LEAK_LIMIT = 200;

export type AgentStatus = 'online' | 'offline' | 'disabled';

export interface TargetStatus {
  row: TargetStatusRow;
  agentOnline: boolean;
  flags: TargetFlag[];
}

export interface StatusSnapshot {
  /** The database's clock when the figures were read (flags are computed against it). */
  generatedAt: Date;
  /** The project shown, or null for every project. */
  project: string | null;
  thresholds: StatusThresholds;
  summary: StatusSummary;
  agents: Array<{ row: AgentRow; state: AgentStatus }>;
  targets: TargetStatus[];
  targetsTruncated: boolean;
  leaks: LeakStatusRow[];
}

export function agentStatus(a: AgentRow): AgentStatus {
  if (a.disabled_at !== null) return 'disabled';
  return a.online ? 'online' : 'offline';
}

function flagsOf(t: TargetStatusRow, agentOnline: boolean): TargetFlag[] {
  const flags: TargetFlag[] = [];
  if (t.schedule_late) flags.push('overdue');
  if (t.stuck) flags.push('stuck');
  if (t.last_run_state === 'failed' || t.last_run_state === 'parked') flags.push(t.last_run_state);
  if (!agentOnline) flags.push('agent-offline');
  if (t.leaked) flags.push('leak');
  if (t.policy_state === 'paused') flags.push('paused');
  if (t.policy_state === null) flags.push('no-policy');
  return flags;
}

function agentCounts(agents: AgentRow[]): Record<AgentStatus, number> {
  const counts: Record<AgentStatus, number> = { online: 0, offline: 0, disabled: 0 };
  for (const a of agents) counts[agentStatus(a)] += 1;
  return counts;
}

/**
 * The on-call overview (`GET /v1/status`, `sikker status`) and the same figures for
 * Prometheus. Reads only names and states: nothing here needs the vault or touches a
 * secret value.
 */
export class StatusService {
  constructor(
    private readonly pool: Pool,
    private readonly projects: Pick<ProjectService, 'resolve'>,
    private readonly staleSeconds: number,
    private readonly thresholds: StatusThresholds = DEFAULT_STATUS_THRESHOLDS,
  ) {}

  /**
   * One project's status (needs `target.read` there), or every project's when
   * `projectName` is undefined (control-plane admins only: ERR_VALIDATION otherwise).
   * At most `limit` targets, those needing attention first; the summary counts all.
   * ERR_NOT_FOUND for a project the caller cannot see, ERR_AUTH_FORBIDDEN without the grant.
   */
  async report(identity: AuthIdentity, projectName: string | undefined, limit: number): Promise<StatusSnapshot> {
    let projectId: string | null = null;
    if (projectName !== undefined) {
      projectId = (await this.projects.resolve(identity, projectName)).project_id;
      requireProjectAction(identity, 'target.read', projectId);
    } else if (!isGlobalAdmin(identity)) {
      throw new SikkerError('ERR_VALIDATION', 'query.project is required unless you are a control-plane admin');
    }
    const agents = await listAgents(this.pool, this.staleSeconds, projectId);
    const counts = await statusCounts(this.pool, projectId, this.thresholds);
    const rows = await targetStatuses(this.pool, projectId, this.thresholds, limit);
    const leaks = await unresolvedLeaks(this.pool, projectId, LEAK_LIMIT);
    const byAgent = new Map(agents.map((a) => [a.agent_id, agentStatus(a) === 'online']));
    const targets = rows.map((row) => {
      const agentOnline = byAgent.get(row.agent_id) ?? false;
      return { row, agentOnline, flags: flagsOf(row, agentOnline) };
    });
    const a = agentCounts(agents);
    return {
      generatedAt: counts.now, project: projectName ?? null, thresholds: this.thresholds,
      summary: {
        agentsOnline: a.online, agentsOffline: a.offline, agentsDisabled: a.disabled, targets: counts.targets, overdue: counts.overdue,
        failed: counts.failed, parked: counts.parked, inFlight: counts.in_flight, leaksOpen: counts.leaks_open, leaksExposed: counts.leaks_exposed,
      },
      agents: agents.map((row) => ({ row, state: agentStatus(row) })),
      targets,
      targetsTruncated: counts.targets > rows.length,
      leaks,
    };
  }

  /** Every project's figures for the Prometheus gauges (three queries, no vault). */
  async figures(): Promise<StatusFigures> {
    const agents = agentCounts(await listAgents(this.pool, this.staleSeconds, null));
    const counts = await statusCounts(this.pool, null, this.thresholds);
    const rotations = await lastRotations(this.pool);
    return {
      agents, targetsOverdue: counts.overdue,
      runs: { failed: counts.failed, parked: counts.parked, inFlight: counts.in_flight },
      leaks: { open: counts.leaks_open, exposed: counts.leaks_exposed },
      lastRotations: rotations.map((r) => ({ project: r.project_name, target: r.target_name, at: r.at })),
    };
  }
}
