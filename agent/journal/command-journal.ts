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
 * - `recordFinal` of an unknown id records it anyway (a result is never dropped).
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
 * The in-memory semantics of the journal; the memory and file implementations both
 * build on it. `persist` is called after every change with the new snapshot and
 * may throw (the change is then rolled back in memory as well).
 */
export class JournalCore implements CommandJournal {
  #highest: number;
  readonly #entries = new Map<string, JournalEntry>();
  readonly #retain: number;
  readonly #persist: (snapshot: JournalSnapshot) => void;

  constructor(snapshot: JournalSnapshot, retainAcknowledged: number, persist: (snapshot: JournalSnapshot) => void) {
    if (!Number.isInteger(retainAcknowledged) || retainAcknowledged < 0) {
      throw new SikkerError('ERR_INTERNAL', 'retainAcknowledged must be a non-negative integer');
    }
    this.#highest = snapshot.highestGeneration;
    for (const entry of [...snapshot.entries].sort((a, b) => a.generation - b.generation)) {
      this.#entries.set(entry.commandId, entry);
    }
    this.#retain = retainAcknowledged;
    this.#persist = persist;
  }

  get highestGeneration(): number {
    return this.#highest;
  }

  get(commandId: string): JournalEntry | undefined {
    return this.#entries.get(commandId);
  }

  recordAccepted(envelope: CommandEnvelope, signature: string): void {
    if (this.#entries.has(envelope.commandId)) {
      throw new SikkerError('ERR_AGENT_STATE', `command ${envelope.commandId} is already in the journal`);
    }
    const entry: JournalEntry = {
      commandId: envelope.commandId,
      kind: envelope.kind,
      generation: envelope.generation,
      status: 'accepted',
      acknowledged: false,
      envelope,
      signature,
      result: null,
    };
    this.#change(() => {
      this.#entries.set(entry.commandId, entry);
      this.#highest = Math.max(this.#highest, envelope.generation);
    });
  }

  recordFinal(result: CommandResult): void {
    const previous = this.#entries.get(result.commandId);
    const entry: JournalEntry = {
      commandId: result.commandId,
      kind: previous?.kind ?? 'agent.probe',
      generation: previous?.generation ?? this.#highest,
      status: 'final',
      acknowledged: false,
      envelope: null,
      signature: null,
      result,
    };
    this.#change(() => {
      this.#entries.set(entry.commandId, entry);
    });
  }

  acknowledge(commandId: string): boolean {
    const entry = this.#entries.get(commandId);
    if (entry === undefined || entry.status !== 'final' || entry.acknowledged) return entry?.acknowledged === true;
    this.#change(() => {
      this.#entries.set(commandId, { ...entry, acknowledged: true });
      this.#prune();
    });
    return true;
  }

  unacknowledgedResults(limit: number): CommandResult[] {
    const results: CommandResult[] = [];
    for (const entry of this.#entries.values()) {
      if (results.length >= limit) break;
      if (entry.status === 'final' && !entry.acknowledged && entry.result !== null) results.push(entry.result);
    }
    return results;
  }

  inProgress(): JournalEntry[] {
    return [...this.#entries.values()].filter((e) => e.status === 'accepted').sort((a, b) => a.generation - b.generation);
  }

  /** A copy of the state, for persistence and tests. */
  snapshot(): JournalSnapshot {
    return { highestGeneration: this.#highest, entries: [...this.#entries.values()] };
  }

  /** Applies `mutate`, persists, and restores the previous state if persisting throws. */
  #change(mutate: () => void): void {
    const before = this.snapshot();
    mutate();
    try {
      this.#persist(this.snapshot());
    } catch (err) {
      this.#highest = before.highestGeneration;
      this.#entries.clear();
      for (const entry of before.entries) this.#entries.set(entry.commandId, entry);
      throw err;
    }
  }

  /** Drops the oldest acknowledged entries beyond the newest `retain`; the generation stays. */
  #prune(): void {
    const acknowledged = [...this.#entries.values()].filter((e) => e.acknowledged);
    const excess = acknowledged.length - this.#retain;
    if (excess <= 0) return;
    acknowledged.sort((a, b) => a.generation - b.generation);
    for (const entry of acknowledged.slice(0, excess)) this.#entries.delete(entry.commandId);
  }
}
