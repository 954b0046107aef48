import type { Queryable } from '../db/queryable.js';
import type { RunState } from '../rotation/rotation-dal.js';

/** When a target counts as overdue or stuck (seconds). */
export interface StatusThresholds {
  /** An active policy whose next_run_at is this far in the past: the sweep did not claim it. */
  overdueAfterSeconds: number;
  /** A run holding its target this long (after commit: this long beyond its grace period). */
  stuckAfterSeconds: number;
}

/**
 * Per target: its policy, its most recent run, and whether it is overdue or stuck.
 * Parameters: $1 project id or NULL (all), $2 overdue seconds, $3 stuck seconds.
 * The most recent run is the one holding the target, if any (no run starts while
 * another holds it). One index probe per target (rotation_runs_target_idx): cost
 * grows with the number of targets, not with the history of runs.
 */
const TARGET_STATE = `
  SELECT t.target_id, t.project_id, t.name, t.agent_id, t.spec->>'engine' AS engine, t.spec->>'user' AS db_user,
         pol.state AS policy_state, pol.next_run_at,
         lr.run_id AS last_run_id, lr.state AS last_run_state, lr.trigger AS last_run_trigger, lr.attempt AS last_run_attempt,
         lr.holds_target AS last_run_holds, lr.error_code AS last_run_error_code, lr.error_message AS last_run_error_message,
         lr.created_at AS last_run_created_at, lr.finished_at AS last_run_finished_at,
         COALESCE(pol.state = 'active' AND pol.next_run_at < now() - make_interval(secs => $2), false) AS schedule_late,
         COALESCE(lr.holds_target AND COALESCE(lr.committed_at + make_interval(secs => lr.grace_seconds), lr.created_at) < now() - make_interval(secs => $3), false) AS stuck
    FROM targets t
    LEFT JOIN policies pol ON pol.target_id = t.target_id
    LEFT JOIN LATERAL (SELECT * FROM rotation_runs r WHERE r.target_id = t.target_id ORDER BY r.created_at DESC LIMIT 1) lr ON true
   WHERE ($1::uuid IS NULL OR t.project_id = $1::uuid)`;

/** When the target's newest password went live: its last committed (or done) run. */
const LAST_ROTATION = (targetId: string): string => `
  SELECT COALESCE(r.committed_at, r.finished_at) AS at FROM rotation_runs r
   WHERE r.target_id = ${targetId} AND (r.committed_at IS NOT NULL OR r.state = 'done')
   ORDER BY r.created_at DESC LIMIT 1`;

export interface StatusCountsRow {
  /** The database's clock, which every flag above was computed against. */
  now: Date;
  targets: number;
  overdue: number;
  failed: number;
  parked: number;
  in_flight: number;
  leaks_open: number;
  leaks_exposed: number;
}

/** The summary figures of one project (or all, `projectId` null) in one statement. */
export async function statusCounts(db: Queryable, projectId: string | null, t: StatusThresholds): Promise<StatusCountsRow> {
  const { rows } = await db.query<StatusCountsRow>(
    `WITH ts AS (${TARGET_STATE})
     SELECT now() AS now, (SELECT count(*) FROM ts)::int AS targets,
            (SELECT count(*) FROM ts WHERE schedule_late OR stuck)::int AS overdue,
            (SELECT count(*) FROM ts WHERE last_run_state = 'failed')::int AS failed,
            (SELECT count(*) FROM ts WHERE last_run_state = 'parked')::int AS parked,
            (SELECT count(*) FROM rotation_runs WHERE holds_target AND ($1::uuid IS NULL OR project_id = $1::uuid))::int AS in_flight,
            (SELECT count(*) FROM leaks WHERE state = 'open' AND ($1::uuid IS NULL OR project_id = $1::uuid))::int AS leaks_open,
            (SELECT count(*) FROM leaks WHERE state = 'exposed' AND ($1::uuid IS NULL OR project_id = $1::uuid))::int AS leaks_exposed`,
    [projectId, t.overdueAfterSeconds, t.stuckAfterSeconds],
  );
  return rows[0] as StatusCountsRow;
}

export interface TargetStatusRow {
  target_id: string;
  project_name: string;
  name: string;
  agent_id: string;
  agent_name: string;
  engine: string;
  db_user: string;
  policy_state: 'active' | 'paused' | null;
  next_run_at: Date | null;
  last_rotation_at: Date | null;
  last_run_id: string | null;
  last_run_state: RunState | null;
  last_run_trigger: string | null;
  last_run_attempt: number | null;
  last_run_holds: boolean | null;
  last_run_error_code: string | null;
  last_run_error_message: string | null;
  last_run_created_at: Date | null;
  last_run_finished_at: Date | null;
  schedule_late: boolean;
  stuck: boolean;
  leaked: boolean;
}

/**
 * Targets with their state, those needing attention (overdue, stuck, failed, parked,
 * leaked) first, then by project and name; at most `limit`.
 */
export async function targetStatuses(db: Queryable, projectId: string | null, t: StatusThresholds, limit: number): Promise<TargetStatusRow[]> {
  return (await db.query<TargetStatusRow>(
    `SELECT ts.*, p.name AS project_name, i.name AS agent_name, lc.at AS last_rotation_at, lk.leaked
       FROM (${TARGET_STATE}) ts
       JOIN projects p ON p.project_id = ts.project_id
       JOIN identities i ON i.identity_id = ts.agent_id
       LEFT JOIN LATERAL (${LAST_ROTATION('ts.target_id')}) lc ON true
       CROSS JOIN LATERAL (SELECT EXISTS (SELECT 1 FROM leaks l WHERE l.target_id = ts.target_id AND l.state <> 'neutralised') AS leaked) lk
      ORDER BY (ts.schedule_late OR ts.stuck OR ts.last_run_state IN ('failed', 'parked') OR lk.leaked) DESC, p.name, ts.name
      LIMIT $4`,
    [projectId, t.overdueAfterSeconds, t.stuckAfterSeconds, limit],
  )).rows;
}

export interface LeakStatusRow {
  leak_id: string;
  project_name: string;
  secret_name: string;
  target_name: string | null;
  leaked_version: number;
  found_by: string;
  state: 'open' | 'exposed';
  reason: string | null;
  reported_at: Date;
  run_id: string | null;
}

/** Leaks not neutralised (open or exposed), newest first, at most `limit`. */
export async function unresolvedLeaks(db: Queryable, projectId: string | null, limit: number): Promise<LeakStatusRow[]> {
  return (await db.query<LeakStatusRow>(
    `SELECT l.leak_id, p.name AS project_name, s.name AS secret_name, t.name AS target_name, l.leaked_version, l.found_by,
            l.state, l.reason, l.reported_at, l.run_id
       FROM leaks l
       JOIN projects p ON p.project_id = l.project_id
       JOIN secrets s ON s.secret_id = l.secret_id
       LEFT JOIN targets t ON t.target_id = l.target_id
      WHERE l.state <> 'neutralised' AND ($1::uuid IS NULL OR l.project_id = $1::uuid)
      ORDER BY l.reported_at DESC LIMIT $2`,
    [projectId, limit],
  )).rows;
}

/** Every target's last rotation time (targets never rotated by SikkerKey are left out). */
export async function lastRotations(db: Queryable): Promise<Array<{ project_name: string; target_name: string; at: Date }>> {
  return (await db.query<{ project_name: string; target_name: string; at: Date }>(
    `SELECT p.name AS project_name, t.name AS target_name, lc.at
       FROM targets t
       JOIN projects p ON p.project_id = t.project_id
       JOIN LATERAL (${LAST_ROTATION('t.target_id')}) lc ON true`,
  )).rows;
}
