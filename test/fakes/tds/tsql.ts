/**
 * The T-SQL the fake understands, parsed strictly: a wrong statement is a syntax
 * error (102/105), as on a real server. Literals follow T-SQL rules: `[ident]`
 * with `]]`, `N'…'` with `''`, a backslash before a line break is a line
 * continuation (both vanish), and a non-N `'…'` loses characters outside the
 * code page (they become `?`). Fixed queries are recognised by their text
 * (whitespace and case aside); see queries.ts.
 */
import { QUERY_TEXTS, type QueryId } from './queries.js';
import { SqlError } from './sql-error.js';

export type Statement =
  | { kind: 'alter-password'; principal: 'login' | 'user'; name: string; password: string; oldPassword: string | undefined }
  | { kind: 'kill'; spid: number }
  | { kind: 'set-options' }
  | { kind: 'query'; id: QueryId };

type Token =
  | { kind: 'ident'; value: string }
  | { kind: 'string'; value: string; unicode: boolean }
  | { kind: 'number'; value: string }
  | { kind: 'word'; value: string }
  | { kind: 'symbol'; value: string };

/** The options tedious sets right after login (`Connection.getInitialSql`). */
const SET_OPTION = /^set (ansi_nulls|ansi_null_dflt_on|ansi_padding|ansi_warnings|arithabort|concat_null_yields_null|implicit_transactions|numeric_roundabort|quoted_identifier|xact_abort) (on|off)$|^set (datefirst \d|dateformat [a-z]{3}|language us_english|textsize \d+|transaction isolation level read committed)$/i;

export function parseStatement(sql: string): Statement {
  const text = normalise(sql);
  const lines = sql.split('\n').map((line) => line.trim()).filter((line) => line !== '');
  if (lines.length > 0 && lines.every((line) => SET_OPTION.test(line))) return { kind: 'set-options' };
  for (const [id, known] of Object.entries(QUERY_TEXTS)) {
    if (normalise(known) === text) return { kind: 'query', id: id as QueryId };
  }
  return parseCommand(tokenize(sql));
}

function normalise(sql: string): string {
  return sql.replace(/\s+/g, ' ').trim().replace(/;$/, '').toLowerCase();
}

function parseCommand(tokens: Token[]): Statement {
  const at = (i: number): Token | undefined => tokens[i];
  const isWord = (i: number, word: string) => at(i)?.kind === 'word' && at(i)?.value.toUpperCase() === word;
  if (tokens.at(-1)?.kind === 'symbol' && tokens.at(-1)?.value === ';') tokens.pop();
  if (isWord(0, 'KILL') && at(1)?.kind === 'number' && tokens.length === 2) return { kind: 'kill', spid: Number(at(1)?.value) };
  if (isWord(0, 'ALTER') && (isWord(1, 'LOGIN') || isWord(1, 'USER'))) {
    const name = at(2);
    if (name === undefined || (name.kind !== 'ident' && name.kind !== 'word')) throw nearError(name);
    let i = 3;
    const expect = (word: string) => {
      if (!isWord(i, word)) throw nearError(at(i));
      i++;
    };
    const value = (): string => {
      if (at(i)?.kind !== 'symbol' || at(i)?.value !== '=') throw nearError(at(i));
      const literal = at(i + 1);
      if (literal?.kind !== 'string') throw nearError(literal);
      i += 2;
      return literal.unicode ? literal.value : toCodePage(literal.value);
    };
    expect('WITH');
    expect('PASSWORD');
    const password = value();
    let oldPassword: string | undefined;
    if (isWord(i, 'OLD_PASSWORD')) {
      i++;
      oldPassword = value();
    }
    if (i !== tokens.length) throw nearError(at(i));
    return { kind: 'alter-password', principal: isWord(1, 'LOGIN') ? 'login' : 'user', name: name.value, password, oldPassword };
  }
  throw nearError(at(0));
}

function nearError(token: Token | undefined): SqlError {
  // a real server quotes the token it stopped at, which may be part of a password: the applier must not pass it on
  const near = token === undefined ? 'end of statement' : token.value;
  return new SqlError(102, `Incorrect syntax near '${near}'.`, 15);
}

function toCodePage(value: string): string {
  return [...value].map((c) => ((c.codePointAt(0) ?? 0) <= 0xff ? c : '?')).join('');
}

function tokenize(sql: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < sql.length) {
    const c = sql[i] ?? '';
    if (/\s/.test(c)) {
      i++;
    } else if (sql.startsWith('--', i)) {
      const end = sql.indexOf('\n', i);
      i = end === -1 ? sql.length : end;
    } else if (c === '[') {
      const { value, next } = quoted(sql, i + 1, ']');
      tokens.push({ kind: 'ident', value });
      i = next;
    } else if ((c === 'N' || c === 'n') && sql[i + 1] === "'") {
      const { value, next } = quoted(sql, i + 2, "'");
      tokens.push({ kind: 'string', value: continueLines(value), unicode: true });
      i = next;
    } else if (c === "'") {
      const { value, next } = quoted(sql, i + 1, "'");
      tokens.push({ kind: 'string', value: continueLines(value), unicode: false });
      i = next;
    } else {
      const match = /^(\d+)|^([A-Za-z_@#][A-Za-z0-9_@#$]*)/.exec(sql.slice(i));
      if (match?.[1] !== undefined) tokens.push({ kind: 'number', value: match[1] });
      else if (match?.[2] !== undefined) tokens.push({ kind: 'word', value: match[2] });
      else tokens.push({ kind: 'symbol', value: c });
      i += match?.[0].length ?? 1;
    }
  }
  return tokens;
}

/** Reads up to the closing `close` (doubled = literal); 105 when it never closes. */
function quoted(sql: string, start: number, close: string): { value: string; next: number } {
  let value = '';
  let i = start;
  for (;;) {
    const end = sql.indexOf(close, i);
    if (end === -1) throw new SqlError(105, `Unclosed quotation mark after the character string '${sql.slice(start)}'.`, 15);
    value += sql.slice(i, end);
    if (sql[end + 1] !== close) return { value, next: end + 1 };
    value += close;
    i = end + 2;
  }
}

/** T-SQL drops a backslash that ends a line, and the line break with it. */
function continueLines(value: string): string {
  return value.replace(/\\\r?\n/g, '');
}
