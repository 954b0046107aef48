import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import * as z from 'zod';
import { SikkerError } from '../../shared/errors/sikker-error.js';

/** The global flags as commander hands them over (all optional). */
export interface GlobalFlags {
  server?: string | undefined;
  identity?: string | undefined;
  json?: boolean | undefined;
  insecureHttp?: boolean | undefined;
  caCert?: string | undefined;
  pinSha256?: string | undefined;
}

/** Settings every command works from: flags first, then environment, then defaults. */
export interface CliConfig {
  /** Undefined when neither --server nor SIKKER_SERVER is given; commands that talk to the server refuse then. */
  server: string | undefined;
  identityPath: string;
  caCertPath: string | undefined;
  pinSha256: string | undefined;
  allowInsecureHttp: boolean;
  json: boolean;
}

const nonEmpty = z.string().trim().min(1).max(4096);
const ConfigSchema = z.object({
  server: nonEmpty.optional(),
  identityPath: nonEmpty,
  caCertPath: nonEmpty.optional(),
  pinSha256: nonEmpty.optional(),
  allowInsecureHttp: z.boolean(),
  json: z.boolean(),
});

const ENV_NAMES: Record<string, string> = {
  server: '--server / SIKKER_SERVER',
  identityPath: '--identity / SIKKER_IDENTITY',
  caCertPath: '--ca-cert / SIKKER_CA_CERT',
  pinSha256: '--pin-sha256 / SIKKER_PIN_SHA256',
};

/** Empty environment variables count as unset, so `SIKKER_SERVER= sikker ...` falls back to defaults. */
function fromEnv(env: Record<string, string | undefined>, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value.trim() === '' ? undefined : value;
}

/**
 * Where the identity file lives by default: `$XDG_CONFIG_HOME/sikker/identity.json`
 * when XDG_CONFIG_HOME is an absolute path (the XDG spec ignores relative ones),
 * otherwise `~/.config/sikker/identity.json`.
 */
export function defaultIdentityPath(env: Record<string, string | undefined>): string {
  const xdg = fromEnv(env, 'XDG_CONFIG_HOME');
  if (xdg !== undefined && isAbsolute(xdg)) return join(xdg, 'sikker', 'identity.json');
  const home = fromEnv(env, 'HOME') ?? homedir();
  return join(home, '.config', 'sikker', 'identity.json');
}

/**
 * Merges flags and the environment (SIKKER_SERVER, SIKKER_IDENTITY, SIKKER_CA_CERT,
 * SIKKER_PIN_SHA256) into a validated CliConfig. Throws ERR_CONFIG_INVALID naming
 * the flag / variable at fault; values are not echoed.
 */
export function resolveCliConfig(flags: GlobalFlags, env: Record<string, string | undefined>): CliConfig {
  const candidate = {
    server: flags.server ?? fromEnv(env, 'SIKKER_SERVER'),
    identityPath: flags.identity ?? fromEnv(env, 'SIKKER_IDENTITY') ?? defaultIdentityPath(env),
    caCertPath: flags.caCert ?? fromEnv(env, 'SIKKER_CA_CERT'),
    pinSha256: flags.pinSha256 ?? fromEnv(env, 'SIKKER_PIN_SHA256'),
    allowInsecureHttp: flags.insecureHttp === true,
    json: flags.json === true,
  };
  const parsed = ConfigSchema.safeParse(candidate);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const key = String(issue?.path[0] ?? '');
    throw new SikkerError('ERR_CONFIG_INVALID', `${ENV_NAMES[key] ?? key}: ${issue?.message ?? 'invalid'}`);
  }
  return {
    server: parsed.data.server,
    identityPath: parsed.data.identityPath,
    caCertPath: parsed.data.caCertPath,
    pinSha256: parsed.data.pinSha256,
    allowInsecureHttp: parsed.data.allowInsecureHttp,
    json: parsed.data.json,
  };
}
