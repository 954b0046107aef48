import { SikkerError } from '../../shared/errors/sikker-error.js';
import type { CommandEnvelope, CommandKind, CommandResult } from '../../shared/protocol/agent-messages.js';

/**
 * What the agent remembers about one command. While `status` is `accepted` the
 * signed envelope is kept, so a command interrupted by a crash can be re-run at the
 * next start; once `final` only the (non-secret) result remains. Secret values never
 * enter the journal: an envelope's `sealed` field is ciphertext only this agent opens.
 */
export interface JournalEntry {
  commandId: string;
  kind: CommandKind;
  generation: number;
  status: 'accepted' | 'final';
  /** The hub confirmed it stored the final result. */
  acknowledged: boolean;
  envelope: CommandEnvelope | null;
  signature: string | null;
  result: CommandResult | null;
}

/**
 * The agent's durable record of commands, the source of truth for "executed at most
 * once per command id" and for replay protection (`highestGeneration`).
 *
 * Contract shared by every implementation:
 * - `highestGeneration` never decreases and survives pruning.
 * - `recordAccepted` throws ERR_AGENT_STATE if the id is already recorded, and when
 *   it returns the entry is durable (for the file journal: on disk, fsynced).
 * - `recordFinal` of an unknown id records it anyway (a result is never dropped); when
 *   it returns the result is durable too.
 * - `acknowledge` need not be durable at once: a lost acknowledgement only makes the
 *   agent report that result again, which the hub ignores.
 * - Acknowledged final entries beyond the newest `retainAcknowledged` are pruned;
 *   unacknowledged and in-progress entries never are.
 * Methods are synchronous so that check-then-record is atomic on the event loop.
 */
export interface CommandJournal {
  readonly highestGeneration: number;
  get(commandId: string): JournalEntry | undefined;
  recordAccepted(envelope: CommandEnvelope, signature: string): void;
  recordFinal(result: CommandResult): void;
  /** Marks a final result as stored by the hub. False if unknown or not final. */
  acknowledge(commandId: string): boolean;
  /** Final results the hub has not acknowledged, oldest first, at most `limit`. */
  unacknowledgedResults(limit: number): CommandResult[];
  /** Accepted, unfinished entries in generation order. */
  inProgress(): JournalEntry[];
}

export const DEFAULT_RETAIN_ACKNOWLEDGED = 1000;

/** A snapshot of journal state as it is persisted. */
export interface JournalSnapshot {
  highestGeneration: number;
  entries: JournalEntry[];
}

/**
 * One change to the journal, as the file journal logs it: `put` stores an accepted or
 * final entry, `ack` marks a final result as stored by the hub (and prunes).
 */
export type JournalChange = { op: 'put'; entry: JournalEntry } | { op: 'ack'; commandId: string };

/** What `persist` may look at besides the change, which is already applied to it. */
export interface JournalView {
  readonly entryCount: number;
  snapshot(): JournalSnapshot;
}

/**
 * Makes one change durable, or throws (the change is then rolled back in memory).
 * Called after the change is applied, so a persister that rewrites everything can
 * take `journal.snapshot()`.
 */
export type PersistChange = (change: JournalChange, journal: JournalView) => void;

interface JournalState {
  highestGeneration: number;
  readonly entries: Map<string, JournalEntry>;
}

/**
 * The in-memory semantics of the journal; the memory and file implementations both
 * build on it. Every change, live or replayed from the file, goes through
 * `applyChange`, so a reopened journal is in the state the live one was in.
 */
export class JournalCore implements CommandJournal {
  readonly #state: JournalState = { highestGeneration: 0, entries: new Map() };
  readonly #retain: number;
  readonly #persist: PersistChange;

  constructor(snapshot: JournalSnapshot, retainAcknowledged: number, persist: PersistChange) {
    if (!Number.isInteger(retainAcknowledged) || retainAcknowledged < 0) {
      throw new SikkerError('ERR_INTERNAL', 'retainAcknowledged must be a non-negative integer');
    }
    this.#state.highestGeneration = snapshot.highestGeneration;
    for (const entry of [...snapshot.entries].sort((a, b) => a.generation - b.generation)) {
      this.#state.entries.set(entry.commandId, entry);
    }
    this.#retain = retainAcknowledged;
    this.#persist = persist;
  }

  get highestGeneration(): number {
    return this.#state.highestGeneration;
  }

  /** Entries held (accepted, final, and retained acknowledged ones). */
  get entryCount(): number {
    return this.#state.entries.size;
  }

  get(commandId: string): JournalEntry | undefined {
    return this.#state.entries.get(commandId);
  }

  recordAccepted(envelope: CommandEnvelope, signature: string): void {
    if (this.#state.entries.has(envelope.commandId)) {
      throw new SikkerError('ERR_AGENT_STATE', `command ${envelope.commandId} is already in the journal`);
    }
    this.#change({
      op: 'put',
      entry: {
        commandId: envelope.commandId,
        kind: envelope.kind,
        generation: envelope.generation,
        status: 'accepted',
        acknowledged: false,
        envelope,
        signature,
        result: null,
      },
    });
  }

  recordFinal(result: CommandResult): void {
    const previous = this.#state.entries.get(result.commandId);
    this.#change({
      op: 'put',
      entry: {
        commandId: result.commandId,
        kind: previous?.kind ?? 'agent.probe',
        generation: previous?.generation ?? this.#state.highestGeneration,
        status: 'final',
        acknowledged: false,
        envelope: null,
        signature: null,
        result,
      },
    });
  }

  acknowledge(commandId: string): boolean {
    const entry = this.#state.entries.get(commandId);
    if (entry === undefined || entry.status !== 'final' || entry.acknowledged) return entry?.acknowledged === true;
    this.#change({ op: 'ack', commandId });
    return true;
  }

  unacknowledgedResults(limit: number): CommandResult[] {
    const results: CommandResult[] = [];
    for (const entry of this.#state.entries.values()) {
      if (results.length >= limit) break;
      if (entry.status === 'final' && !entry.acknowledged && entry.result !== null) results.push(entry.result);
    }
    return results;
  }

  inProgress(): JournalEntry[] {
    return [...this.#state.entries.values()].filter((e) => e.status === 'accepted').sort((a, b) => a.generation - b.generation);
  }

  /** A copy of the state, for persistence and tests. */
  snapshot(): JournalSnapshot {
    return { highestGeneration: this.#state.highestGeneration, entries: [...this.#state.entries.values()] };
  }

  /**
   * Applies a change read back from storage (already durable: nothing is persisted),
   * pruning with the `retainAcknowledged` it was written with.
   */
  protected replay(change: JournalChange, retainAcknowledged: number): void {
    applyChange(this.#state, change, retainAcknowledged);
  }

  /** Applies `change`, persists it, and undoes it if persisting throws. */
  #change(change: JournalChange): void {
    const undo = applyChange(this.#state, change, this.#retain);
    try {
      this.#persist(change, this);
    } catch (err) {
      undo();
      throw err;
    }
  }
}

/**
 * The one definition of what a change does, for the live methods and for replay:
 * `put` stores the entry (an accepted one raises the generation), `ack` marks a final
 * entry acknowledged and prunes. Returns what undoes it; this touches only the entries
 * the change touched, so a change costs no copy of the journal.
 */
function applyChange(state: JournalState, change: JournalChange, retain: number): () => void {
  const highest = state.highestGeneration;
  if (change.op === 'put') {
    const { entry } = change;
    const previous = state.entries.get(entry.commandId);
    state.entries.set(entry.commandId, entry);
    if (entry.status === 'accepted') state.highestGeneration = Math.max(highest, entry.generation);
    return () => {
      state.highestGeneration = highest;
      if (previous === undefined) state.entries.delete(entry.commandId);
      else state.entries.set(entry.commandId, previous); // an existing key keeps its place
    };
  }
  const entry = state.entries.get(change.commandId);
  if (entry === undefined || entry.status !== 'final' || entry.acknowledged) return () => undefined;
  state.entries.set(change.commandId, { ...entry, acknowledged: true });
  const pruned = pruneAcknowledged(state, retain);
  return () => {
    // Pruned entries go back at the end of the order: they are acknowledged, and nothing
    // reads acknowledged entries in order (a reopened journal orders by generation anyway).
    for (const p of pruned) state.entries.set(p.commandId, p);
    state.entries.set(change.commandId, entry);
  };
}

/** Drops the oldest acknowledged entries beyond the newest `retain`; the generation stays. */
function pruneAcknowledged(state: JournalState, retain: number): JournalEntry[] {
  const acknowledged: JournalEntry[] = [];
  for (const entry of state.entries.values()) if (entry.acknowledged) acknowledged.push(entry);
  const excess = acknowledged.length - retain;
  if (excess <= 0) return [];
  acknowledged.sort((a, b) => a.generation - b.generation);
  const pruned = acknowledged.slice(0, excess);
  for (const entry of pruned) state.entries.delete(entry.commandId);
  return pruned;
}
