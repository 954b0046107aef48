/**
 * Where a rotation's time goes, from the timestamps the control plane records anyway:
 * the run's steps (`rotation_steps.at`, clock_timestamp() of each insert), the apply
 * command's `delivered_at` (after its frame was written to the agent's socket) and
 * `completed_at` (when the hub stored the agent's result), and the client's trigger
 * time. Everything runs on one machine, so the clocks are the same.
 */
import pg from 'pg';
import { percentile } from './load.js';

/** One measured run as the client saw it. */
export interface RunSample {
  runId: string;
  /** Date.now() just before the trigger was sent. */
  t0: number;
  /** From just before the trigger to the moment the run's commit notification arrived (the commit done). */
  latencyMs: number;
  /** The run's committedAt (stamped in the commit transaction, before its last statements) − t0. */
  committedAtMs: number;
  /** How long POST …/rotate took to answer. */
  postMs: number;
}

export interface Segment {
  key: string;
  label: string;
  meanMs: number;
  p50Ms: number;
  p99Ms: number;
  /** Runs that had both ends of the segment. */
  runs: number;
}

/** Consecutive points of a replace run; a segment is the time from one to the next. */
const POINTS: Array<{ key: string; label: string }> = [
  { key: 'created', label: 'trigger sent → run created (HTTP, auth, target, insert)' },
  { key: 'pendingStored', label: 'created → pending stored (password, encrypt, audit)' },
  { key: 'dispatched', label: 'pending stored → dispatched (decrypt, seal, command, audit)' },
  { key: 'delivered', label: 'dispatched → delivered (counted in the start transaction)' },
  { key: 'completed', label: 'delivered → result stored (commit, send, agent\'s apply + verify)' },
  { key: 'applied', label: 'result stored → applied step (lock run, store result)' },
  { key: 'committed', label: 'applied → committed (promote, audit)' },
];

const STEP_POINT: Record<string, string> = {
  created: 'created',
  'pending stored': 'pendingStored',
  'dispatched to agent': 'dispatched',
  'applied and verified by agent': 'applied',
  'committed (verified)': 'committed',
};

/** Reads the steps and apply commands of `samples` from the control plane's database and averages each segment. */
export async function breakdown(databaseUrl: string, samples: readonly RunSample[]): Promise<Segment[]> {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined); // surfaced through the awaited queries
  await client.connect();
  try {
    const ids = samples.map((s) => s.runId);
    const steps = (await client.query<{ run_id: string; step: string; at_ms: string; command_id: string | null }>(
      `SELECT run_id, step, extract(epoch FROM at) * 1000 AS at_ms, detail->>'commandId' AS command_id
         FROM rotation_steps WHERE run_id = ANY($1::uuid[]) ORDER BY run_id, seq`, [ids],
    )).rows;
    const points = new Map<string, Map<string, number>>();
    const commandOf = new Map<string, string>();
    for (const s of steps) {
      const key = STEP_POINT[s.step];
      if (key === undefined) continue;
      const at = points.get(s.run_id) ?? new Map<string, number>();
      if (!at.has(key)) at.set(key, Number(s.at_ms)); // the first try of each step
      points.set(s.run_id, at);
      if (key === 'dispatched' && s.command_id !== null && !commandOf.has(s.run_id)) commandOf.set(s.run_id, s.command_id);
    }
    const commands = (await client.query<{ command_id: string; delivered_ms: string | null; completed_ms: string | null }>(
      `SELECT command_id, extract(epoch FROM delivered_at) * 1000 AS delivered_ms, extract(epoch FROM completed_at) * 1000 AS completed_ms
         FROM agent_commands WHERE command_id = ANY($1::uuid[])`, [[...commandOf.values()]],
    )).rows;
    const byCommand = new Map(commands.map((c) => [c.command_id, c]));
    for (const [runId, commandId] of commandOf) {
      const c = byCommand.get(commandId);
      const at = points.get(runId);
      if (c === undefined || at === undefined) continue;
      if (c.delivered_ms !== null) at.set('delivered', Number(c.delivered_ms));
      if (c.completed_ms !== null) at.set('completed', Number(c.completed_ms));
    }
    const segments: Segment[] = [];
    for (let i = 0; i < POINTS.length; i += 1) {
      const point = POINTS[i];
      if (point === undefined) continue;
      const previous = POINTS[i - 1];
      const values: number[] = [];
      for (const sample of samples) {
        const at = points.get(sample.runId);
        const end = at?.get(point.key);
        const start = previous === undefined ? sample.t0 : at?.get(previous.key);
        if (end !== undefined && start !== undefined) values.push(end - start);
      }
      segments.push({ key: point.key, label: point.label, meanMs: mean(values), p50Ms: percentile(values, 0.5), p99Ms: percentile(values, 0.99), runs: values.length });
    }
    return segments;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Prints the segments as a table (ms). */
export function printBreakdown(segments: readonly Segment[]): void {
  const f = (v: number): string => (Number.isNaN(v) ? '-' : v.toFixed(1));
  const total = segments.reduce((sum, s) => sum + (Number.isNaN(s.meanMs) ? 0 : s.meanMs), 0);
  const lines = [
    '',
    'where the time goes (measured runs; step/command timestamps from the control plane\'s database)',
    `${'segment'.padEnd(70)}${'mean'.padStart(8)}${'p50'.padStart(8)}${'p99'.padStart(8)}${'share'.padStart(8)}`,
    ...segments.map((s) => `${s.label.padEnd(70)}${f(s.meanMs).padStart(8)}${f(s.p50Ms).padStart(8)}${f(s.p99Ms).padStart(8)}${`${total > 0 ? Math.round((s.meanMs / total) * 100) : 0}%`.padStart(8)}`),
    `${'sum of means'.padEnd(70)}${f(total).padStart(8)}`,
    '',
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

function mean(values: readonly number[]): number {
  return values.length === 0 ? Number.NaN : values.reduce((a, b) => a + b, 0) / values.length;
}
