import * as z from 'zod';
import type { Pool } from 'pg';
import * as api from '../../../shared/protocol/api.js';
import { listAuditRecords, type AuditFilter } from '../../audit/audit-dal.js';
import { verifyAuditChain } from '../../audit/audit-verifier.js';
import { isGlobalAdmin, requireGlobalAdmin, requireProjectAction } from '../../auth/authorize.js';
import { SikkerError } from '../../../shared/errors/sikker-error.js';
import type { ProjectService } from '../../vault/project-service.js';
import { findSecretId } from '../../vault/vault-dal.js';
import type { RouteKit } from '../route-kit.js';

/** Audit listing (admins: all; project roles with audit.read: their project) and chain verification. */
export function registerAuditRoutes(kit: RouteKit, deps: { pool: Pool; projects: ProjectService }): void {
  kit.add({
    method: 'GET', url: '/v1/audit', summary: 'List audit records, newest first, with filters', auth: 'identity',
    query: api.AuditQuery, response: api.AuditList,
    handler: async ({ identity, query }) => {
      const filter: AuditFilter = { limit: query.limit };
      if (query.project !== undefined) {
        const project = await deps.projects.resolve(identity, query.project);
        requireProjectAction(identity, 'audit.read', project.project_id);
        filter.projectId = project.project_id;
        if (query.secret !== undefined) {
          const secretId = await findSecretId(deps.pool, project.project_id, query.secret);
          if (secretId === null) throw new SikkerError('ERR_NOT_FOUND', `no secret "${query.secret}" in project "${query.project}"`);
          filter.secretId = secretId;
        }
      } else {
        if (query.secret !== undefined) throw new SikkerError('ERR_VALIDATION', 'query.secret needs query.project');
        requireGlobalAdmin(identity, 'list audit records of every project');
      }
      if (query.identity !== undefined) filter.identityId = query.identity;
      if (query.version !== undefined) filter.version = query.version;
      if (query.action !== undefined) filter.action = query.action;
      if (query.from !== undefined) filter.from = new Date(query.from);
      if (query.to !== undefined) filter.to = new Date(query.to);
      const records = await listAuditRecords(deps.pool, filter);
      return { records: records.map((r) => ({
        seq: r.seq, occurredAt: r.occurredAt.toISOString(), identityId: r.identityId, sourceIp: r.sourceIp, action: r.action,
        projectId: r.projectId, secretId: r.secretId, secretVersion: r.secretVersion, outcome: r.outcome, detail: r.detail,
        identityName: r.identityName, projectName: r.projectName, secretName: r.secretName,
      })) };
    },
  });
  kit.add({
    method: 'POST', url: '/v1/audit/verify', summary: 'Verify the audit hash chain and its signed checkpoints', auth: 'identity',
    body: z.object({}).strict().optional(), response: api.AuditVerifyResponse,
    handler: async ({ identity }) => {
      if (!isGlobalAdmin(identity)) throw new SikkerError('ERR_AUTH_FORBIDDEN', 'only a control-plane admin may verify the audit log');
      return verifyAuditChain(deps.pool);
    },
  });
}
