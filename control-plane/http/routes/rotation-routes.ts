import * as z from 'zod';
import * as api from '../../../shared/protocol/api.js';
import * as rot from '../../../shared/protocol/rotation-api.js';
import type { PolicyRow, RunRow, RunStepRecord, TargetRow } from '../../rotation/rotation-dal.js';
import type { PolicyService } from '../../rotation/policy-service.js';
import type { RotationService } from '../../rotation/rotation-service.js';
import type { PreflightReport, TargetService } from '../../rotation/target-service.js';
import type { RouteKit } from '../route-kit.js';

const iso = (d: Date | null): string | null => (d === null ? null : d.toISOString());

function preflightView(t: TargetRow): z.infer<typeof rot.Preflight> | null {
  if (t.preflight === null || t.preflight_at === null) return null;
  const r = t.preflight as unknown as PreflightReport;
  return { ok: t.preflight_ok, at: t.preflight_at.toISOString(), strategy: r.strategy ?? 'replace', problems: r.problems, warnings: r.warnings, server: r.server, strategies: r.strategies };
}

function targetView(t: TargetRow): rot.Target {
  return {
    targetId: t.target_id, project: t.project_name, name: t.name, secret: t.secret_name, agentId: t.agent_id, connection: t.spec,
    alternateUser: t.alternate_user, sinks: t.sinks, preflight: preflightView(t), currentVersion: t.current_version,
    activeUser: t.current_version === null ? null : (t.current_user ?? t.spec.user), createdAt: t.created_at.toISOString(),
  };
}

function policyView(t: TargetRow, p: PolicyRow): z.infer<typeof rot.Policy> {
  return { target: t.name, policy: p.spec, state: p.state, nextRunAt: iso(p.next_run_at), lastRunAt: iso(p.last_run_at), updatedAt: p.updated_at.toISOString() };
}

function runView(run: RunRow, target: TargetRow): rot.Run {
  return {
    runId: run.run_id, project: target.project_name, target: target.name, trigger: run.trigger, state: run.state, strategy: run.strategy, user: run.db_user,
    attempt: run.attempt, pendingVersion: run.pending_version, previousVersion: run.previous_version, errorCode: run.error_code, errorMessage: run.error_message,
    scheduledFor: iso(run.scheduled_for), createdAt: run.created_at.toISOString(), committedAt: iso(run.committed_at), finishedAt: iso(run.finished_at), nextActionAt: iso(run.next_action_at),
  };
}

/** Targets, policies, manual rotations and runs. */
export function registerRotationRoutes(kit: RouteKit, deps: { targets: TargetService; policies: PolicyService; rotations: RotationService }): void {
  const ProjectParams = z.object({ project: api.ProjectName });
  const TargetParams = z.object({ project: api.ProjectName, target: rot.TargetName });
  const runDetail = async (run: RunRow, target: TargetRow, known?: RunStepRecord[]): Promise<z.infer<typeof rot.RunDetail>> => ({
    ...runView(run, target),
    steps: (known ?? await deps.rotations.steps(run.run_id)).map((s) => ({ seq: s.seq, step: s.step, at: s.at.toISOString(), detail: s.detail })),
  });

  kit.add({
    method: 'POST', url: '/v1/projects/:project/targets', summary: 'Register a database user to rotate', auth: 'identity',
    params: ProjectParams, body: rot.AddTargetRequest, response: rot.Target,
    handler: async ({ identity, sourceIp, params, body }) => targetView(await deps.targets.add(identity, sourceIp, params.project, body)),
  });
  kit.add({
    method: 'GET', url: '/v1/projects/:project/targets', summary: 'List targets', auth: 'identity', params: ProjectParams, response: rot.TargetList,
    handler: async ({ identity, params }) => ({ targets: (await deps.targets.list(identity, params.project)).map(targetView) }),
  });
  kit.add({
    method: 'GET', url: '/v1/projects/:project/targets/:target', summary: 'One target and its last preflight', auth: 'identity', params: TargetParams, response: rot.Target,
    handler: async ({ identity, params }) => targetView(await deps.targets.resolve(identity, params.project, params.target, 'target.read')),
  });
  kit.add({
    method: 'POST', url: '/v1/projects/:project/targets/:target/test', summary: 'Preflight the target on its agent (waits up to 12 s)', auth: 'identity',
    params: TargetParams, body: rot.TestTargetRequest, response: z.object({ target: rot.Target, finished: z.boolean() }),
    handler: async ({ identity, sourceIp, params, body }) => {
      const { target, report } = await deps.targets.test(identity, sourceIp, params.project, params.target, body.strategy);
      return { target: targetView(target), finished: report !== null };
    },
  });
  kit.add({
    method: 'PUT', url: '/v1/projects/:project/targets/:target/policy', summary: 'Set the rotation policy (active policies need a passing preflight)', auth: 'identity',
    params: TargetParams, body: rot.SetPolicyRequest, response: rot.Policy,
    handler: async ({ identity, sourceIp, params, body }) => {
      const policy = await deps.policies.set(identity, sourceIp, params.project, params.target, body.policy, { paused: body.paused, nextRunAt: body.nextRunAt });
      return policyView(await deps.targets.resolve(identity, params.project, params.target, 'target.read'), policy);
    },
  });
  kit.add({
    method: 'GET', url: '/v1/projects/:project/targets/:target/policy', summary: 'The rotation policy and next rotation time', auth: 'identity', params: TargetParams, response: rot.Policy,
    handler: async ({ identity, params }) => {
      const { target, policy } = await deps.policies.show(identity, params.project, params.target);
      return policyView(target, policy);
    },
  });
  for (const [verb, summary] of [['pause', 'Pause scheduled rotations'], ['resume', 'Resume scheduled rotations']] as const) {
    kit.add({
      method: 'POST', url: `/v1/projects/:project/targets/:target/policy/${verb}`, summary, auth: 'identity', params: TargetParams, response: rot.Policy,
      handler: async ({ identity, sourceIp, params }) => {
        const policy = await deps.policies[verb](identity, sourceIp, params.project, params.target);
        return policyView(await deps.targets.resolve(identity, params.project, params.target, 'target.read'), policy);
      },
    });
  }
  kit.add({
    method: 'PUT', url: '/v1/projects/:project/targets/:target/policy/next-run', summary: 'Set when the next scheduled rotation happens', auth: 'identity',
    params: TargetParams, body: rot.SetNextRunRequest, response: rot.Policy,
    handler: async ({ identity, sourceIp, params, body }) => {
      const policy = await deps.policies.setNextRun(identity, sourceIp, params.project, params.target, body.nextRunAt);
      return policyView(await deps.targets.resolve(identity, params.project, params.target, 'target.read'), policy);
    },
  });
  kit.add({
    method: 'POST', url: '/v1/projects/:project/targets/:target/rotate', summary: 'Rotate now (joins a run already in flight)', auth: 'identity',
    params: TargetParams, response: z.object({ run: rot.RunDetail, joined: z.boolean() }),
    handler: async ({ identity, sourceIp, params }) => {
      const { run, joined, steps } = await deps.rotations.rotateNow(identity, sourceIp, params.project, params.target);
      return { run: await runDetail(run.run, run.target, steps), joined };
    },
  });
  kit.add({
    method: 'GET', url: '/v1/projects/:project/runs', summary: 'Recent rotation runs, newest first', auth: 'identity',
    params: ProjectParams, query: rot.RunsQuery.omit({ project: true }), response: rot.RunList,
    handler: async ({ identity, params, query }) => ({ runs: (await deps.rotations.list(identity, params.project, query.target, query.limit)).map((r) => runView(r.run, r.target)) }),
  });
  kit.add({
    method: 'GET', url: '/v1/projects/:project/runs/:runId', summary: 'One run with every step and its time', auth: 'identity',
    params: z.object({ project: api.ProjectName, runId: api.Uuid }), response: rot.RunDetail,
    handler: async ({ identity, params }) => {
      const { run, target } = await deps.rotations.show(identity, params.project, params.runId);
      return runDetail(run, target);
    },
  });
}
