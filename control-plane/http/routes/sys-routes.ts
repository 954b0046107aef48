import * as z from 'zod';
import * as api from '../../../shared/protocol/api.js';
import type { SealService } from '../../vault/seal-service.js';
import type { ProjectKeyRotation } from '../../vault/project-key-rotation.js';
import { requireGlobalAdmin } from '../../auth/authorize.js';
import { SikkerError } from '../../../shared/errors/sikker-error.js';
import { isIP } from 'node:net';
import type { RouteKit } from '../route-kit.js';
import type { Logger } from '../../../shared/logging/logger.js';

/** Initialisation, status, unseal and seal. */
export function registerSysRoutes(kit: RouteKit, deps: { seal: SealService; keyRotation: ProjectKeyRotation; logger: Logger; allowRemoteInit: boolean; announceSeal: () => Promise<void> }): void {
  kit.add({
    method: 'GET', url: '/v1/sys/status', summary: 'Vault status (initialised, sealed, unseal progress)', auth: 'none', sealedOk: true,
    response: api.StatusResponse,
    handler: () => deps.seal.status(),
  });
  kit.add({
    method: 'POST', url: '/v1/sys/init', summary: 'Initialise the vault; the signing key becomes the first admin', auth: 'enrolling', sealedOk: true,
    body: api.InitRequest, response: api.InitResponse,
    handler: ({ body, sourceIp }) => {
      if (!deps.allowRemoteInit && !isLoopback(sourceIp)) {
        throw new SikkerError('ERR_AUTH_SOURCE_DENIED', 'init is accepted from the control plane\'s own host only (or set SIKKER_ALLOW_REMOTE_INIT=true)');
      }
      return deps.seal.init({ ...body, sourceIp });
    },
  });
  kit.add({
    method: 'POST', url: '/v1/sys/unseal', summary: 'Give one unseal share', auth: 'none', sealedOk: true,
    body: api.UnsealRequest, response: api.StatusResponse,
    handler: async ({ body, sourceIp }) => {
      const wasSealed = (await deps.seal.status()).sealed;
      const status = await deps.seal.unseal(body.share, sourceIp);
      if (wasSealed && !status.sealed) {
        // Finish any project-key rotation a crash interrupted; failures are logged, not fatal.
        deps.keyRotation.resumeUnfinished().catch((err: unknown) => deps.logger.error({ err }, 'resuming project key rotations failed'));
      }
      return status;
    },
  });
  kit.add({
    method: 'POST', url: '/v1/sys/seal', summary: 'Seal the vault now (drops the root key from memory)', auth: 'identity',
    body: z.object({}).strict().optional(), response: api.StatusResponse,
    handler: async ({ identity, sourceIp }) => {
      requireGlobalAdmin(identity, 'seal the vault');
      const status = await deps.seal.seal(identity.identityId, sourceIp);
      await deps.announceSeal(); // every other replica drops its key too
      return status;
    },
  });
}

function isLoopback(ip: string): boolean {
  const v4 = ip.startsWith('::ffff:') ? ip.slice(7) : ip;
  return ip === '::1' || (isIP(v4) === 4 && v4.startsWith('127.'));
}
