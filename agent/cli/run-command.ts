import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { createLogger, type Logger } from '../../shared/logging/logger.js';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { loadAgentConfig, type AgentConfig } from '../config/agent-config.js';
import { HubClient } from '../hub-client/hub-client.js';
import { FileCommandJournal } from '../journal/file-command-journal.js';
import { loadAgentIdentity } from '../state/agent-identity.js';
import { journalPath } from '../state/state-dir.js';
import { parseOptions, reportFailure, UsageError } from './cli-support.js';

const USAGE = 'usage: sikker-agent run --config FILE [--server URL] [--state-dir DIR]';

/**
 * `sikker-agent run`: validates the config (exit 2 when invalid), checks the state
 * directory and identity file permissions and opens the journal (exit 1, with a
 * message naming the path and the fix), then holds the hub connection until SIGTERM
 * or SIGINT: RUNNING → STOPPING (no new commands; in-flight ones get the grace
 * period) → STOPPED, exit 0. A second signal exits at once with 1.
 */
export async function runCommand(argv: string[]): Promise<number> {
  let config: AgentConfig;
  try {
    const o = parseOptions(argv, { config: { type: 'string' }, server: { type: 'string' }, 'state-dir': { type: 'string' } });
    if (o.config === undefined) throw new UsageError('--config is required');
    config = loadAgentConfig(o.config, { server: o.server, stateDir: o['state-dir'] });
  } catch (err) {
    return reportFailure(err, USAGE);
  }
  const logger = createLogger({ name: 'sikker-agent', level: config.logLevel });
  let client: HubClient;
  let journal: FileCommandJournal;
  try {
    ({ client, journal } = createClient(config, logger));
  } catch (err) {
    const e = err instanceof SikkerError ? err : new SikkerError('ERR_INTERNAL', 'the agent could not start', { cause: err });
    logger.fatal({ code: e.code }, `cannot start: ${e.message}`);
    return reportFailure(e, USAGE);
  }
  warnAboutMissingSinkDirectories(config, logger);
  client.start();
  logger.info({ server: config.server, sinks: config.sinks.length, adminConnections: [...config.adminConnections.keys()] }, 'agent running');
  const code = await waitForShutdown(client, config.shutdownGraceMs, logger);
  journal.close();
  return code;
}

function createClient(config: AgentConfig, logger: Logger): { client: HubClient; journal: FileCommandJournal } {
  const identity = loadAgentIdentity(config.stateDir);
  const journal = FileCommandJournal.open(journalPath(config.stateDir));
  const client = new HubClient({
    serverUrl: config.server,
    identity,
    journal,
    sinks: config.sinks,
    adminConnections: config.adminConnections,
    mongodbCommands: config.mongodbCommands,
    // Fault injection for the crash tests (test/e2e/rotation-crash.test.ts); never set in production.
    crashAfterApply: process.env.SIKKER_AGENT_TEST_CRASH_AT === 'after-apply',
    logger,
    tls: { caCertPem: config.caCertPem, pinSha256: config.pinSha256, allowInsecureHttp: config.insecureHttp },
    heartbeatMs: config.heartbeatMs,
  });
  return { client, journal };
}

function warnAboutMissingSinkDirectories(config: AgentConfig, logger: Logger): void {
  for (const sink of config.sinks) {
    if (!existsSync(dirname(sink.path))) logger.warn({ sink: sink.name, path: sink.path }, 'the sink directory does not exist; deliveries to it will fail');
  }
}

/** Resolves with the exit code once stopped; a second signal exits the process with 1. */
function waitForShutdown(client: HubClient, graceMs: number, logger: Logger): Promise<number> {
  return new Promise<number>((resolve) => {
    let signalled = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (signalled) {
        logger.warn({ signal }, 'second signal: exiting without waiting');
        process.exit(1);
      }
      signalled = true;
      logger.info({ signal, graceMs, inFlight: client.inFlight }, 'stopping: no new commands, finishing the ones in flight');
      client.stop(graceMs).then(
        ({ drained }) => {
          logger.info({ drained }, 'agent stopped');
          resolve(0);
        },
        (err: unknown) => {
          logger.error({ err }, 'stopping failed');
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
