import { createHash, randomBytes, randomUUID, createPrivateKey, type KeyObject } from 'node:crypto';
import type { Pool } from 'pg';
import { split, combine } from 'shamir-secret-sharing';
import { open, seal, zero } from '../../shared/crypto/aead.js';
import { constantTimeEqual, deriveKey, hmacSha256 } from '../../shared/crypto/derive.js';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { exportPublicKey, generateIdentityKeyPair } from '../../shared/signing/ed25519-keys.js';
import type { Logger } from '../../shared/logging/logger.js';
import type { AuditChainWriter } from '../audit/audit-appender.js';
import type { AuditBatcher } from '../audit/audit-batcher.js';
import { ROOT_KEY_VERSION } from './keyring.js';
import { withTransaction } from '../db/transaction.js';
import type { RootKeyHolder } from './root-key-holder.js';

const SHARE_PREFIX = 'sks1-';
const SERVER_KEY_BINDING = { purpose: 'server-signing-key', projectId: '-' } as const;

export interface VaultStatus {
  initialised: boolean;
  sealed: boolean;
  threshold: number | null;
  shares: number | null;
  progress: number;
  serverPublicKey: string | null;
}

function rootCheck(rootKey: Buffer): Buffer {
  const checkKey = deriveKey(rootKey, 'root-check');
  try {
    return hmacSha256(checkKey, 'sikker-root-check-v1');
  } finally {
    zero(checkKey);
  }
}

function decodeShare(text: string): Uint8Array {
  const body = text.trim();
  if (!body.startsWith(SHARE_PREFIX)) throw new SikkerError('ERR_VAULT_SHARE_INVALID', `a share starts with "${SHARE_PREFIX}"`);
  // a small Buffer.from() is carved from node's shared pool: zeroed once copied out
  const bytes = Buffer.from(body.slice(SHARE_PREFIX.length), 'base64url');
  try {
    if (bytes.length !== 33) throw new SikkerError('ERR_VAULT_SHARE_INVALID', 'the share has the wrong length (copied incompletely?)');
    return new Uint8Array(bytes);
  } finally {
    zero(bytes);
  }
}

/**
 * Initialisation, unsealing and sealing. The root key is generated here, split into
 * Shamir shares that are returned once, and only an HMAC check value derived from it
 * is stored, so a wrong reconstruction is detected and never installed.
 */
/** Shares given for an unseal that does not complete are forgotten after this long. */
const UNSEAL_PROGRESS_TTL_MS = 10 * 60 * 1000;

function shareHash(share: Uint8Array): Buffer {
  return createHash('sha256').update(share).digest();
}

export class SealService {
  private pendingShares: Uint8Array[] = [];
  private pendingSince = 0;
  /** Bumped by every seal, so an unseal that raced with one does not install its key. */
  private sealEpoch = 0;

  constructor(
    private readonly pool: Pool,
    private readonly root: RootKeyHolder,
    private readonly audit: AuditBatcher,
    private readonly chain: AuditChainWriter,
    private readonly logger: Logger,
  ) {
    root.onSeal(() => {
      this.sealEpoch += 1;
      this.clearPending();
    });
  }

  private clearPending(): void {
    for (const share of this.pendingShares) zero(share);
    this.pendingShares = [];
  }

  async status(): Promise<VaultStatus> {
    const state = (await this.pool.query<{ share_count: number; threshold: number }>('SELECT share_count, threshold FROM vault_state')).rows[0];
    const key = (await this.pool.query<{ public_key: string }>('SELECT public_key FROM server_keys ORDER BY key_version DESC LIMIT 1')).rows[0];
    return {
      initialised: state !== undefined,
      sealed: this.root.isSealed(),
      threshold: state?.threshold ?? null,
      shares: state?.share_count ?? null,
      progress: this.pendingShares.length,
      serverPublicKey: key?.public_key ?? null,
    };
  }

  /**
   * Creates the root key, the server signing key and the first admin identity, in one
   * transaction. Fails with ERR_VAULT_ALREADY_INITIALISED if another init won.
   */
  async init(input: { shares: number; threshold: number; publicKey: string; name: string; sourceIp: string }): Promise<{ shares: string[]; identityId: string; serverPublicKey: string }> {
    const rootKey = randomBytes(32);
    const signing = generateIdentityKeyPair();
    const signingDer = signing.privateKey.export({ format: 'der', type: 'pkcs8' });
    const identityId = randomUUID();
    const serverPublicKey = exportPublicKey(signing.publicKey);
    let shares: Uint8Array[] = [];
    try {
      const secretCopy = new Uint8Array(rootKey);
      shares = await split(secretCopy, input.shares, input.threshold);
      zero(secretCopy);
      await withTransaction(this.pool, this.logger, async (client) => {
        const inserted = await client.query(
          'INSERT INTO vault_state (root_check, share_hashes, share_count, threshold) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING',
          [rootCheck(rootKey), shares.map(shareHash), input.shares, input.threshold],
        );
        if (inserted.rowCount !== 1) throw new SikkerError('ERR_VAULT_ALREADY_INITIALISED', 'the vault is already initialised');
        await client.query('INSERT INTO server_keys (key_version, public_key, wrapped_private_key) VALUES (1, $1, $2)',
          [serverPublicKey, seal(rootKey, ROOT_KEY_VERSION, signingDer, SERVER_KEY_BINDING)]);
        await client.query('INSERT INTO identities (identity_id, name, public_key) VALUES ($1, $2, $3)', [identityId, input.name, input.publicKey]);
        await client.query("INSERT INTO grants (identity_id, project_id, role) VALUES ($1, NULL, 'admin')", [identityId]);
        await this.chain.append(client, [{
          identityId, sourceIp: input.sourceIp, action: 'vault.init', outcome: 'success',
          detail: { shares: input.shares, threshold: input.threshold },
        }]);
      });
    } catch (err) {
      zero(rootKey);
      for (const s of shares) zero(s);
      throw err;
    } finally {
      zero(signingDer);
    }
    this.root.install(rootKey, signing.privateKey, 1);
    const encoded = shares.map((s) => SHARE_PREFIX + Buffer.from(s).toString('base64url'));
    for (const s of shares) zero(s);
    this.logger.info({ identityId, shares: input.shares, threshold: input.threshold }, 'vault initialised');
    return { shares: encoded, identityId, serverPublicKey };
  }

  /**
   * Takes one share. With `threshold` distinct shares, reconstructs the root key and
   * installs it only if it matches the stored check; otherwise forgets every share
   * given so far and stays sealed (ERR_VAULT_UNSEAL_FAILED).
   */
  async unseal(shareText: string, sourceIp: string): Promise<VaultStatus> {
    const state = (await this.pool.query<{ root_check: Buffer; share_hashes: Buffer[]; threshold: number }>('SELECT root_check, share_hashes, threshold FROM vault_state')).rows[0];
    if (state === undefined) throw new SikkerError('ERR_VAULT_NOT_INITIALISED', 'the vault is not initialised; run `sikker operator init`');
    if (!this.root.isSealed()) return this.status();
    if (this.pendingShares.length > 0 && Date.now() - this.pendingSince > UNSEAL_PROGRESS_TTL_MS) this.clearPending();
    const share = decodeShare(shareText);
    const hash = shareHash(share);
    if (!state.share_hashes.some((h) => constantTimeEqual(h, hash))) {
      zero(share);
      await this.auditUnseal(sourceIp, 'refused');
      throw new SikkerError('ERR_VAULT_SHARE_INVALID', 'this is not one of this vault\'s shares; progress is unchanged');
    }
    if (this.pendingShares.some((s) => s[32] === share[32])) {
      zero(share);
      throw new SikkerError('ERR_VAULT_SHARE_INVALID', 'this share was already given');
    }
    if (this.pendingShares.length === 0) this.pendingSince = Date.now();
    this.pendingShares.push(share);
    if (this.pendingShares.length < state.threshold) {
      await this.auditUnseal(sourceIp, 'share-accepted');
      return this.status();
    }
    const epoch = this.sealEpoch;
    let candidate: Buffer | null = null;
    try {
      const combined = await combine(this.pendingShares);
      candidate = Buffer.from(combined);
      zero(combined);
    } catch (err) {
      this.logger.warn({ err }, 'shares could not be combined');
    }
    this.clearPending();
    if (candidate === null || candidate.length !== 32 || !constantTimeEqual(rootCheck(candidate), state.root_check)) {
      zero(candidate);
      await this.auditUnseal(sourceIp, 'failure');
      throw new SikkerError('ERR_VAULT_UNSEAL_FAILED', 'the shares do not reconstruct the root key; the vault stays sealed and the shares given so far were discarded');
    }
    let signingKey: KeyObject;
    try {
      signingKey = await this.loadSigningKey(candidate);
    } catch (err) {
      zero(candidate);
      throw err;
    }
    if (epoch !== this.sealEpoch) {
      zero(candidate); // a seal arrived while we were reconstructing: it wins
      throw new SikkerError('ERR_VAULT_SEALED', 'the vault was sealed during unseal; start again', { retryable: true });
    }
    this.root.install(candidate, signingKey, 1);
    await this.auditUnseal(sourceIp, 'success');
    this.logger.info('vault unsealed');
    return this.status();
  }

  private async loadSigningKey(rootKey: Buffer): Promise<KeyObject> {
    const row = (await this.pool.query<{ wrapped_private_key: Buffer }>('SELECT wrapped_private_key FROM server_keys WHERE key_version = 1')).rows[0];
    if (row === undefined) throw new SikkerError('ERR_INTERNAL', 'the server signing key is missing');
    const der = open(rootKey, row.wrapped_private_key, SERVER_KEY_BINDING);
    try {
      return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
    } finally {
      zero(der);
    }
  }

  private async auditUnseal(sourceIp: string, outcome: string): Promise<void> {
    try {
      await this.audit.append({ identityId: null, sourceIp, action: 'vault.unseal', outcome, detail: { progress: this.pendingShares.length } });
    } catch (err) {
      // Unsealing must stay possible while the audit log is unwritable; the failure is logged loudly.
      this.logger.error({ err }, 'could not audit an unseal attempt');
    }
  }

  /** Drops the root key at once. The record is written after (the key is already gone). */
  async seal(identityId: string, sourceIp: string): Promise<VaultStatus> {
    this.root.seal();
    this.logger.warn({ identityId }, 'vault sealed');
    await this.audit.append({ identityId, sourceIp, action: 'vault.seal', outcome: 'success' });
    return this.status();
  }
}
