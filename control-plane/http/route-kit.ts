import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodType } from 'zod';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { importPublicKey } from '../../shared/signing/ed25519-keys.js';
import type { AuditBatcher } from '../audit/audit-batcher.js';
import type { RequestAuthenticator } from '../auth/request-authenticator.js';
import type { AuthIdentity } from '../identity/identity-types.js';
import type { RootKeyHolder } from '../vault/root-key-holder.js';
import type { Logger } from '../../shared/logging/logger.js';

export type AuthMode = 'none' | 'identity' | 'enrolling';

export interface RouteContext<B, Q, P> {
  body: B;
  query: Q;
  params: P;
  sourceIp: string;
  identity: AuthIdentity;
  nonce: string;
}

export interface RouteSpec<B, Q, P, R> {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  url: string;
  summary: string;
  auth: AuthMode;
  /** Routes that answer while the vault is sealed: health, status, unseal, init. */
  sealedOk?: boolean;
  body?: ZodType<B>;
  query?: ZodType<Q>;
  params?: ZodType<P>;
  response?: ZodType<R>;
  handler: (ctx: RouteContext<B, Q, P>) => Promise<R | undefined>;
}

export interface RouteKitDeps {
  authenticator: RequestAuthenticator;
  root: RootKeyHolder;
  audit: AuditBatcher;
  logger: Logger;
}

declare module 'fastify' {
  interface FastifyRequest {
    rawBody?: Buffer;
  }
}

function parse<T>(schema: ZodType<T> | undefined, value: unknown, where: string): T {
  if (schema === undefined) return undefined as T;
  const result = schema.safeParse(value ?? {});
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${[where, ...i.path].join('.')}: ${i.message}`).join('; ');
    throw new SikkerError('ERR_VALIDATION', problems.slice(0, 500));
  }
  return result.data;
}

/** Registers routes with one pipeline: sealed gate → signature → validation → handler → audit of auth failures. */
export class RouteKit {
  readonly specs: Array<RouteSpec<any, any, any, any>> = [];

  constructor(private readonly app: FastifyInstance, private readonly deps: RouteKitDeps) {}

  add<B, Q, P, R>(spec: RouteSpec<B, Q, P, R>): void {
    this.specs.push(spec);
    this.app.route({
      method: spec.method,
      url: spec.url,
      handler: async (request, reply) => {
        if (!spec.sealedOk && this.deps.root.isSealed()) {
          throw new SikkerError('ERR_VAULT_SEALED', 'the vault is sealed; only health, status and unseal are answered', { retryable: true });
        }
        const ctx = await this.context(spec, request);
        let result: R | undefined;
        try {
          result = await spec.handler(ctx);
        } catch (err) {
          if (err instanceof SikkerError && err.code === 'ERR_AUTH_FORBIDDEN') await this.recordRefusal(request, ctx.identity?.identityId ?? null, err.code, null);
          throw err;
        }
        if (result === undefined) return reply.status(204).send();
        return reply.status(200).send(spec.response === undefined ? result : spec.response.parse(result));
      },
    });
  }

  private async context<B, Q, P, R>(spec: RouteSpec<B, Q, P, R>, request: FastifyRequest): Promise<RouteContext<B, Q, P>> {
    const sourceIp = request.ip;
    const signed = { method: request.method, url: request.url, headers: request.headers, rawBody: request.rawBody ?? Buffer.alloc(0), sourceIp };
    let identity = undefined as unknown as AuthIdentity;
    let nonce = '';
    if (spec.auth === 'identity') {
      ({ identity, nonce } = await this.audited(request, () => this.deps.authenticator.authenticate(signed)));
    }
    const params = parse(spec.params, request.params, 'params');
    const query = parse(spec.query, request.query, 'query');
    const body = parse(spec.body, request.body, 'body');
    if (spec.auth === 'enrolling') {
      const publicKey = (body as { publicKey?: unknown }).publicKey;
      if (typeof publicKey !== 'string') throw new SikkerError('ERR_VALIDATION', 'body.publicKey is required');
      await this.audited(request, () => this.deps.authenticator.authenticateEnrolling(signed, importPublicKey(publicKey), publicKey));
    }
    return { body, query, params, sourceIp, identity, nonce };
  }

  /**
   * Runs an authentication step; a refusal is audited (best effort: the refusal stands
   * either way). Requests that claim no identity at all are not recorded one by one:
   * they prove nothing and would let anyone flood the log.
   */
  private async audited<T>(request: FastifyRequest, step: () => Promise<T>): Promise<T> {
    try {
      return await step();
    } catch (err) {
      const claimed = request.headers['x-sikker-identity'];
      if (err instanceof SikkerError && typeof claimed === 'string') {
        await this.recordRefusal(request, null, err.code, claimed);
      }
      throw err;
    }
  }

  /** One `auth.failure` or `auth.forbidden` record; an unverified claim goes in detail, never in identity_id. */
  private async recordRefusal(request: FastifyRequest, identityId: string | null, code: string, claimed: string | null): Promise<void> {
    await this.deps.audit.append({
      identityId, sourceIp: request.ip, action: code === 'ERR_AUTH_FORBIDDEN' ? 'auth.forbidden' : 'auth.failure', outcome: 'denied',
      detail: { code, method: request.method, path: (request.url.split('?')[0] ?? '').slice(0, 200), ...(claimed === null ? {} : { claimedIdentity: claimed.slice(0, 64).toLowerCase() }) },
    }).catch((auditErr: unknown) => this.deps.logger.error({ err: auditErr }, 'could not audit a refused request'));
  }
}
