/**
 * The file journal's log format (agent/journal/journal-file-format.ts): one appended
 * line per change, compaction, replay on open, torn and corrupt files, v1 files, and
 * failed appends. The behaviour both journals share is in agent-journal.test.ts.
 */
import { closeSync, fdatasyncSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { CommandResult } from '../../shared/protocol/agent-messages.js';
import type { JournalSnapshot } from '../../agent/journal/command-journal.js';
import { compactionThreshold, JOURNAL_PADDING_BYTES } from '../../agent/journal/journal-append-log.js';
import { journalData } from '../../agent/journal/journal-file-format.js';
import { FileCommandJournal, type FileCommandJournalOptions } from '../../agent/journal/file-command-journal.js';
import { envelope } from './agent-test-hub.js';

const AGENT = '3d2c1b0a-9f8e-4d7c-8b6a-5f4e3d2c1b0a';

function journalPath(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'sikker-journal-file-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'journal.json');
}

/** Opens a journal that is closed when the test ends. */
function open(t: Test, path: string, options: FileCommandJournalOptions = {}): FileCommandJournal {
  const j = FileCommandJournal.open(path, options);
  t.teardown(() => j.close());
  return j;
}

function succeeded(commandId: string): CommandResult {
  return { commandId, outcome: 'succeeded', result: { n: 1 }, error: null };
}

/** The file's lines (before the zero padding). */
function fileData(path: string): string {
  return journalData(readFileSync(path, 'utf8'));
}

/** The file's lines, parsed; every line must end with a newline. */
function fileLines(path: string): Array<Record<string, unknown>> {
  const text = fileData(path);
  if (!text.endsWith('\n')) throw new Error('the journal file does not end with a newline');
  return text.slice(0, -1).split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** Writes `text` where the next line would go: after the lines, over the padding. */
function writeAtEnd(path: string, text: string): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, Buffer.from(text), 0, Buffer.byteLength(text), Buffer.byteLength(fileData(path)));
  } finally {
    closeSync(fd);
  }
}

/** State independent of iteration order (a reopened journal orders by generation). */
function state(snapshot: JournalSnapshot): JournalSnapshot {
  return { highestGeneration: snapshot.highestGeneration, entries: [...snapshot.entries].sort((a, b) => a.commandId.localeCompare(b.commandId)) };
}

/** One command through its life: accepted, final, acknowledged (3 changes). */
function cycle(j: FileCommandJournal, generation: number): string {
  const e = envelope(AGENT, { generation });
  j.recordAccepted(e, 'sig');
  j.recordFinal(succeeded(e.commandId));
  j.acknowledge(e.commandId);
  return e.commandId;
}

t.test('every kind of change survives a reopen: generation, entries, acknowledgements and pruning', async (t) => {
  const path = journalPath(t);
  const j = open(t, path, { retainAcknowledged: 2 });
  const ids = [1, 2, 3, 4].map((g) => cycle(j, 10 * g)); // the two oldest are pruned
  const running = envelope(AGENT, { generation: 50 });
  j.recordAccepted(running, 'sig-run');
  const waiting = envelope(AGENT, { generation: 60 });
  j.recordAccepted(waiting, 'sig-wait');
  j.recordFinal(succeeded(waiting.commandId)); // final, not acknowledged
  const stray = '00000000-0000-4000-8000-00000000000a';
  j.recordFinal(succeeded(stray)); // a result for an unknown id is recorded anyway
  t.equal(fileLines(path).length, 1 + 4 * 3 + 4 - 1, 'one snapshot line (the first change), then a line per change');
  const again = open(t, path, { retainAcknowledged: 2 });
  t.same(state(again.snapshot()), state(j.snapshot()));
  t.equal(again.highestGeneration, 60);
  t.same(ids.map((id) => again.get(id)?.acknowledged), [undefined, undefined, true, true]);
  t.match(again.inProgress(), [{ commandId: running.commandId, envelope: running, signature: 'sig-run' }]);
  t.same(again.unacknowledgedResults(10).map((r) => r.commandId).sort(), [waiting.commandId, stray].sort());
  t.match(again.get(stray), { generation: 60, kind: 'agent.probe', status: 'final' });
  t.equal(fileLines(path).length, 1, 'opening compacted the file to one snapshot');
  t.match(fileLines(path)[0], { format: 'sikker-agent-journal-v2', highestGeneration: 60 });
});

t.test('replay prunes as the writer did, even when reopened with another retainAcknowledged', async (t) => {
  const path = journalPath(t);
  const j = open(t, path, { retainAcknowledged: 1 });
  const ids = [1, 2, 3].map((g) => cycle(j, g));
  t.same(ids.map((id) => j.get(id) !== undefined), [false, false, true]);
  const wider = open(t, path, { retainAcknowledged: 5 });
  t.same(state(wider.snapshot()), state(j.snapshot()), 'the pruned entries stay pruned');
  t.match(fileLines(path), [{ retainAcknowledged: 5 }], 'compacted, recording the new value for the lines that follow');
  wider.close();
  const clean = readFileSync(path, 'utf8');
  const narrower = open(t, path, { retainAcknowledged: 0 });
  t.not(readFileSync(path, 'utf8'), clean, 'a snapshot written with another value is rewritten before anything is appended');
  t.match(fileLines(path), [{ retainAcknowledged: 0 }]);
  cycle(narrower, 4);
  t.equal(narrower.get(ids[2] ?? ''), undefined, 'the new value applies from the next acknowledgement');
  t.same(state(open(t, path, { retainAcknowledged: 0 }).snapshot()), state(narrower.snapshot()));
});

t.test('the file grows by one line per change and is compacted once past the threshold', async (t) => {
  const path = journalPath(t);
  const j = open(t, path, { retainAcknowledged: 2 });
  cycle(j, 1);
  t.equal(fileLines(path).length, 3, 'snapshot (written by the first change) + final + ack');
  const limit = compactionThreshold(j.entryCount);
  t.equal(limit, 256, 'a small journal is compacted every 256 changes');
  let lines = fileLines(path).length;
  let compactedAt: number | undefined;
  for (let g = 2; compactedAt === undefined && g < 1000; g += 1) {
    const e = envelope(AGENT, { generation: g });
    for (const change of [() => j.recordAccepted(e, 'sig'), () => j.recordFinal(succeeded(e.commandId)), () => j.acknowledge(e.commandId)]) {
      change();
      const now = fileLines(path).length;
      if (now !== lines + 1) {
        compactedAt = lines;
        break;
      }
      lines = now;
    }
  }
  t.equal(compactedAt, 1 + limit, 'compacted instead of appending the change that would have exceeded the threshold');
  t.equal(fileLines(path).length, 1, 'one snapshot line');
  t.same(state(open(t, path, { retainAcknowledged: 2 }).snapshot()), state(j.snapshot()), 'nothing lost');
  t.equal(compactionThreshold(1000), 2000, 'a full journal waits for twice its entries');
});

t.test('a torn last line is ignored and never followed by another line', async (t) => {
  const late = envelope(AGENT, { generation: 99 });
  const unfinished = JSON.stringify({ op: 'put', entry: { commandId: late.commandId, kind: late.kind, generation: 99, status: 'accepted', acknowledged: false, envelope: late, signature: 'sig', result: null } });
  // Half a line; a line that does not parse; a whole change whose newline was not written (its append never returned).
  for (const torn of [unfinished.slice(0, 40), 'garbage\n', unfinished]) {
    const path = journalPath(t);
    const j = open(t, path);
    const done = cycle(j, 7);
    const before = state(j.snapshot());
    j.close();
    writeAtEnd(path, torn); // a crash in the middle of an append (it writes over the padding)
    const again = open(t, path);
    t.same(state(again.snapshot()), before, `ignored: ${JSON.stringify(torn)}`);
    t.equal(fileLines(path).length, 1, 'rewritten as one snapshot before anything is appended');
    again.recordAccepted(envelope(AGENT, { generation: 8 }), 'sig');
    const lines = fileLines(path);
    t.equal(lines.length, 2);
    t.match(lines, [{ format: 'sikker-agent-journal-v2', highestGeneration: 7 }, { op: 'put', entry: { generation: 8 } }]);
    t.equal(open(t, path).get(done)?.acknowledged, true);
  }
});

t.test('a corrupt line before the last, or a bad snapshot, is refused and the file left alone', async (t) => {
  const path = journalPath(t);
  const j = open(t, path);
  cycle(j, 3);
  j.close();
  const good = fileData(path);
  const [snapshot, put, ack] = good.slice(0, -1).split('\n') as [string, string, string];
  t.ok(snapshot.includes('"highestGeneration":3'));
  const corrupt = [
    `${snapshot}\n{"op":"put"\n${ack}\n`, // a torn line that is not the last
    `${snapshot}\n${put}\n{"op":"ack","commandId":"not-a-uuid"}\n{"op":"ack","commandId":"00000000-0000-4000-8000-00000000000c"}\n`,
    `${snapshot}\n\n${ack}\n`, // an empty line in the middle
    `${snapshot.replace('"highestGeneration":3', '"highestGeneration":-1')}\n${put}\n`,
    `${snapshot.replace('sikker-agent-journal-v2', 'sikker-agent-journal-v9')}\n`,
    `{"format":"sikker-agent-journal-v2","highestGeneration":3,"entr`, // the snapshot is never torn: it is written atomically
    '',
  ];
  for (const content of corrupt) {
    writeFileSync(path, content, { mode: 0o600 });
    t.throws(() => FileCommandJournal.open(path), { code: 'ERR_AGENT_STATE', message: /corrupt/ }, JSON.stringify(content.slice(0, 60)));
    t.equal(readFileSync(path, 'utf8'), content, 'untouched');
  }
});

t.test('a v1 file is read and rewritten as v2', async (t) => {
  const e = envelope(AGENT, { generation: 9 });
  const accepted = { commandId: e.commandId, kind: e.kind, generation: 9, status: 'accepted', acknowledged: false, envelope: e, signature: 'sig', result: null };
  const doneId = '00000000-0000-4000-8000-00000000000d';
  const done = { commandId: doneId, kind: 'agent.probe', generation: 8, status: 'final', acknowledged: true, envelope: null, signature: null, result: succeeded(doneId) };
  const v1 = { format: 'sikker-agent-journal-v1', highestGeneration: 12, entries: [accepted, done] };
  for (const text of [JSON.stringify(v1), JSON.stringify(v1, null, 2)]) {
    const path = journalPath(t);
    writeFileSync(path, text, { mode: 0o600 });
    const j = open(t, path);
    t.equal(j.highestGeneration, 12);
    t.match(j.inProgress(), [{ commandId: e.commandId, envelope: e, signature: 'sig' }]);
    t.equal(j.get(doneId)?.acknowledged, true);
    t.same(fileLines(path), [{ ...v1, format: 'sikker-agent-journal-v2', entries: [done, accepted], retainAcknowledged: 1000 }], 'one v2 snapshot line, entries in generation order');
    t.equal(statSync(path).mode & 0o777, 0o600);
    j.recordFinal(succeeded(e.commandId));
    t.equal(fileLines(path).length, 2, 'and appended to from then on');
  }
});

t.test('a failed append rolls back memory and leaves the file as it was', async (t) => {
  const path = journalPath(t);
  let fault: 'none' | 'half-write' | 'sync' = 'none';
  const j = open(t, path, {
    retainAcknowledged: 1,
    appendCalls: {
      write: (fd, data, position) => {
        if (fault !== 'half-write') return writeSync(fd, data, 0, data.length, position);
        writeSync(fd, data.subarray(0, data.length >> 1), 0, data.length >> 1, position);
        throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
      },
      sync: (fd) => {
        if (fault === 'sync') throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
        fdatasyncSync(fd);
      },
    },
  });
  const kept = cycle(j, 1);
  const e = envelope(AGENT, { generation: 2 });
  j.recordAccepted(e, 'sig');
  j.recordFinal(succeeded(e.commandId));
  const before = j.snapshot();
  const file = fileData(path);

  fault = 'half-write';
  const next = envelope(AGENT, { generation: 3 });
  t.throws(() => j.recordAccepted(next, 'sig'), { code: 'ERR_AGENT_STATE', retryable: true, cause: { code: 'ENOSPC' } });
  t.same(j.snapshot(), before, 'accept rolled back');
  t.equal(j.highestGeneration, 2);
  t.equal(readFileSync(path, 'utf8'), file, 'the half line was cut off (and the padding with it)');

  fault = 'none';
  j.recordAccepted(next, 'sig');
  t.equal(fileLines(path).length, 1, 'the next change rewrote the file first');

  fault = 'sync';
  const wasFinal = j.get(e.commandId);
  const failed: CommandResult = { commandId: e.commandId, outcome: 'failed', result: {}, error: { code: 'ERR_X', message: 'x' } };
  t.throws(() => j.recordFinal(failed), { code: 'ERR_AGENT_STATE', retryable: true, cause: { code: 'EIO' } });
  t.equal(j.get(e.commandId), wasFinal, 'the previous entry is back');
  fault = 'none';
  j.recordFinal(succeeded(next.commandId)); // rewrites the file, then appends again
  fault = 'sync';
  t.equal(j.acknowledge(next.commandId), true, 'an acknowledgement does not wait for the disk (a sync failure does not touch it)');
  t.equal(j.get(kept), undefined, 'it pruned the older acknowledged entry');
  const beforeAck = state(j.snapshot());
  const file2 = fileData(path);
  fault = 'half-write';
  t.throws(() => j.acknowledge(e.commandId), { code: 'ERR_AGENT_STATE', cause: { code: 'ENOSPC' } }, 'an acknowledgement that prunes and fails to write…');
  t.same(state(j.snapshot()), beforeAck, '…is rolled back with what it pruned');
  t.equal(j.get(next.commandId)?.acknowledged, true);
  t.equal(j.get(e.commandId)?.acknowledged, false);
  t.equal(readFileSync(path, 'utf8'), file2, 'the half-written line was cut off (and the padding with it)');

  fault = 'none';
  t.equal(j.acknowledge(e.commandId), true, 'the next change works');
  t.equal(j.get(e.commandId), undefined, 'and prunes (the older generation goes)');
  t.equal(fileLines(path).length, 1, 'by rewriting the file first');
  t.same(state(open(t, path, { retainAcknowledged: 1 }).snapshot()), state(j.snapshot()));
});

t.test('the file is mode 0600 whether written by a compaction or appended to', async (t) => {
  const path = journalPath(t);
  const j = open(t, path);
  j.recordAccepted(envelope(AGENT), 'sig');
  t.equal(statSync(path).mode & 0o777, 0o600);
  cycle(j, 5000);
  t.equal(statSync(path).mode & 0o777, 0o600);
  t.equal(open(t, path).highestGeneration, 5000);
  t.equal(statSync(path).mode & 0o777, 0o600, 'after the compaction at open');
});

t.test('close releases the file; later changes throw and close is safe to repeat', async (t) => {
  const path = journalPath(t);
  const j = open(t, path);
  cycle(j, 1);
  j.close();
  j.close();
  const file = readFileSync(path, 'utf8');
  t.throws(() => j.recordAccepted(envelope(AGENT, { generation: 2 }), 'sig'), { code: 'ERR_AGENT_STATE', message: /closed/ });
  t.equal(j.highestGeneration, 1, 'rolled back');
  t.equal(readFileSync(path, 'utf8'), file);
});

t.test('lines are written over zero padding: the file keeps its length until a line would not fit, which compacts', async (t) => {
  const path = journalPath(t);
  const j = open(t, path);
  cycle(j, 1);
  const length = statSync(path).size;
  const snapshotBytes = Buffer.byteLength(`${JSON.stringify(fileLines(path)[0])}\n`);
  t.equal(length, snapshotBytes + JOURNAL_PADDING_BYTES, 'a compaction writes the snapshot and the padding');
  const before = fileData(path).length;
  cycle(j, 2);
  t.equal(statSync(path).size, length, 'appends do not grow the file');
  t.ok(fileData(path).length > before, 'they write over the padding');
  t.ok(readFileSync(path).subarray(Buffer.byteLength(fileData(path))).every((b) => b === 0), 'zeros after the lines');
  // lines of ~100 KB: the padding holds about ten, far fewer than the line threshold
  let compacted = false;
  for (let g = 3; g < 40 && !compacted; g += 1) {
    const lines = fileLines(path).length;
    j.recordAccepted(envelope(AGENT, { generation: g, payload: { filler: 'f'.repeat(100_000) } }), 'sig');
    compacted = fileLines(path).length === 1;
    if (!compacted) t.equal(fileLines(path).length, lines + 1, `generation ${g} appended`);
  }
  t.ok(compacted, 'the line that did not fit compacted the file instead');
  t.ok(statSync(path).size > length, 'with a larger snapshot and fresh padding');
  t.equal(open(t, path).highestGeneration, j.highestGeneration, 'nothing lost');
});

t.test('bytes after the lines that are not zeros (part of an append that never returned) are never written after: the file is compacted at open', async (t) => {
  const path = journalPath(t);
  const j = open(t, path);
  const done = cycle(j, 5);
  const before = state(j.snapshot());
  j.close();
  open(t, path).close(); // compacted at open: one snapshot line, then zeros (a file the next open would append to)
  t.equal(fileLines(path).length, 1);
  // the end of a line whose first bytes never reached the disk: a zero, then text
  const fd = openSync(path, 'r+');
  writeSync(fd, Buffer.from('"op":"put"}\n'), 0, 12, Buffer.byteLength(fileData(path)) + 40);
  closeSync(fd);
  const again = open(t, path);
  t.same(state(again.snapshot()), before, 'the lines before it are read');
  t.ok(readFileSync(path).subarray(Buffer.byteLength(fileData(path))).every((b) => b === 0), 'rewritten with clean padding');
  again.recordAccepted(envelope(AGENT, { generation: 6 }), 'sig');
  t.equal(fileLines(path).length, 2, 'and appended to from then on');
  t.equal(open(t, path).get(done)?.acknowledged, true);
});
