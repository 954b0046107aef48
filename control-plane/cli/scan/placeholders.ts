/**
 * Values that stand in for a secret rather than being one: template and environment
 * references, masks, and the words people write in examples. Reporting them would
 * make every README and sample config fail a scan.
 */

const PLACEHOLDER_WORDS = new Set([
  'password', 'passwd', 'pass', 'pwd', 'pw', 'secret', 'changeme', 'change-me', 'change_me',
  'example', 'redacted', 'placeholder', 'none', 'null', 'nil', 'undefined', 'true', 'false',
  'your-password', 'your_password', 'yourpassword', 'mypassword', 'my-password', 'my_password',
  'dbpassword', 'db_password', 'db-password', 'secretpassword', 'dummy', 'todo', 'fixme', 'guest',
]);

/** Longer values are not examples; the patterns below are not run on them (some are quadratic at worst). */
const MAX_PLACEHOLDER_LENGTH = 256;

/** Template syntax anywhere in the value: it is assembled at run time, not written down. */
const TEMPLATED = /\$\{|\$\(|\{\{|#\{/;

const PLACEHOLDER_PATTERNS: readonly RegExp[] = [
  /^\$[A-Za-z_][A-Za-z0-9_]*$/, // $DB_PASSWORD
  /^%[A-Za-z_][A-Za-z0-9_]*%$/, // %DB_PASSWORD%
  /^\{[A-Za-z_][A-Za-z0-9_.-]*\}$/, // {password}
  /^<[^<>]*>$/, // <password>
  /^\[[^[\]]*\]$/, // [REDACTED]
  /^%\([A-Za-z_]+\)s$/, // %(password)s
  /^%s$/,
  /^[*xX•·…._#-]+$/, // ****, xxxx, ••••, …
  /^(.)\1+$/, // aaaaaaaa
  /^[a-z_-]*(?:password|passwd|secret)[a-z_-]*$/, // somepassword, your-cluster-password, my-top-secret
  /^(?:your|some)[-_]?[a-z_-]*$/, // your-token, some_value
  /^!vault\b/, // Ansible Vault ciphertext follows on later lines
  /^(?:env|secret|vault|ssm|op|awssm|gcpsm|azkv):/i, // secret-manager references
];

/**
 * True when `value` is empty or clearly not a real secret: a single character (`u:p@h`
 * in documentation), templated (`${…}`, `$(…)`, `{{…}}` or `#{…}` anywhere), `$VAR`, `<…>`,
 * `[…]`, a mask (`****`, `xxxx`, `…`, one repeated character), a secret-manager
 * reference, a word such as `password`, `changeme` or `example`, or lower-case words
 * around `password`/`secret` (`somepassword`, `your-db-password`).
 */
export function isPlaceholder(value: string): boolean {
  const trimmed = value.trim();
  if (trimmed.length <= 1 || TEMPLATED.test(trimmed)) return true;
  if (trimmed.length > MAX_PLACEHOLDER_LENGTH) return false;
  if (PLACEHOLDER_WORDS.has(trimmed.toLowerCase())) return true;
  return PLACEHOLDER_PATTERNS.some((pattern) => pattern.test(trimmed));
}
