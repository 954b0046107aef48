#!/usr/bin/env node
import { SikkerError } from '../shared/errors/sikker-error.js';
import { createLogger } from '../shared/logging/logger.js';
import { loadConfig } from './config/config.js';
import { createControlPlane } from './app.js';

/**
 * sikker-control-plane: reads configuration from the environment (flags are not
 * needed: systemd and containers set the environment), starts sealed, and drains on
 * SIGTERM/SIGINT. Exits 2 on bad configuration with a message naming the variable.
 */
async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    process.stderr.write(`sikker-control-plane: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  }
  const logger = createLogger({ name: 'sikker-control-plane', level: config.logLevel });
  // A stray rejection must not take the process down: a restart means a sealed vault for everyone.
  process.on('unhandledRejection', (err) => logger.error({ err }, 'unhandled rejection (a bug; the process keeps running)'));
  let plane;
  try {
    plane = await createControlPlane(config, logger);
  } catch (err) {
    logger.fatal({ err }, 'could not start');
    process.stderr.write(`sikker-control-plane: ${err instanceof SikkerError ? err.message : 'could not start'}\n`);
    process.exit(1);
  }
  const address = await plane.listen();
  logger.info({ ...address, replicaId: config.replicaId, tls: config.tls !== null }, 'control plane listening (sealed until unsealed)');
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping: draining requests and sealing');
    plane.close().then(() => process.exit(0), (err: unknown) => {
      logger.error({ err }, 'error while stopping');
      process.exit(1);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

void main();
