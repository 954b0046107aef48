import * as z from 'zod';
import { ProjectName, Uuid } from './api.js';

/**
 * `GET /v1/status`: the on-call overview (CLI ↔ control plane). Names and states
 * only, never a secret value. Field additions must stay optional.
 */

export const StatusQuery = z.object({
  /** Required unless the caller is a control-plane admin (then: every project). */
  project: ProjectName.optional(),
  /** At most this many targets in `targets` (those needing attention first); the summary always counts all. */
  limit: z.coerce.number().int().min(1).max(5000).default(500),
});

export const AgentState = z.enum(['online', 'offline', 'disabled']);

/**
 * Why a target is listed as needing attention (or how it is configured):
 * - `overdue`: its active policy's next rotation is more than `overdueAfterSeconds` late (the sweep did not claim it)
 * - `stuck`: a run has held the target longer than `stuckAfterSeconds` (after commit: beyond its grace period)
 * - `failed` / `parked`: its most recent run ended so (until a later run succeeds)
 * - `agent-offline`: its managing agent is offline or disabled
 * - `leak`: a leak of its secret is open or exposed
 * - `paused` / `no-policy`: scheduled rotation is paused / not configured
 */
export const TARGET_FLAGS = ['overdue', 'stuck', 'failed', 'parked', 'agent-offline', 'leak', 'paused', 'no-policy'] as const;
export const TargetFlag = z.enum(TARGET_FLAGS);
export type TargetFlag = z.infer<typeof TargetFlag>;

export const StatusSummary = z.object({
  agentsOnline: z.number().int(),
  agentsOffline: z.number().int(),
  agentsDisabled: z.number().int(),
  targets: z.number().int(),
  /** Targets flagged `overdue` or `stuck`. */
  overdue: z.number().int(),
  /** Targets whose most recent run failed / was parked. */
  failed: z.number().int(),
  parked: z.number().int(),
  /** Runs holding their target now. */
  inFlight: z.number().int(),
  leaksOpen: z.number().int(),
  leaksExposed: z.number().int(),
});
export type StatusSummary = z.infer<typeof StatusSummary>;

export const StatusAgent = z.object({
  agentId: Uuid,
  name: z.string(),
  project: z.string(),
  state: AgentState,
  lastHeartbeatAt: z.string().nullable(),
  agentVersion: z.string().nullable(),
});

export const StatusRun = z.object({
  runId: Uuid,
  state: z.string(),
  trigger: z.string(),
  attempt: z.number().int(),
  /** True while the run still owns its target (a parked run whose outcome is unknown does). */
  holdsTarget: z.boolean(),
  errorCode: z.string().nullable(),
  errorMessage: z.string().nullable(),
  createdAt: z.string(),
  finishedAt: z.string().nullable(),
});

export const StatusTarget = z.object({
  project: z.string(),
  name: z.string(),
  engine: z.string(),
  user: z.string(),
  agentId: Uuid,
  agent: z.string(),
  agentOnline: z.boolean(),
  policy: z.enum(['active', 'paused']).nullable(),
  /** When the newest password went live (the last committed run). */
  lastRotationAt: z.string().nullable(),
  /** The active policy's next scheduled rotation (null when paused or without a policy). */
  nextRotationAt: z.string().nullable(),
  lastRun: StatusRun.nullable(),
  /** `overdue` or `stuck` among the flags. */
  overdue: z.boolean(),
  flags: z.array(TargetFlag),
});
export type StatusTarget = z.infer<typeof StatusTarget>;

export const StatusProblemRun = StatusRun.extend({ project: z.string(), target: z.string() });

export const StatusLeak = z.object({
  leakId: Uuid,
  project: z.string(),
  secret: z.string(),
  target: z.string().nullable(),
  leakedVersion: z.number().int(),
  foundBy: z.string(),
  state: z.enum(['open', 'exposed']),
  reason: z.string().nullable(),
  reportedAt: z.string(),
  runId: Uuid.nullable(),
});

export const StatusReport = z.object({
  generatedAt: z.string(),
  /** The project shown, or null for every project (control-plane admins). */
  project: z.string().nullable(),
  thresholds: z.object({ overdueAfterSeconds: z.number().int(), stuckAfterSeconds: z.number().int() }),
  summary: StatusSummary,
  /** Every agent in scope. */
  agents: z.array(StatusAgent),
  /** Targets needing attention first, then by project and name; at most `limit`. */
  targets: z.array(StatusTarget),
  /** True when `targets` was cut at `limit` (the summary still counts all). */
  targetsTruncated: z.boolean(),
  /** The most recent run of each listed target that ended failed or parked. */
  problemRuns: z.array(StatusProblemRun),
  /** Leaks not neutralised (open or exposed), newest first. */
  leaks: z.array(StatusLeak),
});
export type StatusReport = z.infer<typeof StatusReport>;
