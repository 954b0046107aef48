import type * as z from 'zod';
import * as st from '../../../shared/protocol/status-api.js';
import type { StatusService, StatusSnapshot, TargetStatus } from '../../status/status-service.js';
import type { LeakStatusRow } from '../../status/status-dal.js';
import type { RouteKit } from '../route-kit.js';

const iso = (d: Date | null): string | null => (d === null ? null : d.toISOString());

function lastRunView(t: TargetStatus['row']): z.infer<typeof st.StatusRun> | null {
  if (t.last_run_id === null || t.last_run_state === null || t.last_run_created_at === null) return null;
  return {
    runId: t.last_run_id, state: t.last_run_state, trigger: t.last_run_trigger ?? '', attempt: t.last_run_attempt ?? 1, holdsTarget: t.last_run_holds === true,
    errorCode: t.last_run_error_code, errorMessage: t.last_run_error_message, createdAt: t.last_run_created_at.toISOString(), finishedAt: iso(t.last_run_finished_at),
  };
}

function targetView({ row, agentOnline, flags }: TargetStatus): st.StatusTarget {
  return {
    project: row.project_name, name: row.name, engine: row.engine, user: row.db_user, agentId: row.agent_id, agent: row.agent_name, agentOnline,
    policy: row.policy_state, lastRotationAt: iso(row.last_rotation_at), nextRotationAt: row.policy_state === 'active' ? iso(row.next_run_at) : null,
    lastRun: lastRunView(row), overdue: flags.includes('overdue') || flags.includes('stuck'), flags,
  };
}

function leakView(l: LeakStatusRow): z.infer<typeof st.StatusLeak> {
  return {
    leakId: l.leak_id, project: l.project_name, secret: l.secret_name, target: l.target_name, leakedVersion: l.leaked_version, foundBy: l.found_by,
    state: l.state, reason: l.reason, reportedAt: l.reported_at.toISOString(), runId: l.run_id,
  };
}

function reportView(s: StatusSnapshot): st.StatusReport {
  const targets = s.targets.map(targetView);
  return {
    generatedAt: s.generatedAt.toISOString(), project: s.project, thresholds: s.thresholds, summary: s.summary,
    agents: s.agents.map(({ row, state }) => ({ agentId: row.agent_id, name: row.name, project: row.project_name, state, lastHeartbeatAt: iso(row.last_heartbeat_at), agentVersion: row.agent_version })),
    targets, targetsTruncated: s.targetsTruncated,
    problemRuns: targets.flatMap((t) => (t.lastRun !== null && (t.lastRun.state === 'failed' || t.lastRun.state === 'parked') ? [{ ...t.lastRun, project: t.project, target: t.name }] : []))
      .sort((a, b) => (b.finishedAt ?? b.createdAt).localeCompare(a.finishedAt ?? a.createdAt)),
    leaks: s.leaks.map(leakView),
  };
}

/** The on-call overview: agents, targets with their last and next rotation, problem runs, open leaks. */
export function registerStatusRoutes(kit: RouteKit, deps: { status: StatusService }): void {
  kit.add({
    method: 'GET', url: '/v1/status', summary: 'On-call overview: agents, targets (last/next rotation, overdue), failed and parked runs, open leaks', auth: 'identity',
    // Needs no key: on-call sees the state of things even while the vault is sealed.
    sealedOk: true,
    query: st.StatusQuery, response: st.StatusReport,
    handler: async ({ identity, query }) => reportView(await deps.status.report(identity, query.project, query.limit)),
  });
}
