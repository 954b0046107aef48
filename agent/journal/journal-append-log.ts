import { closeSync, fdatasyncSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { writeFileAtomicSync } from '../state/atomic-file.js';
import type { JournalChange, JournalView } from './command-journal.js';
import { changeLine, snapshotLine } from './journal-file-format.js';

/** The two calls of an append (a write at `position`, then fdatasync); tests replace them to make an append fail. */
export interface AppendCalls {
  write(fd: number, data: Buffer, position: number): number;
  sync(fd: number): void;
}

const NODE_CALLS: AppendCalls = { write: (fd, data, position) => writeSync(fd, data, 0, data.length, position), sync: (fd) => fdatasyncSync(fd) };

/**
 * Zero bytes written after the snapshot at each compaction; appends overwrite them. An
 * append that stays inside the file's length and its allocated blocks leaves no metadata
 * for fdatasync to carry (no new size, no new block), so the disk takes the line alone:
 * on this project's ext4 machines 0.29 ms against 0.87 ms for an append that grows the
 * file, with the agent idle between commands as it is between rotations (docs/benchmarks.md).
 * A file has room for some hundreds of commands before a compaction writes it anew.
 */
export const JOURNAL_PADDING_BYTES = 1 << 20;

/**
 * How many change lines the file may hold after its snapshot: replay at start-up stays
 * proportional to the journal, and a compaction (a whole-file write) comes at most
 * once per this many changes.
 */
export function compactionThreshold(entryCount: number): number {
  return Math.max(256, 2 * entryCount);
}

/**
 * Writes the journal file: each change is one line written after the last, over the
 * zero padding (JOURNAL_PADDING_BYTES), and fdatasynced before `append` returns; now and
 * then, and whenever a line would not fit in the padding, the file is compacted: rewritten
 * atomically as one snapshot line and fresh padding (the only whole-file write). Readers
 * stop at the first zero byte (journal-file-format.ts). Without an open file descriptor —
 * none opened yet, or an append failed and may have left part of a line — the next change
 * compacts instead of appending, so nothing is ever written after a torn line.
 * Errors are ERR_AGENT_STATE, retryable, with the fs error as cause.
 */
export class JournalAppendLog {
  readonly #path: string;
  readonly #retain: number;
  readonly #calls: AppendCalls;
  #fd: number | null = null;
  /** Bytes of the file known to be whole lines: where the next line goes, and what a failed append is cut back to. */
  #size = 0;
  /** The file's length: lines and padding. */
  #capacity = 0;
  /** Change lines after the snapshot. */
  #lines = 0;
  #closed = false;

  /** `retainAcknowledged` is the journal's, recorded in each snapshot for replay. */
  constructor(path: string, retainAcknowledged: number, calls: Partial<AppendCalls> = {}) {
    this.#path = path;
    this.#retain = retainAcknowledged;
    this.#calls = { ...NODE_CALLS, ...calls };
  }

  /**
   * Appends to the file as read at open: a snapshot line of `size` bytes and nothing else
   * but zeros up to `capacity` bytes (the file's length).
   */
  resume(size: number, capacity: number): void {
    try {
      this.#fd = openSync(this.#path, 'r+');
    } catch (err) {
      throw this.#cannotWrite(err);
    }
    this.#size = size;
    this.#capacity = capacity;
  }

  /**
   * Writes `change` (`journal` already holds it) and, unless `sync` is false, makes it
   * durable before returning. Unsynced lines reach the disk with the next sync.
   */
  append(change: JournalChange, journal: JournalView, sync = true): void {
    if (this.#closed) throw new SikkerError('ERR_AGENT_STATE', `the command journal ${this.#path} is closed`);
    const fd = this.#fd;
    const line = Buffer.from(changeLine(change), 'utf8');
    if (fd === null || this.#lines + 1 > compactionThreshold(journal.entryCount) || this.#size + line.length > this.#capacity) {
      this.compact(journal); // the snapshot includes the change
      return;
    }
    try {
      const written = this.#calls.write(fd, line, this.#size);
      if (written !== line.length) throw new Error(`short write: ${written} of ${line.length} bytes`);
      if (sync) this.#calls.sync(fd);
    } catch (err) {
      this.#abandon(fd);
      throw this.#cannotWrite(err);
    }
    this.#size += line.length;
    this.#lines += 1;
  }

  /** Rewrites the file as one snapshot of `journal` and fresh padding; when this returns, that state is durable. */
  compact(journal: JournalView): void {
    this.#closeFd(); // its file is about to be replaced (or is suspect after a failure)
    const snapshot = Buffer.from(snapshotLine(journal.snapshot(), this.#retain), 'utf8');
    const content = Buffer.concat([snapshot, Buffer.alloc(JOURNAL_PADDING_BYTES)]);
    try {
      writeFileAtomicSync(this.#path, content, 0o600);
    } catch (err) {
      throw this.#cannotWrite(err);
    }
    this.#lines = 0;
    this.#size = snapshot.length;
    this.#capacity = content.length;
    try {
      this.#fd = openSync(this.#path, 'r+');
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
   * After a failed append: cut the file back to its whole lines (best effort; the padding
   * goes too), so that a crash before the next change does not bring back a change the
   * caller was told failed; then drop the descriptor, so the next change compacts.
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
