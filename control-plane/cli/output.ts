import type { Writable } from 'node:stream';
import { isSikkerError, type ErrorCode } from '../../shared/errors/sikker-error.js';

/**
 * Everything the CLI prints goes through here, so the two modes stay honest:
 * human mode writes readable text to stdout and notes/errors to stderr; JSON mode
 * writes exactly one JSON document to stdout (the result or the error) and keeps
 * notes on stderr.
 */
export class Output {
  #wroteDocument = false;

  constructor(
    readonly json: boolean,
    private readonly stdout: Writable,
    private readonly stderr: Writable,
  ) {}

  /** Prints a command's result: `document` in JSON mode, `human()` otherwise. Call once per command. */
  result(document: unknown, human: () => string): void {
    if (this.json) {
      this.#writeDocument(document);
      return;
    }
    const text = human();
    this.stdout.write(text.endsWith('\n') || text === '' ? text : `${text}\n`);
  }

  /** A remark for a person (warnings, hints); always on stderr so stdout stays machine-readable. */
  note(text: string): void {
    this.stderr.write(`${text}\n`);
  }

  /** Prints a failure: `error CODE: message` on stderr, or `{"error":{code,message}}` on stdout in JSON mode. */
  error(err: unknown): void {
    const { code, message } = describeError(err);
    if (this.json) {
      if (!this.#wroteDocument) this.#writeDocument({ error: { code, message } });
      else this.stderr.write(`error ${code}: ${message}\n`);
      return;
    }
    this.stderr.write(`error ${code}: ${message}\n`);
  }

  #writeDocument(document: unknown): void {
    this.#wroteDocument = true;
    this.stdout.write(`${JSON.stringify(document, null, 2)}\n`);
  }
}

/** Code and message to show for any thrown value; unknown errors become ERR_INTERNAL. */
export function describeError(err: unknown): { code: ErrorCode; message: string } {
  if (isSikkerError(err)) return { code: err.code, message: err.message };
  if (err instanceof Error) return { code: 'ERR_INTERNAL', message: err.message };
  return { code: 'ERR_INTERNAL', message: 'unexpected failure' };
}

/** Aligns rows into columns separated by two spaces; the last column is not padded. */
export function formatTable(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, index) => {
      widths[index] = Math.max(widths[index] ?? 0, cell.length);
    });
  }
  return rows
    .map((row) => row.map((cell, index) => (index === row.length - 1 ? cell : cell.padEnd(widths[index] ?? 0))).join('  '))
    .join('\n');
}

/** `-` for absent values in tables. */
export function orDash(value: string | number | null | undefined): string {
  return value === null || value === undefined || value === '' ? '-' : String(value);
}
