/**
 * New database passwords. Every character comes from `crypto.randomInt`, which is
 * unbiased (rejection sampling), and nothing here logs or formats a password into
 * a message.
 *
 * Strength comes from length, not from symbols: 32 characters from the 70
 * default ones is about 196 bits. Symbols exist to satisfy complexity policies,
 * so the default set only holds characters that survive the places operators paste
 * passwords into without quoting or escaping.
 */
import { randomInt } from 'node:crypto';
import { SikkerError } from '../../shared/errors/sikker-error.js';

export type PasswordEngine = 'postgres' | 'mysql' | 'redis' | 'mongodb' | 'mssql';

/**
 * `lower`, `upper`, `digits`, `symbols`: the minimum count of that class in every
 * password; 0 allows the class without requiring it; -1 excludes it entirely.
 * `avoid`: extra characters never to use (printable ASCII, at most 128).
 */
export interface PasswordRules {
  length: number;
  lower: number;
  upper: number;
  digits: number;
  symbols: number;
  avoid: string;
}

export const DEFAULT_PASSWORD_RULES: PasswordRules = Object.freeze({
  length: 32,
  lower: 1,
  upper: 1,
  digits: 1,
  symbols: 1,
  avoid: '',
});

const CLASS_NAMES = ['lower', 'upper', 'digits', 'symbols'] as const;
type ClassName = (typeof CLASS_NAMES)[number];

const LOWER = 'abcdefghijklmnopqrstuvwxyz';
const UPPER = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
const DIGITS = '0123456789';
/**
 * `-._~` are RFC 3986 "unreserved" and `!*+=` are sub-delimiters that RFC 3986
 * allows unescaped in a URI's userinfo, so `scheme://user:password@host` strings
 * keep working when someone builds them by concatenation. None of the eight is
 * special inside a double-quoted shell string in a script, in a .env, INI or
 * my.cnf value, or in a libpq / ADO.NET keyword=value string.
 * Left out on purpose: quotes, backslash, space, `$` and backtick (shell and
 * config quoting); `@ : / ? # [ ] %` (URI delimiters and percent-escapes, the
 * classic way a password breaks a connection string); `& ; | < > ( )` (shell
 * operators, ODBC/ADO.NET separators); `{ } ,` (YAML flow syntax, ODBC braces).
 * Known limits: `!` triggers history expansion in an interactive bash inside
 * double quotes, and `!` or `*` at the start of an unquoted YAML value is a tag or
 * an alias, so such values must be quoted in those two places.
 */
const SYMBOLS = '-._~!*+=';

const CLASS_CHARS: Record<ClassName, string> = { lower: LOWER, upper: UPPER, digits: DIGITS, symbols: SYMBOLS };

const MIN_LENGTH = 12;
const MAX_LENGTH = 256;
const MAX_AVOID_LENGTH = 128;
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;
/** SQL Server's CHECK_POLICY complexity: characters from at least three of the four classes. */
const MSSQL_MAX_LENGTH = 128;
const MSSQL_MIN_CLASSES = 3;

/**
 * Characters from the generator's alphabet that an engine, or the connection
 * strings and config files its users put passwords in, handles badly. Only
 * characters the default sets could produce are listed; the rest are already
 * excluded for every engine (see SYMBOLS).
 */
export function engineAvoid(engine: PasswordEngine): string {
  switch (engine) {
    // libpq takes any character in a password; its URI and keyword=value forms,
    // .pgpass (`:` and `\`) and pg_hba need nothing beyond the default exclusions.
    case 'postgres':
      return '';
    // MySQL stores any character; my.cnf (`#` comments, quotes) and mysql:// URIs
    // only trip over characters the defaults already leave out.
    case 'mysql':
      return '';
    // `ACL SETUSER name >password` and `requirepass` take one token: whitespace,
    // quotes and backslash would break it, and those are never generated.
    case 'redis':
      return '';
    // PyMongo decodes the userinfo of a mongodb:// URI with unquote_plus, so a
    // literal `+` in a password arrives as a space.
    case 'mongodb':
      return '+';
    // The ODBC connection-string grammar (SQLDriverConnect) says values holding
    // []{}(),;?*=!@ outside braces should be avoided, and tools that build such
    // strings rarely add the braces. The others are never generated.
    case 'mssql':
      return '!*=';
  }
}

/**
 * Throws `ERR_POLICY_INVALID` naming the rule at fault: length 12..256; each class
 * count an integer from -1 to length; minimums summing to at most length; at
 * least one class allowed; every required class and the fill alphabet non-empty
 * after `avoid` and `engineAvoid(engine)` are removed; `avoid` printable ASCII of
 * at most 128 characters; for mssql, at least three classes required (min >= 1).
 */
export function validatePasswordRules(rules: PasswordRules, engine: PasswordEngine): void {
  const { length, avoid } = rules;
  if (!Number.isInteger(length) || length < MIN_LENGTH || length > MAX_LENGTH) {
    invalid(`length must be an integer from ${MIN_LENGTH} to ${MAX_LENGTH}`);
  }
  if (typeof avoid !== 'string' || avoid.length > MAX_AVOID_LENGTH || !PRINTABLE_ASCII.test(avoid)) {
    invalid(`avoid must be printable ASCII of at most ${MAX_AVOID_LENGTH} characters`);
  }
  for (const name of CLASS_NAMES) {
    const count = rules[name];
    if (!Number.isInteger(count) || count < -1 || count > length) invalid(`${name} must be an integer from -1 to length`);
  }
  const required = CLASS_NAMES.filter((name) => rules[name] > 0);
  const minimums = required.reduce((sum, name) => sum + rules[name], 0);
  if (minimums > length) invalid(`the minimum counts add up to ${minimums}, more than length ${length}`);
  // SQL Server takes passwords of at most 128 characters.
  if (engine === 'mssql' && length > MSSQL_MAX_LENGTH) invalid(`length must be at most ${MSSQL_MAX_LENGTH} for SQL Server`);
  if (!CLASS_NAMES.some((name) => rules[name] >= 0)) invalid('at least one of lower, upper, digits, symbols must be allowed');
  if (engine === 'mssql' && required.length < MSSQL_MIN_CLASSES) {
    invalid(`mssql needs at least ${MSSQL_MIN_CLASSES} of lower, upper, digits, symbols with a minimum of 1 (password complexity)`);
  }
  const sets = allowedSets(rules, engine);
  for (const name of required) {
    if ((sets.get(name) ?? '').length === 0) invalid(`${name} has no characters left after avoid and the ${engine} exclusions`);
  }
  if (fillAlphabet(sets).length === 0) invalid(`no characters are left after avoid and the ${engine} exclusions`);
}

/**
 * A new password following `rules` for `engine`; validates the rules first (so it
 * throws `ERR_POLICY_INVALID` like `validatePasswordRules`).
 */
export function generatePassword(rules: PasswordRules, engine: PasswordEngine): string {
  validatePasswordRules(rules, engine);
  const sets = allowedSets(rules, engine);
  const chars: string[] = [];
  for (const [name, set] of sets) {
    for (let i = 0; i < rules[name]; i++) chars.push(pick(set));
  }
  const fill = fillAlphabet(sets);
  while (chars.length < rules.length) chars.push(pick(fill));
  // Fisher–Yates, so the required characters do not sit at the front.
  for (let i = chars.length - 1; i > 0; i--) {
    const j = randomInt(i + 1);
    [chars[i], chars[j]] = [chars[j]!, chars[i]!];
  }
  return chars.join('');
}

function invalid(message: string): never {
  throw new SikkerError('ERR_POLICY_INVALID', message);
}

/** Allowed classes (count >= 0) with `avoid` and the engine's characters removed. */
function allowedSets(rules: PasswordRules, engine: PasswordEngine): Map<ClassName, string> {
  const banned = new Set(rules.avoid + engineAvoid(engine));
  const sets = new Map<ClassName, string>();
  for (const name of CLASS_NAMES) {
    if (rules[name] < 0) continue;
    sets.set(name, [...CLASS_CHARS[name]].filter((c) => !banned.has(c)).join(''));
  }
  return sets;
}

function fillAlphabet(sets: Map<ClassName, string>): string {
  return [...sets.values()].join('');
}

function pick(set: string): string {
  return set[randomInt(set.length)]!;
}
