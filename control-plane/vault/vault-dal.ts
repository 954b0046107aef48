import type { Queryable } from '../db/queryable.js';

export interface ProjectRow {
  project_id: string;
  name: string;
  current_key_version: number;
  created_at: Date;
}

export interface SecretVersionRow {
  project_id: string;
  secret_id: string;
  wrapped_data_key: Buffer;
  version: number;
  label: 'current' | 'previous' | 'pending' | null;
  state: 'active' | 'revoked';
  ciphertext: Buffer;
  granted: boolean;
}

export async function findProjectByName(db: Queryable, name: string): Promise<ProjectRow | null> {
  return (await db.query<ProjectRow>({ name: 'project-by-name', text: 'SELECT * FROM projects WHERE name = $1', values: [name] })).rows[0] ?? null;
}

export async function listProjects(db: Queryable): Promise<ProjectRow[]> {
  return (await db.query<ProjectRow>('SELECT * FROM projects ORDER BY name')).rows;
}

/**
 * One round trip for a read: the version (by number, or by label, default current),
 * its secret's wrapped data key, and whether `identityId` holds a per-secret grant.
 */
export async function findSecretVersion(
  db: Queryable, projectName: string, secretName: string, identityId: string, selector: { version?: number; label?: string },
): Promise<SecretVersionRow | null> {
  const byVersion = selector.version !== undefined;
  const sql = `
    SELECT p.project_id, s.secret_id, s.wrapped_data_key, v.version, v.label, v.state, v.ciphertext,
           EXISTS (SELECT 1 FROM secret_grants g WHERE g.secret_id = s.secret_id AND g.identity_id = $4) AS granted
      FROM projects p
      JOIN secrets s ON s.project_id = p.project_id AND s.name = $2
      JOIN secret_versions v ON v.secret_id = s.secret_id AND ${byVersion ? 'v.version = $3::int' : 'v.label = $3::text'}
     WHERE p.name = $1`;
  const arg = byVersion ? selector.version : (selector.label ?? 'current');
  // Named: the hot read path is parsed and planned once per connection, not per read.
  return (await db.query<SecretVersionRow>({ name: byVersion ? 'read-secret-by-version' : 'read-secret-by-label', text: sql, values: [projectName, secretName, arg, identityId] })).rows[0] ?? null;
}

export async function listSecretsOfProject(db: Queryable, projectId: string, onlyGrantedTo: string | null): Promise<Array<{ secret_id: string; name: string; current_version: number | null; created_at: Date }>> {
  return (await db.query(
    `SELECT s.secret_id, s.name, s.created_at,
            (SELECT v.version FROM secret_versions v WHERE v.secret_id = s.secret_id AND v.label = 'current') AS current_version
       FROM secrets s
      WHERE s.project_id = $1
        AND ($2::uuid IS NULL OR EXISTS (SELECT 1 FROM secret_grants g WHERE g.secret_id = s.secret_id AND g.identity_id = $2::uuid))
      ORDER BY s.name`,
    [projectId, onlyGrantedTo],
  )).rows;
}

export async function listVersions(db: Queryable, secretId: string): Promise<Array<{ version: number; label: string | null; state: string; created_at: Date }>> {
  return (await db.query('SELECT version, label, state, created_at FROM secret_versions WHERE secret_id = $1 ORDER BY version', [secretId])).rows;
}

export async function findSecretId(db: Queryable, projectId: string, name: string): Promise<string | null> {
  return (await db.query<{ secret_id: string }>('SELECT secret_id FROM secrets WHERE project_id = $1 AND name = $2', [projectId, name])).rows[0]?.secret_id ?? null;
}

export async function hasSecretGrant(db: Queryable, identityId: string, secretId: string): Promise<boolean> {
  return (await db.query('SELECT 1 FROM secret_grants WHERE identity_id = $1 AND secret_id = $2', [identityId, secretId])).rowCount === 1;
}
