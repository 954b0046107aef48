import type { FastifyInstance } from 'fastify';
import * as z from 'zod';
import type { ControlPlaneMetrics } from '../../metrics/metrics.js';
import type { RootKeyHolder } from '../../vault/root-key-holder.js';
import type { RouteKit } from '../route-kit.js';

/** Health, readiness, metrics and the OpenAPI description: unsigned, answered while sealed. */
export function registerOpsRoutes(app: FastifyInstance, kit: RouteKit, deps: { root: RootKeyHolder; metrics: ControlPlaneMetrics; ready: () => Promise<boolean> }): void {
  app.get('/healthz', async () => ({ ok: true }));
  app.get('/readyz', async (_request, reply) => {
    const sealed = deps.root.isSealed();
    const ready = !sealed && (await deps.ready());
    return reply.status(ready ? 200 : 503).send({ ready, sealed });
  });
  app.get('/metrics', async (_request, reply) => {
    deps.metrics.sealed.set(deps.root.isSealed() ? 1 : 0);
    return reply.header('content-type', deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
  });
  app.get('/v1/openapi.json', async () => openApiDocument(kit));
}

function jsonSchema(schema: z.ZodType | undefined): unknown {
  return schema === undefined ? undefined : z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' });
}

/** Builds the OpenAPI 3.1 description from the same zod schemas that validate requests. */
export function openApiDocument(kit: RouteKit): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const spec of kit.specs) {
    const path = spec.url.replace(/:([A-Za-z]+)/g, '{$1}');
    const params = [...spec.url.matchAll(/:([A-Za-z]+)/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } }));
    paths[path] ??= {};
    paths[path][spec.method.toLowerCase()] = {
      summary: spec.summary,
      security: spec.auth === 'none' ? [] : [{ sikkerSignature: [] }],
      parameters: params,
      ...(spec.body === undefined ? {} : { requestBody: { required: true, content: { 'application/json': { schema: jsonSchema(spec.body) } } } }),
      responses: {
        [spec.response === undefined ? '204' : '200']: spec.response === undefined ? { description: 'done' } : { description: 'ok', content: { 'application/json': { schema: jsonSchema(spec.response) } } },
        default: { description: 'error: { error: { code, message } }' },
      },
    };
  }
  return {
    openapi: '3.1.0',
    info: { title: 'SikkerKey control plane', version: '1' },
    components: { securitySchemes: { sikkerSignature: { type: 'apiKey', in: 'header', name: 'x-sikker-signature', description: 'Ed25519 over method, path+query, body SHA-256, x-sikker-timestamp, x-sikker-nonce, x-sikker-identity' } } },
    paths,
  };
}
