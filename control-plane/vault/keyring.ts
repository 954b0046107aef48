import type { Queryable } from '../db/queryable.js';
import { newKey, open, seal, zero, envelopeKeyVersion } from '../../shared/crypto/aead.js';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import type { RootKeyHolder } from './root-key-holder.js';

/** The root key has one version until root-key rotation exists. */
export const ROOT_KEY_VERSION = 1;

/**
 * Unwraps project master keys (under the root key) and data keys (under a project
 * key). Unwrapped project keys are cached in memory for speed and zeroed when the
 * vault seals. Data keys are never cached: callers zero them after use.
 */
export class Keyring {
  private readonly projectKeys = new Map<string, Buffer>();
  private readonly fingerprintKeys = new Map<string, Buffer>();

  constructor(private readonly root: RootKeyHolder) {
    root.onSeal(() => this.clear());
  }

  clear(): void {
    for (const key of this.projectKeys.values()) zero(key);
    this.projectKeys.clear();
    for (const key of this.fingerprintKeys.values()) zero(key);
    this.fingerprintKeys.clear();
  }

  /** Generates a project key of `version` and returns it wrapped under the root key. */
  newWrappedProjectKey(projectId: string, version: number): Buffer {
    const key = newKey();
    try {
      return seal(this.root.rootKeyOrThrow(), ROOT_KEY_VERSION, key, { purpose: 'project-key', projectId, keyVersion: version });
    } finally {
      zero(key);
    }
  }

  /** The unwrapped project key. Owned by the cache: callers must not zero or keep it. */
  async projectKey(db: Queryable, projectId: string, version: number): Promise<Buffer> {
    const cacheKey = `${projectId}:${version}`;
    const cached = this.projectKeys.get(cacheKey);
    if (cached !== undefined) return cached;
    const row = (await db.query<{ wrapped_key: Buffer }>({ name: 'project-key', text: 'SELECT wrapped_key FROM project_keys WHERE project_id = $1 AND key_version = $2', values: [projectId, version] })).rows[0];
    if (row === undefined) throw new SikkerError('ERR_INTERNAL', `project key version ${version} is missing`);
    const raced = this.projectKeys.get(cacheKey);
    if (raced !== undefined) return raced; // a concurrent miss filled it while we waited
    const key = open(this.root.rootKeyOrThrow(), row.wrapped_key, { purpose: 'project-key', projectId, keyVersion: version });
    this.projectKeys.set(cacheKey, key);
    return key;
  }

  /** Generates a data key for a new secret; returns it (caller zeroes) and its wrapping. */
  async newDataKey(db: Queryable, projectId: string, secretId: string, projectKeyVersion: number): Promise<{ dataKey: Buffer; wrapped: Buffer }> {
    const projectKey = await this.projectKey(db, projectId, projectKeyVersion);
    const dataKey = newKey();
    return { dataKey, wrapped: seal(projectKey, projectKeyVersion, dataKey, { purpose: 'data-key', projectId, secretId }) };
  }

  /** Unwraps a secret's data key (the envelope names its project key version). Caller zeroes it. */
  async dataKey(db: Queryable, projectId: string, secretId: string, wrapped: Buffer): Promise<Buffer> {
    const version = envelopeKeyVersion(wrapped);
    const projectKey = await this.projectKey(db, projectId, version);
    return open(projectKey, wrapped, { purpose: 'data-key', projectId, secretId });
  }

  /** Re-wraps a data key under another project key version without exposing the value it protects. */
  async rewrapDataKey(db: Queryable, projectId: string, secretId: string, wrapped: Buffer, toVersion: number): Promise<Buffer> {
    const dataKey = await this.dataKey(db, projectId, secretId, wrapped);
    try {
      const projectKey = await this.projectKey(db, projectId, toVersion);
      return seal(projectKey, toVersion, dataKey, { purpose: 'data-key', projectId, secretId });
    } finally {
      zero(dataKey);
    }
  }

  /**
   * The project's fingerprint key (HMAC key for the keyed fingerprint of every version's
   * value), created at first use and wrapped under the root key. Separate from the
   * master key so master-key rotations leave fingerprints valid. Owned by the cache.
   */
  async fingerprintKey(db: Queryable, projectId: string): Promise<Buffer> {
    const cached = this.fingerprintKeys.get(projectId);
    if (cached !== undefined) return cached;
    const read = async (): Promise<Buffer | null> => (await db.query<{ wrapped_key: Buffer }>({ name: 'fingerprint-key', text: 'SELECT wrapped_key FROM project_fingerprint_keys WHERE project_id = $1', values: [projectId] })).rows[0]?.wrapped_key ?? null;
    let wrapped = await read();
    if (wrapped === null) {
      const key = newKey();
      try {
        const fresh = seal(this.root.rootKeyOrThrow(), ROOT_KEY_VERSION, key, { purpose: 'fingerprint-key', projectId });
        // First writer wins; everyone then reads the stored one.
        await db.query('INSERT INTO project_fingerprint_keys (project_id, wrapped_key) VALUES ($1, $2) ON CONFLICT (project_id) DO NOTHING', [projectId, fresh]);
      } finally {
        zero(key);
      }
      wrapped = await read();
      if (wrapped === null) throw new SikkerError('ERR_NOT_FOUND', 'no such project');
    }
    const raced = this.fingerprintKeys.get(projectId);
    if (raced !== undefined) return raced;
    const key = open(this.root.rootKeyOrThrow(), wrapped, { purpose: 'fingerprint-key', projectId });
    this.fingerprintKeys.set(projectId, key);
    return key;
  }
}
