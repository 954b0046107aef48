import type { Command } from 'commander';
import type * as z from 'zod';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { ProjectName } from '../../shared/protocol/api.js';
import { MatchResponse, type MatchRequest } from '../../shared/protocol/leak-api.js';
import { collect, parseWith } from './cli-arguments.js';
import type { CliContext } from './cli-context.js';
import { compileExcludeGlob } from './scan/exclude-glob.js';
import { checkPaths, type SkipReason } from './scan/file-walker.js';
import { formatScanHuman, scanDocument } from './scan/scan-report.js';
import { scanSources } from './scan/scanner.js';
import type { MatchCandidates } from './scan/vault-matcher.js';
import { isInteractive } from '../../shared/terminal/stdin-input.js';

interface ScanFlags {
  project?: string;
  vault: boolean;
  exclude?: string[];
}

/** Exit codes, as grep: 1 when anything was found, 2 when the scan could not be done (or files could not be read). */
const EXIT_FOUND = 1;
const EXIT_TROUBLE = 2;

const SKIP_NOTES: Record<SkipReason, string | undefined> = {
  binary: undefined, // expected in any tree (images, archives): counted, not noted
  'too-large': 'larger than 10 MiB',
  unreadable: 'cannot be read',
  'not-a-file': 'not a regular file (use "-" for stdin)',
};

/** Registers `sikker scan`. */
export function registerScanCommands(program: Command, ctx: CliContext): void {
  ctx.leaf(program, 'scan [paths...]', 'report secret-shaped strings and values this vault manages in files, directories or stdin (- or nothing); exit 1 when anything is found')
    .option('--project <project>', 'match values of this project only (default: every project you may match in)')
    .option('--no-vault', 'look for secret shapes only; do not ask the vault')
    .option('--exclude <glob>', 'skip files and directories matching the glob (repeatable; without "/" it matches names)', collect)
    .action(async (paths: string[], flags: ScanFlags, cmd: Command) => {
      try {
        await scan(ctx, cmd, paths, flags);
      } catch (err) {
        // A scan that could not run must not look like a clean one (0) nor like a finding (1).
        ctx.out.error(err);
        ctx.exitCode = EXIT_TROUBLE;
      }
    });
}

async function scan(ctx: CliContext, cmd: Command, paths: string[], flags: ScanFlags): Promise<void> {
  const project = flags.project === undefined ? undefined : parseWith(ProjectName, flags.project, '--project');
  if (paths.filter((p) => p === '-').length > 1) throw new SikkerError('ERR_VALIDATION', 'stdin ("-") can be scanned only once');
  const excludes = (flags.exclude ?? []).map(compileExcludeGlob);
  await checkPaths(paths);
  const matchCandidates = vaultMatcher(ctx, cmd, flags.vault, project);
  if ((paths.length === 0 || paths.includes('-')) && isInteractive(ctx.io.stdin)) ctx.out.note('scanning stdin; press Ctrl-D to end');

  let unreadable = 0;
  const result = await scanSources({
    paths, excludes, stdin: ctx.io.stdin, matchCandidates,
    onSkipped: (path, reason) => {
      if (reason !== 'binary' && reason !== 'too-large') unreadable++;
      const note = SKIP_NOTES[reason];
      if (note !== undefined) ctx.out.note(`skipped ${path}: ${note}`);
    },
  });
  if (result.findings.length > 0) ctx.exitCode = EXIT_FOUND;
  else if (unreadable > 0) ctx.exitCode = EXIT_TROUBLE;
  ctx.out.result(scanDocument(result), () => formatScanHuman(result));
}

/**
 * The vault side of a scan, or undefined (with a note saying why) when it is turned
 * off with --no-vault or no server is configured. With a server configured, an
 * unusable identity fails the scan rather than quietly skipping the vault.
 */
function vaultMatcher(ctx: CliContext, cmd: Command, enabled: boolean, project: string | undefined): MatchCandidates | undefined {
  if (!enabled) {
    if (project !== undefined) throw new SikkerError('ERR_VALIDATION', '--project selects vault values to match; it cannot be used with --no-vault');
    ctx.out.note('vault matching skipped (--no-vault): only secret shapes are reported');
    return undefined;
  }
  if (ctx.config(cmd).server === undefined) {
    if (project !== undefined) throw new SikkerError('ERR_CONFIG_INVALID', '--project needs a server: pass --server URL or set SIKKER_SERVER');
    ctx.out.note('vault matching skipped: no server configured (--server or SIKKER_SERVER); only secret shapes are reported');
    return undefined;
  }
  const client = ctx.signedClient(cmd);
  return async (candidates) => {
    const body: z.infer<typeof MatchRequest> = { candidates, ...(project === undefined ? {} : { project }) };
    return (await client.request('POST', '/v1/fingerprints/match', body, MatchResponse)).matches;
  };
}
