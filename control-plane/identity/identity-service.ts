import { createHash, randomBytes, randomUUID, verify } from 'node:crypto';
import type { Pool } from 'pg';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { importPublicKey } from '../../shared/signing/ed25519-keys.js';
import { importBoxPublicKey } from '../../shared/crypto/sealed-box.js';
import { rekeyProofText, type Role } from '../../shared/protocol/api.js';
import type { Logger } from '../../shared/logging/logger.js';
import type { AuditChainWriter } from '../audit/audit-appender.js';
import { requireGlobalAdmin, requireProjectAction } from '../auth/authorize.js';
import { buildBlockList, findIdentity, listIdentities, sourceAllowed } from './identity-dal.js';
import type { AuthIdentity } from './identity-types.js';
import { withTransaction } from '../db/transaction.js';

const TOKEN_PREFIX = 'skj1-';
/** How long an identity stays cached for request authentication. Disabling elsewhere takes effect within this. */
const CACHE_MS = 1000;

function tokenHash(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/**
 * Identities, join tokens, enrollment, disabling and re-keying. Every change is
 * audited in the transaction that makes it.
 */
export class IdentityService {
  private readonly cache = new Map<string, { identity: AuthIdentity | null; until: number }>();
  private lastEviction = 0;
  private readonly disabledListeners: Array<(identityId: string) => void> = [];

  constructor(private readonly pool: Pool, private readonly chain: AuditChainWriter, private readonly logger: Logger) {}

  /** Called after an identity is disabled (the hub closes its socket everywhere). */
  onDisabled(listener: (identityId: string) => void): void {
    this.disabledListeners.push(listener);
  }

  /**
   * Entries live a second; at most once a second the expired ones are dropped, so the
   * cache holds only identities seen recently (not one per agent that ever connected).
   */
  private evictExpired(): void {
    const now = Date.now();
    if (now - this.lastEviction < CACHE_MS) return;
    this.lastEviction = now;
    for (const [id, entry] of this.cache) if (entry.until <= now) this.cache.delete(id);
  }

  /** For request authentication: a briefly cached lookup (null: unknown identity). */
  async forAuthentication(identityId: string): Promise<AuthIdentity | null> {
    const hit = this.cache.get(identityId);
    if (hit !== undefined && hit.until > Date.now()) return hit.identity;
    const identity = await findIdentity(this.pool, identityId);
    this.evictExpired();
    this.cache.set(identityId, { identity, until: Date.now() + CACHE_MS });
    return identity;
  }

  async get(identityId: string): Promise<AuthIdentity & { createdAt: Date }> {
    const identity = await findIdentity(this.pool, identityId);
    if (identity === null) throw new SikkerError('ERR_NOT_FOUND', 'no such identity');
    return identity;
  }

  async list(caller: AuthIdentity): Promise<Array<AuthIdentity & { createdAt: Date }>> {
    requireGlobalAdmin(caller, 'list identities');
    return listIdentities(this.pool);
  }

  /** Creates a one-time join token. Only its hash is stored; the token is returned once. */
  async createToken(caller: AuthIdentity, sourceIp: string, input: { projectId: string; role: Role; ttlSeconds: number; cidrs: string[]; name?: string | undefined }): Promise<{ token: string; expiresAt: Date }> {
    requireProjectAction(caller, 'token.create', input.projectId);
    const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
    const expiresAt = new Date(Date.now() + input.ttlSeconds * 1000);
    await withTransaction(this.pool, this.logger, async (client) => {
      await client.query(
        'INSERT INTO join_tokens (token_hash, project_id, role, name, allowed_cidrs, created_by, expires_at) VALUES ($1, $2, $3, $4, $5::cidr[], $6, $7)',
        [tokenHash(token), input.projectId, input.role, input.name ?? null, input.cidrs, caller.identityId, expiresAt],
      );
      await this.chain.append(client, [{ identityId: caller.identityId, sourceIp, action: 'token.create', projectId: input.projectId, outcome: 'success', detail: { role: input.role, ttlSeconds: input.ttlSeconds } }]);
    });
    return { token, expiresAt };
  }

  /**
   * Redeems a join token for `publicKey` (whose possession the caller proved by
   * signing the request). One use only; expired, used or unknown tokens are all
   * ERR_TOKEN_INVALID, so a caller learns nothing from the difference.
   */
  async enroll(input: { token: string; publicKey: string; name: string; sourceIp: string; boxPublicKey?: string | undefined }): Promise<{ identityId: string; projectName: string; role: Role }> {
    const identityId = randomUUID();
    return withTransaction(this.pool, this.logger, async (client) => {
      const row = (await client.query<{ project_id: string; role: Role; allowed_cidrs: string[]; project_name: string }>(
        `UPDATE join_tokens t SET used_at = now(), used_by = $2 FROM projects p
          WHERE t.token_hash = $1 AND t.used_at IS NULL AND t.expires_at > now() AND p.project_id = t.project_id
            AND NOT EXISTS (SELECT 1 FROM identities c WHERE c.identity_id = t.created_by AND c.disabled_at IS NOT NULL)
          RETURNING t.project_id, t.role, t.allowed_cidrs::text[] AS allowed_cidrs, p.name AS project_name`,
        [tokenHash(input.token), identityId],
      )).rows[0];
      if (row === undefined) throw new SikkerError('ERR_TOKEN_INVALID', 'the join token is invalid, already used or expired');
      if (!sourceAllowed(buildBlockList(row.allowed_cidrs), input.sourceIp)) {
        throw new SikkerError('ERR_AUTH_SOURCE_DENIED', 'this join token may not be redeemed from this address');
      }
      const clash = await client.query('SELECT 1 FROM identities WHERE public_key = $1', [input.publicKey]);
      if (clash.rowCount !== 0) throw new SikkerError('ERR_CONFLICT', 'this public key is already enrolled');
      await client.query('INSERT INTO identities (identity_id, name, public_key, allowed_cidrs) VALUES ($1, $2, $3, $4::cidr[])',
        [identityId, input.name, input.publicKey, row.allowed_cidrs]);
      await client.query('INSERT INTO grants (identity_id, project_id, role) VALUES ($1, $2, $3)', [identityId, row.project_id, row.role]);
      if (row.role === 'agent') {
        if (input.boxPublicKey === undefined) throw new SikkerError('ERR_VALIDATION', 'an agent must register a boxPublicKey (X25519) when enrolling');
        importBoxPublicKey(input.boxPublicKey);
        await client.query('INSERT INTO agents (agent_id, project_id, box_public_key) VALUES ($1, $2, $3)', [identityId, row.project_id, input.boxPublicKey]);
      }
      await this.chain.append(client, [{ identityId, sourceIp: input.sourceIp, action: 'identity.enroll', projectId: row.project_id, outcome: 'success', detail: { role: row.role, name: input.name } }]);
      this.logger.info({ identityId, role: row.role }, 'identity enrolled');
      return { identityId, projectName: row.project_name, role: row.role };
    });
  }

  /**
   * Disables an identity: its signed requests are refused from now on (other replicas within a
   * second), and the join tokens it created no longer enroll anyone (enroll checks the creator).
   */
  async disable(caller: AuthIdentity, sourceIp: string, identityId: string): Promise<AuthIdentity & { createdAt: Date }> {
    requireGlobalAdmin(caller, 'disable identities');
    if (identityId === caller.identityId) throw new SikkerError('ERR_CONFLICT', 'you cannot disable your own identity');
    await withTransaction(this.pool, this.logger, async (client) => {
      const updated = await client.query('UPDATE identities SET disabled_at = COALESCE(disabled_at, now()) WHERE identity_id = $1', [identityId]);
      if (updated.rowCount !== 1) throw new SikkerError('ERR_NOT_FOUND', 'no such identity');
      await this.chain.append(client, [{ identityId: caller.identityId, sourceIp, action: 'identity.disable', outcome: 'success', detail: { target: identityId } }]);
    });
    this.cache.delete(identityId);
    for (const listener of this.disabledListeners) listener(identityId);
    return this.get(identityId);
  }

  /**
   * Registers a new public key for the calling identity. The request is signed with
   * the old key (checked by the authenticator); `proof` is the new key's signature
   * over rekeyProofText bound to this request's nonce.
   */
  async rekey(caller: AuthIdentity, sourceIp: string, nonce: string, newPublicKey: string, proof: string): Promise<AuthIdentity & { createdAt: Date }> {
    const key = importPublicKey(newPublicKey);
    const proofBytes = Buffer.from(proof, 'base64');
    if (proofBytes.length !== 64 || !verify(null, rekeyProofText(caller.identityId, newPublicKey, nonce), key, proofBytes)) {
      throw new SikkerError('ERR_AUTH_BAD_SIGNATURE', 'the proof of possession of the new key does not verify');
    }
    await withTransaction(this.pool, this.logger, async (client) => {
      const clash = await client.query('SELECT 1 FROM identities WHERE public_key = $1', [newPublicKey]);
      if (clash.rowCount !== 0) throw new SikkerError('ERR_CONFLICT', 'this public key is already registered');
      await client.query('UPDATE identities SET public_key = $2 WHERE identity_id = $1', [caller.identityId, newPublicKey]);
      await this.chain.append(client, [{ identityId: caller.identityId, sourceIp, action: 'identity.rekey', outcome: 'success' }]);
    });
    this.cache.delete(caller.identityId);
    return this.get(caller.identityId);
  }

}
