import { readFileSync } from 'node:fs';
import * as z from 'zod';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { CommandEnvelope, CommandKind } from '../../shared/protocol/agent-messages.js';
import { writeFileAtomicSync } from '../state/atomic-file.js';
import { DEFAULT_RETAIN_ACKNOWLEDGED, JournalCore, type JournalSnapshot } from './command-journal.js';

const FORMAT = 'sikker-agent-journal-v1';

const ResultFacts = z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()]));
const StoredResult = z.object({
  commandId: z.string().uuid(),
  outcome: z.enum(['succeeded', 'failed']),
  result: ResultFacts,
  error: z.object({ code: z.string(), message: z.string() }).nullable(),
});
const StoredEntry = z.object({
  commandId: z.string().uuid(),
  kind: CommandKind,
  generation: z.number().int().min(0),
  status: z.enum(['accepted', 'final']),
  acknowledged: z.boolean(),
  envelope: CommandEnvelope.nullable(),
  signature: z.string().max(200).nullable(),
  result: StoredResult.nullable(),
});
const JournalFile = z.object({
  format: z.literal(FORMAT),
  highestGeneration: z.number().int().min(0),
  entries: z.array(StoredEntry),
});

/**
 * The journal as one JSON file (mode 0600) in the agent's state directory, rewritten
 * atomically and fsynced on every change, so what `recordAccepted` returned from is on
 * disk before the hub hears "accepted".
 *
 * Failure modes: `open` throws ERR_AGENT_STATE when the file exists but cannot be read
 * or is not a valid journal — it never starts over silently, because a reset
 * `highestGeneration` would let old commands be replayed. Writes throw ERR_AGENT_STATE
 * (with the fs error as cause) and leave the previous file in place.
 */
export class FileCommandJournal extends JournalCore {
  readonly path: string;

  private constructor(path: string, snapshot: JournalSnapshot, retainAcknowledged: number) {
    super(snapshot, retainAcknowledged, (next) => FileCommandJournal.#write(path, next));
    this.path = path;
  }

  /** Loads `path`, or starts empty if it does not exist yet. */
  static open(path: string, options: { retainAcknowledged?: number } = {}): FileCommandJournal {
    return new FileCommandJournal(path, FileCommandJournal.#read(path), options.retainAcknowledged ?? DEFAULT_RETAIN_ACKNOWLEDGED);
  }

  static #read(path: string): JournalSnapshot {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      if ((err as { code?: unknown }).code === 'ENOENT') return { highestGeneration: 0, entries: [] };
      throw new SikkerError('ERR_AGENT_STATE', `cannot read the command journal ${path}`, { cause: err });
    }
    let parsed: z.infer<typeof JournalFile>;
    try {
      parsed = JournalFile.parse(JSON.parse(text));
    } catch {
      // The content is not echoed: it holds sealed payloads.
      throw new SikkerError('ERR_AGENT_STATE', `the command journal ${path} is corrupt; move it aside only if you accept that old commands could be replayed`);
    }
    return { highestGeneration: parsed.highestGeneration, entries: parsed.entries };
  }

  static #write(path: string, snapshot: JournalSnapshot): void {
    const content = JSON.stringify({ format: FORMAT, highestGeneration: snapshot.highestGeneration, entries: snapshot.entries });
    try {
      writeFileAtomicSync(path, content, 0o600);
    } catch (err) {
      throw new SikkerError('ERR_AGENT_STATE', `cannot write the command journal ${path}`, { cause: err, retryable: true });
    }
  }
}
