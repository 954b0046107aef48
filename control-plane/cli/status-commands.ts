import type { Command } from 'commander';
import type * as z from 'zod';
import { ProjectName } from '../../shared/protocol/api.js';
import { StatusReport } from '../../shared/protocol/status-api.js';
import { parseWholeNumber, parseWith, queryString } from './cli-arguments.js';
import type { CliContext } from './cli-context.js';
import { formatTable, orDash } from './output.js';

type Report = z.infer<typeof StatusReport>;

/** Registers `sikker status`. */
export function registerStatusCommands(program: Command, ctx: CliContext): void {
  ctx.leaf(program, 'status', 'one screen for on-call: agents offline, targets with last/next rotation and flags, failed and parked runs, open leaks '
    + '(informational: exits 0 even when something needs attention; alert on the /metrics gauges instead)')
    .option('--project <project>', 'only this project (required unless you are a control-plane admin)')
    .option('--limit <n>', 'at most this many targets, those needing attention first (1-5000)', '500')
    .action(async (opts: { project?: string; limit: string }, cmd: Command) => {
      const project = opts.project === undefined ? undefined : parseWith(ProjectName, opts.project, '--project');
      const limit = parseWholeNumber(opts.limit, '--limit');
      const report = await ctx.signedClient(cmd).request('GET', `/v1/status${queryString({ project, limit })}`, undefined, StatusReport);
      ctx.out.result(report, () => describeStatus(report, new Date(report.generatedAt).getTime()));
    });
}

/** `5m ago` / `in 2h` relative to `now` (ms); `-` for null. */
export function relativeTime(iso: string | null, now: number): string {
  if (iso === null) return '-';
  const seconds = Math.round((new Date(iso).getTime() - now) / 1000);
  if (seconds === 0) return 'now';
  const abs = Math.abs(seconds);
  const span = abs < 90 ? `${abs}s` : abs < 90 * 60 ? `${Math.round(abs / 60)}m` : abs < 48 * 3600 ? `${Math.round(abs / 3600)}h` : `${Math.round(abs / 86_400)}d`;
  return seconds < 0 ? `${span} ago` : `in ${span}`;
}

function headline(r: Report): string {
  const s = r.summary;
  return [
    `agents ${s.agentsOnline} online, ${s.agentsOffline} offline${s.agentsDisabled > 0 ? `, ${s.agentsDisabled} disabled` : ''}`,
    `targets ${s.targets}`, `overdue ${s.overdue}`, `failed ${s.failed}`, `parked ${s.parked}`, `in flight ${s.inFlight}`,
    `open leaks ${s.leaksOpen}${s.leaksExposed > 0 ? ` (+${s.leaksExposed} exposed)` : ''}`,
  ].join(' | ');
}

/** The human screen: a header line with the counts, then the tables that have rows. */
export function describeStatus(r: Report, now: number): string {
  const when = (iso: string | null): string => relativeTime(iso, now);
  const sections: string[] = [`${r.project === null ? 'all projects' : `project ${r.project}`} at ${r.generatedAt}`, headline(r)];
  const offline = r.agents.filter((a) => a.state === 'offline');
  if (offline.length > 0) {
    sections.push(`\nAGENTS OFFLINE\n${formatTable([['AGENT', 'PROJECT', 'ID', 'LAST HEARTBEAT', 'VERSION'],
      ...offline.map((a) => [a.name, a.project, a.agentId, when(a.lastHeartbeatAt), orDash(a.agentVersion)])])}`);
  }
  sections.push(r.targets.length === 0 ? '\nno targets' : `\nTARGETS\n${formatTable([['TARGET', 'ENGINE', 'USER', 'LAST ROTATION', 'NEXT ROTATION', 'LAST RUN', 'FLAGS'],
    ...r.targets.map((t) => [`${t.project}/${t.name}`, t.engine, t.user, when(t.lastRotationAt), when(t.nextRotationAt), orDash(t.lastRun?.state), t.flags.length === 0 ? 'ok' : t.flags.join(',')])])}`);
  if (r.targetsTruncated) sections.push(`(showing ${r.targets.length} of ${r.summary.targets} targets, those needing attention first; see --limit)`);
  if (r.problemRuns.length > 0) {
    sections.push(`\nFAILED AND PARKED RUNS\n${formatTable([['TARGET', 'STATE', 'TRIGGER', 'TRY', 'SINCE', 'RUN', 'REASON'],
      ...r.problemRuns.map((p) => [`${p.project}/${p.target}`, p.state + (p.holdsTarget ? ' (holds target)' : ''), p.trigger, String(p.attempt), when(p.finishedAt ?? p.createdAt), p.runId,
        p.errorCode === null ? '-' : `${p.errorCode}: ${p.errorMessage ?? ''}`])])}`);
  }
  if (r.leaks.length > 0) {
    sections.push(`\nOPEN LEAKS\n${formatTable([['SECRET', 'TARGET', 'VERSION', 'STATE', 'REPORTED', 'LEAK', 'REASON'],
      ...r.leaks.map((l) => [`${l.project}/${l.secret}`, orDash(l.target), String(l.leakedVersion), l.state, when(l.reportedAt), l.leakId, orDash(l.reason)])])}`);
  }
  return sections.join('\n');
}
