/**
 * Where a project-wide leak's time went, from timestamps the control plane records
 * anyway: each leak's `reported_at`, its run's steps (`rotation_steps.at`), the apply
 * command's `issued_at` / `delivered_at` / `completed_at`, and `neutralised_at`. All in
 * ms after the client sent the leak request (same machine, same clock).
 */
import pg from 'pg';
import { percentile } from './load.js';

export interface TimelinePoint {
  key: string;
  label: string;
  runs: number;
  firstMs: number;
  p50Ms: number;
  lastMs: number;
}

export interface AgentThroughput {
  agentId: string;
  applies: number;
  /** Median gap between two consecutive apply results of this agent (its service time while it has a backlog). */
  gapP50Ms: number;
  /** From its first delivery to its last result. */
  busyMs: number;
}

export interface LeakTimeline {
  points: TimelinePoint[];
  agents: AgentThroughput[];
  /** Mean of (delivered → result stored) per apply: the agent's queue plus its work. */
  deliveredToResultMeanMs: number;
  /** Mean of (result stored → committed): the hub and the engine's commit step. */
  resultToCommitMeanMs: number;
  audit: AuditChainUse;
}

/**
 * Appends to the audit hash chain from t0 to the end: each append holds the chain head
 * row from its SELECT … FOR UPDATE to its commit, so appends happen one at a time. An
 * append is a run of consecutive records with the same occurred_at (stamped right
 * after the head was read).
 */
export interface AuditChainUse {
  appends: number;
  records: number;
  /** Appends per second while the leak request was being answered (its start phase). */
  startPhasePerSecond: number;
  /** Median time between two consecutive appends in that phase: with waiters always queued, the time one append holds the head. */
  startPhaseGapP50Ms: number;
  /** Records by action, most first. */
  byAction: Array<{ action: string; records: number }>;
}

const STEPS: Array<{ key: string; step: string; label: string }> = [
  { key: 'created', step: 'created', label: 'run created (leak start transaction)' },
  { key: 'pending', step: 'pending stored', label: 'pending version stored' },
  { key: 'dispatched', step: 'dispatched to agent', label: 'apply command stored (dispatch step)' },
  { key: 'applied', step: 'applied and verified by agent', label: 'applied step (engine saw the result)' },
  { key: 'committed', step: 'committed (verified)', label: 'committed' },
];

/** Reads every leak of `projectId` and its run; `t0` is the client's Date.now() before sending the leak request. */
export async function leakTimeline(databaseUrl: string, projectId: string, t0: number, startPhaseEndMs: number | null): Promise<LeakTimeline> {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined); // surfaced through the awaited queries
  await client.connect();
  try {
    const leaks = (await client.query<{ run_id: string | null; reported_ms: string; neutralised_ms: string | null }>(
      `SELECT run_id, extract(epoch FROM reported_at) * 1000 AS reported_ms, extract(epoch FROM neutralised_at) * 1000 AS neutralised_ms FROM leaks WHERE project_id = $1`, [projectId],
    )).rows;
    const steps = (await client.query<{ run_id: string; step: string; at_ms: string; command_id: string | null }>(
      `SELECT s.run_id, s.step, extract(epoch FROM s.at) * 1000 AS at_ms, s.detail->>'commandId' AS command_id
         FROM rotation_steps s JOIN leaks l ON l.run_id = s.run_id WHERE l.project_id = $1 ORDER BY s.run_id, s.seq`, [projectId],
    )).rows;
    const commands = (await client.query<{ command_id: string; agent_id: string; issued_ms: string; delivered_ms: string | null; completed_ms: string | null }>(
      `SELECT c.command_id, c.agent_id, extract(epoch FROM c.issued_at) * 1000 AS issued_ms,
              extract(epoch FROM c.delivered_at) * 1000 AS delivered_ms, extract(epoch FROM c.completed_at) * 1000 AS completed_ms
         FROM agent_commands c WHERE c.kind = 'rotation.apply' AND c.command_id IN (
           SELECT (s.detail->>'commandId')::uuid FROM rotation_steps s JOIN leaks l ON l.run_id = s.run_id
            WHERE l.project_id = $1 AND s.step = 'dispatched to agent')`, [projectId],
    )).rows;

    const at = new Map<string, Map<string, number>>(); // run → point → ms after t0
    const put = (runId: string, key: string, ms: number): void => {
      const m = at.get(runId) ?? new Map<string, number>();
      if (!m.has(key)) m.set(key, ms - t0); // the first try of each point
      at.set(runId, m);
    };
    const commandRun = new Map<string, string>();
    for (const s of steps) {
      const def = STEPS.find((d) => d.step === s.step);
      if (def !== undefined) put(s.run_id, def.key, Number(s.at_ms));
      if (def?.key === 'dispatched' && s.command_id !== null && !commandRun.has(s.command_id)) commandRun.set(s.command_id, s.run_id);
    }
    for (const l of leaks) {
      if (l.run_id === null) continue;
      put(l.run_id, 'reported', Number(l.reported_ms));
      if (l.neutralised_ms !== null) put(l.run_id, 'neutralised', Number(l.neutralised_ms));
    }
    for (const c of commands) {
      const runId = commandRun.get(c.command_id);
      if (runId === undefined) continue;
      if (c.delivered_ms !== null) put(runId, 'delivered', Number(c.delivered_ms));
      if (c.completed_ms !== null) put(runId, 'result', Number(c.completed_ms));
    }
    const order = [
      { key: 'reported', label: 'leak row written (its transaction start)' },
      ...STEPS.slice(0, 3),
      { key: 'delivered', label: 'apply frame sent to the agent (delivered_at)' },
      { key: 'result', label: 'agent result stored by the hub (completed_at)' },
      ...STEPS.slice(3),
      { key: 'neutralised', label: 'leak neutralised_at (commit transaction start)' },
    ];
    const points = order.map(({ key, label }): TimelinePoint => {
      const values = [...at.values()].map((m) => m.get(key)).filter((v): v is number => v !== undefined);
      return { key, label, runs: values.length, firstMs: values.length === 0 ? Number.NaN : Math.min(...values), p50Ms: percentile(values, 0.5), lastMs: values.length === 0 ? Number.NaN : Math.max(...values) };
    });
    const segment = (from: string, to: string): number => {
      const d = [...at.values()].flatMap((m) => (m.has(from) && m.has(to) ? [(m.get(to) as number) - (m.get(from) as number)] : []));
      return d.length === 0 ? Number.NaN : d.reduce((a, b) => a + b, 0) / d.length;
    };
    const records = (await client.query<{ at_ms: string; action: string }>(
      'SELECT extract(epoch FROM occurred_at) * 1000 AS at_ms, action FROM audit_records WHERE occurred_at >= to_timestamp($1::double precision / 1000) ORDER BY seq', [t0],
    )).rows;
    const startEnd = startPhaseEndMs ?? Math.max(...points.filter((p) => p.key === 'dispatched').map((p) => p.lastMs));
    return { points, agents: throughput(commands), deliveredToResultMeanMs: segment('delivered', 'result'), resultToCommitMeanMs: segment('result', 'committed'), audit: chainUse(records, t0, startEnd) };
  } finally {
    await client.end().catch(() => undefined);
  }
}

function chainUse(records: ReadonlyArray<{ at_ms: string; action: string }>, t0: number, startPhaseEndMs: number): AuditChainUse {
  const appends: number[] = [];
  let last: string | null = null;
  const byAction = new Map<string, number>();
  for (const r of records) {
    if (r.at_ms !== last) appends.push(Number(r.at_ms) - t0);
    last = r.at_ms;
    byAction.set(r.action, (byAction.get(r.action) ?? 0) + 1);
  }
  const start = appends.filter((ms) => ms <= startPhaseEndMs);
  const gaps = start.slice(1).map((ms, i) => ms - (start[i] as number));
  return {
    appends: appends.length, records: records.length,
    startPhasePerSecond: startPhaseEndMs > 0 ? start.length / (startPhaseEndMs / 1000) : Number.NaN,
    startPhaseGapP50Ms: percentile(gaps, 0.5),
    byAction: [...byAction.entries()].sort((a, b) => b[1] - a[1]).map(([action, n]) => ({ action, records: n })),
  };
}

function throughput(commands: ReadonlyArray<{ agent_id: string; delivered_ms: string | null; completed_ms: string | null }>): AgentThroughput[] {
  const byAgent = new Map<string, Array<{ delivered: number; completed: number }>>();
  for (const c of commands) {
    if (c.delivered_ms === null || c.completed_ms === null) continue;
    const list = byAgent.get(c.agent_id) ?? [];
    list.push({ delivered: Number(c.delivered_ms), completed: Number(c.completed_ms) });
    byAgent.set(c.agent_id, list);
  }
  return [...byAgent.entries()].map(([agentId, list]) => {
    const done = list.map((c) => c.completed).sort((a, b) => a - b);
    const gaps = done.slice(1).map((v, i) => v - (done[i] as number));
    return { agentId, applies: list.length, gapP50Ms: percentile(gaps, 0.5), busyMs: Math.max(...done) - Math.min(...list.map((c) => c.delivered)) };
  });
}

/** Prints the points and the per-agent figures as tables. */
export function printTimeline(t: LeakTimeline): void {
  const f = (v: number): string => (Number.isNaN(v) ? '-' : String(Math.round(v)));
  const lines = [
    '',
    'where the time went (ms after the leak request was sent; from the control plane\'s timestamps)',
    `${'point'.padEnd(56)}${'runs'.padStart(6)}${'first'.padStart(8)}${'p50'.padStart(8)}${'last'.padStart(8)}`,
    ...t.points.map((p) => `${p.label.padEnd(56)}${String(p.runs).padStart(6)}${f(p.firstMs).padStart(8)}${f(p.p50Ms).padStart(8)}${f(p.lastMs).padStart(8)}`),
    `mean apply frame sent → result stored ${f(t.deliveredToResultMeanMs)} ms (the agent's queue and work); result stored → committed ${f(t.resultToCommitMeanMs)} ms`,
    `audit chain: ${t.audit.appends} appends (${t.audit.records} records) after the request; while it was being answered ${f(t.audit.startPhasePerSecond)} appends/s, `
      + `median ${Number.isNaN(t.audit.startPhaseGapP50Ms) ? '-' : t.audit.startPhaseGapP50Ms.toFixed(2)} ms between two (the head row is held from each append to its commit)`,
    `  records: ${t.audit.byAction.map((a) => `${a.action} ${a.records}`).join(', ')}`,
    'per agent: applies, median gap between its results (ms), busy span (ms)',
    ...t.agents.map((a, i) => `  agent ${i}: ${a.applies} applies, ${f(a.gapP50Ms)} ms per apply, busy ${f(a.busyMs)} ms`),
    '',
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}
