import { readFileSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { Command } from 'commander';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { SignedClient, type ClientIdentity, type SignedClientOptions } from '../../shared/http-client/signed-client.js';
import { compileClientOptions } from '../../shared/http-client/signed-client-options.js';
import { loadIdentityFile, type LoadedIdentity } from '../../shared/signing/identity-file.js';
import { resolveCliConfig, type CliConfig, type GlobalFlags } from './config.js';
import type { Output } from './output.js';

/** The process surroundings a CLI run uses; tests pass in-memory streams and a fake env. */
export interface CliIo {
  stdin: NodeJS.ReadableStream;
  stdout: Writable;
  stderr: Writable;
  env: Record<string, string | undefined>;
}

const GLOBAL_KEYS = ['server', 'identity', 'json', 'insecureHttp', 'caCert', 'pinSha256'] as const;

/** Commands whose own `--identity` is an identity id (UUID), not the identity file. */
const identityIsUuid = new WeakSet<Command>();

/** Adds the global flags; `--identity FILE` is left out where the command has its own `--identity UUID`. */
function addGlobalOptions(command: Command, withIdentityFile: boolean): Command {
  command.option('--server <url>', 'control plane URL (env SIKKER_SERVER)');
  if (withIdentityFile) {
    command.option('--identity <file>', 'identity key file (env SIKKER_IDENTITY; default ~/.config/sikker/identity.json)');
  }
  return command
    .option('--json', 'print exactly one JSON document on stdout')
    .option('--insecure-http', 'allow plain http:// to a non-loopback server (secrets travel in clear)')
    .option('--ca-cert <file>', 'PEM CA certificate to trust for the server (env SIKKER_CA_CERT)')
    .option('--pin-sha256 <fingerprint>', "SHA-256 fingerprint of the server's certificate (env SIKKER_PIN_SHA256)");
}

/**
 * State shared by the commands of one CLI run: streams, output mode, and the
 * clients opened (closed when the run ends). Commands take everything else from the
 * flags of the command they run in.
 */
export class CliContext {
  /** Exit code when the command itself succeeds but reports a failure (e.g. audit verify). */
  exitCode = 0;
  readonly #clients: SignedClient[] = [];

  constructor(
    readonly io: CliIo,
    readonly out: Output,
  ) {}

  /** The root program with global flags. Options are positional: root flags go before the command. */
  static root(program: Command): Command {
    return addGlobalOptions(program, true).enablePositionalOptions();
  }

  /** A command group (`sikker secret ...`) with the global flags. */
  group(parent: Command, name: string, description: string): Command {
    return addGlobalOptions(parent.command(name).description(description), true);
  }

  /**
   * A runnable command with the global flags. With `ownIdentityUuid`, the command's
   * `--identity` names an identity id; the identity file then comes from an `--identity`
   * given before the command, or SIKKER_IDENTITY.
   */
  leaf(parent: Command, spec: string, description: string, options: { ownIdentityUuid?: boolean } = {}): Command {
    const command = addGlobalOptions(parent.command(spec).description(description), options.ownIdentityUuid !== true);
    if (options.ownIdentityUuid === true) identityIsUuid.add(command);
    return command;
  }

  /** Global flags merged from the root down to `command` (the closest one wins), resolved with the env. */
  config(command: Command): CliConfig {
    const lineage: Command[] = [];
    for (let current: Command | null = command; current !== null; current = current.parent) lineage.unshift(current);
    const flags: Record<string, unknown> = {};
    for (const level of lineage) {
      const values = level.opts();
      for (const key of GLOBAL_KEYS) {
        if (key === 'identity' && identityIsUuid.has(level)) continue;
        if (values[key] !== undefined) flags[key] = values[key];
      }
    }
    return resolveCliConfig(flags as GlobalFlags, this.io.env);
  }

  /** Loads the identity file and requires it to be enrolled. ERR_IDENTITY_KEY_FILE otherwise. */
  enrolledIdentity(config: CliConfig): LoadedIdentity & { identityId: string } {
    const identity = loadIdentityFile(config.identityPath);
    if (identity.identityId === null) {
      throw new SikkerError(
        'ERR_IDENTITY_KEY_FILE',
        `${config.identityPath} is not enrolled yet (run "sikker identity enroll" or "sikker operator init")`,
      );
    }
    return { ...identity, identityId: identity.identityId };
  }

  /**
   * Transport settings for the configured server, validated (server URL, plain-HTTP
   * policy, CA file, pin) without touching the network or the identity file.
   * Throws ERR_CONFIG_INVALID or ERR_TRANSPORT_INSECURE.
   */
  transport(config: CliConfig): SignedClientOptions {
    if (config.server === undefined) {
      throw new SikkerError('ERR_CONFIG_INVALID', 'no server given: pass --server URL or set SIKKER_SERVER');
    }
    const options: SignedClientOptions = {
      server: config.server,
      allowInsecureHttp: config.allowInsecureHttp,
      caCertPem: config.caCertPath === undefined ? undefined : readCaCert(config.caCertPath),
      pinSha256: config.pinSha256,
      userAgent: 'sikker-cli/0.1',
    };
    compileClientOptions(options);
    return options;
  }

  /** A client for the configured server, signing as `identity` when given. Closed at the end of the run. */
  client(config: CliConfig, identity?: ClientIdentity): SignedClient {
    const client = new SignedClient({ ...this.transport(config), identity });
    this.#clients.push(client);
    return client;
  }

  /** Shortcut: the configured server, signing with the enrolled identity file (transport checked first). */
  signedClient(command: Command): SignedClient {
    const config = this.config(command);
    this.transport(config);
    return this.client(config, this.enrolledIdentity(config));
  }

  /** Shortcut: the configured server, no identity (status and unseal). */
  unsignedClient(command: Command): SignedClient {
    return this.client(this.config(command));
  }

  /** Releases every client's sockets. */
  close(): void {
    for (const client of this.#clients.splice(0)) client.close();
  }
}

function readCaCert(path: string): string {
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (err) {
    throw new SikkerError('ERR_CONFIG_INVALID', `cannot read CA certificate file ${path}`, { cause: err });
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new SikkerError('ERR_CONFIG_INVALID', `${path} does not contain a PEM certificate`);
  }
  return pem;
}
