import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import type { Logger } from '../../shared/logging/logger.js';
import type { AuditChainWriter } from '../audit/audit-appender.js';
import { canSeeProject, isGlobalAdmin, requireGlobalAdmin } from '../auth/authorize.js';
import { withTransaction } from '../db/transaction.js';
import type { AuthIdentity } from '../identity/identity-types.js';
import type { Keyring } from './keyring.js';
import { findProjectByName, listProjects, type ProjectRow } from './vault-dal.js';

/** Projects: each owns a versioned master key wrapped under the root key. */
export class ProjectService {
  constructor(private readonly pool: Pool, private readonly keyring: Keyring, private readonly chain: AuditChainWriter, private readonly logger: Logger) {}

  async create(caller: AuthIdentity, sourceIp: string, name: string): Promise<ProjectRow> {
    requireGlobalAdmin(caller, 'create projects');
    const projectId = randomUUID();
    const wrapped = this.keyring.newWrappedProjectKey(projectId, 1);
    return withTransaction(this.pool, this.logger, async (client) => {
      const inserted = await client.query<ProjectRow>(
        'INSERT INTO projects (project_id, name, current_key_version) VALUES ($1, $2, 1) ON CONFLICT (name) DO NOTHING RETURNING *', [projectId, name],
      );
      const row = inserted.rows[0];
      if (row === undefined) throw new SikkerError('ERR_CONFLICT', `project "${name}" already exists`);
      await client.query('INSERT INTO project_keys (project_id, key_version, wrapped_key) VALUES ($1, 1, $2)', [projectId, wrapped]);
      await this.chain.append(client, [{ identityId: caller.identityId, sourceIp, action: 'project.create', projectId, outcome: 'success', detail: { name } }]);
      return row;
    });
  }

  /** Admins see every project; others the projects they hold a grant in. */
  async list(caller: AuthIdentity): Promise<ProjectRow[]> {
    const all = await listProjects(this.pool);
    if (isGlobalAdmin(caller)) return all;
    const mine = new Set(caller.grants.map((g) => g.projectId));
    return all.filter((p) => mine.has(p.project_id));
  }

  /** Resolves a name the caller may know about; a project the caller has no grant in is "not found". */
  async resolve(caller: AuthIdentity, name: string): Promise<ProjectRow> {
    const project = await findProjectByName(this.pool, name);
    if (project === null || !canSeeProject(caller, project.project_id)) {
      throw new SikkerError('ERR_NOT_FOUND', `no project "${name}" that you can see`);
    }
    return project;
  }
}
