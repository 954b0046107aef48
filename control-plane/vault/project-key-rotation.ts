import type { Pool } from 'pg';
import type { Logger } from '../../shared/logging/logger.js';
import type { AuditChainWriter } from '../audit/audit-appender.js';
import { requireProjectAction } from '../auth/authorize.js';
import { withTransaction } from '../db/transaction.js';
import type { AuthIdentity } from '../identity/identity-types.js';
import type { Keyring } from './keyring.js';
import type { ProjectRow } from './vault-dal.js';

const DEFAULT_BATCH = 200;

export interface RotationHooks {
  /** Secrets re-wrapped per transaction. */
  batchSize?: number;
  /** Called after each committed batch; tests throw here to simulate a crash halfway. */
  afterBatch?: (rewrappedSoFar: number) => void;
}

/**
 * Project master-key rotation: a new key version becomes current for new secrets at
 * once; existing data keys are re-wrapped in batches (values untouched). Each batch
 * commits on its own, and a secret's row records its key version, so a rotation
 * killed halfway resumes where it stopped (running the command again, or at unseal)
 * instead of creating yet another version.
 */
export class ProjectKeyRotation {
  constructor(private readonly pool: Pool, private readonly keyring: Keyring, private readonly chain: AuditChainWriter, private readonly logger: Logger) {}

  async rotate(caller: AuthIdentity, sourceIp: string, project: ProjectRow, hooks: RotationHooks = {}): Promise<{ keyVersion: number; rewrapped: number }> {
    requireProjectAction(caller, 'project.rotate-key', project.project_id);
    const keyVersion = await this.startOrResume(caller.identityId, sourceIp, project.project_id);
    const rewrapped = await this.rewrapAll(project.project_id, keyVersion, hooks);
    await withTransaction(this.pool, this.logger, (client) => this.chain.append(client, [{
      identityId: caller.identityId, sourceIp, action: 'project.key-rotate', projectId: project.project_id, outcome: 'success', detail: { keyVersion, rewrapped },
    }]));
    return { keyVersion, rewrapped };
  }

  /** Finishes every rotation left halfway (called after unseal). Returns the projects resumed. */
  async resumeUnfinished(): Promise<string[]> {
    const rows = (await this.pool.query<{ project_id: string; current_key_version: number }>(
      `SELECT DISTINCT p.project_id, p.current_key_version FROM projects p JOIN secrets s ON s.project_id = p.project_id
        WHERE s.data_key_version <> p.current_key_version`,
    )).rows;
    for (const row of rows) {
      const count = await this.rewrapAll(row.project_id, row.current_key_version, {});
      this.logger.info({ projectId: row.project_id, rewrapped: count }, 'resumed an unfinished project key rotation');
    }
    return rows.map((r) => r.project_id);
  }

  /** Creates version N+1, unless secrets still await re-wrapping to the current version (a resume). */
  private async startOrResume(identityId: string, sourceIp: string, projectId: string): Promise<number> {
    return withTransaction(this.pool, this.logger, async (client) => {
      const project = (await client.query<{ current_key_version: number }>('SELECT current_key_version FROM projects WHERE project_id = $1 FOR UPDATE', [projectId])).rows[0];
      const current = project?.current_key_version ?? 1;
      const behind = await client.query('SELECT 1 FROM secrets WHERE project_id = $1 AND data_key_version <> $2 LIMIT 1', [projectId, current]);
      if (behind.rowCount !== 0) return current;
      const next = current + 1;
      await client.query('INSERT INTO project_keys (project_id, key_version, wrapped_key) VALUES ($1, $2, $3)', [projectId, next, this.keyring.newWrappedProjectKey(projectId, next)]);
      await client.query('UPDATE projects SET current_key_version = $2 WHERE project_id = $1', [projectId, next]);
      await this.chain.append(client, [{ identityId, sourceIp, action: 'project.key-rotate-start', projectId, outcome: 'success', detail: { keyVersion: next } }]);
      return next;
    });
  }

  private async rewrapAll(projectId: string, toVersion: number, hooks: RotationHooks): Promise<number> {
    let total = 0;
    for (;;) {
      const done = await withTransaction(this.pool, this.logger, async (client) => {
        const rows = (await client.query<{ secret_id: string; wrapped_data_key: Buffer }>(
          'SELECT secret_id, wrapped_data_key FROM secrets WHERE project_id = $1 AND data_key_version <> $2 LIMIT $3 FOR UPDATE',
          [projectId, toVersion, hooks.batchSize ?? DEFAULT_BATCH],
        )).rows;
        for (const row of rows) {
          const wrapped = await this.keyring.rewrapDataKey(client, projectId, row.secret_id, row.wrapped_data_key, toVersion);
          await client.query('UPDATE secrets SET wrapped_data_key = $2, data_key_version = $3 WHERE secret_id = $1', [row.secret_id, wrapped, toVersion]);
        }
        return rows.length;
      });
      total += done;
      if (done === 0) return total;
      hooks.afterBatch?.(total);
    }
  }
}
