import { createHash } from 'node:crypto';
import type { PoolClient } from 'pg';
import { queryThenCommit } from '../db/commit-with.js';
import type { Queryable, StatementWrite, WriteOutcome } from '../db/queryable.js';
import { sqlLiteral, type FirstStatement } from '../db/transaction.js';
import type { PolicySpec } from '../../shared/protocol/rotation-api.js';
import type { TargetSpec } from '../../shared/protocol/rotation-commands.js';

export interface TargetRow {
  target_id: string;
  project_id: string;
  project_name: string;
  name: string;
  secret_id: string;
  secret_name: string;
  agent_id: string;
  spec: TargetSpec;
  alternate_user: string | null;
  sinks: string[];
  preflight_ok: boolean;
  preflight: Record<string, unknown> | null;
  preflight_at: Date | null;
  created_at: Date;
  current_version: number | null;
  current_user: string | null;
}

const TARGET_SELECT = `
  SELECT t.*, p.name AS project_name, s.name AS secret_name,
         v.version AS current_version, v.db_user AS current_user
    FROM targets t
    JOIN projects p ON p.project_id = t.project_id
    JOIN secrets s ON s.secret_id = t.secret_id
    LEFT JOIN secret_versions v ON v.secret_id = t.secret_id AND v.label = 'current'`;

export async function findTarget(db: Queryable, projectId: string, name: string): Promise<TargetRow | null> {
  return (await db.query<TargetRow>({ name: 'target-by-name', text: `${TARGET_SELECT} WHERE t.project_id = $1 AND t.name = $2`, values: [projectId, name] })).rows[0] ?? null;
}

/** A target by project name and target name (the project joined in the same query). */
export async function findTargetInProject(db: Queryable, projectName: string, name: string): Promise<TargetRow | null> {
  return (await db.query<TargetRow>({ name: 'target-in-project', text: `${TARGET_SELECT} WHERE p.name = $1 AND t.name = $2`, values: [projectName, name] })).rows[0] ?? null;
}

/** {@link findTargetInProject} and the target's policy ({@link findPolicy}; null: none) in one round trip. */
export async function findTargetAndPolicyInProject(db: Queryable, projectName: string, name: string): Promise<{ target: TargetRow; policy: PolicyRow | null } | null> {
  const row = (await db.query<TargetRow & { policy_spec: PolicySpec | null; policy_state: PolicyRow['state'] | null; policy_next_run_at: Date | null; policy_next_base_at: Date | null; policy_last_run_at: Date | null; policy_updated_at: Date | null }>({
    name: 'target-and-policy-in-project',
    text: `SELECT tg.*, pol.spec AS policy_spec, pol.state AS policy_state, pol.next_run_at AS policy_next_run_at, pol.next_base_at AS policy_next_base_at,
                  pol.last_run_at AS policy_last_run_at, pol.updated_at AS policy_updated_at
             FROM (${TARGET_SELECT} WHERE p.name = $1 AND t.name = $2) tg
             LEFT JOIN policies pol ON pol.target_id = tg.target_id`,
    values: [projectName, name],
  })).rows[0];
  if (row === undefined) return null;
  const { policy_spec: spec, policy_state: state, policy_next_run_at: nextRunAt, policy_next_base_at: nextBaseAt, policy_last_run_at: lastRunAt, policy_updated_at: updatedAt, ...target } = row;
  const policy = spec === null || state === null || updatedAt === null ? null
    : { target_id: target.target_id, spec, state, next_run_at: nextRunAt, next_base_at: nextBaseAt, last_run_at: lastRunAt, updated_at: updatedAt };
  return { target, policy };
}

export async function findTargetById(db: Queryable, targetId: string): Promise<TargetRow | null> {
  return (await db.query<TargetRow>({ name: 'target-by-id', text: `${TARGET_SELECT} WHERE t.target_id = $1`, values: [targetId] })).rows[0] ?? null;
}

/** {@link findTargetById} as a statement withTransactionFrom sends with BEGIN (its rows: the target, or none). */
export function findTargetByIdStatement(targetId: string): FirstStatement {
  return { name: 'sikker_target_by_id', prepare: `PREPARE sikker_target_by_id(uuid) AS ${TARGET_SELECT} WHERE t.target_id = $1`, args: [sqlLiteral(targetId)] };
}

export async function listTargets(db: Queryable, projectId: string): Promise<TargetRow[]> {
  return (await db.query<TargetRow>(`${TARGET_SELECT} WHERE t.project_id = $1 ORDER BY t.name`, [projectId])).rows;
}

export interface PolicyRow {
  target_id: string;
  spec: PolicySpec;
  state: 'active' | 'paused';
  next_run_at: Date | null;
  /** The base `next_run_at` was drawn from (schedule.ts nextRun); null when unknown. */
  next_base_at: Date | null;
  last_run_at: Date | null;
  updated_at: Date;
}

export async function findPolicy(db: Queryable, targetId: string): Promise<PolicyRow | null> {
  return (await db.query<PolicyRow>({ name: 'policy-by-target', text: 'SELECT * FROM policies WHERE target_id = $1', values: [targetId] })).rows[0] ?? null;
}

export async function upsertPolicy(db: Queryable, p: { targetId: string; spec: PolicySpec; state: 'active' | 'paused'; next: NextRun | null; updatedBy: string }): Promise<void> {
  await db.query(
    `INSERT INTO policies (target_id, spec, state, next_run_at, next_base_at, updated_by) VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (target_id) DO UPDATE SET spec = EXCLUDED.spec, state = EXCLUDED.state, next_run_at = EXCLUDED.next_run_at,
                                           next_base_at = EXCLUDED.next_base_at, updated_by = EXCLUDED.updated_by, updated_at = now()`,
    [p.targetId, JSON.stringify(p.spec), p.state, p.next?.at ?? null, p.next?.base ?? null, p.updatedBy],
  );
}

/** A policy's next rotation and the base it was drawn from (schedule.ts nextRun). */
export interface NextRun {
  at: Date;
  base: Date;
}

export type RunState = 'created' | 'pending' | 'dispatched' | 'uncertain' | 'committed' | 'revoking' | 'done' | 'failed' | 'parked';

export interface RunRow {
  run_id: string;
  target_id: string;
  project_id: string;
  trigger: 'schedule' | 'manual' | 'leak';
  scheduled_for: Date | null;
  state: RunState;
  holds_target: boolean;
  strategy: 'replace' | 'dual' | 'alternate';
  grace_seconds: number;
  db_user: string;
  attempt: number;
  max_attempts: number;
  failures: number;
  pending_version: number | null;
  previous_version: number | null;
  command_id: string | null;
  next_action_at: Date | null;
  error_code: string | null;
  error_message: string | null;
  requested_by: string | null;
  created_at: Date;
  committed_at: Date | null;
  finished_at: Date | null;
  updated_at: Date;
}

export interface NewRun {
  runId: string;
  targetId: string;
  projectId: string;
  trigger: RunRow['trigger'];
  scheduledFor: Date | null;
  strategy: RunRow['strategy'];
  graceSeconds: number;
  dbUser: string;
  maxAttempts: number;
  previousVersion: number | null;
  requestedBy: string | null;
}

const INSERT_RUN = `INSERT INTO rotation_runs (run_id, target_id, project_id, trigger, scheduled_for, state, strategy, grace_seconds, db_user, max_attempts, previous_version, requested_by, next_action_at)
     VALUES ($1, $2, $3, $4, $5, 'created', $6, $7, $8, $9, $10, $11, now())
     ON CONFLICT (target_id) WHERE holds_target DO NOTHING
     RETURNING *`;

const runValues = (r: NewRun) => [r.runId, r.targetId, r.projectId, r.trigger, r.scheduledFor, r.strategy, r.graceSeconds, r.dbUser, r.maxAttempts, r.previousVersion, r.requestedBy] as const;

/** Inserts a new run (state `created`); null when the target already holds one (the one-run-per-target rule). */
export async function insertRun(db: Queryable, r: NewRun): Promise<RunRow | null> {
  return (await db.query<RunRow>({ name: 'run-insert', text: INSERT_RUN, values: [...runValues(r)] })).rows[0] ?? null;
}

/** {@link insertRun} as the statement withTransactionFrom sends with BEGIN (its rows: the run, or none). */
export function insertRunStatement(r: NewRun): FirstStatement {
  return {
    name: 'sikker_run_insert',
    prepare: `PREPARE sikker_run_insert(uuid, uuid, uuid, text, timestamptz, text, int, text, int, int, uuid) AS ${INSERT_RUN}`,
    args: runValues(r).map((v) => sqlLiteral(v)),
  };
}

/** Inserts many runs at once, skipping targets that already hold one; returns the ids inserted. */
export async function insertRuns(db: Queryable, runs: NewRun[]): Promise<string[]> {
  if (runs.length === 0) return [];
  const col = <K extends keyof NewRun>(k: K) => runs.map((r) => r[k]);
  const { rows } = await db.query<{ run_id: string }>(
    `INSERT INTO rotation_runs (run_id, target_id, project_id, trigger, scheduled_for, state, strategy, grace_seconds, db_user, max_attempts, previous_version, requested_by, next_action_at)
     SELECT u.run_id, u.target_id, u.project_id, u.trigger, u.scheduled_for, 'created', u.strategy, u.grace_seconds, u.db_user, u.max_attempts, u.previous_version, u.requested_by, now()
       FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::timestamptz[], $6::text[], $7::int[], $8::text[], $9::int[], $10::int[], $11::uuid[])
            AS u(run_id, target_id, project_id, trigger, scheduled_for, strategy, grace_seconds, db_user, max_attempts, previous_version, requested_by)
     ON CONFLICT (target_id) WHERE holds_target DO NOTHING
     RETURNING run_id`,
    [col('runId'), col('targetId'), col('projectId'), col('trigger'), col('scheduledFor'), col('strategy'), col('graceSeconds'), col('dbUser'), col('maxAttempts'), col('previousVersion'), col('requestedBy')],
  );
  return rows.map((r) => r.run_id);
}

/** The first step (`created`) of many new runs. */
export async function addFirstSteps(db: Queryable, steps: Array<{ runId: string; detail: Record<string, unknown> }>): Promise<void> {
  if (steps.length === 0) return;
  await db.query(`INSERT INTO rotation_steps (run_id, seq, step, detail) SELECT u.run_id, 1, 'created', u.detail FROM unnest($1::uuid[], $2::jsonb[]) AS u(run_id, detail)`,
    [steps.map((s) => s.runId), steps.map((s) => JSON.stringify(s.detail))]);
}

/** Moves many policies' next rotation times (and their bases). */
export async function moveSchedules(db: Queryable, moves: Array<{ targetId: string; next: NextRun }>): Promise<void> {
  if (moves.length === 0) return;
  await db.query(`UPDATE policies p SET next_run_at = u.next, next_base_at = u.base
                    FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[]) AS u(target_id, next, base) WHERE p.target_id = u.target_id`,
    [moves.map((m) => m.targetId), moves.map((m) => m.next.at), moves.map((m) => m.next.base)]);
}

export async function openRunOf(db: Queryable, targetId: string): Promise<RunRow | null> {
  return (await db.query<RunRow>({ name: 'run-open-of-target', text: 'SELECT * FROM rotation_runs WHERE target_id = $1 AND holds_target', values: [targetId] })).rows[0] ?? null;
}

/** Locks the run for one step; null when another replica holds it (it will advance it) or it does not exist. */
export type RunWithTargetRow = RunRow & { target_json: (Omit<TargetRow, 'created_at' | 'preflight_at'> & { created_at: string; preflight_at: string | null }) | null; answers_leak: boolean };

/**
 * The statement that locks a run (SKIP LOCKED: no row when another step holds it) and
 * reads its target as {@link findTargetById} does, in one round trip (every step starts
 * with both), in the form withTransactionFrom sends with BEGIN; read its rows with
 * {@link runWithTarget}.
 */
export function lockRunWithTargetStatement(runId: string): FirstStatement {
  return { name: 'sikker_run_lock_with_target', prepare: `PREPARE sikker_run_lock_with_target(uuid) AS ${LOCK_RUN_WITH_TARGET}`, args: [sqlLiteral(runId)] };
}

const LOCK_RUN_WITH_TARGET = `SELECT r.*, to_jsonb(tg) AS target_json, EXISTS (SELECT 1 FROM leaks l WHERE l.run_id = r.run_id) AS answers_leak FROM rotation_runs r
    LEFT JOIN LATERAL (${TARGET_SELECT} WHERE t.target_id = r.target_id) tg ON true
   WHERE r.run_id = $1 FOR UPDATE OF r SKIP LOCKED`;

/** A run locked for a step, with its target, and whether a leak is answered by it (its own, or one that joined it). */
export interface LockedRun {
  run: RunRow;
  /** Null only if its row is missing. */
  target: TargetRow | null;
  answersLeak: boolean;
}

/** The run and its target from {@link lockRunWithTargetStatement}'s rows; null when the run was not locked. */
export function runWithTarget(rows: readonly RunWithTargetRow[]): LockedRun | null {
  const row = rows[0];
  if (row === undefined) return null;
  const { target_json: json, answers_leak: answersLeak, ...run } = row;
  const target = json === null ? null : { ...json, created_at: new Date(json.created_at), preflight_at: json.preflight_at === null ? null : new Date(json.preflight_at) };
  return { run, target, answersLeak: answersLeak === true };
}

/** {@link lockRunWithTargetStatement} run on its own. */
export async function lockRunWithTarget(db: Queryable, runId: string): Promise<LockedRun | null> {
  return runWithTarget((await db.query<RunWithTargetRow>({ name: 'run-lock-with-target', text: LOCK_RUN_WITH_TARGET, values: [runId] })).rows);
}

export async function findRun(db: Queryable, runId: string): Promise<RunRow | null> {
  return (await db.query<RunRow>({ name: 'run-by-id', text: 'SELECT * FROM rotation_runs WHERE run_id = $1', values: [runId] })).rows[0] ?? null;
}

export async function runWaitingFor(db: Queryable, commandId: string): Promise<string | null> {
  return (await db.query<{ run_id: string }>({ name: 'run-waiting-for', text: 'SELECT run_id FROM rotation_runs WHERE command_id = $1 AND holds_target', values: [commandId] })).rows[0]?.run_id ?? null;
}

export type RunChange = Partial<Pick<RunRow, 'state' | 'holds_target' | 'attempt' | 'failures' | 'pending_version' | 'previous_version' | 'command_id' | 'next_action_at' | 'error_code' | 'error_message' | 'committed_at' | 'finished_at' | 'db_user'>>;

export async function updateRun(db: Queryable, runId: string, change: RunChange): Promise<void> {
  const keys = Object.keys(change) as Array<keyof RunChange>;
  const sets = keys.map((k, i) => `${k} = $${i + 2}`);
  // Named by its columns: a handful of shapes, each parsed and planned once per connection.
  await db.query({ name: shapeName('run-update', keys), text: `UPDATE rotation_runs SET ${[...sets, 'updated_at = now()'].join(', ')} WHERE run_id = $1`, values: [runId, ...keys.map((k) => change[k])] });
}

export interface RunStep {
  step: string;
  detail: Record<string, unknown>;
  /** When it happened (the engine writes a step's records at the end of its transaction). */
  at: Date;
}

const INSERT_STEPS = `INSERT INTO rotation_steps (run_id, seq, step, detail, at)
     SELECT $1, last.seq + u.n, u.step, u.detail, u.at
       FROM unnest($2::text[], $3::jsonb[], $4::timestamptz[]) WITH ORDINALITY AS u(step, detail, at, n),
            (SELECT COALESCE(max(seq), 0) AS seq FROM rotation_steps WHERE run_id = $1) AS last`;

/** Appends steps to a run in one statement, numbered on from its last step in the order given. */
export async function addSteps(db: Queryable, runId: string, steps: RunStep[]): Promise<void> {
  if (steps.length === 0) return;
  await db.query({ name: 'run-steps-add', text: INSERT_STEPS, values: [runId, ...stepColumns(steps)] });
}

/**
 * A run's changes, its new steps and the step's other writes — those nothing in the step
 * reads back — in one statement (one round trip at the end of every step). Returns what
 * each of `writes` did, in order. The writes run in the order given (each is read, for
 * its count, in that order by the final SELECT), so row locks are taken in that order;
 * the run's row and steps are written last. A write's `expect` is checked by the statement:
 * when one fails, this throws that write's error and nothing of the statement is stored.
 *
 * `thenCommit`: `db` is a client in a transaction, and this statement is its last: the
 * COMMIT goes with it in the same round trip (commit-with.ts).
 */
export async function updateRunWithSteps(db: Queryable, runId: string, change: RunChange, steps: RunStep[], writes: StatementWrite[] = [], thenCommit = false): Promise<WriteOutcome[]> {
  const keys = Object.keys(change) as Array<keyof RunChange>;
  if (!thenCommit && writes.length === 0 && keys.length === 0) {
    await addSteps(db, runId, steps);
    return [];
  }
  if (!thenCommit && writes.length === 0 && steps.length === 0) {
    await updateRun(db, runId, change);
    return [];
  }
  // $1 run id, $2–$4 the steps' columns, then the run's changes, then each write's own parameters (and its expectation's).
  const values: unknown[] = [runId, ...stepColumns(steps), ...keys.map((k) => change[k]), ...writes.flatMap((w) => [...w.values, ...(w.expect?.values ?? [])])];
  const name = shapeName('run-flush', [...keys, ...writes.map((w) => `write:${w.name}${w.rows === true ? ':rows' : ''}${w.expect !== undefined ? ':expect' : ''}`)]);
  // one text per shape, built once (a write's name stands for its statement and its expectation, as the prepared statement's name does)
  let text = flushTexts.get(name);
  if (text === undefined) {
    text = flushText(keys, writes);
    if (flushTexts.size < 1000) flushTexts.set(name, text);
  }
  let row: Record<string, unknown> | undefined;
  try {
    const query = { name, text, values };
    row = (thenCommit ? await queryThenCommit<Record<string, unknown>>(db as PoolClient, query) : await db.query<Record<string, unknown>>(query)).rows[0];
  } catch (err) {
    throw unmetExpectation(err, writes) ?? err;
  }
  return writes.map((w, i) => {
    const outcome: WriteOutcome = { changed: Number(row?.[`w${i}`] ?? 0) };
    if (w.rows === true) outcome.rows = (row?.[`w${i}_rows`] ?? []) as Array<Record<string, unknown>>;
    return outcome;
  });
}

/** The error of the write whose expectation failed the statement (SQLSTATE SK001, its name as the message); undefined for any other error. */
function unmetExpectation(err: unknown, writes: readonly StatementWrite[]): Error | undefined {
  if (typeof err !== 'object' || err === null || (err as { code?: unknown }).code !== 'SK001') return undefined;
  const what = (err as { message?: unknown }).message;
  return writes.find((w) => w.expect !== undefined && w.name === what)?.expect?.error();
}

const flushTexts = new Map<string, string>();

/** {@link updateRunWithSteps}'s statement for run changes `keys` and `writes` (their parameters numbered after the run's). */
function flushText(keys: ReadonlyArray<keyof RunChange>, writes: readonly StatementWrite[]): string {
  const ctes: string[] = [];
  if (keys.length > 0) ctes.push(`run AS (UPDATE rotation_runs SET ${[...keys.map((k, i) => `${k} = $${i + 5}`), 'updated_at = now()'].join(', ')} WHERE run_id = $1)`);
  ctes.push(`steps AS (${INSERT_STEPS})`); // no steps: inserts nothing
  const columns: string[] = [];
  let offset = 4 + keys.length;
  for (const [i, w] of writes.entries()) {
    const local = (w.before ?? []).map(([name]) => name);
    if (local.some((name) => !/^[a-z][a-z_]*$/.test(name))) throw new Error(`write ${w.name}: CTE names are lower-case letters and _`);
    // parameters numbered on from the statement's; the write's own CTE names prefixed with its number
    const rewrite = (sql: string) => local.reduce((text, name) => text.replace(new RegExp(`\\b${name}\\b`, 'g'), `w${i}_${name}`), sql.replace(/\$(\d+)/g, (_m, n: string) => `$${Number(n) + offset}`));
    for (const [name, sql] of w.before ?? []) ctes.push(`w${i}_${name} AS (${rewrite(sql)})`);
    ctes.push(`w${i} AS (${rewrite(w.sql)})`);
    offset += w.values.length;
    columns.push(`(SELECT count(*) FROM w${i})::int AS w${i}`);
    if (w.rows === true) columns.push(`(SELECT coalesce(json_agg(w${i}), '[]'::json) FROM w${i}) AS w${i}_rows`);
    if (w.expect !== undefined) {
      // its own parameters follow the write's; `self` is the write's rows; the name (checked) is the error's message
      if (!/^[a-z][a-z0-9-]*$/.test(w.name)) throw new Error(`write ${w.name}: a write with an expectation is named in lower-case letters, digits and -`);
      const check = rewrite(w.expect.sql).replace(/\bself\b/g, `w${i}`); // rewrite numbers on from `offset`, already past the write's own
      columns.push(`sikker_expect(${check}, '${w.name}') AS w${i}_expected`);
      offset += w.expect.values.length;
    }
  }
  return `WITH ${ctes.join(', ')} SELECT ${columns.length > 0 ? columns.join(', ') : '1'}`;
}

/**
 * A prepared statement's name for one shape of a dynamic statement. PostgreSQL cuts names
 * at 63 bytes, and two names equal in their first 63 would collide, so the shape is hashed.
 */
function shapeName(prefix: string, keys: readonly string[]): string {
  return `${prefix}-${createHash('sha256').update(keys.join(',')).digest('hex').slice(0, 16)}`;
}

function stepColumns(steps: RunStep[]): [string[], string[], Date[]] {
  return [steps.map((s) => s.step), steps.map((s) => JSON.stringify(s.detail)), steps.map((s) => s.at)];
}

/** A step as it is stored. */
export interface RunStepRecord {
  seq: number;
  step: string;
  at: Date;
  detail: Record<string, unknown>;
}

export async function runSteps(db: Queryable, runId: string): Promise<RunStepRecord[]> {
  return (await db.query({ name: 'run-steps', text: 'SELECT seq, step, at, detail FROM rotation_steps WHERE run_id = $1 ORDER BY seq', values: [runId] })).rows;
}

export async function listRuns(db: Queryable, projectId: string, targetId: string | null, limit: number): Promise<RunRow[]> {
  return (await db.query<RunRow>(
    `SELECT * FROM rotation_runs WHERE project_id = $1 AND ($2::uuid IS NULL OR target_id = $2::uuid) ORDER BY created_at DESC LIMIT $3`,
    [projectId, targetId, limit],
  )).rows;
}

/**
 * Runs the sweep must look at: in flight and due, or waiting for a command that has
 * finished (the event that would have advanced it was lost, e.g. in a crash).
 */
export async function dueRuns(db: Queryable, limit: number): Promise<string[]> {
  return (await db.query<{ run_id: string }>(
    `SELECT r.run_id FROM rotation_runs r LEFT JOIN agent_commands c ON c.command_id = r.command_id
      WHERE r.holds_target AND (r.next_action_at <= now() OR (c.state IN ('succeeded', 'failed', 'rejected', 'expired') AND r.updated_at < now() - interval '2 seconds'))
      ORDER BY r.next_action_at LIMIT $1`, [limit],
  )).rows.map((r) => r.run_id);
}
