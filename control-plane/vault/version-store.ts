import { randomUUID } from 'node:crypto';
import type { PoolClient } from 'pg';
import { open, seal, zero } from '../../shared/crypto/aead.js';
import { hmacSha256 } from '../../shared/crypto/derive.js';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import type { Queryable, StatementWrite } from '../db/queryable.js';
import { sqlLiteral, type FirstStatement } from '../db/transaction.js';
import type { Keyring } from './keyring.js';

export type StoredLabel = 'current' | 'pending';

/** A secret locked by {@link VersionStore.lockSecret}: its data key and version `read` decrypted (the caller zeroes both). */
export interface LockedSecret {
  dataKey: Buffer;
  /** The highest version as of the lock. */
  maxVersion: number | null;
  version: { plaintext: Buffer; dbUser: string | null; state: string } | null;
}

/** The row of {@link SECRET_LOCK}. */
export interface LockedSecretRow {
  wrapped_data_key: Buffer;
  max_version: number | null;
  ciphertext: Buffer | null;
  db_user: string | null;
  state: string | null;
}

/** Locks the secret ($1, in project $2) and reads its wrapped data key, its highest version and version $3. */
const SECRET_LOCK = `SELECT s.wrapped_data_key, (SELECT max(version) FROM secret_versions m WHERE m.secret_id = s.secret_id) AS max_version,
       v.ciphertext, v.db_user, v.state FROM secrets s
  LEFT JOIN secret_versions v ON v.secret_id = s.secret_id AND v.version = $3::int
 WHERE s.secret_id = $1 AND s.project_id = $2 FOR UPDATE OF s`;

/** {@link VersionStore.lockSecret}'s statement, to send with BEGIN (withTransactionFrom); read its row with {@link VersionStore.lockedSecret}. */
export function lockSecretStatement(projectId: string, secretId: string, read: number | null): FirstStatement {
  return { name: 'sikker_secret_lock', prepare: `PREPARE sikker_secret_lock(uuid, uuid, int) AS ${SECRET_LOCK}`, args: [sqlLiteral(secretId), sqlLiteral(projectId), sqlLiteral(read)] };
}

/**
 * Secret versions inside a caller's transaction: the one place that encrypts a new
 * version and moves labels. Audit records are the caller's (it knows why). Every
 * plaintext handed in stays the caller's to zero; every data key is zeroed here.
 */
export class VersionStore {
  constructor(private readonly keyring: Keyring) {}

  /**
   * Locks the secret's row (creating the secret when missing) and returns its data key.
   * FOR SHARE on the project: a project key rotation starting now waits, so no data
   * key lands on a retired version. The caller zeroes the key.
   */
  async lockOrCreateSecret(client: PoolClient, projectId: string, name: string): Promise<{ secretId: string; dataKey: Buffer }> {
    const keyVersion = (await client.query<{ current_key_version: number }>('SELECT current_key_version FROM projects WHERE project_id = $1 FOR SHARE', [projectId])).rows[0]?.current_key_version;
    if (keyVersion === undefined) throw new SikkerError('ERR_NOT_FOUND', 'no such project');
    const existing = (await client.query<{ secret_id: string; wrapped_data_key: Buffer }>(
      'SELECT secret_id, wrapped_data_key FROM secrets WHERE project_id = $1 AND name = $2 FOR UPDATE', [projectId, name],
    )).rows[0];
    if (existing !== undefined) {
      return { secretId: existing.secret_id, dataKey: await this.keyring.dataKey(client, projectId, existing.secret_id, existing.wrapped_data_key) };
    }
    const secretId = randomUUID();
    const { dataKey, wrapped } = await this.keyring.newDataKey(client, projectId, secretId, keyVersion);
    try {
      const inserted = await client.query(
        'INSERT INTO secrets (secret_id, project_id, name, wrapped_data_key, data_key_version) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (project_id, name) DO NOTHING',
        [secretId, projectId, name, wrapped, keyVersion],
      );
      if (inserted.rowCount !== 1) throw new SikkerError('ERR_CONFLICT', 'the secret was created concurrently; retry', { retryable: true });
    } catch (err) {
      zero(dataKey);
      throw err;
    }
    return { secretId, dataKey };
  }

  /**
   * Locks an existing secret by id and returns its data key (caller zeroes it) and, in the
   * same statement, version `read` decrypted (null when `read` is null or no such version;
   * the caller zeroes its plaintext too) and the highest version as of the statement's start
   * (`maxVersion`, for pendingVersionWrite's `knownMax`: it checks it is still the highest).
   */
  async lockSecret(client: PoolClient, projectId: string, secretId: string, read: number | null = null): Promise<LockedSecret> {
    const row = (await client.query<LockedSecretRow>({ name: 'secret-lock', text: SECRET_LOCK, values: [secretId, projectId, read] })).rows[0];
    return this.lockedSecret(client, projectId, secretId, read, row);
  }

  /**
   * {@link lockSecret} from the row its statement returned when sent by the caller
   * ({@link lockSecretStatement}, e.g. with BEGIN); `row` undefined: no such secret.
   */
  async lockedSecret(client: PoolClient, projectId: string, secretId: string, read: number | null, row: LockedSecretRow | undefined): Promise<LockedSecret> {
    if (row === undefined) throw new SikkerError('ERR_NOT_FOUND', 'no such secret');
    const dataKey = await this.keyring.dataKey(client, projectId, secretId, row.wrapped_data_key);
    const maxVersion = row.max_version;
    if (read === null || row.ciphertext === null || row.state === null) return { dataKey, maxVersion, version: null };
    try {
      const plaintext = open(dataKey, row.ciphertext, { purpose: 'secret-value', projectId, secretId, secretVersion: read });
      return { dataKey, maxVersion, version: { plaintext, dbUser: row.db_user, state: row.state } };
    } catch (err) {
      zero(dataKey);
      throw err;
    }
  }

  /**
   * The next version of a secret locked by {@link lockSecret}, stored as `pending` (any old
   * pending label cleared) — as a write for the caller to send with its others: numbered
   * from `knownMax`, the highest version lockSecret read under the same lock, and stored
   * only if no version at or above that number exists (so it changes one row, or none if
   * something is wrong: the caller then fails its transaction).
   */
  async pendingVersionWrite(client: PoolClient, v: { projectId: string; secretId: string; dataKey: Buffer; plaintext: Buffer; dbUser: string | null; createdBy: string | null; knownMax: number | null }): Promise<{ version: number; write: StatementWrite }> {
    const version = (v.knownMax ?? 0) + 1;
    const ciphertext = seal(v.dataKey, 1, v.plaintext, { purpose: 'secret-value', projectId: v.projectId, secretId: v.secretId, secretVersion: version });
    const fingerprint = await this.fingerprint(client, v.projectId, v.plaintext);
    return {
      version,
      write: {
        name: 'version-insert-pending',
        before: [['pending_label_cleared', "UPDATE secret_versions SET label = NULL WHERE secret_id = $1 AND label = 'pending' RETURNING 1"]],
        sql: `INSERT INTO secret_versions (secret_id, version, ciphertext, label, created_by, db_user, fingerprint)
              SELECT $1, $2, $3, 'pending', $4, $5, $6 WHERE NOT EXISTS (SELECT 1 FROM secret_versions WHERE secret_id = $1 AND version >= $2)
              RETURNING 1`,
        values: [v.secretId, version, ciphertext, v.createdBy, v.dbUser, fingerprint],
      },
    };
  }

  /**
   * Adds the next version of a locked secret. `current`: the old current becomes
   * `previous` (the old previous loses its label). `pending`: replaces any pending label.
   */
  async addVersion(client: PoolClient, v: { projectId: string; secretId: string; dataKey: Buffer; plaintext: Buffer; label: StoredLabel; dbUser: string | null; createdBy: string | null }): Promise<number> {
    let max: number | null | undefined;
    if (v.label === 'current') {
      max = (await client.query<{ max: number | null }>({ name: 'version-max', text: 'SELECT max(version) AS max FROM secret_versions WHERE secret_id = $1', values: [v.secretId] })).rows[0]?.max;
      await client.query("UPDATE secret_versions SET label = NULL WHERE secret_id = $1 AND label = 'previous'", [v.secretId]);
      await client.query("UPDATE secret_versions SET label = 'previous' WHERE secret_id = $1 AND label = 'current'", [v.secretId]);
    } else {
      // One round trip (a rotation's hot path): clear the old pending label and read the highest
      // version; the SELECT sees the rows as before the UPDATE, and labels do not change the max.
      max = (await client.query<{ max: number | null }>({
        name: 'version-unlabel-pending-max',
        text: "WITH cleared AS (UPDATE secret_versions SET label = NULL WHERE secret_id = $1 AND label = 'pending') SELECT max(version) AS max FROM secret_versions WHERE secret_id = $1",
        values: [v.secretId],
      })).rows[0]?.max;
    }
    const version = (max ?? 0) + 1;
    const ciphertext = seal(v.dataKey, 1, v.plaintext, { purpose: 'secret-value', projectId: v.projectId, secretId: v.secretId, secretVersion: version });
    const fingerprint = await this.fingerprint(client, v.projectId, v.plaintext);
    await client.query({ name: 'version-insert', text: 'INSERT INTO secret_versions (secret_id, version, ciphertext, label, created_by, db_user, fingerprint) VALUES ($1, $2, $3, $4, $5, $6, $7)', values: [v.secretId, version, ciphertext, v.label, v.createdBy, v.dbUser, fingerprint] });
    return version;
  }

  /** The keyed fingerprint of a value in a project: HMAC-SHA256 under the project's fingerprint key. */
  async fingerprint(db: Queryable, projectId: string, value: Buffer): Promise<Buffer> {
    return hmacSha256(await this.keyring.fingerprintKey(db, projectId), value);
  }

  /**
   * Fingerprints up to `limit` versions written before fingerprints existed (a one-time
   * catch-up after the upgrade: each such version is decrypted once). Returns how many.
   */
  async backfillFingerprints(db: Queryable, limit: number): Promise<number> {
    const rows = (await db.query<{ project_id: string; secret_id: string; version: number }>(
      `SELECT s.project_id, v.secret_id, v.version FROM secret_versions v JOIN secrets s ON s.secret_id = v.secret_id
        WHERE v.fingerprint IS NULL LIMIT $1`, [limit],
    )).rows;
    for (const row of rows) {
      const { plaintext } = await this.decrypt(db, row.project_id, row.secret_id, row.version);
      try {
        await db.query('UPDATE secret_versions SET fingerprint = $3 WHERE secret_id = $1 AND version = $2 AND fingerprint IS NULL',
          [row.secret_id, row.version, await this.fingerprint(db, row.project_id, plaintext)]);
      } finally {
        zero(plaintext);
      }
    }
    return rows.length;
  }

  /** A version that no longer logs in: it is kept for the record, never served again. */
  async revoke(db: Queryable, secretId: string, version: number): Promise<void> {
    await db.query("UPDATE secret_versions SET state = 'revoked', label = CASE WHEN label = 'pending' THEN NULL ELSE label END WHERE secret_id = $1 AND version = $2", [secretId, version]);
  }

  /** Decrypts one version without auditing (callers audit what they do with it). Caller zeroes the result. */
  async decrypt(db: Queryable, projectId: string, secretId: string, version: number): Promise<{ plaintext: Buffer; dbUser: string | null; state: string }> {
    const row = (await db.query<{ wrapped_data_key: Buffer; ciphertext: Buffer; db_user: string | null; state: string }>({ name: 'version-decrypt', text: `SELECT s.wrapped_data_key, v.ciphertext, v.db_user, v.state FROM secrets s JOIN secret_versions v ON v.secret_id = s.secret_id
        WHERE s.secret_id = $1 AND s.project_id = $2 AND v.version = $3`, values: [secretId, projectId, version] })).rows[0];
    if (row === undefined) throw new SikkerError('ERR_NOT_FOUND', `no version ${version} of this secret`);
    const dataKey = await this.keyring.dataKey(db, projectId, secretId, row.wrapped_data_key);
    try {
      return { plaintext: open(dataKey, row.ciphertext, { purpose: 'secret-value', projectId, secretId, secretVersion: version }), dbUser: row.db_user, state: row.state };
    } finally {
      zero(dataKey);
    }
  }
}

/**
 * Pending becomes current, current becomes previous, the old previous loses its label; with
 * `revokePrevious` the old current is marked revoked (replace: it no longer logs in). One
 * statement (the label constraint is checked at its end: migration 006), as a write to send
 * with others (rotation-dal.ts updateRunWithSteps): it returns the rows it moved (version and
 * new label). Nothing moves unless `pendingVersion` is pending, and the statement fails
 * with ERR_CONFLICT unless it moved `pendingVersion` to current and made `expectPrevious`
 * (null: none) previous — the version the caller read as current under the run's lock.
 */
export function promotePendingWrite(secretId: string, pendingVersion: number, revokePrevious: boolean, expectPrevious: number | null): StatementWrite {
  return {
    name: 'version-promote-pending',
    sql: `UPDATE secret_versions v
             SET label = CASE v.label WHEN 'pending' THEN 'current' WHEN 'current' THEN 'previous' END,
                 state = CASE WHEN v.label = 'current' AND $3 THEN 'revoked' ELSE v.state END
           WHERE v.secret_id = $1 AND (v.label IN ('current', 'previous') OR (v.label = 'pending' AND v.version = $2))
             AND EXISTS (SELECT 1 FROM secret_versions p WHERE p.secret_id = $1 AND p.version = $2 AND p.label = 'pending')
       RETURNING v.version, v.label`,
    values: [secretId, pendingVersion, revokePrevious],
    rows: true,
    expect: {
      sql: `EXISTS (SELECT 1 FROM self WHERE label = 'current' AND version = $1::int) AND (SELECT max(version) FROM self WHERE label = 'previous') IS NOT DISTINCT FROM $2::int`,
      values: [pendingVersion, expectPrevious],
      error: () => new SikkerError('ERR_CONFLICT', `the secret's labels changed during the commit (version ${pendingVersion} is not pending, or ${expectPrevious ?? 'no version'} is not current); the step runs again`, { retryable: true }),
    },
  };
}
