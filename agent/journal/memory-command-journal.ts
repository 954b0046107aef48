import { DEFAULT_RETAIN_ACKNOWLEDGED, JournalCore } from './command-journal.js';

/**
 * A journal that lives only in memory: same semantics as the file journal, nothing
 * survives the process. For tests and benchmarks that run many agents in one process.
 */
export class MemoryCommandJournal extends JournalCore {
  constructor(options: { retainAcknowledged?: number; highestGeneration?: number } = {}) {
    super(
      { highestGeneration: options.highestGeneration ?? 0, entries: [] },
      options.retainAcknowledged ?? DEFAULT_RETAIN_ACKNOWLEDGED,
      () => undefined, // nothing to persist
    );
  }
}
