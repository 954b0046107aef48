import { SikkerError } from '../../../shared/errors/sikker-error.js';

/** A compiled `--exclude` pattern. */
export interface ExcludeGlob {
  /** True when the entry at `relativePath` (POSIX separators, relative to the scanned root) is excluded. */
  matches(relativePath: string): boolean;
}

function toRegExpSource(glob: string): string {
  let source = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob.charAt(i);
    if (c === '*' && glob.charAt(i + 1) === '*') {
      const slashAfter = glob.charAt(i + 2) === '/';
      source += slashAfter ? '(?:.*/)?' : '.*';
      i += slashAfter ? 2 : 1;
    } else if (c === '*') {
      source += '[^/]*';
    } else if (c === '?') {
      source += '[^/]';
    } else {
      source += c.replace(/[\\^$.|+(){}[\]]/g, '\\$&');
    }
  }
  return source;
}

/**
 * Compiles a gitignore-like glob: `*` and `?` stay within one path segment, `**`
 * spans segments. A pattern without `/` matches an entry's name at any depth
 * (`*.min.js`, `fixtures`); one with `/` matches the path from the scanned root
 * (`test/fixtures/**`, `config/*.yml`). An excluded directory is not entered.
 * Throws ERR_VALIDATION for an empty pattern.
 */
export function compileExcludeGlob(glob: string): ExcludeGlob {
  const pattern = glob.trim().replace(/^\.\//, '').replace(/^\/+/, '').replace(/\/+$/, '');
  if (pattern === '') throw new SikkerError('ERR_VALIDATION', 'invalid --exclude: the pattern is empty');
  const byName = !pattern.includes('/');
  const regex = new RegExp(`^${toRegExpSource(pattern)}$`);
  return {
    matches(relativePath: string): boolean {
      const target = byName ? relativePath.slice(relativePath.lastIndexOf('/') + 1) : relativePath;
      return regex.test(target);
    },
  };
}
