import { zero } from '../../shared/crypto/aead.js';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { writeFileAtomic } from '../state/atomic-file.js';
import type { SinkConfig } from './sink-config.js';
import { renderSinkContent, type SecretFacts } from './sink-format.js';
import { runReloadCommand } from './reload-command.js';

/** What a delivery reports back (all non-secret). */
export interface SinkWriteResult {
  sink: string;
  path: string;
  bytes: number;
  version: number;
}

/**
 * Writes delivered secrets to the configured sinks. Deliveries are idempotent: writing
 * the same version twice leaves the same file.
 */
export class SinkWriter {
  readonly #sinks: ReadonlyMap<string, SinkConfig>;

  constructor(sinks: readonly SinkConfig[]) {
    this.#sinks = new Map(sinks.map((s) => [s.name, s]));
  }

  /**
   * Renders `value` in the sink's format, replaces the file atomically with the sink's
   * mode, then runs its reload command if any. The rendered bytes are zeroed before
   * returning; `value` belongs to the caller.
   *
   * Throws ERR_SINK_WRITE for an unknown sink name, an unrepresentable value or a
   * failed write (the old file stays); ERR_SINK_RELOAD when the reload fails (the new
   * file stays written). No message contains the value.
   */
  async deliver(sinkName: string, value: Buffer, facts: SecretFacts): Promise<SinkWriteResult> {
    const sink = this.#sinks.get(sinkName);
    if (sink === undefined) throw new SikkerError('ERR_SINK_WRITE', `no sink named ${sinkName}`);
    const content = renderSinkContent(sink, value, facts);
    const bytes = content.length;
    try {
      await writeFileAtomic(sink.path, content, sink.mode);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      throw new SikkerError('ERR_SINK_WRITE', `cannot write sink ${sink.name} at ${sink.path}${typeof code === 'string' ? ` (${code})` : ''}`, { cause: err, retryable: true });
    } finally {
      zero(content);
    }
    if (sink.reloadCommand !== null) await runReloadCommand(sink.reloadCommand, sink.reloadTimeoutMs);
    return { sink: sink.name, path: sink.path, bytes, version: facts.version };
  }
}
