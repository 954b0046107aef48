import { readFileSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { z } from 'zod';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { isLoopbackHost, normalisePin } from '../../shared/http-client/signed-client-options.js';
import type { SinkConfig } from '../sinks/sink-config.js';

/**
 * The agent's configuration file (JSON), validated once at start. Unknown keys are
 * refused (a typo should not silently fall back to a default). Durations become
 * milliseconds here and nowhere else.
 */
const SinkSchema = z.object({
  name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, "_", "." and "-", 1–64 characters'),
  path: z.string().max(1024).refine(isAbsolute, 'must be an absolute path'),
  format: z.enum(['raw', 'env', 'json']),
  envName: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'a shell variable name such as DATABASE_PASSWORD').optional(),
  mode: z.enum(['0600', '0640']).default('0600'),
  reloadCommand: z.array(z.string().min(1).max(4096)).min(1).max(32).optional(),
  reloadTimeoutSeconds: z.number().int().min(1).max(600).default(30),
}).strict();

const ConfigSchema = z.object({
  server: z.string().refine((v) => /^https?:\/\/[^/?#]+\/?$/.test(v), 'must be an http:// or https:// origin, e.g. https://vault.example:8443'),
  stateDir: z.string().refine(isAbsolute, 'must be an absolute path'),
  heartbeatSeconds: z.number().int().min(5).max(300).default(15),
  shutdownGraceSeconds: z.number().int().min(1).max(300).default(10),
  caCertFile: z.string().refine(isAbsolute, 'must be an absolute path').optional(),
  pinSha256: z.string().refine((v) => /^([0-9a-fA-F]{2}:?){31}[0-9a-fA-F]{2}$/.test(v.trim()), 'must be 64 hex digits, colons optional').optional(),
  insecureHttp: z.boolean().default(false),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  sinks: z.array(SinkSchema).max(64).default([]),
}).strict();

/** Configuration after validation: durations in ms, CA read, pin normalised. */
export interface AgentConfig {
  server: string;
  stateDir: string;
  heartbeatMs: number;
  shutdownGraceMs: number;
  caCertPem: string | undefined;
  pinSha256: string | undefined;
  insecureHttp: boolean;
  logLevel: string;
  sinks: SinkConfig[];
}

/** Command-line values that take precedence over the file. */
export interface ConfigOverrides {
  server?: string | undefined;
  stateDir?: string | undefined;
}

/**
 * Reads and validates the file at `path`. Throws ERR_CONFIG_INVALID naming the file
 * and the first offending field (values are never echoed), or naming the file when it
 * cannot be read or is not JSON, or when plain http:// points at a non-loopback host
 * without `insecureHttp`.
 */
export function loadAgentConfig(path: string, overrides: ConfigOverrides = {}): AgentConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    const reason = err instanceof SyntaxError ? 'is not valid JSON' : 'cannot be read';
    throw new SikkerError('ERR_CONFIG_INVALID', `config file ${path} ${reason}`, { cause: err });
  }
  if (raw !== null && typeof raw === 'object' && !Array.isArray(raw)) {
    raw = { ...raw, ...definedOnly(overrides) };
  }
  return compileAgentConfig(raw, path);
}

/** Validates an already parsed config object; `source` names it in messages. */
export function compileAgentConfig(raw: unknown, source: string): AgentConfig {
  const parsed = ConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue === undefined || issue.path.length === 0 ? '(root)' : issue.path.join('.');
    throw new SikkerError('ERR_CONFIG_INVALID', `config ${source}: ${field}: ${issue?.message ?? 'invalid'}`, {
      details: { fields: parsed.error.issues.map((i) => i.path.join('.')) },
    });
  }
  const c = parsed.data;
  const server = c.server.replace(/\/$/, '');
  const url = new URL(server);
  if (url.protocol === 'http:' && !c.insecureHttp && !isLoopbackHost(url.hostname)) {
    throw new SikkerError('ERR_CONFIG_INVALID', `config ${source}: server: plain http:// to ${url.host} is refused; use https:// or set "insecureHttp": true`);
  }
  checkUniqueSinkNames(c.sinks.map((s) => s.name), source);
  return {
    server,
    stateDir: c.stateDir,
    heartbeatMs: c.heartbeatSeconds * 1000,
    shutdownGraceMs: c.shutdownGraceSeconds * 1000,
    caCertPem: c.caCertFile === undefined ? undefined : readCaCert(c.caCertFile, source),
    pinSha256: c.pinSha256 === undefined ? undefined : normalisePin(c.pinSha256),
    insecureHttp: c.insecureHttp,
    logLevel: c.logLevel,
    sinks: c.sinks.map((s) => ({
      name: s.name,
      path: s.path,
      format: s.format,
      envName: s.envName ?? 'SECRET',
      mode: s.mode === '0640' ? 0o640 : 0o600,
      reloadCommand: s.reloadCommand ?? null,
      reloadTimeoutMs: s.reloadTimeoutSeconds * 1000,
    })),
  };
}

function checkUniqueSinkNames(names: string[], source: string): void {
  const seen = new Set<string>();
  for (const [index, name] of names.entries()) {
    if (seen.has(name)) throw new SikkerError('ERR_CONFIG_INVALID', `config ${source}: sinks.${index}.name: "${name}" is used twice`);
    seen.add(name);
  }
}

function readCaCert(file: string, source: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new SikkerError('ERR_CONFIG_INVALID', `config ${source}: caCertFile: ${file} cannot be read`, { cause: err });
  }
}

function definedOnly(overrides: ConfigOverrides): Record<string, string> {
  const out: Record<string, string> = {};
  if (overrides.server !== undefined) out.server = overrides.server;
  if (overrides.stateDir !== undefined) out.stateDir = overrides.stateDir;
  return out;
}
