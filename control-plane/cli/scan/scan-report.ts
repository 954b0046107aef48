import { formatTable } from '../output.js';
import type { Finding } from './finding.js';
import type { ScanResult } from './scanner.js';

/** A finding as printed with --json: position, kind, and for vault matches the version's names. */
export interface FindingDocument {
  path: string;
  line: number;
  column: number;
  kind: string;
  project?: string;
  secret?: string;
  version?: number;
  label?: string | null;
  state?: string;
  leaked?: boolean;
}

/** The --json document of `sikker scan`. */
export interface ScanDocument {
  findings: FindingDocument[];
  scanned: { files: number; lines: number; skipped: number };
  vault: 'checked' | 'skipped';
}

/** Builds the --json document; positions and names only, no matched text. */
export function scanDocument(result: ScanResult): ScanDocument {
  return {
    findings: result.findings.map((f) => ({
      path: f.path, line: f.line, column: f.column, kind: f.kind,
      ...(f.managed === undefined ? {} : {
        project: f.managed.project, secret: f.managed.secret, version: f.managed.version,
        label: f.managed.label, state: f.managed.state, leaked: f.managed.leaked,
      }),
    })),
    scanned: { files: result.files, lines: result.lines, skipped: result.skipped },
    vault: result.vault,
  };
}

/** `[payments/db-password v3 (current, active)]` for a vault match, '' for a shape. */
function managedLabel(finding: Finding): string {
  const m = finding.managed;
  if (m === undefined) return '';
  const facts = [m.label, m.state, m.leaked ? 'leaked' : null].filter((x): x is string => x !== null);
  return `[${m.project}/${m.secret} v${m.version} (${facts.join(', ')})]`;
}

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

/** One line per finding (`path:line:col  kind  [project/secret vN (label, state)]`), then a summary line. */
export function formatScanHuman(result: ScanResult): string {
  const rows = result.findings.map((f) => [`${f.path}:${f.line}:${f.column}`, f.kind, managedLabel(f)]);
  const lines = rows.length === 0 ? [] : formatTable(rows).split('\n').map((l) => l.trimEnd());
  const scanned = `scanned ${plural(result.files, 'file')}, ${plural(result.lines, 'line')}`
    + (result.skipped === 0 ? '' : `, skipped ${result.skipped}`)
    + (result.vault === 'checked' ? '; vault values checked' : '; vault matching skipped');
  const files = new Set(result.findings.map((f) => f.path)).size;
  lines.push(result.findings.length === 0
    ? `no findings: ${scanned}`
    : `${plural(result.findings.length, 'finding')} in ${plural(files, 'file')}: ${scanned}`);
  return lines.join('\n');
}
