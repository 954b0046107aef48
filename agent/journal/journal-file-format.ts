import * as z from 'zod';
import { CommandEnvelope, CommandKind } from '../../shared/protocol/agent-messages.js';
import type { JournalChange, JournalSnapshot } from './command-journal.js';

/**
 * The journal file, v2: JSON lines. Line 1 is a snapshot
 * `{"format":"sikker-agent-journal-v2","highestGeneration":N,"entries":[…],"retainAcknowledged":R}`,
 * each later line one change, `{"op":"put","entry":{…}}` or `{"op":"ack","commandId":"…"}`,
 * replayed in order. An ack prunes, so replay needs the `retainAcknowledged` the lines
 * were written with, which the snapshot records (a journal opened with another value
 * compacts first). v1 was the snapshot alone, as one JSON object; it is still read.
 */
export const FORMAT_V1 = 'sikker-agent-journal-v1';
export const FORMAT_V2 = 'sikker-agent-journal-v2';

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
const V1File = z.object({
  format: z.literal(FORMAT_V1),
  highestGeneration: z.number().int().min(0),
  entries: z.array(StoredEntry),
});
const SnapshotLine = z.object({
  format: z.literal(FORMAT_V2),
  highestGeneration: z.number().int().min(0),
  entries: z.array(StoredEntry),
  retainAcknowledged: z.number().int().min(0),
});
const ChangeLine = z.discriminatedUnion('op', [
  z.object({ op: z.literal('put'), entry: StoredEntry }),
  z.object({ op: z.literal('ack'), commandId: z.string().uuid() }),
]);

export interface ParsedJournal {
  snapshot: JournalSnapshot;
  changes: JournalChange[];
  /** What the changes were written with (replay prunes like the writer did); null for v1, which has no changes. */
  retainAcknowledged: number | null;
  /** The file is one v2 snapshot line and nothing else, so changes can be appended to it as it is. */
  appendable: boolean;
}

/**
 * Parses the file's text (its lines: {@link journalData}), or returns null if it is not a
 * journal. Only the last line may be bad — without its newline, or not parsing: that append
 * never returned, so nobody was told about its change, and it is ignored. The snapshot
 * line is written atomically and is never torn.
 */
export function parseJournal(file: string): ParsedJournal | null {
  const text = journalData(file);
  const lines = text.split('\n');
  const tail = lines.pop() ?? ''; // after the last newline: '' or an unfinished line
  const first = parseLine(SnapshotLine, lines[0] ?? tail);
  if (first === null) return parseV1(text);
  const changes: JournalChange[] = [];
  for (let i = 1; i < lines.length; i += 1) {
    const change = parseLine(ChangeLine, lines[i] ?? '');
    if (change !== null) changes.push(change);
    else if (i < lines.length - 1 || tail !== '') return null;
  }
  const snapshot = { highestGeneration: first.highestGeneration, entries: first.entries };
  return { snapshot, changes, retainAcknowledged: first.retainAcknowledged, appendable: lines.length === 1 && tail === '' };
}

/**
 * The journal's lines: everything before the first zero byte. After it comes the padding
 * appends write over (journal-append-log.ts), or what is left of an append that never
 * returned (never followed by another line: the next change rewrites the file).
 */
export function journalData(file: string): string {
  const end = file.indexOf('\0');
  return end === -1 ? file : file.slice(0, end);
}

/** A v1 file: one JSON object, on one line or (edited by hand) on several. */
function parseV1(text: string): ParsedJournal | null {
  const file = parseLine(V1File, text);
  if (file === null) return null;
  return { snapshot: { highestGeneration: file.highestGeneration, entries: file.entries }, changes: [], retainAcknowledged: null, appendable: false };
}

function parseLine<T>(schema: z.ZodType<T>, line: string): T | null {
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch {
    return null;
  }
  const parsed = schema.safeParse(json);
  return parsed.success ? parsed.data : null;
}

export function snapshotLine(snapshot: JournalSnapshot, retainAcknowledged: number): string {
  const line = { format: FORMAT_V2, highestGeneration: snapshot.highestGeneration, entries: snapshot.entries, retainAcknowledged };
  return `${JSON.stringify(line)}\n`;
}

export function changeLine(change: JournalChange): string {
  return `${JSON.stringify(change)}\n`;
}
