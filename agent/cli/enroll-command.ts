import { readFileSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { exportBoxPublicKey, generateBoxKeyPair } from '../../shared/crypto/sealed-box.js';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { SignedClient } from '../../shared/http-client/signed-client.js';
import { EnrollResponse } from '../../shared/protocol/api.js';
import { exportPublicKey, generateIdentityKeyPair, importPublicKey } from '../../shared/signing/ed25519-keys.js';
import { writeIdentityFile } from '../../shared/signing/identity-file.js';
import { ENROLLING_IDENTITY } from '../../shared/signing/request-signature.js';
import { isInteractive, readSecretText } from '../../shared/terminal/stdin-input.js';
import { ensureStateDir, identityPath } from '../state/state-dir.js';
import { parseOptions, reportFailure, UsageError } from './cli-support.js';

const USAGE = 'usage: sikker-agent enroll --server URL --token T|- --state-dir DIR [--name N] [--insecure-http] [--ca-cert FILE] [--pin-sha256 FP]';
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$/;

/**
 * `sikker-agent enroll`: generates the Ed25519 identity key and the X25519 box key on
 * this host, redeems the join token (the request is signed by the new key), and saves
 * identity.json (0600) in the state directory (created 0700 if absent) with the
 * identity id and the server's public key, pinned for verifying every command.
 * Refuses when the state directory is too open or owned by someone else, or when an
 * identity file already exists there. Returns the exit code.
 */
/** `--token -`: the join token from stdin (bounded; not shown when typed at a terminal). */
async function tokenFromStdin(): Promise<string> {
  if (isInteractive(process.stdin)) process.stderr.write('paste the join token (it is not shown), then press Ctrl-D\n');
  return (await readSecretText(process.stdin, 4096, 'join token')).trim();
}

export async function enrollCommand(argv: string[]): Promise<number> {
  try {
    const o = parseOptions(argv, {
      server: { type: 'string' },
      token: { type: 'string' },
      'state-dir': { type: 'string' },
      name: { type: 'string' },
      'insecure-http': { type: 'boolean', default: false },
      'ca-cert': { type: 'string' },
      'pin-sha256': { type: 'string' },
    });
    if (o.server === undefined || o.token === undefined || o['state-dir'] === undefined) throw new UsageError('--server, --token and --state-dir are required');
    const stateDir = resolve(o['state-dir']);
    const name = o.name ?? defaultName(hostname());
    if (!NAME_PATTERN.test(name)) throw new UsageError('--name must be letters, digits, "_", ".", "@" or "-", 1–100 characters');
    const token = o.token === '-' ? await tokenFromStdin() : o.token;
    ensureStateDir(stateDir);
    const path = identityPath(stateDir);
    refuseExisting(path);
    const identityId = await enroll({ server: o.server, token, name, path, insecureHttp: o['insecure-http'] === true, caCertFile: o['ca-cert'], pin: o['pin-sha256'] });
    process.stdout.write(summary(identityId, o.server, stateDir, o['insecure-http'] === true, o['ca-cert'], o['pin-sha256']));
    return 0;
  } catch (err) {
    return reportFailure(err, USAGE);
  }
}

interface EnrollInput {
  server: string;
  token: string;
  name: string;
  path: string;
  insecureHttp: boolean;
  caCertFile: string | undefined;
  pin: string | undefined;
}

async function enroll(input: EnrollInput): Promise<string> {
  const identity = generateIdentityKeyPair();
  const box = generateBoxKeyPair();
  const client = new SignedClient({
    server: input.server,
    identity: { privateKey: identity.privateKey, identityId: null },
    allowInsecureHttp: input.insecureHttp,
    caCertPem: input.caCertFile === undefined ? undefined : readCaCert(input.caCertFile),
    pinSha256: input.pin,
    userAgent: 'sikker-agent',
  });
  try {
    const body = { token: input.token, publicKey: exportPublicKey(identity.publicKey), name: input.name, boxPublicKey: exportBoxPublicKey(box.publicKey) };
    const response = await client.request('POST', '/v1/enroll', body, EnrollResponse, { identityIdOverride: ENROLLING_IDENTITY });
    importPublicKey(response.serverPublicKey); // refuse to pin something that is not an Ed25519 key
    if (response.role !== 'agent') {
      process.stderr.write(`sikker-agent: warning: the token granted role "${response.role}", not "agent"; the hub will refuse this identity\n`);
    }
    writeIdentityFile(input.path, { privateKey: identity.privateKey, identityId: response.identityId, serverPublicKey: response.serverPublicKey, boxPrivateKey: box.privateKey });
    return response.identityId;
  } finally {
    client.close();
  }
}

function refuseExisting(path: string): void {
  let exists = true;
  try {
    statSync(path);
  } catch {
    exists = false; // nothing enrolled here yet
  }
  if (exists) throw new SikkerError('ERR_AGENT_STATE', `${path} already exists: this state directory is enrolled; remove it only to re-enroll with a new token`);
}

function readCaCert(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new SikkerError('ERR_CONFIG_INVALID', `--ca-cert ${file} cannot be read`, { cause: err });
  }
}

/** The host name made into a valid identity name ("agent" if nothing usable remains). */
export function defaultName(host: string): string {
  const cleaned = host.replace(/[^A-Za-z0-9_.@-]/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 100);
  return cleaned === '' ? 'agent' : cleaned;
}

function summary(identityId: string, server: string, stateDir: string, insecureHttp: boolean, caCertFile: string | undefined, pin: string | undefined): string {
  const config: Record<string, unknown> = { server, stateDir };
  if (insecureHttp) config.insecureHttp = true;
  if (caCertFile !== undefined) config.caCertFile = resolve(caCertFile);
  if (pin !== undefined) config.pinSha256 = pin;
  config.sinks = [];
  return `enrolled as agent identity ${identityId}\n\nconfig for "sikker-agent run --config FILE":\n${JSON.stringify(config, null, 2)}\n`;
}
