import * as z from 'zod';
import * as api from '../../../shared/protocol/api.js';
import { SikkerError } from '../../../shared/errors/sikker-error.js';
import type { IdentityService } from '../../identity/identity-service.js';
import type { AuthIdentity } from '../../identity/identity-types.js';
import type { ProjectService } from '../../vault/project-service.js';
import type { RouteKit } from '../route-kit.js';

export function identityView(i: AuthIdentity & { createdAt: Date }): z.infer<typeof api.Identity> {
  return {
    identityId: i.identityId, name: i.name, publicKey: i.publicKeyText, disabled: i.disabled, cidrs: i.cidrs,
    grants: i.grants.map((g) => ({ project: g.projectName, role: g.role })), createdAt: i.createdAt.toISOString(),
  };
}

/** Join tokens, enrollment, listing, disabling, re-keying. */
export function registerIdentityRoutes(kit: RouteKit, deps: { identities: IdentityService; projects: ProjectService; serverPublicKey: () => Promise<string | null> }): void {
  kit.add({
    method: 'POST', url: '/v1/tokens', summary: 'Create a one-time join token for a project and role', auth: 'identity',
    body: api.CreateTokenRequest, response: api.CreateTokenResponse,
    handler: async ({ identity, sourceIp, body }) => {
      const project = await deps.projects.resolve(identity, body.project);
      const { token, expiresAt } = await deps.identities.createToken(identity, sourceIp, { projectId: project.project_id, role: body.role, ttlSeconds: body.ttlSeconds, cidrs: body.cidrs, name: body.name });
      return { token, expiresAt: expiresAt.toISOString() };
    },
  });
  kit.add({
    method: 'POST', url: '/v1/enroll', summary: 'Redeem a join token, registering the signing key', auth: 'enrolling',
    body: api.EnrollRequest, response: api.EnrollResponse,
    handler: async ({ body, sourceIp }) => {
      const result = await deps.identities.enroll({ ...body, sourceIp });
      const serverPublicKey = await deps.serverPublicKey();
      if (serverPublicKey === null) throw new SikkerError('ERR_VAULT_NOT_INITIALISED', 'the vault is not initialised');
      return { identityId: result.identityId, project: result.projectName, role: result.role, serverPublicKey };
    },
  });
  kit.add({
    method: 'GET', url: '/v1/whoami', summary: 'The calling identity', auth: 'identity', response: api.WhoAmI,
    handler: async ({ identity }) => identityView(await deps.identities.get(identity.identityId)),
  });
  kit.add({
    method: 'GET', url: '/v1/identities', summary: 'List identities (control-plane admin)', auth: 'identity', response: api.IdentityList,
    handler: async ({ identity }) => ({ identities: (await deps.identities.list(identity)).map(identityView) }),
  });
  kit.add({
    method: 'POST', url: '/v1/identities/:identityId/disable', summary: 'Disable an identity (control-plane admin)', auth: 'identity',
    params: z.object({ identityId: api.Uuid }), response: api.Identity,
    handler: async ({ identity, sourceIp, params }) => identityView(await deps.identities.disable(identity, sourceIp, params.identityId)),
  });
  kit.add({
    method: 'POST', url: '/v1/identities/self/rekey', summary: 'Replace the calling identity\'s key (signed with the old key, proof by the new)', auth: 'identity',
    body: api.RekeyRequest, response: api.Identity,
    handler: async ({ identity, sourceIp, nonce, body }) => identityView(await deps.identities.rekey(identity, sourceIp, nonce, body.publicKey, body.proof)),
  });
}
