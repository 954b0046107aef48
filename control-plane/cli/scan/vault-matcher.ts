import { createHmac, randomBytes } from 'node:crypto';
import { MANAGED_SECRET, type Finding, type ManagedSecretRef } from './finding.js';

/** Candidates per request: the server's limit (MatchRequest allows 1..1000). */
export const MATCH_BATCH_SIZE = 1000;

/** One answer of `POST /v1/fingerprints/match`: candidate `index` is the value of that version. */
export interface CandidateMatch extends ManagedSecretRef {
  index: number;
}

/** Sends one batch of candidates to the vault; narrow so tests can pass a fake. */
export type MatchCandidates = (candidates: string[]) => Promise<CandidateMatch[]>;

/** Where a candidate occurred. */
export interface Occurrence {
  path: string;
  source: number;
  line: number;
  column: number;
}

/**
 * Asks the vault which scanned strings are values it manages, in batches of
 * MATCH_BATCH_SIZE distinct candidates, and maps every match back to every place the
 * string occurred.
 *
 * Plain candidates are held only until their batch is answered. After that, a
 * candidate is remembered as an HMAC under a key that lives only in this object (so
 * a repeat is not sent again and still maps to its match), never as text. Findings
 * carry names (project, secret, version), never the value.
 */
export class VaultMatcher {
  readonly findings: Finding[] = [];
  readonly #digestKey = randomBytes(32);
  #pending = new Map<string, Occurrence[]>();
  /** Digest of every candidate already answered → the versions it matched ([] for none). */
  readonly #answered = new Map<string, ManagedSecretRef[]>();

  constructor(private readonly matchCandidates: MatchCandidates) {}

  /** Records that `candidate` occurs at `at`; sends a batch once MATCH_BATCH_SIZE distinct candidates wait. */
  async add(candidate: string, at: Occurrence): Promise<void> {
    const known = this.#answered.get(this.#digest(candidate));
    if (known !== undefined) {
      for (const ref of known) this.#report(at, ref);
      return;
    }
    const occurrences = this.#pending.get(candidate);
    if (occurrences !== undefined) {
      occurrences.push(at);
      return;
    }
    this.#pending.set(candidate, [at]);
    if (this.#pending.size >= MATCH_BATCH_SIZE) await this.flush();
  }

  /** Sends the waiting candidates (if any) and records their matches. */
  async flush(): Promise<void> {
    if (this.#pending.size === 0) return;
    const batch = [...this.#pending];
    this.#pending = new Map();
    const matches = await this.matchCandidates(batch.map(([candidate]) => candidate));
    const byIndex = new Map<number, ManagedSecretRef[]>();
    for (const { index, ...ref } of matches) byIndex.set(index, [...(byIndex.get(index) ?? []), ref]);
    batch.forEach(([candidate, occurrences], index) => {
      const refs = byIndex.get(index) ?? [];
      this.#answered.set(this.#digest(candidate), refs);
      for (const at of occurrences) for (const ref of refs) this.#report(at, ref);
    });
  }

  #digest(candidate: string): string {
    return createHmac('sha256', this.#digestKey).update(candidate, 'utf8').digest('base64').slice(0, 22);
  }

  #report(at: Occurrence, managed: ManagedSecretRef): void {
    this.findings.push({ ...at, kind: MANAGED_SECRET, managed });
  }
}
