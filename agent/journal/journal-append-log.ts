import { closeSync, fdatasyncSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { writeFileAtomicSync } from '../state/atomic-file.js';
import type { JournalChange, JournalView } from './command-journal.js';
import { changeLine, snapshotLine } from './journal-file-format.js';

/** The two calls of an append; tests replace them to make an append fail. */
export interface AppendCalls {
  write(fd: number, data: Buffer): number;
  sync(fd: number): void;
}

const NODE_CALLS: AppendCalls = { write: (fd, data) => writeSync(fd, data), sync: (fd) => fdatasyncSync(fd) };

/**
 * How many change lines the file may hold after its snapshot: replay at start-up stays
 * proportional to the journal, and a compaction (a whole-file write) comes at most
 * once per this many changes.
 */
export function compactionThreshold(entryCount: number): number {
  return Math.max(256, 2 * entryCount);
}

/**
 * Writes the journal file: each change is one appended line, fdatasynced before
 * `append` returns; now and then the file is compacted, rewritten atomically as one
 * snapshot line (the only whole-file write). Without an open file descriptor — none
 * opened yet, or an append failed and may have left part of a line — the next change
 * compacts instead of appending, so nothing is ever written after a torn line.
 * Errors are ERR_AGENT_STATE, retryable, with the fs error as cause.
 */
export class JournalAppendLog {
  readonly #path: string;
  readonly #retain: number;
  readonly #calls: AppendCalls;
  #fd: number | null = null;
  /** Bytes of the file known to be whole lines, to cut a failed append back to. */
  #size = 0;
  /** Change lines after the snapshot. */
  #lines = 0;
  #closed = false;

  /** `retainAcknowledged` is the journal's, recorded in each snapshot for replay. */
  constructor(path: string, retainAcknowledged: number, calls: Partial<AppendCalls> = {}) {
    this.#path = path;
    this.#retain = retainAcknowledged;
    this.#calls = { ...NODE_CALLS, ...calls };
  }

  /** Appends to the file as read at open: a snapshot line of `size` bytes and nothing else. */
  resume(size: number): void {
    try {
      this.#fd = openSync(this.#path, 'a');
    } catch (err) {
      throw this.#cannotWrite(err);
    }
    this.#size = size;
  }

  /**
   * Writes `change` (`journal` already holds it) and, unless `sync` is false, makes it
   * durable before returning. Unsynced lines reach the disk with the next sync.
   */
  append(change: JournalChange, journal: JournalView, sync = true): void {
    if (this.#closed) throw new SikkerError('ERR_AGENT_STATE', `the command journal ${this.#path} is closed`);
    const fd = this.#fd;
    if (fd === null || this.#lines + 1 > compactionThreshold(journal.entryCount)) {
      this.compact(journal); // the snapshot includes the change
      return;
    }
    const line = Buffer.from(changeLine(change), 'utf8');
    try {
      const written = this.#calls.write(fd, line);
      if (written !== line.length) throw new Error(`short write: ${written} of ${line.length} bytes`);
      if (sync) this.#calls.sync(fd);
    } catch (err) {
      this.#abandon(fd);
      throw this.#cannotWrite(err);
    }
    this.#size += line.length;
    this.#lines += 1;
  }

  /** Rewrites the file as one snapshot of `journal`; when this returns, that state is durable. */
  compact(journal: JournalView): void {
    this.#closeFd(); // its file is about to be replaced (or is suspect after a failure)
    const content = Buffer.from(snapshotLine(journal.snapshot(), this.#retain), 'utf8');
    try {
      writeFileAtomicSync(this.#path, content, 0o600);
    } catch (err) {
      throw this.#cannotWrite(err);
    }
    this.#lines = 0;
    this.#size = content.length;
    try {
      this.#fd = openSync(this.#path, 'a');
    } catch {
      // The snapshot is durable, so this change succeeded; without a descriptor the next change compacts again and reports the error.
    }
  }

  /** Releases the file descriptor; later changes throw. Safe to call twice. */
  close(): void {
    this.#closed = true;
    this.#closeFd();
  }

  /**
   * After a failed append: cut the file back to its whole lines (best effort), so that
   * a crash before the next change does not bring back a change the caller was told
   * failed; then drop the descriptor, so the next change compacts.
   */
  #abandon(fd: number): void {
    try {
      ftruncateSync(fd, this.#size);
      fdatasyncSync(fd);
    } catch {
      // A torn last line is ignored on open, and the next change rewrites the file anyway.
    }
    this.#closeFd();
  }

  #closeFd(): void {
    if (this.#fd === null) return;
    try {
      closeSync(this.#fd);
    } catch {
      // nothing to do: the descriptor is gone either way
    }
    this.#fd = null;
  }

  #cannotWrite(err: unknown): SikkerError {
    return new SikkerError('ERR_AGENT_STATE', `cannot write the command journal ${this.#path}`, { cause: err, retryable: true });
  }
}
