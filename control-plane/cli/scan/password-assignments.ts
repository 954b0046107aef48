import { isPlaceholder } from './placeholders.js';

/** Shorter values are nearly always flags or examples; real passwords are longer. */
const MIN_VALUE_LENGTH = 6;

/**
 * A config-like line that is one assignment and nothing else: `.env` (`KEY=v`,
 * `export KEY=v`), Dockerfile `ENV`, YAML/compose (`key: v`, `- KEY=v`), INI/TOML,
 * properties, JSON (`"key": "v",`) and PHP/Ruby hashes (`'key' => 'v',`). Code such as
 * `const password = read()` does not have this shape.
 */
const ASSIGNMENT_LINE =
  /^\s*(?:-\s+)?(?:(?:export|ENV|set)\s+)?(["']?)([A-Za-z0-9_.-]+)\1\s*(?:=>|[=:])\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([^\s'"]*[^\s'",]))(,?)(\s.*)?$/d;

/** ADO.NET / ODBC connection strings: `Server=db;User Id=sa;Password=…;`. */
const KEYWORD_CONNECTION = /(?:^|[;"'\s])(?:password|pwd)\s*=\s*([^;"'\s]+)\s*(?=;|["']|$)/dgi;
const HAS_SERVER_KEYWORD = /(?:^|[;"'\s])(?:server|data source|host|uid|user id)\s*=/i;

/**
 * What may follow the value: nothing, white space, or a comment (`# …`, `// …`, `; …`).
 * Checked here rather than in ASSIGNMENT_LINE so the pattern stays linear on long lines.
 */
function isCommentOrNothing(tail: string): boolean {
  return /^\s*$/.test(tail) || /^\s+(?:#|\/\/|;)/.test(tail);
}

/** Keys that name a password: `password`, `DB_PASSWORD`, `spring.datasource.password`, `redisPass`, `DB_PASS`. */
function isPasswordKey(key: string): boolean {
  return /(?:password|passwd|passphrase)$/i.test(key) || /(?:^|[_.-])pass$/i.test(key) || /[a-z]Pass$/.test(key);
}

/** Type names that follow `password:` in interfaces and signatures. */
const TYPE_NAMES = /^(?:string|String|str|bytes|Buffer|SecretStr|SecureString|number|any|unknown|object)$/;

/**
 * Unquoted values that are code, not literals: `process.env.X`, `env(X)`, a statement
 * (`…;`), an object member (`…,`), an opening bracket (`Definition<{`), or a type
 * (`password: string`).
 */
function isExpression(value: string, trailingComma: boolean): boolean {
  return trailingComma || /[;({[<]$/.test(value) || /[()]/.test(value) || TYPE_NAMES.test(value) || /^[A-Za-z_$][\w$]*(?:\.[\w$]+)+$/.test(value);
}

/** Values with white space are prose (`'database refused the password'`) far more often than passphrases. */
function isReportable(value: string): boolean {
  return value.length >= MIN_VALUE_LENGTH && !/\s/.test(value) && !isPlaceholder(value);
}

/**
 * 0-based offsets where a password value starts on `line`, for `password=`/`PASSWORD:`
 * assignments (and `Password=` in keyword connection strings) whose value is not a
 * placeholder and at least MIN_VALUE_LENGTH characters long.
 */
export function findPasswordAssignments(line: string): number[] {
  const starts: number[] = [];
  const assignment = ASSIGNMENT_LINE.exec(line);
  if (assignment !== null && isPasswordKey(assignment[2] ?? '') && isCommentOrNothing(assignment[7] ?? '')) {
    const group = assignment[3] !== undefined ? 3 : assignment[4] !== undefined ? 4 : 5;
    const value = assignment[group] ?? '';
    const literal = group !== 5 || !isExpression(value, assignment[6] === ',');
    const start = assignment.indices?.[group]?.[0];
    if (literal && start !== undefined && isReportable(value)) starts.push(start);
  }
  if (HAS_SERVER_KEYWORD.test(line)) {
    for (const match of line.matchAll(KEYWORD_CONNECTION)) {
      const value = match[1] ?? '';
      const start = match.indices?.[1]?.[0];
      if (start !== undefined && isReportable(value)) starts.push(start);
    }
  }
  return starts;
}
