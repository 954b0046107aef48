import type { ZodType } from 'zod';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { ProjectName, SecretName } from '../../shared/protocol/api.js';

/**
 * Parses `value` with a protocol schema; on failure throws ERR_VALIDATION
 * "`what`: reason". The rejected value is never echoed (it may be mistyped secret
 * material); field paths are named when the schema is an object.
 */
export function parseWith<T>(schema: ZodType<T>, value: unknown, what: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const reasons = result.error.issues.map((issue) => {
    const path = issue.path.map(String).join('.');
    return path === '' ? issue.message : `${path}: ${issue.message}`;
  });
  throw new SikkerError('ERR_VALIDATION', `invalid ${what}: ${reasons.join('; ')}`);
}

/** A secret named on the command line as PROJECT/NAME. */
export interface SecretRef {
  project: string;
  name: string;
}

/**
 * Parses `PROJECT/NAME` strictly: exactly one "/", the project a ProjectName and
 * the name a SecretName. Throws ERR_VALIDATION otherwise.
 */
export function parseSecretRef(text: string): SecretRef {
  const parts = text.split('/');
  if (parts.length !== 2) {
    throw new SikkerError('ERR_VALIDATION', 'secret must be given as PROJECT/NAME, e.g. payments/db-password');
  }
  const [project, name] = parts as [string, string];
  return {
    project: parseWith(ProjectName, project, 'project name'),
    name: parseWith(SecretName, name, 'secret name'),
  };
}

/** `/v1/projects/P/secrets/N` with both parts percent-encoded. */
export function secretPath(ref: SecretRef): string {
  return `${projectPath(ref.project)}/secrets/${encodeURIComponent(ref.name)}`;
}

/** `/v1/projects/P` with the project percent-encoded. */
export function projectPath(project: string): string {
  return `/v1/projects/${encodeURIComponent(project)}`;
}

const DURATION_UNITS: Record<string, number> = { '': 1, s: 1, m: 60, h: 3600, d: 86400 };

/**
 * Parses a duration such as `900`, `900s`, `15m`, `2h` or `1d` into whole seconds.
 * Range checks belong to the request schema. Throws ERR_VALIDATION on any other form.
 */
export function parseDurationSeconds(text: string, what: string): number {
  const match = /^(\d{1,9})([smhd]?)$/.exec(text.trim());
  if (match === null) {
    throw new SikkerError('ERR_VALIDATION', `invalid ${what}: use a duration such as 900, 900s, 15m, 2h or 1d`);
  }
  return Number(match[1]) * (DURATION_UNITS[match[2] ?? ''] ?? 1);
}

/** Parses a non-negative decimal integer with no sign, spaces or exponent. Throws ERR_VALIDATION. */
export function parseWholeNumber(text: string, what: string): number {
  if (!/^\d{1,10}$/.test(text.trim())) {
    throw new SikkerError('ERR_VALIDATION', `invalid ${what}: expected a whole number`);
  }
  return Number(text.trim());
}

/** Commander reducer for repeatable options (`--cidr A --cidr B`). */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** Builds `?a=1&b=2` from the defined entries, or '' when there are none. */
export function queryString(params: Record<string, string | number | undefined>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined) search.set(key, String(value));
  }
  const text = search.toString();
  return text === '' ? '' : `?${text}`;
}
