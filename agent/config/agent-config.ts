import { readFileSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import * as z from 'zod';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { isLoopbackHost, normalisePin } from '../../shared/http-client/signed-client-options.js';
import type { AdminCredentials } from '../appliers/target.js';
import type { SinkConfig } from '../sinks/sink-config.js';
import type { MongodbCommandTemplate } from '../appliers/target.js';

/**
 * The agent's configuration file (JSON), validated once at start. Unknown keys are
 * refused (a typo should not silently fall back to a default). Durations become
 * milliseconds here and nowhere else.
 */
const Name = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, "_", "." and "-", 1–64 characters');

const SinkSchema = z.object({
  name: Name,
  path: z.string().max(1024).refine(isAbsolute, 'must be an absolute path'),
  format: z.enum(['raw', 'env', 'json']),
  envName: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'a shell variable name such as DATABASE_PASSWORD').optional(),
  mode: z.enum(['0600', '0640']).default('0600'),
  reloadCommand: z.array(z.string().min(1).max(4096)).min(1).max(32).optional(),
  reloadTimeoutSeconds: z.number().int().min(1).max(600).default(30),
}).strict();

/**
 * A local admin login that targets name (`privilege.adminConnection`). The URL holds a
 * password, so it is given inline or, better, in a file readable by the agent only;
 * zod's messages for these fields never quote the value.
 */
const AdminConnectionSchema = z.object({
  name: Name,
  url: z.string().min(1).max(4096).optional(),
  urlFile: z.string().max(1024).refine(isAbsolute, 'must be an absolute path').optional(),
}).strict().refine((c) => (c.url === undefined) !== (c.urlFile === undefined), 'give exactly one of "url" and "urlFile"');

/**
 * A MongoDB rotation command template (custom rotation commands): the host's operator
 * decides what runs on their server; targets name it. The template must contain the
 * value "$password" exactly once (and may contain "$user").
 */
const MongodbCommandSchema = z.object({
  name: Name,
  database: z.string().min(1).max(64).optional(),
  command: z.record(z.string(), z.unknown()).refine((c) => Object.keys(c).length >= 1 && Object.keys(c).length <= 32, 'an object with 1–32 fields, the command name first')
    .refine((c) => JSON.stringify(c).length <= 4096, 'at most 4 KiB')
    .refine((c) => (JSON.stringify(c).match(/"\$password"/g) ?? []).length === 1, 'must contain the value "$password" exactly once'),
}).strict();

/** Schemes an admin URL may use (the engine's own check follows when a target uses it). */
const ADMIN_URL_PROTOCOLS = ['postgres:', 'postgresql:', 'mysql:', 'mariadb:', 'redis:', 'rediss:', 'mongodb:', 'mssql:', 'sqlserver:'];

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
  adminConnections: z.array(AdminConnectionSchema).max(64).default([]),
  mongodbCommands: z.array(MongodbCommandSchema).max(32).default([]),
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
  /** Admin logins by name, URLs read from their files at load. Hold passwords: never log them. */
  adminConnections: ReadonlyMap<string, AdminCredentials>;
  /** Custom MongoDB rotation commands by name. */
  mongodbCommands: ReadonlyMap<string, MongodbCommandTemplate>;
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
  checkUniqueNames('sinks', c.sinks.map((s) => s.name), source);
  checkUniqueNames('adminConnections', c.adminConnections.map((a) => a.name), source);
  checkUniqueNames('mongodbCommands', c.mongodbCommands.map((m) => m.name), source);
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
    adminConnections: new Map(c.adminConnections.map((a, index) => [a.name, { url: adminUrl(a, index, source) }])),
    mongodbCommands: new Map(c.mongodbCommands.map((m) => [m.name, { name: m.name, database: m.database, command: m.command }])),
  };
}

function checkUniqueNames(field: string, names: string[], source: string): void {
  const seen = new Set<string>();
  for (const [index, name] of names.entries()) {
    if (seen.has(name)) throw new SikkerError('ERR_CONFIG_INVALID', `config ${source}: ${field}.${index}.name: "${name}" is used twice`);
    seen.add(name);
  }
}

/**
 * The admin URL, inline or read from `urlFile` (surrounding whitespace dropped), checked
 * to be a URL with a database scheme. Messages name the field and the file, never the
 * URL or the file's content, and carry no cause that could quote them.
 */
function adminUrl(connection: { url?: string | undefined; urlFile?: string | undefined }, index: number, source: string): string {
  const field = `config ${source}: adminConnections.${index}`;
  const url = connection.urlFile === undefined ? connection.url ?? '' : readAdminUrlFile(connection.urlFile, field);
  const where = connection.urlFile === undefined ? `${field}.url` : `${field}.urlFile: the URL in ${connection.urlFile}`;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // the URL holds a password: say only that it is malformed, with no cause that could quote it
    throw new SikkerError('ERR_CONFIG_INVALID', `${where} is not a valid URL`);
  }
  if (!ADMIN_URL_PROTOCOLS.includes(parsed.protocol)) {
    throw new SikkerError('ERR_CONFIG_INVALID', `${where} must start with ${ADMIN_URL_PROTOCOLS.map((p) => `${p}//`).join(', ')}`);
  }
  // An admin URL without them would take the target's host and port, which the control plane
  // describes: it could then choose where this login's password is sent.
  if (parsed.hostname === '' || parsed.port === '') {
    throw new SikkerError('ERR_CONFIG_INVALID', `${where} must name the server's host and port (e.g. ${parsed.protocol}//user:…@db.internal:5432/…): without them the target, as the control plane describes it, would decide where this login's password is sent`);
  }
  return url;
}

function readAdminUrlFile(file: string, field: string): string {
  let url: string;
  try {
    url = readFileSync(file, 'utf8').trim();
  } catch (err) {
    // a read error's message names the path and the errno, never the content
    throw new SikkerError('ERR_CONFIG_INVALID', `${field}.urlFile: ${file} cannot be read`, { cause: err });
  }
  if (url === '') throw new SikkerError('ERR_CONFIG_INVALID', `${field}.urlFile: ${file} is empty`);
  if (url.length > 4096) throw new SikkerError('ERR_CONFIG_INVALID', `${field}.urlFile: ${file} holds more than 4096 characters`);
  return url;
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
