import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { SinkConfig } from '../../agent/sinks/sink-config.js';
import { renderSinkContent } from '../../agent/sinks/sink-format.js';
import { SinkWriter } from '../../agent/sinks/sink-writer.js';

const facts = { project: 'shop', secret: 'db-password', version: 4 };
const HOSTILE = `it's $HOME \`id\` "q" \\ back\nline2 ' '' ünï`;

function sinkIn(t: Test, overrides: Partial<SinkConfig> = {}): SinkConfig {
  const dir = mkdtempSync(join(tmpdir(), 'sikker-agent-sinks-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return { name: 's', path: join(dir, 'secret'), format: 'raw', envName: 'SECRET', mode: 0o600, reloadCommand: null, reloadTimeoutMs: 5000, ...overrides };
}

t.test('sink format – env quoting survives a POSIX shell with hostile characters', async (t) => {
  const sink = sinkIn(t, { format: 'env', envName: 'DB_PASSWORD' });
  writeFileSync(sink.path, renderSinkContent(sink, Buffer.from(HOSTILE), facts));
  const echoed = execFileSync('/bin/sh', ['-c', `. "$1"; printf '%s' "$DB_PASSWORD"`, 'sh', sink.path]).toString('utf8');
  t.equal(echoed, HOSTILE);
});

t.test('sink format – env refuses a NUL byte without echoing the value', async (t) => {
  t.throws(() => renderSinkContent({ format: 'env', envName: 'X' }, Buffer.from('abc\0def'), facts), { code: 'ERR_SINK_WRITE', message: /NUL/ });
});

t.test('sink format – json holds the facts and the exact value', async (t) => {
  const out = renderSinkContent({ format: 'json', envName: 'X' }, Buffer.from(HOSTILE + '\u0001'), facts);
  t.same(JSON.parse(out.toString('utf8')), { ...facts, value: HOSTILE + '\u0001' });
});

t.test('sink writer – replaces the file atomically with the sink mode', async (t) => {
  const sink = sinkIn(t, { mode: 0o640 });
  writeFileSync(sink.path, 'old', { mode: 0o644 });
  const writer = new SinkWriter([sink]);
  t.same(await writer.deliver('s', Buffer.from('new-value'), facts), { sink: 's', path: sink.path, bytes: 9, version: 4 });
  t.equal(readFileSync(sink.path, 'utf8'), 'new-value');
  t.equal(statSync(sink.path).mode & 0o777, 0o640);
  t.same(readdirSync(join(sink.path, '..')), ['secret'], 'no temp file left');
});

t.test('sink writer – a failing reload fails with ERR_SINK_RELOAD but the file stays written', async (t) => {
  const sink = sinkIn(t, { reloadCommand: ['/bin/sh', '-c', 'exit 3'] });
  await t.rejects(new SinkWriter([sink]).deliver('s', Buffer.from('v2'), facts), { code: 'ERR_SINK_RELOAD', message: /exited with code 3/ });
  t.equal(readFileSync(sink.path, 'utf8'), 'v2');
});

t.test('sink writer – a reload that hangs is killed at its timeout', async (t) => {
  const sink = sinkIn(t, { reloadCommand: ['sleep', '10'], reloadTimeoutMs: 200 });
  await t.rejects(new SinkWriter([sink]).deliver('s', Buffer.from('v'), facts), { code: 'ERR_SINK_RELOAD', message: /did not finish within 0.2 s/ });
});

t.test('sink writer – the reload runs without a shell', async (t) => {
  const sink = sinkIn(t);
  const marker = `${sink.path}.ran`;
  sink.reloadCommand = ['/usr/bin/touch', `${marker}; echo injected`];
  await new SinkWriter([sink]).deliver('s', Buffer.from('v'), facts);
  t.ok(statSync(`${marker}; echo injected`).isFile(), 'the argument reached touch literally');
});

t.test('sink writer – unknown sink and missing directory fail with ERR_SINK_WRITE', async (t) => {
  const sink = sinkIn(t);
  await t.rejects(new SinkWriter([sink]).deliver('other', Buffer.from('v'), facts), { code: 'ERR_SINK_WRITE', message: 'no sink named other' });
  const missing = { ...sink, path: join(sink.path, 'nodir', 'file') };
  await t.rejects(new SinkWriter([missing]).deliver('s', Buffer.from('v'), facts), { code: 'ERR_SINK_WRITE', message: /ENOENT|ENOTDIR/ });
});

t.test('atomic file – a temp file left by a crash is removed by the next write', async (t) => {
  const { mkdtempSync, writeFileSync, readdirSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { writeFileAtomic } = await import('../../agent/state/atomic-file.js');
  const dir = mkdtempSync(join(tmpdir(), 'sikker-atomic-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, '.db.env.tmp-999-abcdef'), 'old-secret', { mode: 0o600 });
  writeFileSync(join(dir, 'unrelated.tmp-1'), 'keep');
  await writeFileAtomic(join(dir, 'db.env'), Buffer.from('new'), 0o600);
  t.same(readdirSync(dir).sort(), ['db.env', 'unrelated.tmp-1']);
});
