import { readFileSync } from 'node:fs';

let cached: string | undefined;

/**
 * The agent's version from the repository's package.json (dist/agent/ → ../../).
 * Falls back to "0.0.0-unknown" when the file is missing (a trimmed install).
 */
export function agentVersion(): string {
  if (cached !== undefined) return cached;
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    cached = typeof pkg.version === 'string' ? pkg.version.slice(0, 64) : '0.0.0-unknown';
  } catch {
    // A packaging problem must not stop the agent; the version is informational.
    cached = '0.0.0-unknown';
  }
  return cached;
}
