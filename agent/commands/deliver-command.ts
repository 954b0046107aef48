import type { KeyObject } from 'node:crypto';
import { zero } from '../../shared/crypto/aead.js';
import { openSealed } from '../../shared/crypto/sealed-box.js';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { DeliverPayload } from '../../shared/protocol/agent-messages.js';
import type { SinkConfig } from '../sinks/sink-config.js';
import type { SinkWriter } from '../sinks/sink-writer.js';
import type { CommandContext, CommandExecutor, ResultFacts } from './command-executor.js';

/**
 * `secret.deliver`: opens the sealed value with this agent's box key (bound to the
 * command and agent ids), writes it to the named sink and runs the sink's reload.
 * Idempotent: delivering the same version again rewrites the same file.
 * Fails with ERR_VALIDATION (no sealed value), ERR_CRYPTO_DECRYPT / ERR_CRYPTO_FORMAT
 * (not sealed for this agent and command), ERR_SINK_WRITE, ERR_SINK_RELOAD.
 * The plaintext is zeroed whatever happens. The sink code is loaded at the first
 * delivery, so an agent that never delivers does not hold it in memory.
 */
export function createDeliverExecutor(deps: { agentId: string; boxPrivateKey: KeyObject; sinks: readonly SinkConfig[] }): CommandExecutor {
  let writer: SinkWriter | undefined;
  const sinkWriter = async (): Promise<SinkWriter> => {
    writer ??= new (await import('../sinks/sink-writer.js')).SinkWriter(deps.sinks);
    return writer;
  };
  return {
    kind: 'secret.deliver',
    idempotent: true,
    checkPayload(payload) {
      if (!DeliverPayload.safeParse(payload).success) throw new SikkerError('ERR_VALIDATION', 'secret.deliver payload must be {sink, project, secret, version}');
    },
    async execute({ envelope, logger }: CommandContext): Promise<ResultFacts> {
      const payload = DeliverPayload.parse(envelope.payload);
      if (envelope.sealed === null) throw new SikkerError('ERR_VALIDATION', 'secret.deliver carries no sealed value');
      const sinks = await sinkWriter();
      const value = openSealed(deps.boxPrivateKey, Buffer.from(envelope.sealed, 'base64'), { commandId: envelope.commandId, agentId: deps.agentId });
      try {
        const written = await sinks.deliver(payload.sink, value, { project: payload.project, secret: payload.secret, version: payload.version });
        logger.info({ sink: written.sink, path: written.path, bytes: written.bytes, version: written.version }, 'secret delivered to sink');
        return { ...written };
      } finally {
        zero(value);
      }
    },
  };
}
