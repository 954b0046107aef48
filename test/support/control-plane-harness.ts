import { Writable } from 'node:stream';
import { createControlPlane, type ControlPlane } from '../../control-plane/app.js';
import { loadConfig, type ControlPlaneConfig } from '../../control-plane/config/config.js';
import { createLogger } from '../../shared/logging/logger.js';
import { cleanupRedisPrefix, createTestDatabase, SHARED_REDIS_URL, uniqueRedisPrefix, type TestDatabase } from './databases.js';
import { TestClient } from './test-client.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** Everything a control-plane log line contained, for canary checks. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.lines.push(chunk.toString('utf8'));
    done();
  }
  text(): string {
    return this.lines.join('');
  }
}

export interface HarnessOptions {
  label: string;
  env?: Record<string, string>;
  /** Reuse a database (for restart tests); otherwise a new one is created and dropped at teardown. */
  database?: TestDatabase;
  redisPrefix?: string;
  /** Initialise and keep the admin client (default true). */
  init?: boolean;
}

export interface Harness {
  plane: ControlPlane;
  config: ControlPlaneConfig;
  baseUrl: string;
  db: TestDatabase;
  redisPrefix: string;
  logs: LogCapture;
  admin: TestClient;
  shares: string[];
  /** A new client with a fresh key, not enrolled. */
  newClient(): TestClient;
  /** Creates a join token and enrolls a fresh client with it. */
  enroll(project: string, role: string, extra?: Record<string, unknown>): Promise<TestClient>;
  stop(): Promise<void>;
}

/**
 * Starts an in-process control plane on a fresh database and Redis prefix, listening
 * on an ephemeral loopback port, initialised (2-of-3 shares) with an admin client.
 */
export async function startHarness(t: Teardown, options: HarnessOptions): Promise<Harness> {
  const db = options.database ?? (await createTestDatabase(options.label));
  const redisPrefix = options.redisPrefix ?? uniqueRedisPrefix(options.label);
  const config = loadConfig({
    SIKKER_DATABASE_URL: db.url,
    SIKKER_REDIS_URL: SHARED_REDIS_URL,
    SIKKER_REDIS_PREFIX: redisPrefix,
    SIKKER_LISTEN: '127.0.0.1:0',
    SIKKER_LOG_LEVEL: 'debug',
    SIKKER_DB_POOL_SIZE: '8',
    ...options.env,
  });
  const logs = new LogCapture();
  const plane = await createControlPlane(config, createLogger({ name: 'test-cp', level: 'debug', destination: logs }), { defaultMetrics: false });
  const address = await plane.listen();
  const baseUrl = `http://127.0.0.1:${address.port}`;
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await plane.close();
  };
  t.teardown(async () => {
    await stop();
    if (options.database === undefined) await db.drop();
    if (options.redisPrefix === undefined) await cleanupRedisPrefix(SHARED_REDIS_URL, redisPrefix);
  });
  const admin = TestClient.fresh(baseUrl);
  let shares: string[] = [];
  if (options.init ?? true) {
    const init = await admin.ok('POST', '/v1/sys/init', { shares: 3, threshold: 2, publicKey: admin.publicKeyText, name: 'admin' });
    admin.identityId = init.identityId;
    shares = init.shares;
  }
  return {
    plane, config, baseUrl, db, redisPrefix, logs, admin, shares, stop,
    newClient: () => TestClient.fresh(baseUrl),
    async enroll(project, role, extra = {}) {
      const { token } = await admin.ok('POST', '/v1/tokens', { project, role, ...extra });
      const client = TestClient.fresh(baseUrl);
      const enrolled = await client.ok('POST', '/v1/enroll', { token, publicKey: client.publicKeyText, name: `${role}-client` });
      client.identityId = enrolled.identityId;
      return client;
    },
  };
}
