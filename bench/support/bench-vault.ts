import { TestClient } from '../../test/support/test-client.js';

/** Rejects with "<what>: no answer within <ms> ms" if `promise` has not settled by then. */
export function withTimeout<T>(promise: Promise<T>, what: string, ms = 15_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Initialises a benchmark's fresh control plane (2-of-3 shares) and creates `project`; returns the admin client. */
export async function initBenchVault(baseUrl: string, project: string): Promise<TestClient> {
  const client = TestClient.fresh(baseUrl);
  const init = await withTimeout(client.ok('POST', '/v1/sys/init', { shares: 3, threshold: 2, publicKey: client.publicKeyText, name: 'bench' }), 'init');
  client.identityId = String(init.identityId);
  await withTimeout(client.ok('POST', '/v1/projects', { name: project }), 'create project');
  return client;
}
