import type { Pool } from 'pg';
import type { Logger } from '../../shared/logging/logger.js';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { appendIfHeadUnchanged, readChainHead, type AuditChainWriter, type ChainHead } from './audit-appender.js';
import { withTransaction } from '../db/transaction.js';
import type { AuditDraft } from './audit-types.js';

interface Waiter {
  draft: AuditDraft;
  resolve: (seq: number) => void;
  reject: (err: SikkerError) => void;
}

export interface AuditBatcherOptions {
  /** Most records committed in one transaction. */
  maxBatch?: number;
  /** Most records waiting; beyond it appends are refused at once. */
  maxQueue?: number;
}

/**
 * Group commit for audit records. Each caller awaits its own record's commit (so a
 * read can withhold plaintext until its record is durable), but records that arrive
 * while a commit is in flight share the next transaction: one head lock and one
 * fsync per batch instead of per request.
 */
export class AuditBatcher {
  private queue: Waiter[] = [];
  private draining = false;
  private readonly maxBatch: number;
  private readonly maxQueue: number;

  constructor(
    private readonly pool: Pick<Pool, 'connect' | 'query'>,
    private readonly chain: AuditChainWriter,
    private readonly logger: Logger,
    options: AuditBatcherOptions = {},
  ) {
    this.maxBatch = options.maxBatch ?? 512;
    this.maxQueue = options.maxQueue ?? 20_000;
  }

  /** Resolves with the record's sequence number once committed; rejects with ERR_AUDIT_WRITE_FAILED otherwise. */
  append(draft: AuditDraft): Promise<number> {
    if (this.queue.length >= this.maxQueue) {
      // The database is not keeping up (or is stuck): refuse rather than pile up in memory.
      return Promise.reject(new SikkerError('ERR_AUDIT_WRITE_FAILED', 'the audit log is not keeping up; request refused', { retryable: true }));
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ draft, resolve, reject });
      if (!this.draining) {
        this.draining = true;
        // setImmediate lets every request that arrived in this I/O turn join the batch.
        setImmediate(() => void this.drain());
      }
    });
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      try {
        const seqs = await this.commit(batch.map((w) => w.draft));
        batch.forEach((w, i) => w.resolve(seqs[i] ?? 0));
      } catch (err) {
        this.chain.remember(null);
        this.logger.error({ err, records: batch.length }, 'audit batch failed; the requests it carried are refused');
        const failure = new SikkerError('ERR_AUDIT_WRITE_FAILED', 'the audit record could not be written; the request was refused', { cause: err, retryable: true });
        for (const w of batch) w.reject(failure);
      }
    }
    this.draining = false;
  }

  /**
   * Commits one batch. Usually one statement that links onto the head this process
   * last wrote; if someone else moved the head meanwhile (a write transaction, another
   * replica) it re-reads and retries, and falls back to the locking transaction when a
   * checkpoint is due or the head keeps moving.
   */
  private async commit(drafts: AuditDraft[]): Promise<number[]> {
    for (let attempt = 0; attempt < 3; attempt += 1) {
      const head: ChainHead = this.chain.knownHead() ?? (await readChainHead(this.pool));
      if (this.chain.checkpointDue(head, drafts.length)) break;
      this.chain.remember(null); // unknown until this statement is done
      const done = await appendIfHeadUnchanged(this.pool, head, drafts);
      if (done !== null) {
        this.chain.remember(done.head);
        return done.seqs;
      }
    }
    this.chain.remember(null);
    return withTransaction(this.pool, this.logger, (client) => this.chain.append(client, drafts));
  }
}
