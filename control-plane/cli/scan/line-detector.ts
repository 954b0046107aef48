import { findConnectionStrings } from './connection-strings.js';
import type { ShapeKind } from './finding.js';
import { findPasswordAssignments } from './password-assignments.js';
import { findAwsSecretShapes, findPemHeaders, findTokenShapes, namesAwsSecret, startsPemBody } from './shape-detectors.js';

/** How many lines apart an AWS key id and a secret-key-shaped string still count as a pair. */
export const AWS_PAIR_WINDOW = 5;

/** A shape found in a source: 1-based line and column of the value. */
export interface LocatedShape {
  line: number;
  column: number;
  kind: ShapeKind;
}

interface Position {
  line: number;
  column: number;
}

/**
 * Runs every shape detector over the lines of one source, in order. Two detectors
 * look across lines: a PEM header counts once its body is seen (same or next line),
 * and a 40-character AWS secret shape counts when named on its line or within
 * AWS_PAIR_WINDOW lines of an access key id (before or after). One position is
 * reported once, as the most specific kind (SHAPE_KINDS order).
 *
 * Holds positions only, never line text.
 */
export class LineDetector {
  #pemHeaders: Position[] = [];
  #lastKeyIdLine: number | undefined;
  #unpairedAwsSecrets: Position[] = [];
  readonly #reported = new Set<string>();

  /** Shapes on line `line` (1-based), plus earlier ones this line confirms. Call with consecutive lines. */
  scan(line: number, text: string): LocatedShape[] {
    const found: LocatedShape[] = [];
    const add = (at: Position, kind: ShapeKind): void => {
      const key = `${at.line}:${at.column}`;
      if (this.#reported.has(key)) return;
      this.#reported.add(key);
      found.push({ ...at, kind });
    };
    this.#privateKeys(line, text, add);
    for (const hit of findTokenShapes(text)) {
      if (hit.kind === 'aws-access-key-id') this.#keyIdSeen(line, add);
      add({ line, column: hit.column }, hit.kind);
    }
    this.#awsSecrets(line, text, add);
    for (const hit of findConnectionStrings(text)) add({ line, column: hit.passwordStart + 1 }, 'connection-string');
    for (const start of findPasswordAssignments(text)) add({ line, column: start + 1 }, 'password-assignment');
    return found.sort((a, b) => a.line - b.line || a.column - b.column);
  }

  #privateKeys(line: number, text: string, add: (at: Position, kind: ShapeKind) => void): void {
    if (this.#pemHeaders.length > 0 && startsPemBody(text)) {
      for (const header of this.#pemHeaders) add(header, 'private-key');
    }
    this.#pemHeaders = [];
    for (const header of findPemHeaders(text)) {
      const at = { line, column: header.start + 1 };
      if (header.bodyFollows) add(at, 'private-key');
      else if (header.bodyMayFollow) this.#pemHeaders.push(at);
    }
  }

  #keyIdSeen(line: number, add: (at: Position, kind: ShapeKind) => void): void {
    this.#lastKeyIdLine = line;
    for (const secret of this.#unpairedAwsSecrets) {
      if (line - secret.line <= AWS_PAIR_WINDOW) add(secret, 'aws-secret-access-key');
    }
    this.#unpairedAwsSecrets = [];
  }

  #awsSecrets(line: number, text: string, add: (at: Position, kind: ShapeKind) => void): void {
    const starts = findAwsSecretShapes(text);
    this.#unpairedAwsSecrets = this.#unpairedAwsSecrets.filter((s) => line - s.line <= AWS_PAIR_WINDOW);
    if (starts.length === 0) return;
    const paired = namesAwsSecret(text) || (this.#lastKeyIdLine !== undefined && line - this.#lastKeyIdLine <= AWS_PAIR_WINDOW);
    for (const start of starts) {
      const at = { line, column: start + 1 };
      if (paired) add(at, 'aws-secret-access-key');
      else this.#unpairedAwsSecrets.push(at);
    }
  }
}
