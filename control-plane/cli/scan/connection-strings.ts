import { isPlaceholder } from './placeholders.js';

/** A database or broker URL whose user-info carries a real-looking password. */
export interface ConnectionStringHit {
  /** 0-based offsets of the password inside the line (end exclusive). */
  passwordStart: number;
  passwordEnd: number;
}

/**
 * `scheme://user:password@host` for the schemes whose URLs carry database or broker
 * credentials (also inside `jdbc:` URLs). The user part may be empty (Redis).
 */
const CONNECTION_STRING =
  /(?<![A-Za-z0-9+.-])(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|amqps?|mssql|sqlserver):\/\/[^\s:/?#@'"`]*:([^\s@'"`]*)@(?=[^\s@'"`/?#]*[A-Za-z0-9[])/gi;

/** The password as the server sees it: percent-decoded when that is valid, else as written. */
export function decodePassword(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw; // not valid percent-encoding: the URL carries the password literally
  }
}

/**
 * Every connection string on `line` whose password is non-empty and not a placeholder
 * (`${DB_PASSWORD}`, `****`, `<password>`, `password`, …, also when percent-encoded).
 */
export function findConnectionStrings(line: string): ConnectionStringHit[] {
  const hits: ConnectionStringHit[] = [];
  for (const match of line.matchAll(CONNECTION_STRING)) {
    const password = match[1] ?? '';
    if (match.index === undefined || isPlaceholder(password) || isPlaceholder(decodePassword(password))) continue;
    const passwordStart = match.index + match[0].length - 1 - password.length;
    hits.push({ passwordStart, passwordEnd: passwordStart + password.length });
  }
  return hits;
}
