import type { Pool } from 'pg';
import { open, zero } from '../../shared/crypto/aead.js';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import type { Logger } from '../../shared/logging/logger.js';
import type { AuditChainWriter } from '../audit/audit-appender.js';
import type { AuditBatcher } from '../audit/audit-batcher.js';
import { needsSecretGrant, requireProjectAction, rolesAllowing } from '../auth/authorize.js';
import { withTransaction } from '../db/transaction.js';
import type { AuthIdentity } from '../identity/identity-types.js';
import type { Keyring } from './keyring.js';
import type { VersionStore } from './version-store.js';
import type { ProjectService } from './project-service.js';
import { findSecretId, findSecretVersion, hasSecretGrant, listSecretsOfProject, listVersions, type SecretVersionRow } from './vault-dal.js';

/** A uuid no identity has, for lookups that need no per-secret grant. */
const NO_IDENTITY = '00000000-0000-0000-0000-000000000000';

export type WritableLabel = 'current' | 'pending';

export interface ReadResult {
  version: number;
  label: 'current' | 'previous' | 'pending' | null;
  value: string;
}

/**
 * Secrets and their versions. Writes commit with their audit record; reads return
 * plaintext only after their audit record has committed (fail closed).
 */
export class SecretService {
  constructor(
    private readonly pool: Pool,
    private readonly keyring: Keyring,
    private readonly projects: ProjectService,
    private readonly audit: AuditBatcher,
    private readonly chain: AuditChainWriter,
    private readonly logger: Logger,
    private readonly versions_: VersionStore,
  ) {}

  /**
   * Stores a new version. With label `current` the old current becomes `previous`
   * (and the old previous loses its label); with `pending` it replaces any pending one.
   */
  async put(caller: AuthIdentity, sourceIp: string, projectName: string, name: string, value: string, label: WritableLabel): Promise<{ secretId: string; version: number }> {
    const project = await this.projects.resolve(caller, projectName);
    requireProjectAction(caller, 'secret.write', project.project_id);
    const plaintext = Buffer.from(value, 'utf8');
    try {
      try {
        return await this.putOnce(caller, sourceIp, project, name, plaintext, label);
      } catch (err) {
        // Two first writes of a new secret raced; the loser retries once against the winner's row.
        if (!(err instanceof SikkerError && err.code === 'ERR_CONFLICT' && err.retryable)) throw err;
        return await this.putOnce(caller, sourceIp, project, name, plaintext, label);
      }
    } finally {
      zero(plaintext);
    }
  }

  private async putOnce(caller: AuthIdentity, sourceIp: string, project: { project_id: string }, name: string, plaintext: Buffer, label: WritableLabel): Promise<{ secretId: string; version: number }> {
    return withTransaction(this.pool, this.logger, async (client) => {
      const { secretId, dataKey } = await this.versions_.lockOrCreateSecret(client, project.project_id, name);
      try {
        // A rotated secret changes only by rotation: a value written by hand would not be the database's.
        const owner = (await client.query<{ name: string }>('SELECT name FROM targets WHERE secret_id = $1', [secretId])).rows[0];
        if (owner !== undefined) throw new SikkerError('ERR_CONFLICT', `secret "${name}" holds the password of target "${owner.name}": it changes only by rotation (sikker rotate)`);
        const version = await this.versions_.addVersion(client, { projectId: project.project_id, secretId, dataKey, plaintext, label, dbUser: null, createdBy: caller.identityId });
        await this.chain.append(client, [{
          identityId: caller.identityId, sourceIp, action: 'secret.write', projectId: project.project_id, secretId, secretVersion: version, outcome: 'success', detail: { name, label },
        }]);
        return { secretId, version };
      } finally {
        zero(dataKey);
      }
    });
  }

  /**
   * Reads one version (default: current). Decrypts in memory, then waits for the
   * read's audit record to commit; if it cannot, the plaintext is discarded and the
   * call fails with ERR_AUDIT_WRITE_FAILED.
   */
  async read(caller: AuthIdentity, sourceIp: string, projectName: string, name: string, selector: { version?: number | undefined; label?: string | undefined }): Promise<ReadResult> {
    const grant = caller.grants.find((g) => g.projectName === projectName || g.projectId === null);
    const row = grant === undefined ? null : await findSecretVersion(this.pool, projectName, name, caller.identityId, selector);
    const denied = row !== null && this.readDenied(caller, row.project_id, row.granted);
    if (row === null || grant === undefined) throw new SikkerError('ERR_NOT_FOUND', 'no such secret version that you can read');
    const base = { identityId: caller.identityId, sourceIp, action: 'secret.read', projectId: row.project_id, secretId: row.secret_id, secretVersion: row.version };
    if (denied) {
      // Recorded as a denied read, answered like a missing secret: no existence oracle.
      await this.audit.append({ ...base, outcome: 'denied' });
      throw new SikkerError('ERR_NOT_FOUND', 'no such secret version that you can read');
    }
    if (row.state === 'revoked') {
      await this.audit.append({ ...base, outcome: 'refused', detail: { reason: 'revoked' } });
      throw new SikkerError('ERR_CONFLICT', `version ${row.version} is revoked`);
    }
    const plaintext = await this.decryptRow(row);
    try {
      await this.audit.append({ ...base, outcome: 'success' });
      return { version: row.version, label: row.label, value: plaintext.toString('utf8') };
    } finally {
      zero(plaintext);
    }
  }

  /**
   * Decrypts one version for sealing to an agent, without auditing: the caller must
   * append the delivery's audit record in the transaction that stores the command.
   * The caller owns and zeroes the plaintext.
   */
  async decryptForDelivery(projectName: string, name: string, version: number | undefined): Promise<{ projectId: string; secretId: string; version: number; plaintext: Buffer }> {
    const row = await findSecretVersion(this.pool, projectName, name, NO_IDENTITY, version === undefined ? {} : { version });
    if (row === null) throw new SikkerError('ERR_NOT_FOUND', `no secret "${name}"${version === undefined ? '' : ` version ${version}`} in project "${projectName}"`);
    if (row.state === 'revoked') throw new SikkerError('ERR_CONFLICT', `version ${row.version} is revoked`);
    return { projectId: row.project_id, secretId: row.secret_id, version: row.version, plaintext: await this.decryptRow(row) };
  }

  /** Unwraps the secret's data key, opens the version (bound to project, secret, version), zeroes the data key. Caller zeroes the result. */
  private async decryptRow(row: SecretVersionRow): Promise<Buffer> {
    const dataKey = await this.keyring.dataKey(this.pool, row.project_id, row.secret_id, row.wrapped_data_key);
    try {
      return open(dataKey, row.ciphertext, { purpose: 'secret-value', projectId: row.project_id, secretId: row.secret_id, secretVersion: row.version });
    } finally {
      zero(dataKey);
    }
  }

  private readDenied(caller: AuthIdentity, projectId: string, granted: boolean): boolean {
    const roles = rolesAllowing(caller, 'secret.read', projectId);
    return roles.length === 0 || (needsSecretGrant(roles) && !granted);
  }

  async list(caller: AuthIdentity, projectName: string): Promise<Array<{ secretId: string; name: string; currentVersion: number | null; createdAt: Date }>> {
    const project = await this.projects.resolve(caller, projectName);
    const roles = requireProjectAction(caller, 'secret.list', project.project_id);
    const rows = await listSecretsOfProject(this.pool, project.project_id, needsSecretGrant(roles) ? caller.identityId : null);
    return rows.map((r) => ({ secretId: r.secret_id, name: r.name, currentVersion: r.current_version, createdAt: r.created_at }));
  }

  async versions(caller: AuthIdentity, projectName: string, name: string): Promise<{ secretId: string; versions: Array<{ version: number; label: string | null; state: string; createdAt: Date }> }> {
    const project = await this.projects.resolve(caller, projectName);
    const roles = requireProjectAction(caller, 'secret.list', project.project_id);
    const secretId = await findSecretId(this.pool, project.project_id, name);
    const visible = secretId !== null && (!needsSecretGrant(roles) || (await hasSecretGrant(this.pool, caller.identityId, secretId)));
    if (secretId === null || !visible) throw new SikkerError('ERR_NOT_FOUND', `no secret "${name}" in project "${projectName}" that you can see`);
    const versions = await listVersions(this.pool, secretId);
    return { secretId, versions: versions.map((v) => ({ version: v.version, label: v.label, state: v.state, createdAt: v.created_at })) };
  }

  /** Lets one identity (a reader or agent) read one secret. */
  async grant(caller: AuthIdentity, sourceIp: string, projectName: string, name: string, identityId: string): Promise<void> {
    const project = await this.projects.resolve(caller, projectName);
    requireProjectAction(caller, 'secret.grant', project.project_id);
    const secretId = await findSecretId(this.pool, project.project_id, name);
    if (secretId === null) throw new SikkerError('ERR_NOT_FOUND', `no secret "${name}" in project "${projectName}"`);
    await withTransaction(this.pool, this.logger, async (client) => {
      const exists = await client.query('SELECT 1 FROM identities WHERE identity_id = $1', [identityId]);
      if (exists.rowCount !== 1) throw new SikkerError('ERR_NOT_FOUND', 'no such identity');
      await client.query('INSERT INTO secret_grants (identity_id, secret_id) VALUES ($1, $2) ON CONFLICT DO NOTHING', [identityId, secretId]);
      await this.chain.append(client, [{ identityId: caller.identityId, sourceIp, action: 'secret.grant', projectId: project.project_id, secretId, outcome: 'success', detail: { grantee: identityId } }]);
    });
  }
}
