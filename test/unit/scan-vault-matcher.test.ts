/**
 * `sikker scan` vault side without a server: which strings of a line are sent as
 * candidates, and how batches of candidates and their matches map back to every place
 * a value occurred (a fake stands in for POST /v1/fingerprints/match).
 */
import t from 'tap';
import type { ManagedSecretRef } from '../../control-plane/cli/scan/finding.js';
import { lineCandidates } from '../../control-plane/cli/scan/tokenizer.js';
import { MATCH_BATCH_SIZE, VaultMatcher, type CandidateMatch } from '../../control-plane/cli/scan/vault-matcher.js';

const texts = (line: string): string[] => lineCandidates(line).map((c) => c.text);

t.test('tokenizer – whole runs, parts between quotes and delimiters, values after = or :', async (t) => {
  const line = `  DB="Vq3-managed-value" other=(first-part,second-part) key:abc:def=ghi123`;
  const found = texts(line);
  for (const expected of ['DB="Vq3-managed-value"', 'Vq3-managed-value', 'first-part', 'second-part', 'key:abc:def=ghi123', 'abc:def=ghi123']) {
    t.ok(found.includes(expected), expected);
  }
  t.notOk(found.includes('DB'), 'shorter than 8 characters');
  t.same(lineCandidates(line).find((c) => c.text === 'Vq3-managed-value')?.column, 7, '1-based column of the first occurrence');
});

t.test('tokenizer – connection string passwords, as written and percent-decoded; a trailing full stop is dropped', async (t) => {
  const found = texts('see postgres://app:p%40ss-Word-1@db:5432/x and token Zx9-sentence-end.');
  t.ok(found.includes('p%40ss-Word-1'));
  t.ok(found.includes('p@ss-Word-1'));
  t.ok(found.includes('Zx9-sentence-end'));
});

t.test('tokenizer – only 8..1024 characters, each text once per line', async (t) => {
  t.same(texts('1234567 12345678'), ['12345678']);
  t.same(texts(`${'a'.repeat(1025)}`), []);
  t.same(texts('repeated-value repeated-value'), ['repeated-value']);
});

function ref(secret: string, version = 1): ManagedSecretRef {
  return { project: 'shop', secret, version, label: 'current', state: 'active', leaked: false };
}

/** A fake match endpoint: `values` maps a candidate to the versions it is. Records every batch. */
function fakeVault(values: Record<string, ManagedSecretRef[]>): { batches: string[][]; match: (c: string[]) => Promise<CandidateMatch[]> } {
  const batches: string[][] = [];
  return {
    batches,
    match: async (candidates) => {
      batches.push(candidates);
      return candidates.flatMap((c, index) => (values[c] ?? []).map((r) => ({ index, ...r })));
    },
  };
}

const at = (line: number, column = 1) => ({ path: 'f', source: 0, line, column });

t.test('vault matcher – candidates go in batches of at most 1000 distinct values', async (t) => {
  const vault = fakeVault({});
  const matcher = new VaultMatcher(vault.match);
  for (let i = 0; i < 2500; i++) await matcher.add(`candidate-${i}`, at(i + 1));
  await matcher.add('candidate-2499', at(9999));
  await matcher.flush();
  t.same(vault.batches.map((b) => b.length), [MATCH_BATCH_SIZE, MATCH_BATCH_SIZE, 500]);
  t.same(matcher.findings, []);
});

t.test('vault matcher – a match is reported at every occurrence, before and after its batch was answered', async (t) => {
  const vault = fakeVault({ 'Vq3-managed-value': [ref('db', 2), ref('db-copy', 1)] });
  const matcher = new VaultMatcher(vault.match);
  await matcher.add('Vq3-managed-value', at(1, 5));
  await matcher.add('not-managed-value', at(1, 30));
  await matcher.add('Vq3-managed-value', at(3, 1));
  await matcher.flush();
  await matcher.add('Vq3-managed-value', at(7, 2));
  await matcher.add('not-managed-value', at(8, 2));
  await matcher.flush();
  t.equal(vault.batches.length, 1, 'a value already answered is not sent again');
  t.same(
    matcher.findings.map((f) => [f.line, f.column, f.kind, f.managed?.secret, f.managed?.version]),
    [[1, 5, 'managed-secret', 'db', 2], [1, 5, 'managed-secret', 'db-copy', 1], [3, 1, 'managed-secret', 'db', 2], [3, 1, 'managed-secret', 'db-copy', 1], [7, 2, 'managed-secret', 'db', 2], [7, 2, 'managed-secret', 'db-copy', 1]],
  );
  t.notOk(JSON.stringify(matcher.findings).includes('Vq3-managed-value'), 'findings carry names, not the value');
});

t.test('vault matcher – a failing request rejects the scan', async (t) => {
  const matcher = new VaultMatcher(async () => {
    throw new Error('server unreachable');
  });
  await matcher.add('candidate-value', at(1));
  await t.rejects(matcher.flush(), /server unreachable/);
});
