/**
 * The `leak` benchmark's figures: derived values (rate, ratio, goal), the printed
 * summary, and the last-line JSON object.
 */
import type { AlterRoleRate } from './alter-role-baseline.js';
import type { ApplierRate } from './applier-rate.js';
import type { CredentialCheck } from './credential-check.js';
import type { LeakFleet } from './leak-fleet.js';
import type { LeakTimeline } from './leak-timeline.js';
import type { LeakWindow } from './leak-window.js';
import { round } from './load.js';

export interface LeakGoals {
  credentials: number;
  totalSeconds: number;
  ratio: number;
}

/** How the run was configured (experiments are echoed in the result). */
export interface LeakRunOptions {
  credentials: number;
  agents: number;
  maxConnections: number | null;
  controlPlaneSynchronousCommit: 'on' | 'off' | null;
  agentNodeArgs: string[];
  controlPlaneOverrides: Record<string, string>;
  timeoutMs: number;
}

export interface LeakFigures {
  options: LeakRunOptions;
  goals: LeakGoals;
  fleet: LeakFleet;
  window: LeakWindow;
  timeline: LeakTimeline;
  /** GET …/leaks/:id states. */
  states: Record<string, number>;
  logins: CredentialCheck;
  journalBytes: Array<number | null>;
  before: AlterRoleRate;
  after: AlterRoleRate;
  verifier: AlterRoleRate;
  alterAndLogin: AlterRoleRate;
  applier: ApplierRate;
}

interface Derived {
  neutralised: number;
  rotationsPerSecond: number;
  baselinePerSecond: number;
  ratio: number;
  verified: boolean;
  goalMet: boolean;
}

function derive(f: LeakFigures): Derived {
  const neutralised = f.window.counts.neutralised;
  const rotationsPerSecond = neutralised / f.window.seconds;
  const baselinePerSecond = (f.before.alters + f.after.alters) / (f.before.seconds + f.after.seconds);
  const ratio = rotationsPerSecond / baselinePerSecond;
  const verified = f.logins.failures.length === 0 && f.logins.checked === neutralised && (f.states['neutralised'] ?? 0) === neutralised;
  const goalMet = f.window.settled && neutralised >= f.goals.credentials && verified && f.window.seconds <= f.goals.totalSeconds && ratio >= f.goals.ratio;
  return { neutralised, rotationsPerSecond, baselinePerSecond, ratio, verified, goalMet };
}

function rate(r: AlterRoleRate): Record<string, number> {
  return { perSecond: round(r.perSecond, 1), alters: r.alters, seconds: round(r.seconds, 2), connections: r.connections };
}

/** The last-line object (bench/run.ts adds `benchmark`). */
export function leakResult(f: LeakFigures): Record<string, unknown> {
  const d = derive(f);
  const w = f.window;
  const o = f.options;
  return {
    credentials: d.neutralised,
    agents: o.agents,
    totalSeconds: round(w.seconds, 2),
    rotationsPerSecond: round(d.rotationsPerSecond, 1),
    baselinePerSecond: round(d.baselinePerSecond, 1),
    ratio: round(d.ratio, 3),
    goalMet: d.goalMet,
    goals: f.goals,
    requested: o.credentials,
    settled: w.settled,
    exposed: w.counts.exposed,
    verified: d.verified,
    reportStates: f.states,
    logins: { checked: f.logins.checked, oldRefused: f.logins.oldRefused, newLogsIn: f.logins.newLogsIn, notRotated: f.logins.notRotated },
    leakRequestAnsweredSeconds: w.postMs === null ? null : round(w.postMs / 1000, 2),
    ...(w.postError === null ? {} : { leakRequestError: w.postError }),
    lastNeutralisedAtSeconds: w.counts.lastNeutralisedMs === null ? null : round((w.counts.lastNeutralisedMs - w.t0) / 1000, 2),
    baseline: { before: rate(f.before), after: rate(f.after), verifier: rate(f.verifier), alterAndFreshLogin: rate(f.alterAndLogin) },
    verifiedCeilingRatio: round(f.alterAndLogin.perSecond / d.baselinePerSecond, 3),
    applierInProcess: { perSecond: round(f.applier.perSecond, 1), applies: f.applier.applies, lanes: f.applier.lanes },
    auditChain: { appends: f.timeline.audit.appends, records: f.timeline.audit.records, startPhaseAppendsPerSecond: round(f.timeline.audit.startPhasePerSecond, 1), startPhaseGapP50Ms: round(f.timeline.audit.startPhaseGapP50Ms, 2) },
    timelineMs: Object.fromEntries(f.timeline.points.map((p) => [p.key, { first: Math.round(p.firstMs), p50: Math.round(p.p50Ms), last: Math.round(p.lastMs) }])),
    agentApplyGapP50Ms: f.timeline.agents.map((a) => round(a.gapP50Ms, 1)),
    locks: { samples: w.waits.samples, waitAuditHeadMean: round(w.waits.waitAuditHeadMean, 2), waitAuditHeadMax: w.waits.waitAuditHeadMax, waitAgentRowMean: round(w.waits.waitAgentRowMean, 2), waitLockMean: round(w.waits.waitLockMean, 2), activeMean: round(w.waits.activeMean, 2) },
    clusterConnectionsMax: { agents: w.waits.agentConnectionsMax, all: w.waits.clusterConnectionsMax, maxConnections: f.fleet.maxConnections },
    cpuPercentOfOneCore: { controlPlane: w.cpu.controlPlane.child, controlPlanePostgres: w.cpu.controlPlane.postgres, agents: w.cpu.agents, cluster: w.cpu.cluster, redis: w.cpu.controlPlane.redis, bench: w.cpu.controlPlane.bench, machine: w.cpu.controlPlane.machine, cores: w.cpu.controlPlane.cores },
    agentJournalBytes: f.journalBytes,
    preflight: `real on ${f.fleet.preflightProven.join(', ')}; copied in SQL onto the other ${o.credentials - f.fleet.preflightProven.length}`,
    ...(o.maxConnections === null ? {} : { clusterMaxConnectionsOverride: o.maxConnections }),
    ...(o.controlPlaneSynchronousCommit === null ? {} : { controlPlaneSynchronousCommit: o.controlPlaneSynchronousCommit }),
    ...(Object.keys(o.controlPlaneOverrides).length > 0 ? { controlPlaneOverrides: o.controlPlaneOverrides } : {}),
    ...(o.agentNodeArgs.length > 0 ? { agentNodeArgs: o.agentNodeArgs.join(' ') } : {}),
  };
}

/** The human-readable summary, with what failed spelled out. */
export function printLeakSummary(f: LeakFigures): void {
  const d = derive(f);
  const w = f.window;
  const n = f.options.agents;
  const fmt = (v: number | null): string => (v === null ? '-' : `${v}%`);
  const lines = [
    '',
    `leak: ${f.options.credentials} PostgreSQL credentials on one SCRAM cluster, ${n} agents (round robin), one POST …/leaks {"all": true}`,
    `neutralised ${d.neutralised}/${f.options.credentials} (exposed ${w.counts.exposed}) in ${round(w.seconds, 2)} s (goal <= ${f.goals.totalSeconds} s: ${w.settled && w.seconds <= f.goals.totalSeconds ? 'met' : 'NOT met'}); `
      + `leak request answered after ${w.postMs === null ? `- (${w.postError ?? 'not answered'})` : `${round(w.postMs / 1000, 2)} s`}`,
    `rotations/s ${round(d.rotationsPerSecond, 1)} vs bare ALTER ROLE (plaintext, ${n} connections) ${round(d.baselinePerSecond, 1)}/s `
      + `(before ${round(f.before.perSecond, 1)}, after ${round(f.after.perSecond, 1)}): ratio ${round(d.ratio, 3)} (goal >= ${f.goals.ratio}: ${d.ratio >= f.goals.ratio ? 'met' : 'NOT met'})`,
    `context (same ${n} lanes): ALTER ROLE with a SCRAM verifier computed beforehand ${round(f.verifier.perSecond, 1)}/s; `
      + `ALTER ROLE + a fresh login with the new password ${round(f.alterAndLogin.perSecond, 1)}/s (the least a verified rotation does: ratio ceiling ${round(f.alterAndLogin.perSecond / d.baselinePerSecond, 2)}); `
      + `the agent's applier in this process (admin login + verifier + ALTER ROLE + fresh login, new applier each) ${round(f.applier.perSecond, 1)}/s`,
    `checks (untimed): reports ${JSON.stringify(f.states)}; of ${f.logins.checked} neutralised targets the leaked password is refused for ${f.logins.oldRefused}, the current one logs in for ${f.logins.newLogsIn}`
      + `${f.logins.failures.length > 0 ? `; failures: ${f.logins.failures.join('; ')}` : ''}`,
    `CPU over the window (% of one core): control plane ${fmt(w.cpu.controlPlane.child)}, its PostgreSQL backends ${fmt(w.cpu.controlPlane.postgres)}, agents ${fmt(w.cpu.agents)}, `
      + `target cluster ${fmt(w.cpu.cluster)}, redis ${fmt(w.cpu.controlPlane.redis)}, this process ${fmt(w.cpu.controlPlane.bench)}; machine ${fmt(w.cpu.controlPlane.machine)} of ${w.cpu.controlPlane.cores === null ? '-' : w.cpu.controlPlane.cores * 100}%`,
    `control plane backends (mean over ${w.waits.samples} samples): active ${round(w.waits.activeMean, 2)}, idle in transaction ${round(w.waits.idleInTransactionMean, 2)}, `
      + `waiting for a lock ${round(w.waits.waitLockMean, 2)} (audit chain head ${round(w.waits.waitAuditHeadMean, 2)}, max ${w.waits.waitAuditHeadMax}; an agent's row ${round(w.waits.waitAgentRowMean, 2)})`,
    ...w.waits.topWaits.map((t) => `  waiting in ${t.samples} samples: ${t.query}`),
    ...w.waits.topIdleInTransaction.map((t) => `  idle in transaction in ${t.samples} samples after: ${t.query}`),
    `connections on the target cluster: agents' at most ${w.waits.agentConnectionsMax}, all at most ${w.waits.clusterConnectionsMax} (max_connections ${f.fleet.maxConnections}); `
      + `agent journals at the end: ${f.journalBytes.map((b) => (b === null ? '-' : `${Math.round(b / 1024)} KiB`)).join(', ')}`,
  ];
  if (!w.settled) lines.push(`NOT REACHED: ${d.neutralised} of ${f.options.credentials} credentials neutralised within ${f.options.timeoutMs / 1000} s; the figures are what it reached`);
  if (w.waits.agentConnectionsMax >= f.fleet.maxConnections - 5) {
    lines.push(`the agents held ${w.waits.agentConnectionsMax} of the cluster's ${f.fleet.maxConnections} connection slots: each keeps an idle admin connection per target for a minute `
      + '(agent/commands/applier-pool.ts, keyed by the whole target spec); applies past the limit fail with SQLSTATE 53300 and back off');
  }
  if (!d.verified) lines.push(`VERIFICATION FAILED: ${JSON.stringify({ states: f.states, logins: f.logins })}`);
  process.stdout.write(`${lines.join('\n')}\n`);
}
