import type { Command } from 'commander';
import * as z from 'zod';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { ProjectName, Uuid } from '../../shared/protocol/api.js';
import { Policy, RunDetail, RunList, SetNextRunRequest, SetPolicyRequest } from '../../shared/protocol/rotation-api.js';
import type { SignedClient } from '../../shared/http-client/signed-client.js';
import { collect, parseDurationSeconds, parseWholeNumber, parseWith, projectPath, queryString } from './cli-arguments.js';
import type { CliContext } from './cli-context.js';
import { formatTable, orDash } from './output.js';
import { parseTargetRef, targetPath } from './target-commands.js';

type RunView = z.infer<typeof RunDetail>;
/** States after which `rotate --wait` stops: the new password is live (committed) or the run ended. */
const SETTLED = new Set(['committed', 'revoking', 'done', 'failed', 'parked']);
const CLASSES = ['lower', 'upper', 'digits', 'symbols'] as const;

interface PolicyOptions {
  every?: string;
  cron?: string;
  tz: string;
  window?: string;
  jitter: string;
  strategy: string;
  grace: string;
  length: string;
  min?: string[];
  exclude?: string[];
  avoid: string;
  maxAttempts: string;
  retryBase: string;
  paused?: boolean;
  nextRun?: string;
}

/** Registers `sikker policy set|show|pause|resume|next`, `sikker rotate` and `sikker runs list|show`. */
export function registerRotationCommands(program: Command, ctx: CliContext): void {
  const policy = ctx.group(program, 'policy', 'when and how a target\'s password rotates');

  ctx.leaf(policy, 'set <project/target>', 'set the rotation policy (an active policy needs a passing `sikker target test`)')
    .option('--every <duration>', 'rotate every N (e.g. 30d, 12h, 10s)')
    .option('--cron <expression>', 'rotate on a cron schedule (5 or 6 fields), e.g. "0 3 * * 0"')
    .option('--tz <zone>', 'IANA time zone of the cron expression and the window', 'UTC')
    .option('--window <HH:MM-HH:MM>', 'only start rotations inside this daily window (local to --tz)')
    .option('--jitter <duration>', 'spread the start randomly by up to this much', '0')
    .option('--strategy <strategy>', 'replace, dual or alternate', 'replace')
    .option('--grace <duration>', 'dual/alternate: how long the previous password keeps working', '5m')
    .option('--length <n>', 'password length (12-256)', '32')
    .option('--min <class=n>', 'minimum characters of a class: lower, upper, digits, symbols (repeatable)', collect)
    .option('--exclude <class>', 'never use a class of characters (repeatable)', collect)
    .option('--avoid <chars>', 'characters never to use', '')
    .option('--max-attempts <n>', 'tries, each with a new password, before the run is parked', '5')
    .option('--retry-base <duration>', 'first retry delay (doubles, with jitter)', '30s')
    .option('--paused', 'store the policy without scheduling it')
    .option('--next-run <iso-time>', 'when the first scheduled rotation happens (default: one interval from now)')
    .action(async (ref: string, opts: PolicyOptions, cmd: Command) => {
      const body = parseWith(SetPolicyRequest, { policy: policyFromOptions(opts), paused: opts.paused === true, ...(opts.nextRun === undefined ? {} : { nextRunAt: opts.nextRun }) }, 'policy');
      const p = await ctx.signedClient(cmd).request('PUT', `${targetPath(parseTargetRef(ref))}/policy`, body, Policy);
      ctx.out.result(p, () => describePolicy(p));
    });

  ctx.leaf(policy, 'show <project/target>', 'the policy and the next rotation time').action(async (ref: string, _o: unknown, cmd: Command) => {
    const p = await ctx.signedClient(cmd).request('GET', `${targetPath(parseTargetRef(ref))}/policy`, undefined, Policy);
    ctx.out.result(p, () => describePolicy(p));
  });
  for (const verb of ['pause', 'resume'] as const) {
    ctx.leaf(policy, `${verb} <project/target>`, verb === 'pause' ? 'stop scheduled rotations (manual ones still work)' : 'schedule rotations again').action(async (ref: string, _o: unknown, cmd: Command) => {
      const p = await ctx.signedClient(cmd).request('POST', `${targetPath(parseTargetRef(ref))}/policy/${verb}`, {}, Policy);
      ctx.out.result(p, () => describePolicy(p));
    });
  }
  ctx.leaf(policy, 'next <project/target> <iso-time>', 'move the next scheduled rotation (e.g. 2026-12-01T03:00:00+01:00)').action(async (ref: string, at: string, _o: unknown, cmd: Command) => {
    const body = parseWith(SetNextRunRequest, { nextRunAt: at }, 'time');
    const p = await ctx.signedClient(cmd).request('PUT', `${targetPath(parseTargetRef(ref))}/policy/next-run`, body, Policy);
    ctx.out.result(p, () => describePolicy(p));
  });

  ctx.leaf(program, 'rotate <project/target>', 'rotate a target\'s password now (joins a rotation already in flight)')
    .option('--wait [duration]', 'wait until the new password is committed or the run ends (default 60s)')
    .action(async (ref: string, opts: { wait?: string | boolean }, cmd: Command) => {
      const target = parseTargetRef(ref);
      const client = ctx.signedClient(cmd);
      const started = await client.request('POST', `${targetPath(target)}/rotate`, {}, z.object({ run: RunDetail, joined: z.boolean() }));
      let run = started.run;
      if (started.joined) ctx.out.note(`a rotation of ${ref} was already in flight: following run ${run.runId}`);
      if (opts.wait !== undefined) {
        const seconds = opts.wait === true ? 60 : parseDurationSeconds(String(opts.wait), '--wait');
        run = await waitSettled(client, target.project, run, seconds * 1000);
        if (run.state === 'failed' || run.state === 'parked') ctx.exitCode = 1;
      }
      ctx.out.result({ ...run, joined: started.joined }, () => describeRun(run));
    });

  const runs = ctx.group(program, 'runs', 'rotation runs and their steps');
  ctx.leaf(runs, 'list <project>', 'recent runs, newest first')
    .option('--target <name>', 'only this target\'s runs')
    .option('--limit <n>', 'at most this many (1-500)', '20')
    .action(async (project: string, opts: { target?: string; limit: string }, cmd: Command) => {
      const p = parseWith(ProjectName, project, 'project name');
      const list = await ctx.signedClient(cmd).request('GET', `${projectPath(p)}/runs${queryString({ target: opts.target, limit: parseWholeNumber(opts.limit, '--limit') })}`, undefined, RunList);
      ctx.out.result(list, () => list.runs.length === 0 ? 'no runs' : formatTable([['RUN', 'TARGET', 'TRIGGER', 'STATE', 'USER', 'TRY', 'VERSION', 'CREATED', 'FINISHED', 'ERROR'],
        ...list.runs.map((r) => [r.runId, r.target, r.trigger, r.state, r.user, String(r.attempt), orDash(r.pendingVersion), r.createdAt, orDash(r.finishedAt), r.errorCode === null ? '-' : `${r.errorCode}: ${r.errorMessage ?? ''}`])]));
    });
  ctx.leaf(runs, 'show <project> <run-id>', 'one run with every step and its time').action(async (project: string, id: string, _o: unknown, cmd: Command) => {
    const run = await ctx.signedClient(cmd).request('GET', `${projectPath(parseWith(ProjectName, project, 'project name'))}/runs/${parseWith(Uuid, id, 'run id')}`, undefined, RunDetail);
    ctx.out.result(run, () => describeRun(run));
  });
}

function policyFromOptions(o: PolicyOptions): unknown {
  if ((o.every === undefined) === (o.cron === undefined)) throw new SikkerError('ERR_VALIDATION', 'give exactly one of --every DURATION and --cron EXPRESSION');
  const rules: Record<string, unknown> = { length: parseWholeNumber(o.length, '--length'), avoid: o.avoid };
  for (const entry of o.min ?? []) {
    const [cls, n] = entry.split('=');
    if (!CLASSES.includes(cls as never) || n === undefined) throw new SikkerError('ERR_VALIDATION', '--min: use CLASS=N with CLASS lower, upper, digits or symbols');
    rules[cls as string] = parseWholeNumber(n, `--min ${cls}`);
  }
  for (const cls of o.exclude ?? []) {
    if (!CLASSES.includes(cls as never)) throw new SikkerError('ERR_VALIDATION', '--exclude: lower, upper, digits or symbols');
    rules[cls] = -1;
  }
  let window: { start: string; end: string } | undefined;
  if (o.window !== undefined) {
    const [start, end] = o.window.split('-');
    if (start === undefined || end === undefined) throw new SikkerError('ERR_VALIDATION', '--window: use HH:MM-HH:MM, e.g. 02:00-04:00');
    window = { start, end };
  }
  return {
    schedule: o.every !== undefined ? { kind: 'every', seconds: parseDurationSeconds(o.every, '--every') } : { kind: 'cron', expression: o.cron },
    timeZone: o.tz, ...(window === undefined ? {} : { window }), jitterSeconds: parseDurationSeconds(o.jitter, '--jitter'),
    strategy: o.strategy, graceSeconds: parseDurationSeconds(o.grace, '--grace'), passwordRules: rules,
    maxAttempts: parseWholeNumber(o.maxAttempts, '--max-attempts'), retryBaseSeconds: parseDurationSeconds(o.retryBase, '--retry-base'),
  };
}

async function waitSettled(client: SignedClient, project: string, first: RunView, waitMs: number): Promise<RunView> {
  const deadline = Date.now() + waitMs;
  let run = first;
  while (!SETTLED.has(run.state)) {
    if (Date.now() > deadline) throw new SikkerError('ERR_CONFLICT', `run ${run.runId} is still ${run.state}; it goes on (sikker runs show ${project} ${run.runId})`, { retryable: true });
    await new Promise((r) => setTimeout(r, 200));
    run = await client.request('GET', `${projectPath(project)}/runs/${run.runId}`, undefined, RunDetail);
  }
  return run;
}

function describePolicy(p: z.infer<typeof Policy>): string {
  const s = p.policy;
  const schedule = s.schedule.kind === 'every' ? `every ${s.schedule.seconds}s` : `cron "${s.schedule.expression}"`;
  return [
    `${p.target}: ${p.state}, ${schedule} (${s.timeZone})${s.window === undefined ? '' : `, window ${s.window.start}-${s.window.end}`}${s.jitterSeconds > 0 ? `, jitter ${s.jitterSeconds}s` : ''}`,
    `strategy ${s.strategy}${s.strategy === 'replace' ? '' : `, grace ${s.graceSeconds}s`}; passwords of ${s.passwordRules.length} characters; ${s.maxAttempts} attempts, retry from ${s.retryBaseSeconds}s`,
    `next rotation at ${orDash(p.nextRunAt)}; last ${orDash(p.lastRunAt)}`,
  ].join('\n');
}

function describeRun(run: RunView): string {
  const head = `run ${run.runId} of ${run.project}/${run.target} (${run.trigger}, ${run.strategy}, user ${run.user}, attempt ${run.attempt}): ${run.state}`
    + (run.errorCode === null ? '' : ` — ${run.errorCode}: ${run.errorMessage ?? ''}`);
  const rows = run.steps.map((s) => [s.at, s.step, Object.keys(s.detail).length === 0 ? '' : JSON.stringify(s.detail)]);
  return [head, formatTable([['AT', 'STEP', 'DETAIL'], ...rows])].join('\n');
}
