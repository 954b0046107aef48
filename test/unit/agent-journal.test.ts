import { fdatasyncSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { CommandResult } from '../../shared/protocol/agent-messages.js';
import type { CommandJournal } from '../../agent/journal/command-journal.js';
import { FileCommandJournal } from '../../agent/journal/file-command-journal.js';
import { MemoryCommandJournal } from '../../agent/journal/memory-command-journal.js';
import { commandFrame, envelope, FakeHub, makeKeys, startClient } from './agent-test-hub.js';

const AGENT = '3d2c1b0a-9f8e-4d7c-8b6a-5f4e3d2c1b0a';

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'sikker-journal-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function succeeded(commandId: string): CommandResult {
  return { commandId, outcome: 'succeeded', result: { n: 1 }, error: null };
}

/** Runs the same behaviour against both implementations. */
function bothJournals(name: string, body: (t: Test, make: (retain?: number) => CommandJournal) => Promise<void> | void): void {
  t.test(`memory journal – ${name}`, async (t) => body(t, (retain) => new MemoryCommandJournal({ retainAcknowledged: retain ?? 1000 })));
  t.test(`file journal – ${name}`, async (t) => {
    const dir = tempDir(t);
    return body(t, (retain) => FileCommandJournal.open(join(dir, 'journal.json'), { retainAcknowledged: retain ?? 1000 }));
  });
}

bothJournals('accepted raises the generation; a second accept of one id is refused', (t, make) => {
  const j = make();
  const e = envelope(AGENT, { generation: 7 });
  j.recordAccepted(e, 'sig');
  t.equal(j.highestGeneration, 7);
  t.match(j.get(e.commandId), { status: 'accepted', envelope: e, signature: 'sig' });
  t.same(j.inProgress().map((x) => x.commandId), [e.commandId]);
  t.throws(() => j.recordAccepted(e, 'sig'), { code: 'ERR_AGENT_STATE' });
});

bothJournals('a final result drops the envelope and waits for its acknowledgement', (t, make) => {
  const j = make();
  const e = envelope(AGENT);
  j.recordAccepted(e, 'sig');
  j.recordFinal(succeeded(e.commandId));
  t.match(j.get(e.commandId), { status: 'final', envelope: null, signature: null, acknowledged: false });
  t.same(j.inProgress(), []);
  t.same(j.unacknowledgedResults(10), [succeeded(e.commandId)]);
  t.equal(j.acknowledge(e.commandId), true);
  t.same(j.unacknowledgedResults(10), []);
  t.equal(j.acknowledge('00000000-0000-4000-8000-000000000000'), false);
});

bothJournals('highestGeneration survives pruning; unacknowledged entries are kept', (t, make) => {
  const j = make(2);
  const ids: string[] = [];
  for (let g = 1; g <= 5; g += 1) {
    const e = envelope(AGENT, { generation: g });
    ids.push(e.commandId);
    j.recordAccepted(e, 'sig');
    j.recordFinal(succeeded(e.commandId));
  }
  for (const id of ids.slice(0, 4)) j.acknowledge(id);
  t.equal(j.highestGeneration, 5);
  t.same(ids.map((id) => j.get(id) !== undefined), [false, false, true, true, true], 'only the newest 2 acknowledged remain, plus the unacknowledged one');
});

t.test('file journal – reopening restores everything, including the generation after pruning', async (t) => {
  const path = join(tempDir(t), 'journal.json');
  const j = FileCommandJournal.open(path, { retainAcknowledged: 0 });
  const done = envelope(AGENT, { generation: 40 });
  const running = envelope(AGENT, { generation: 41 });
  j.recordAccepted(done, 'sig-a');
  j.recordFinal(succeeded(done.commandId));
  j.acknowledge(done.commandId); // pruned at once (retain 0)
  j.recordAccepted(running, 'sig-b');
  const again = FileCommandJournal.open(path);
  t.equal(again.highestGeneration, 41);
  t.equal(again.get(done.commandId), undefined);
  t.match(again.inProgress(), [{ commandId: running.commandId, envelope: running, signature: 'sig-b' }]);
});

t.test('file journal – the file is mode 0600 and no temp file is left', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'journal.json');
  const j = FileCommandJournal.open(path);
  j.recordAccepted(envelope(AGENT), 'sig');
  t.equal(statSync(path).mode & 0o777, 0o600);
  t.same(readdirSync(dir), ['journal.json']);
});

t.test('file journal – a corrupt file is refused, never reset', async (t) => {
  const path = join(tempDir(t), 'journal.json');
  writeFileSync(path, '{"format":"sikker-agent-journal-v1","highestGeneration":"x"', { mode: 0o600 });
  t.throws(() => FileCommandJournal.open(path), { code: 'ERR_AGENT_STATE', message: /corrupt/ });
});

t.test('file journal – a failed write throws, keeps memory as it was and leaves no temp file', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'journal.json');
  let failSync = false;
  const sync = (fd: number) => {
    if (failSync) throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
    fdatasyncSync(fd);
  };
  const j = FileCommandJournal.open(path, { appendCalls: { sync } });
  const first = envelope(AGENT, { generation: 1 });
  j.recordAccepted(first, 'sig');
  failSync = true; // an append fails…
  const second = envelope(AGENT, { generation: 2 });
  t.throws(() => j.recordAccepted(second, 'sig'), { code: 'ERR_AGENT_STATE', message: /cannot write the command journal/, retryable: true });
  rmSync(path);
  mkdirSync(path); // …and so does the rewrite the next change starts with: renaming over a directory fails, even for root
  t.throws(() => j.recordAccepted(second, 'sig'), { code: 'ERR_AGENT_STATE', message: /cannot write the command journal/, retryable: true });
  t.equal(j.highestGeneration, 1);
  t.equal(j.get(second.commandId), undefined);
  t.ok(j.get(first.commandId));
  t.same(readdirSync(dir), ['journal.json']);
  rmSync(path, { recursive: true });
  failSync = false;
  j.recordAccepted(second, 'sig');
  t.equal(FileCommandJournal.open(path).highestGeneration, 2, 'the journal works again once the disk does');
});

t.test('hub client – a command interrupted by a crash runs again at start and is reported', async (t) => {
  const keys = makeKeys();
  const journal = new MemoryCommandJournal();
  const e = envelope(keys.identity.identityId);
  journal.recordAccepted(e, commandFrame(keys.serverPrivateKey, e).signature);
  const hub = await FakeHub.start(t);
  startClient(t, hub, keys, { journal });
  const side = await hub.nextConnection(0);
  const reported = await side.next((m) => (m.type === 'result' && m.commandId === e.commandId) || (m.type === 'hello' && m.results.some((r) => r.commandId === e.commandId)));
  t.ok(reported, 'the result reaches the hub, in the hello or right after it');
  t.equal(journal.get(e.commandId)?.status, 'final');
  t.equal(journal.highestGeneration, e.generation);
});
