import type { Command } from 'commander';
import * as z from 'zod';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import type { SignedClient } from '../../shared/http-client/signed-client.js';
import { ProjectName } from '../../shared/protocol/api.js';
import { LeakByNameRequest, LeakByValueRequest, LeakReport, LeakStarted } from '../../shared/protocol/leak-api.js';
import { parseDurationSeconds, parseSecretRef, parseWholeNumber, parseWith, projectPath } from './cli-arguments.js';
import type { CliContext } from './cli-context.js';
import { formatTable, orDash } from './output.js';
import { isInteractive, readSecretText, stripOneNewline } from '../../shared/terminal/stdin-input.js';

interface LeakOptions {
  value?: boolean;
  project?: string;
  version?: string;
  killSessions?: boolean;
  wait: string;
}

/** Registers `sikker leak`. */
export function registerLeakCommands(program: Command, ctx: CliContext): void {
  ctx.leaf(program, 'leak [project/secret]', 'a credential leaked: rotate it now, revoke older versions, optionally end sessions, and report who had it')
    .option('--value', 'read the leaked value from stdin and find it by fingerprint (nothing is decrypted)')
    .option('--project <project>', 'with --value: search only this project; alone: every target of the project')
    .option('--version <n>', 'the leaked version (default: current)')
    .option('--kill-sessions', 'also end the database user\'s live sessions')
    .option('--wait <duration>', 'how long to follow the rotations', '120s')
    .action(async (ref: string | undefined, opts: LeakOptions, cmd: Command) => {
      const client = ctx.signedClient(cmd);
      const started = await start(ctx, client, ref, opts);
      if (!started.matched) {
        ctx.out.result({ matched: false, leaks: [] }, () => 'no match: this vault manages no such value (nothing was changed)');
        return;
      }
      const reports = await follow(ctx, client, started, parseDurationSeconds(opts.wait, '--wait') * 1000);
      if (reports.some((r) => r.state !== 'neutralised')) ctx.exitCode = 1;
      ctx.out.result({ matched: true, leaks: reports }, () => describe(reports));
    });
}

async function start(ctx: CliContext, client: SignedClient, ref: string | undefined, opts: LeakOptions): Promise<z.infer<typeof LeakStarted>> {
  const killSessions = opts.killSessions === true;
  if (opts.value === true) {
    if (ref !== undefined) throw new SikkerError('ERR_VALIDATION', 'give either PROJECT/SECRET or --value, not both');
    if (isInteractive(ctx.io.stdin)) ctx.out.note('paste the leaked value (it is not shown), then press Ctrl-D');
    const value = stripOneNewline(await readSecretText(ctx.io.stdin, 65536, 'leaked value'));
    if (value === '') throw new SikkerError('ERR_VALIDATION', 'the leaked value on stdin is empty');
    const body = parseWith(LeakByValueRequest, { value, killSessions, ...(opts.project === undefined ? {} : { project: opts.project }) }, 'leak');
    return client.request('POST', '/v1/leaks/by-value', body, LeakStarted);
  }
  if (ref === undefined) {
    if (opts.project === undefined) throw new SikkerError('ERR_VALIDATION', 'give PROJECT/SECRET, --value, or --project P for every target of a project');
    const body = parseWith(LeakByNameRequest, { all: true, killSessions }, 'leak');
    return client.request('POST', `${projectPath(parseWith(ProjectName, opts.project, '--project'))}/leaks`, body, LeakStarted);
  }
  const secret = parseSecretRef(ref);
  const body = parseWith(LeakByNameRequest, { secret: secret.name, killSessions, ...(opts.version === undefined ? {} : { version: parseWholeNumber(opts.version, '--version') }) }, 'leak');
  return client.request('POST', `${projectPath(secret.project)}/leaks`, body, LeakStarted);
}

/** Polls every leak until none is open or the wait ends; a progress line on a terminal. */
async function follow(ctx: CliContext, client: SignedClient, started: z.infer<typeof LeakStarted>, waitMs: number): Promise<Array<z.infer<typeof LeakReport>>> {
  const deadline = Date.now() + waitMs;
  const tty = (ctx.io.stderr as { isTTY?: boolean }).isTTY === true;
  for (;;) {
    const reports = await Promise.all(started.leaks.map((l) => client.request('GET', `${projectPath(l.project)}/leaks/${l.leakId}`, undefined, LeakReport)));
    const done = reports.filter((r) => r.state !== 'open').length;
    if (tty) {
      const width = 30;
      const filled = Math.round((done / Math.max(1, reports.length)) * width);
      ctx.io.stderr.write(`\r[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${done}/${reports.length} handled, ${reports.filter((r) => r.state === 'exposed').length} still exposed`);
    }
    if (done === reports.length || Date.now() > deadline) {
      if (tty) ctx.io.stderr.write('\n');
      return reports;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

function describe(reports: Array<z.infer<typeof LeakReport>>): string {
  const exposed = reports.filter((r) => r.state !== 'neutralised');
  const lines = [
    formatTable([['TARGET', 'SECRET', 'VERSION', 'STATE', 'SECONDS', 'READERS', 'REASON'],
      ...reports.map((r) => [orDash(r.target), `${r.project}/${r.secret}`, String(r.leakedVersion), r.state.toUpperCase(), r.secondsToNeutralise === null ? '-' : r.secondsToNeutralise.toFixed(2), String(new Set(r.readers.map((x) => x.identityId)).size), orDash(r.reason ?? r.run?.errorMessage)])]),
  ];
  for (const r of reports) {
    lines.push('', `${r.project}/${r.secret} v${r.leakedVersion}: read by ${r.readers.length === 0 ? 'nobody' : ''}`);
    for (const x of r.readers) lines.push(`  ${orDash(x.identity)} (${orDash(x.identityId)}) read v${x.version} at ${x.at} from ${orDash(x.sourceIp)}`);
    for (const d of r.deliveries) lines.push(`  delivered v${d.version} to agent ${orDash(d.agentId)} sink ${orDash(d.sink)} at ${d.at}`);
  }
  lines.push('', exposed.length === 0
    ? `all ${reports.length} leaked credential(s) neutralised: the leaked values are refused`
    : `${exposed.length} of ${reports.length} STILL EXPOSED: ${exposed.map((r) => `${r.project}/${r.secret}`).join(', ')} — the leaked value may still log in`);
  return lines.join('\n');
}
