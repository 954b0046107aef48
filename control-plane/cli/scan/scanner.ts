import { createInterface } from 'node:readline';
import type { ExcludeGlob } from './exclude-glob.js';
import { walkPaths, type SkipReason } from './file-walker.js';
import { MANAGED_SECRET, SHAPE_KINDS, type Finding, type FindingKind } from './finding.js';
import { LineDetector } from './line-detector.js';
import { lineCandidates } from './tokenizer.js';
import { VaultMatcher, type MatchCandidates } from './vault-matcher.js';

/** How stdin is named in findings. */
export const STDIN_PATH = '(stdin)';

export interface ScanOptions {
  /** Files and directories; `-` is stdin. Must exist (see checkPaths). Empty: stdin only. */
  paths: readonly string[];
  excludes: readonly ExcludeGlob[];
  stdin: NodeJS.ReadableStream;
  /** Asks the vault about candidates; undefined skips vault matching. */
  matchCandidates: MatchCandidates | undefined;
  /** Called for every file passed over (binary, too large, unreadable). */
  onSkipped: (path: string, reason: SkipReason) => void;
}

export interface ScanResult {
  /** Sorted by source order, line, column, then kind. */
  findings: Finding[];
  files: number;
  lines: number;
  skipped: number;
  vault: 'checked' | 'skipped';
}

const KIND_ORDER: readonly FindingKind[] = [...SHAPE_KINDS, MANAGED_SECRET];

/** Splits file contents into lines (`\n` or `\r\n`); a final line break does not start another line. */
function splitLines(text: string): string[] {
  const lines = text.split(/\r?\n/);
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/**
 * Scans the given sources line by line for secret shapes and, when a vault matcher is
 * given, for values the vault manages. Only positions and kinds are kept; line text
 * lives as long as its line is being scanned, candidates until their batch is answered.
 * Failures of the vault request propagate (SikkerError from the client).
 */
export async function scanSources(options: ScanOptions): Promise<ScanResult> {
  const vault = options.matchCandidates === undefined ? undefined : new VaultMatcher(options.matchCandidates);
  const shapes: Finding[] = [];
  const totals = { files: 0, lines: 0, skipped: 0 };
  let source = 0;

  const scanLines = async (path: string, lines: AsyncIterable<string> | Iterable<string>): Promise<void> => {
    const index = source++;
    const detector = new LineDetector();
    totals.files++;
    let line = 0;
    for await (const text of lines) {
      line++;
      for (const hit of detector.scan(line, text)) shapes.push({ path, source: index, ...hit });
      if (vault !== undefined) {
        for (const candidate of lineCandidates(text)) await vault.add(candidate.text, { path, source: index, line, column: candidate.column });
      }
    }
    totals.lines += line;
  };

  const paths = options.paths.length === 0 ? ['-'] : options.paths;
  for await (const entry of walkPaths(paths, { excludes: options.excludes })) {
    if (entry.type === 'stdin') {
      await scanLines(STDIN_PATH, createInterface({ input: options.stdin, crlfDelay: Infinity }));
    } else if (entry.type === 'skipped') {
      totals.skipped++;
      options.onSkipped(entry.path, entry.reason);
    } else {
      await scanLines(entry.path, splitLines(entry.content.toString('utf8')));
    }
  }
  await vault?.flush();

  const findings = [...shapes, ...(vault?.findings ?? [])].sort(
    (a, b) => a.source - b.source || a.line - b.line || a.column - b.column || KIND_ORDER.indexOf(a.kind) - KIND_ORDER.indexOf(b.kind),
  );
  return { findings, ...totals, vault: vault === undefined ? 'skipped' : 'checked' };
}
