import { decodePassword, findConnectionStrings } from './connection-strings.js';

/** Candidate lengths worth asking the vault about (the server accepts 1..1024). */
export const MIN_CANDIDATE_LENGTH = 8;
export const MAX_CANDIDATE_LENGTH = 1024;

/** A substring of a line that might be a managed value, and its 1-based column. */
export interface Candidate {
  text: string;
  column: number;
}

/** A part of a line and its 0-based offset. */
interface Piece {
  text: string;
  offset: number;
}

const RUN = /\S+/g;
const QUOTES = /["'`]/;
const DELIMITERS = /["'`=:,;()[\]{}<>]/;
const KEY_VALUE = /[=:]/;

/** `text` split on `separator` (one character each), with each part's offset in the line. */
function split(text: string, offset: number, separator: RegExp): Piece[] {
  const parts: Piece[] = [];
  let start = 0;
  for (let i = 0; i <= text.length; i++) {
    if (i === text.length || separator.test(text.charAt(i))) {
      if (i > start) parts.push({ text: text.slice(start, i), offset: offset + start });
      start = i + 1;
    }
  }
  return parts;
}

/**
 * The strings on `line` that could be a whole secret value: each maximal run of
 * non-whitespace; its parts between quotes; what follows the first `=` or `:` in a
 * part (values that themselves contain `=` or `:`); its parts between any of
 * `"'\`=:,;()[]{}<>`; a part without a trailing full stop; and the password of any
 * connection string, as written and percent-decoded. Only lengths
 * MIN_CANDIDATE_LENGTH..MAX_CANDIDATE_LENGTH, each text once (first column).
 */
export function lineCandidates(line: string): Candidate[] {
  const found = new Map<string, number>();
  const add = (text: string, offset: number): void => {
    if (text.length < MIN_CANDIDATE_LENGTH || text.length > MAX_CANDIDATE_LENGTH || found.has(text)) return;
    found.set(text, offset);
  };
  const addWithVariants = (part: Piece): void => {
    add(part.text, part.offset);
    if (part.text.endsWith('.')) add(part.text.slice(0, -1), part.offset);
  };
  for (const run of line.matchAll(RUN)) {
    const offset = run.index ?? 0;
    addWithVariants({ text: run[0], offset });
    for (const quoted of split(run[0], offset, QUOTES)) {
      addWithVariants(quoted);
      const separator = KEY_VALUE.exec(quoted.text);
      if (separator !== null) addWithVariants({ text: quoted.text.slice(separator.index + 1), offset: quoted.offset + separator.index + 1 });
      for (const part of split(quoted.text, quoted.offset, DELIMITERS)) addWithVariants(part);
    }
  }
  for (const hit of findConnectionStrings(line)) {
    const raw = line.slice(hit.passwordStart, hit.passwordEnd);
    add(raw, hit.passwordStart);
    add(decodePassword(raw), hit.passwordStart);
  }
  return [...found].map(([text, offset]) => ({ text, column: offset + 1 }));
}
