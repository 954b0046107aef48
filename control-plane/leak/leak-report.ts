import type { Queryable } from '../db/queryable.js';

/** Everything an on-call engineer needs about one leak. Names, times and addresses: never a value. */
export interface LeakReport {
  leakId: string;
  projectId: string;
  project: string;
  secret: string;
  target: string | null;
  leakedVersion: number;
  foundBy: string;
  state: 'open' | 'neutralised' | 'exposed';
  reason: string | null;
  reportedAt: Date;
  neutralisedAt: Date | null;
  /** From the leak command to the leaked value being refused (the run finished), when it was. */
  secondsToNeutralise: number | null;
  run: { runId: string; state: string; errorCode: string | null; errorMessage: string | null } | null;
  /** Every successful read of the leaked version or any later one. */
  readers: Array<{ identityId: string | null; identity: string | null; version: number; at: Date; sourceIp: string | null }>;
  /** Agents and sinks that were sent the leaked version or a later one. */
  deliveries: Array<{ agentId: string | null; sink: string | null; version: number; at: Date }>;
}

export async function leakReport(db: Queryable, leakId: string): Promise<LeakReport | null> {
  const leak = (await db.query<{
    leak_id: string; project_id: string; project: string; secret_id: string; secret: string; target: string | null; leaked_version: number; found_by: string;
    state: LeakReport['state']; reason: string | null; reported_at: Date; neutralised_at: Date | null; run_id: string | null; run_state: string | null; error_code: string | null; error_message: string | null;
  }>(
    `SELECT l.*, p.name AS project, s.name AS secret, t.name AS target, r.state AS run_state, r.error_code, r.error_message
       FROM leaks l JOIN projects p ON p.project_id = l.project_id JOIN secrets s ON s.secret_id = l.secret_id
       LEFT JOIN targets t ON t.target_id = l.target_id LEFT JOIN rotation_runs r ON r.run_id = l.run_id
      WHERE l.leak_id = $1`, [leakId],
  )).rows[0];
  if (leak === undefined) return null;
  const readers = (await db.query<{ identity_id: string | null; name: string | null; secret_version: number; occurred_at: Date; source_ip: string | null }>(
    `SELECT a.identity_id, i.name, a.secret_version, a.occurred_at, a.source_ip
       FROM audit_records a LEFT JOIN identities i ON i.identity_id = a.identity_id
      WHERE a.secret_id = $1 AND a.action = 'secret.read' AND a.outcome = 'success' AND a.secret_version >= $2
      ORDER BY a.seq`, [leak.secret_id, leak.leaked_version],
  )).rows;
  const deliveries = (await db.query<{ agent: string | null; sink: string | null; secret_version: number; occurred_at: Date }>(
    `SELECT a.detail->>'agent' AS agent, a.detail->>'sink' AS sink, a.secret_version, a.occurred_at
       FROM audit_records a WHERE a.secret_id = $1 AND a.action = 'secret.deliver' AND a.secret_version >= $2 ORDER BY a.seq`, [leak.secret_id, leak.leaked_version],
  )).rows;
  return {
    leakId: leak.leak_id, projectId: leak.project_id, project: leak.project, secret: leak.secret, target: leak.target, leakedVersion: leak.leaked_version,
    foundBy: leak.found_by, state: leak.state, reason: leak.reason, reportedAt: leak.reported_at, neutralisedAt: leak.neutralised_at,
    secondsToNeutralise: leak.neutralised_at === null ? null : (leak.neutralised_at.getTime() - leak.reported_at.getTime()) / 1000,
    run: leak.run_id === null ? null : { runId: leak.run_id, state: leak.run_state ?? 'unknown', errorCode: leak.error_code, errorMessage: leak.error_message },
    readers: readers.map((r) => ({ identityId: r.identity_id, identity: r.name, version: r.secret_version, at: r.occurred_at, sourceIp: r.source_ip })),
    deliveries: deliveries.map((d) => ({ agentId: d.agent, sink: d.sink, version: d.secret_version, at: d.occurred_at })),
  };
}
