import { readFileSync } from 'node:fs';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { DEFAULT_RETAIN_ACKNOWLEDGED, JournalCore, type JournalSnapshot } from './command-journal.js';
import { JournalAppendLog, type AppendCalls } from './journal-append-log.js';
import { parseJournal, type ParsedJournal } from './journal-file-format.js';

export interface FileCommandJournalOptions {
  retainAcknowledged?: number;
  /** Fault injection for the tests: replaces the write and the fdatasync of an append. Never set in production. */
  appendCalls?: Partial<AppendCalls>;
}

/**
 * The journal as one file (mode 0600) in the agent's state directory: a snapshot line
 * and then one line per change (journal-file-format.ts), written over zero padding and
 * fdatasynced, so what `recordAccepted` returned from is on disk before the hub hears
 * "accepted" at the cost of one small write, not a rewrite of up to 1,000 entries. The
 * file is compacted to one snapshot line (and fresh padding) at open and every few
 * hundred changes (journal-append-log.ts).
 *
 * Failure modes: `open` throws ERR_AGENT_STATE when the file exists but cannot be read
 * or is not a valid journal — it never starts over silently, because a reset
 * `highestGeneration` would let old commands be replayed. Only an unfinished last line
 * is ignored: its append never returned. Writes throw ERR_AGENT_STATE (with the fs
 * error as cause), leave memory as it was, and the next change rewrites the file.
 */
export class FileCommandJournal extends JournalCore {
  readonly path: string;
  readonly #log: JournalAppendLog;

  private constructor(path: string, snapshot: JournalSnapshot, retainAcknowledged: number, log: JournalAppendLog) {
    // An acknowledgement is not waited for on the disk: lost in a crash, it only makes the
    // agent report that result again, which the hub has already stored and ignores.
    super(snapshot, retainAcknowledged, (change, journal) => log.append(change, journal, change.op !== 'ack'));
    this.path = path;
    this.#log = log;
  }

  /** Loads `path`, or starts empty if it does not exist yet (it is written at the first change). */
  static open(path: string, options: FileCommandJournalOptions = {}): FileCommandJournal {
    const file = FileCommandJournal.#read(path);
    const retain = options.retainAcknowledged ?? DEFAULT_RETAIN_ACKNOWLEDGED;
    const log = new JournalAppendLog(path, retain, options.appendCalls);
    if (file === null) return new FileCommandJournal(path, { highestGeneration: 0, entries: [] }, retain, log);
    const { parsed, size, capacity, zeroTail } = file;
    const journal = new FileCommandJournal(path, parsed.snapshot, retain, log);
    for (const change of parsed.changes) journal.replay(change, parsed.retainAcknowledged ?? retain);
    // Compacting here rather than later keeps the running journal simple: its file is one
    // snapshot, written with its own retainAcknowledged, followed by its own changes (and
    // written over zeros only: whatever an unfinished append left after the lines goes).
    if (parsed.appendable && zeroTail && parsed.retainAcknowledged === retain) log.resume(size, capacity);
    else log.compact(journal);
    return journal;
  }

  /** Releases the file; changes after this throw ERR_AGENT_STATE. Safe to call twice. */
  close(): void {
    this.#log.close();
  }

  /** The parsed file; `size`: bytes of its lines, `capacity`: its length, `zeroTail`: all zeros after the lines. */
  static #read(path: string): { parsed: ParsedJournal; size: number; capacity: number; zeroTail: boolean } | null {
    let bytes: Buffer;
    try {
      bytes = readFileSync(path);
    } catch (err) {
      if ((err as { code?: unknown }).code === 'ENOENT') return null;
      throw new SikkerError('ERR_AGENT_STATE', `cannot read the command journal ${path}`, { cause: err });
    }
    const parsed = parseJournal(bytes.toString('utf8'));
    if (parsed === null) {
      // The content is not echoed: it holds sealed payloads.
      throw new SikkerError('ERR_AGENT_STATE', `the command journal ${path} is corrupt; move it aside only if you accept that old commands could be replayed`);
    }
    const end = bytes.indexOf(0);
    const size = end === -1 ? bytes.length : end;
    return { parsed, size, capacity: bytes.length, zeroTail: bytes.subarray(size).every((b) => b === 0) };
  }
}
