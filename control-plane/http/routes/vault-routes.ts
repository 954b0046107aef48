import * as z from 'zod';
import * as api from '../../../shared/protocol/api.js';
import type { ProjectService } from '../../vault/project-service.js';
import type { SecretService } from '../../vault/secret-service.js';
import type { ProjectKeyRotation } from '../../vault/project-key-rotation.js';
import type { ProjectRow } from '../../vault/vault-dal.js';
import type { RouteKit } from '../route-kit.js';

const ProjectParams = z.object({ project: api.ProjectName });
const SecretParams = z.object({ project: api.ProjectName, name: api.SecretName });

function projectView(p: ProjectRow): z.infer<typeof api.Project> {
  return { projectId: p.project_id, name: p.name, keyVersion: p.current_key_version, createdAt: p.created_at.toISOString() };
}

/** Projects and secrets. */
export function registerVaultRoutes(kit: RouteKit, deps: { projects: ProjectService; secrets: SecretService; keyRotation: ProjectKeyRotation }): void {
  kit.add({
    method: 'POST', url: '/v1/projects', summary: 'Create a project (control-plane admin)', auth: 'identity',
    body: api.CreateProjectRequest, response: api.Project,
    handler: async ({ identity, sourceIp, body }) => projectView(await deps.projects.create(identity, sourceIp, body.name)),
  });
  kit.add({
    method: 'GET', url: '/v1/projects', summary: 'List the projects you can see', auth: 'identity', response: api.ProjectList,
    handler: async ({ identity }) => ({ projects: (await deps.projects.list(identity)).map(projectView) }),
  });
  kit.add({
    method: 'POST', url: '/v1/projects/:project/rotate-key', summary: 'Rotate the project master key (re-wraps data keys; resumable)', auth: 'identity',
    params: ProjectParams, response: api.RotateProjectKeyResponse,
    handler: async ({ identity, sourceIp, params }) => {
      const project = await deps.projects.resolve(identity, params.project);
      const result = await deps.keyRotation.rotate(identity, sourceIp, project);
      return { projectId: project.project_id, ...result };
    },
  });
  kit.add({
    method: 'GET', url: '/v1/projects/:project/secrets', summary: 'List secrets (readers and agents: only those granted)', auth: 'identity',
    params: ProjectParams, response: api.SecretList,
    handler: async ({ identity, params }) => ({
      secrets: (await deps.secrets.list(identity, params.project)).map((s) => ({ ...s, createdAt: s.createdAt.toISOString() })),
    }),
  });
  kit.add({
    method: 'PUT', url: '/v1/projects/:project/secrets/:name', summary: 'Store a new version of a secret', auth: 'identity',
    params: SecretParams, body: api.PutSecretRequest, response: api.PutSecretResponse,
    handler: async ({ identity, sourceIp, params, body }) => {
      const result = await deps.secrets.put(identity, sourceIp, params.project, params.name, body.value, body.label);
      return { ...result, label: body.label };
    },
  });
  kit.add({
    method: 'GET', url: '/v1/projects/:project/secrets/:name', summary: 'Read a secret version (audited, fail-closed)', auth: 'identity',
    params: SecretParams, query: api.ReadSecretQuery, response: api.ReadSecretResponse,
    handler: async ({ identity, sourceIp, params, query }) => {
      const read = await deps.secrets.read(identity, sourceIp, params.project, params.name, query);
      return { project: params.project, name: params.name, ...read };
    },
  });
  kit.add({
    method: 'GET', url: '/v1/projects/:project/secrets/:name/versions', summary: 'List the versions of a secret (no values)', auth: 'identity',
    params: SecretParams, response: api.SecretVersions,
    handler: async ({ identity, params }) => {
      const result = await deps.secrets.versions(identity, params.project, params.name);
      return { secretId: result.secretId, versions: result.versions.map((v) => ({ ...v, createdAt: v.createdAt.toISOString() })) } as z.infer<typeof api.SecretVersions>;
    },
  });
  kit.add({
    method: 'POST', url: '/v1/projects/:project/secrets/:name/grants', summary: 'Let an identity read this secret', auth: 'identity',
    params: SecretParams, body: api.GrantSecretRequest,
    handler: async ({ identity, sourceIp, params, body }) => {
      await deps.secrets.grant(identity, sourceIp, params.project, params.name, body.identityId);
      return undefined;
    },
  });
}
