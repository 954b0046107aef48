/**
 * Watching a project-wide leak from the databases rather than the API: the `leaks`
 * table of the control plane (one cheap count per poll instead of 1,000 signed report
 * requests), what the control plane's backends are waiting for (pg_stat_activity:
 * row locks on the audit chain head, on an agent's generation counter, others), and
 * how many connections the agents hold on the target cluster.
 */
import pg from 'pg';
import { benchAbortSignal } from './cleanup.js';

export interface LeakCounts {
  total: number;
  neutralised: number;
  exposed: number;
  /** max(neutralised_at) as epoch ms (the commit step's transaction start), or null. */
  lastNeutralisedMs: number | null;
}

/** Means over the samples (backends), and the maxima. */
export interface WaitSummary {
  samples: number;
  activeMean: number;
  idleInTransactionMean: number;
  /** Backends waiting for the audit_chain_head row (FOR UPDATE, or the batcher's conditional UPDATE). */
  waitAuditHeadMean: number;
  waitAuditHeadMax: number;
  /** Backends waiting for an agent's row (next_generation, per command). */
  waitAgentRowMean: number;
  /** Every heavyweight-lock wait. */
  waitLockMean: number;
  /** Waiting statements (first 70 characters) by how many samples saw them, most first. */
  topWaits: Array<{ query: string; samples: number }>;
  /** Last statements of backends idle in a transaction (the application is between two statements), most first. */
  topIdleInTransaction: Array<{ query: string; samples: number }>;
  /** Client connections on the target cluster opened by agents (application_name sikker-agent). */
  agentConnectionsMax: number;
  clusterConnectionsMax: number;
}

interface ActivitySample {
  active: number;
  idleInTransaction: number;
  waitAuditHead: number;
  waitAgentRow: number;
  waitLock: number;
}

const ACTIVITY_SQL = `
  SELECT state, wait_event_type, regexp_replace(query, '\\s+', ' ', 'g') AS query
    FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`;

export class LeakWatcher {
  private readonly cp: pg.Client;
  private readonly cluster: pg.Client;
  private readonly activity: ActivitySample[] = [];
  private readonly waits = new Map<string, number>();
  /** Last statement (first 70 characters) of backends idle inside a transaction, by samples. */
  private readonly idleInTransaction = new Map<string, number>();
  private agentConnectionsMax = 0;
  private clusterConnectionsMax = 0;

  constructor(cpDatabaseUrl: string, clusterUrl: string, private readonly projectId: string) {
    this.cp = new pg.Client({ connectionString: cpDatabaseUrl, connectionTimeoutMillis: 10_000, application_name: 'bench-monitor' });
    this.cluster = new pg.Client({ connectionString: clusterUrl, connectionTimeoutMillis: 10_000, application_name: 'bench-monitor' });
    for (const c of [this.cp, this.cluster]) c.on('error', () => undefined); // surfaced through the awaited queries
  }

  async open(): Promise<void> {
    await this.cp.connect();
    await this.cluster.connect();
  }

  async close(): Promise<void> {
    await Promise.all([this.cp.end().catch(() => undefined), this.cluster.end().catch(() => undefined)]);
  }

  async counts(): Promise<LeakCounts> {
    const row = (await this.cp.query<{ total: string; neutralised: string; exposed: string; last_ms: string | null }>(
      `SELECT count(*) AS total, count(*) FILTER (WHERE state = 'neutralised') AS neutralised, count(*) FILTER (WHERE state = 'exposed') AS exposed,
              extract(epoch FROM max(neutralised_at)) * 1000 AS last_ms
         FROM leaks WHERE project_id = $1`, [this.projectId],
    )).rows[0];
    return { total: Number(row?.total ?? 0), neutralised: Number(row?.neutralised ?? 0), exposed: Number(row?.exposed ?? 0), lastNeutralisedMs: row?.last_ms === null || row?.last_ms === undefined ? null : Number(row.last_ms) };
  }

  /** One sample of both servers' activity (called by {@link pollUntilSettled}). */
  async sample(): Promise<void> {
    const rows = (await this.cp.query<{ state: string | null; wait_event_type: string | null; query: string }>(ACTIVITY_SQL)).rows;
    const s: ActivitySample = { active: 0, idleInTransaction: 0, waitAuditHead: 0, waitAgentRow: 0, waitLock: 0 };
    for (const r of rows) {
      if (r.state === 'active') s.active += 1;
      if (r.state?.startsWith('idle in transaction') === true) {
        s.idleInTransaction += 1;
        const key = r.query.slice(0, 70);
        this.idleInTransaction.set(key, (this.idleInTransaction.get(key) ?? 0) + 1);
      }
      if (r.wait_event_type !== 'Lock') continue;
      s.waitLock += 1;
      if (r.query.includes('audit_chain_head')) s.waitAuditHead += 1;
      if (r.query.includes('UPDATE agents SET next_generation')) s.waitAgentRow += 1;
      const key = r.query.slice(0, 70);
      this.waits.set(key, (this.waits.get(key) ?? 0) + 1);
    }
    this.activity.push(s);
    const c = (await this.cluster.query<{ agent: string; total: string }>(
      `SELECT count(*) FILTER (WHERE application_name = 'sikker-agent') AS agent, count(*) AS total
         FROM pg_stat_activity WHERE backend_type = 'client backend'`,
    )).rows[0];
    this.agentConnectionsMax = Math.max(this.agentConnectionsMax, Number(c?.agent ?? 0));
    this.clusterConnectionsMax = Math.max(this.clusterConnectionsMax, Number(c?.total ?? 0));
  }

  /**
   * Polls every `intervalMs` until `expected` leaks exist and none is open, or until
   * `deadlineMs` (epoch ms). Returns the last counts and when (epoch ms) the settled
   * state was first seen (null: never). `onTick` gets the counts about once a second.
   */
  async pollUntilSettled(expected: number, intervalMs: number, deadlineMs: number, onTick: (c: LeakCounts) => void): Promise<{ counts: LeakCounts; settledAtMs: number | null }> {
    let lastTick = 0;
    for (;;) {
      benchAbortSignal.throwIfAborted();
      const counts = await this.counts();
      const now = Date.now();
      if (counts.total >= expected && counts.neutralised + counts.exposed >= counts.total) return { counts, settledAtMs: now };
      await this.sample();
      if (now - lastTick >= 1000) {
        lastTick = now;
        onTick(counts);
      }
      if (Date.now() > deadlineMs) return { counts, settledAtMs: null };
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  }

  summary(): WaitSummary {
    const n = this.activity.length;
    const mean = (f: (s: ActivitySample) => number): number => (n === 0 ? 0 : this.activity.reduce((sum, s) => sum + f(s), 0) / n);
    return {
      samples: n,
      activeMean: mean((s) => s.active),
      idleInTransactionMean: mean((s) => s.idleInTransaction),
      waitAuditHeadMean: mean((s) => s.waitAuditHead),
      waitAuditHeadMax: this.activity.reduce((m, s) => Math.max(m, s.waitAuditHead), 0),
      waitAgentRowMean: mean((s) => s.waitAgentRow),
      waitLockMean: mean((s) => s.waitLock),
      topWaits: top(this.waits),
      topIdleInTransaction: top(this.idleInTransaction),
      agentConnectionsMax: this.agentConnectionsMax,
      clusterConnectionsMax: this.clusterConnectionsMax,
    };
  }
}

function top(counts: ReadonlyMap<string, number>): Array<{ query: string; samples: number }> {
  return [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, 5).map(([query, samples]) => ({ query, samples }));
}
