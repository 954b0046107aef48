import Fastify, { LogController, type FastifyInstance } from 'fastify';
import pg from 'pg';
import { Redis } from 'ioredis';
import { SikkerError } from '../shared/errors/sikker-error.js';
import type { Logger } from '../shared/logging/logger.js';
import { AuditChainWriter } from './audit/audit-appender.js';
import { AuditBatcher } from './audit/audit-batcher.js';
import { NonceStore } from './auth/nonce-store.js';
import { RequestAuthenticator } from './auth/request-authenticator.js';
import type { ControlPlaneConfig } from './config/config.js';
import { migrate } from './db/migrate.js';
import { makeErrorHandler } from './http/error-mapping.js';
import { RouteKit } from './http/route-kit.js';
import { registerAuditRoutes } from './http/routes/audit-routes.js';
import { registerIdentityRoutes } from './http/routes/identity-routes.js';
import { registerOpsRoutes } from './http/routes/ops-routes.js';
import { registerSysRoutes } from './http/routes/sys-routes.js';
import { registerVaultRoutes } from './http/routes/vault-routes.js';
import { IdentityService } from './identity/identity-service.js';
import { CommandBus } from './hub/command-bus.js';
import { CommandService } from './hub/command-service.js';
import { HubServer } from './hub/hub-server.js';
import { registerAgentRoutes } from './http/routes/agent-routes.js';
import { ControlPlaneMetrics } from './metrics/metrics.js';
import { Keyring } from './vault/keyring.js';
import { ProjectKeyRotation } from './vault/project-key-rotation.js';
import { ProjectService } from './vault/project-service.js';
import { RootKeyHolder } from './vault/root-key-holder.js';
import { SealService } from './vault/seal-service.js';
import { SecretService } from './vault/secret-service.js';
import { registerRotationRoutes } from './http/routes/rotation-routes.js';
import { registerStatusRoutes } from './http/routes/status-routes.js';
import { StatusService } from './status/status-service.js';
import { registerLeakRoutes } from './http/routes/leak-routes.js';
import { FingerprintService } from './leak/fingerprint-service.js';
import { LeakService } from './leak/leak-service.js';
import { Alerter } from './rotation/alerter.js';
import { PolicyService } from './rotation/policy-service.js';
import { runWaitingFor } from './rotation/rotation-dal.js';
import { RotationEngine } from './rotation/rotation-engine.js';
import { RotationScheduler } from './rotation/rotation-scheduler.js';
import { RotationService } from './rotation/rotation-service.js';
import { TargetService } from './rotation/target-service.js';
import { VersionStore } from './vault/version-store.js';

const BODY_LIMIT = 256 * 1024;

export interface ControlPlane {
  app: FastifyInstance;
  pool: pg.Pool;
  redis: Redis;
  root: RootKeyHolder;
  hub: HubServer;
  services: {
    seal: SealService; identities: IdentityService; projects: ProjectService; secrets: SecretService; keyRotation: ProjectKeyRotation; audit: AuditBatcher; commands: CommandService;
    targets: TargetService; policies: PolicyService; rotations: RotationService; engine: RotationEngine; scheduler: RotationScheduler; alerter: Alerter;
    versions: VersionStore;
  };
  /** Starts listening; resolves with the bound address. */
  listen(): Promise<{ host: string; port: number }>;
  /** Stops taking requests, drains, seals (zeroes keys) and closes connections. */
  close(): Promise<void>;
}

/** Gives Redis a few seconds to connect so the first requests are not refused; starts anyway (refusing signed requests) if it does not. */
async function waitForRedis(redis: Redis, logger: Logger, timeoutMs = 5000): Promise<void> {
  if (redis.status === 'ready') return;
  const ready = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    redis.once('ready', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
  if (!ready) logger.error('Redis is not reachable; signed requests are refused until it is');
}

/** Wires the control plane together (composition root). Applies migrations; starts sealed. */
export async function createControlPlane(config: ControlPlaneConfig, logger: Logger, options: { defaultMetrics?: boolean } = {}): Promise<ControlPlane> {
  // Nothing may hang forever: a stuck session holding the audit head must turn into refusals, not a pile-up.
  const pool = new pg.Pool({
    connectionString: config.databaseUrl, max: config.dbPoolSize, connectionTimeoutMillis: 5000,
    statement_timeout: 15_000, lock_timeout: 5000, idle_in_transaction_session_timeout: 30_000,
  });
  pool.on('error', (err) => logger.error({ err }, 'idle PostgreSQL connection failed'));
  try {
    await migrate(pool);
  } catch (err) {
    await pool.end();
    throw err instanceof SikkerError ? err : new SikkerError('ERR_CONFIG_INVALID', 'cannot reach or migrate the PostgreSQL database (SIKKER_DATABASE_URL)', { cause: err });
  }
  // Fail fast, never queue: a nonce check that cannot reach Redis must refuse at once.
  const redis = new Redis(config.redisUrl, { enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: 2000, lazyConnect: false, enableAutoPipelining: true });
  redis.on('error', (err: Error) => logger.warn({ err: { message: err.message } }, 'Redis connection problem (signed requests are refused meanwhile)'));
  await waitForRedis(redis, logger);

  const root = new RootKeyHolder();
  const keyring = new Keyring(root);
  const chain = new AuditChainWriter(() => root.signer(), config.auditCheckpointEvery);
  // The group commit gets connections of its own, so it never queues behind the reads it gates.
  const auditPool = new pg.Pool({ connectionString: config.databaseUrl, max: 2, connectionTimeoutMillis: 5000, statement_timeout: 15_000, lock_timeout: 5000 });
  auditPool.on('error', (err) => logger.error({ err }, 'idle PostgreSQL connection (audit) failed'));
  const audit = new AuditBatcher(auditPool, chain, logger);
  const seal = new SealService(pool, root, audit, chain, logger);
  const identities = new IdentityService(pool, chain, logger);
  const projects = new ProjectService(pool, keyring, chain, logger);
  const versionStore = new VersionStore(keyring);
  const secrets = new SecretService(pool, keyring, projects, audit, chain, logger, versionStore);
  const keyRotation = new ProjectKeyRotation(pool, keyring, chain, logger);
  const nonces = new NonceStore(redis, config.redisPrefix, config.clockSkewMs);
  const authenticator = new RequestAuthenticator(identities, nonces, config.clockSkewMs);
  const metrics = new ControlPlaneMetrics(options);
  const staleSeconds = Math.ceil((config.agentHeartbeatMs * 3) / 1000);
  const commands = new CommandService(pool, secrets, chain, root, logger, staleSeconds);
  const hub = new HubServer({ pool, authenticator, audit, chain, root, commands, logger }, { replicaId: config.replicaId, heartbeatMs: config.agentHeartbeatMs, trustedProxies: config.trustedProxies });
  root.onSeal(() => hub.dropAllForSeal());
  const bus = new CommandBus(redis, config.redisUrl, config.redisPrefix, logger, {
    onDeliver: (agentId) => hub.deliverIfHere(agentId),
    onDisable: (identityId) => hub.dropIfHere(identityId),
    onSeal: () => {
      if (!root.isSealed()) {
        logger.warn('sealed by another replica');
        root.seal();
      }
    },
  });
  identities.onDisabled((identityId) => void bus.announceDisabled(identityId));
  // An agent held by this replica gets its command at once; otherwise Redis tells the replica that holds it.
  commands.onIssued((agentId) => {
    if (hub.isConnected(agentId)) hub.deliverIfHere(agentId);
    else void bus.announceCommand(agentId);
  });

  const alerter = new Alerter(config.rotation.alertWebhookUrl, logger);
  const engine = new RotationEngine(pool, versionStore, commands, chain, root, alerter, logger,
    { commandTimeoutMs: config.rotation.commandTimeoutMs, crashAt: config.rotation.crashAt },
    { claimWithin: (client, agentId) => hub.claimWithin(client, agentId), claimTicket: (agentId) => hub.claimTicket(agentId), sendClaimed: (claim) => hub.sendClaimed(claim), announce: (agentId) => commands.announce(agentId) });
  const targets = new TargetService(pool, projects, versionStore, commands, chain, logger, staleSeconds);
  const policies = new PolicyService(pool, targets, chain, logger);
  const rotations = new RotationService(pool, projects, targets, engine, logger);
  const scheduler = new RotationScheduler(pool, chain, engine, root, logger, { redisUrl: config.redisUrl, redisPrefix: config.redisPrefix, sweepMs: config.rotation.sweepMs },
    () => versionStore.backfillFingerprints(pool, 100));
  // A result a run of this replica waits for is stored by that run's next step, which starts
  // as soon as the frame is read; any other result is stored by the hub and then advances the
  // run waiting for it, if any (the sweep is the last safety net).
  hub.setResultClaimer((agentId, result, origin) => engine.resultArrived(agentId, result, origin));
  hub.onCommandFinished((commandId) => {
    void (async () => {
      const runId = await runWaitingFor(pool, commandId);
      if (runId !== null) await engine.advance(runId);
      else await targets.recordPreflightResult(commandId);
    })().catch((err: unknown) => logger.warn({ err, commandId }, 'could not act on a finished command; the sweep will'));
  });

  const app = Fastify({
    loggerInstance: logger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: BODY_LIMIT,
    exposeHeadRoutes: false,
    routerOptions: { maxParamLength: 200 },
    trustProxy: config.trustedProxies.length > 0 ? config.trustedProxies : false,
    ...(config.tls === null ? {} : { https: { cert: config.tls.cert, key: config.tls.key, minVersion: 'TLSv1.2' as const } }),
  }) as unknown as FastifyInstance;
  // Only JSON bodies exist here, and only this parser records the raw bytes the signature covers.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit: BODY_LIMIT }, (request, body, done) => {
    const raw = body as Buffer;
    request.rawBody = raw;
    if (raw.length === 0) return done(null, undefined);
    try {
      done(null, JSON.parse(raw.toString('utf8')));
    } catch {
      done(new SikkerError('ERR_VALIDATION', 'request body is not valid JSON'), undefined);
    }
  });
  app.setErrorHandler(makeErrorHandler(logger));
  app.setNotFoundHandler((_request, reply) => {
    void reply.status(404).send({ error: { code: 'ERR_NOT_FOUND', message: 'no such endpoint' } });
  });
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unknown';
    metrics.requests.inc({ method: request.method, route, status: String(reply.statusCode) });
    metrics.requestSeconds.observe({ route }, reply.elapsedTime / 1000);
  });

  // Status (sikker status, GET /v1/status) and its gauges, read on each /metrics scrape; no vault needed.
  const status = new StatusService(pool, projects, staleSeconds);
  metrics.observeStatus(() => status.figures(), logger);

  const kit = new RouteKit(app, { authenticator, root, audit, logger });
  const serverPublicKey = async (): Promise<string | null> => (await seal.status()).serverPublicKey;
  registerSysRoutes(kit, { seal, keyRotation, logger, allowRemoteInit: config.allowRemoteInit, announceSeal: () => bus.announceSeal() });
  registerVaultRoutes(kit, { projects, secrets, keyRotation });
  registerIdentityRoutes(kit, { identities, projects, serverPublicKey });
  registerAuditRoutes(kit, { pool, projects });
  registerAgentRoutes(kit, { pool, projects, commands, staleSeconds });
  registerRotationRoutes(kit, { targets, policies, rotations });
  registerStatusRoutes(kit, { status });
  const fingerprints = new FingerprintService(pool, projects, versionStore, audit);
  const leaks = new LeakService(pool, projects, fingerprints, engine, chain, logger);
  registerLeakRoutes(kit, { leaks, fingerprints });
  registerOpsRoutes(app, kit, { root, metrics, ready: async () => redis.status === 'ready' });

  return {
    app, pool, redis, root, hub,
    services: { seal, identities, projects, secrets, keyRotation, audit, commands, targets, policies, rotations, engine, scheduler, alerter, versions: versionStore },
    async listen() {
      await app.listen({ host: config.listenHost, port: config.listenPort });
      hub.attach(app.server);
      scheduler.start();
      const address = app.server.address();
      if (address === null || typeof address === 'string') throw new SikkerError('ERR_INTERNAL', 'server has no TCP address');
      return { host: address.address, port: address.port };
    },
    async close() {
      await scheduler.close();
      await hub.close();
      bus.close();
      await app.close();
      root.seal();
      redis.disconnect();
      await auditPool.end();
      await pool.end();
    },
  };
}
