import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { compileAgentConfig, loadAgentConfig } from '../../agent/config/agent-config.js';

const base = { server: 'https://vault.example:8443', stateDir: '/var/lib/sikker-agent' };
const sink = { name: 'db', path: '/etc/app/db-password', format: 'raw' };

t.test('agent config – defaults, and durations compiled to ms once', async (t) => {
  const c = compileAgentConfig({ ...base, sinks: [sink] }, 'test');
  t.equal(c.heartbeatMs, 15_000);
  t.equal(c.shutdownGraceMs, 10_000);
  t.equal(c.insecureHttp, false);
  t.same(c.sinks, [{ name: 'db', path: '/etc/app/db-password', format: 'raw', envName: 'SECRET', mode: 0o600, reloadCommand: null, reloadTimeoutMs: 30_000 }]);
});

t.test('agent config – each bad field is named', async (t) => {
  const cases: [unknown, RegExp][] = [
    [{ stateDir: '/x' }, /server/],
    [{ ...base, server: 'ftp://x' }, /server: must be an http/],
    [{ ...base, server: 'https://x/path' }, /server/],
    [{ ...base, stateDir: 'relative' }, /stateDir: must be an absolute path/],
    [{ ...base, heartbeatSeconds: 4 }, /heartbeatSeconds/],
    [{ ...base, shutdownGraceSeconds: 301 }, /shutdownGraceSeconds/],
    [{ ...base, pinSha256: 'abc' }, /pinSha256: must be 64 hex digits/],
    [{ ...base, sinks: [{ ...sink, name: 'bad name' }] }, /sinks\.0\.name/],
    [{ ...base, sinks: [{ ...sink, path: 'db' }] }, /sinks\.0\.path: must be an absolute path/],
    [{ ...base, sinks: [{ ...sink, format: 'yaml' }] }, /sinks\.0\.format/],
    [{ ...base, sinks: [{ ...sink, mode: '0644' }] }, /sinks\.0\.mode/],
    [{ ...base, sinks: [{ ...sink, reloadCommand: [] }] }, /sinks\.0\.reloadCommand/],
    [{ ...base, sinks: [sink, sink] }, /sinks\.1\.name: "db" is used twice/],
    [{ ...base, sinks: Array.from({ length: 65 }, (_, i) => ({ ...sink, name: `s${i}` })) }, /sinks/],
    [{ ...base, colour: 'blue' }, /\(root\)|colour/],
  ];
  for (const [raw, message] of cases) {
    t.throws(() => compileAgentConfig(raw, 'agent.json'), { code: 'ERR_CONFIG_INVALID', message }, String(message));
  }
});

t.test('agent config – plain http to a non-loopback host needs insecureHttp', async (t) => {
  t.throws(() => compileAgentConfig({ ...base, server: 'http://10.1.2.3:8200' }, 'c'), { message: /insecureHttp/ });
  t.equal(compileAgentConfig({ ...base, server: 'http://10.1.2.3:8200', insecureHttp: true }, 'c').server, 'http://10.1.2.3:8200');
  t.equal(compileAgentConfig({ ...base, server: 'http://127.0.0.1:8200/' }, 'c').server, 'http://127.0.0.1:8200');
});

t.test('agent config – values are not echoed in messages', async (t) => {
  try {
    compileAgentConfig({ ...base, sinks: [{ ...sink, envName: 'not valid sEcReT-9' }] }, 'c');
    t.fail('should throw');
  } catch (err) {
    t.match((err as Error).message, /sinks\.0\.envName/);
    t.notMatch((err as Error).message, /sEcReT-9/);
  }
});

t.test('agent config – file errors name the file; command-line values override', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sikker-agent-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'agent.json');
  t.throws(() => loadAgentConfig(path), { code: 'ERR_CONFIG_INVALID', message: `config file ${path} cannot be read` });
  writeFileSync(path, '{ nope');
  t.throws(() => loadAgentConfig(path), { message: `config file ${path} is not valid JSON` });
  writeFileSync(path, JSON.stringify(base));
  const c = loadAgentConfig(path, { server: 'https://other.example', stateDir: '/srv/state' });
  t.equal(c.server, 'https://other.example');
  t.equal(c.stateDir, '/srv/state');
});

t.test('agent config – admin connections: inline url and urlFile, by name', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sikker-agent-admin-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'pg-admin.url');
  writeFileSync(file, 'postgres://admin:s3cret@db.internal:5432/postgres\n', { mode: 0o600 });
  const c = compileAgentConfig({
    ...base,
    adminConnections: [
      { name: 'pg-main', urlFile: file },
      { name: 'cache', url: 'redis://rotator:pw@127.0.0.1:6379' },
    ],
  }, 'c');
  t.same([...c.adminConnections.entries()], [
    ['pg-main', { url: 'postgres://admin:s3cret@db.internal:5432/postgres' }],
    ['cache', { url: 'redis://rotator:pw@127.0.0.1:6379' }],
  ], 'the file is read at load, surrounding whitespace dropped');
  t.equal(compileAgentConfig(base, 'c').adminConnections.size, 0, 'none by default');
});

t.test('agent config – admin connections: each bad entry is named', async (t) => {
  const url = 'mysql://root:pw@127.0.0.1:3306';
  const cases: [unknown, RegExp][] = [
    [[{ name: 'a', url, urlFile: '/etc/sikker/a.url' }], /adminConnections\.0: give exactly one of "url" and "urlFile"/],
    [[{ name: 'a' }], /adminConnections\.0: give exactly one of "url" and "urlFile"/],
    [[{ name: 'a', url }, { name: 'a', url }], /adminConnections\.1\.name: "a" is used twice/],
    [[{ name: 'bad name', url }], /adminConnections\.0\.name/],
    [[{ name: 'a', urlFile: 'relative.url' }], /adminConnections\.0\.urlFile: must be an absolute path/],
    [[{ name: 'a', url: 'x'.repeat(4097) }], /adminConnections\.0\.url/],
    [[{ name: 'a', url, colour: 'blue' }], /adminConnections\.0/],
    [Array.from({ length: 65 }, (_, i) => ({ name: `a${i}`, url })), /adminConnections/],
  ];
  for (const [adminConnections, message] of cases) {
    t.throws(() => compileAgentConfig({ ...base, adminConnections }, 'agent.json'), { code: 'ERR_CONFIG_INVALID', message }, String(message));
  }
});

t.test('agent config – admin connections: an unreadable or empty urlFile is named', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sikker-agent-admin-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const missing = join(dir, 'missing.url');
  t.throws(() => compileAgentConfig({ ...base, adminConnections: [{ name: 'a', urlFile: missing }] }, 'c'), {
    code: 'ERR_CONFIG_INVALID',
    message: `config c: adminConnections.0.urlFile: ${missing} cannot be read`,
  });
  t.throws(() => compileAgentConfig({ ...base, adminConnections: [{ name: 'a', urlFile: dir }] }, 'c'), { message: /urlFile: .* cannot be read/ }, 'a directory');
  const empty = join(dir, 'empty.url');
  writeFileSync(empty, '\n');
  t.throws(() => compileAgentConfig({ ...base, adminConnections: [{ name: 'a', urlFile: empty }] }, 'c'), { message: `config c: adminConnections.0.urlFile: ${empty} is empty` });
});

t.test('agent config – admin connections: the URL is never echoed', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sikker-agent-admin-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const token = 'CANARYpw9f3a';
  const file = join(dir, 'bad.url');
  writeFileSync(file, `https://admin:${token}@db:5432/x`);
  const attempts: [unknown, RegExp][] = [
    [{ name: 'a', url: `not a url ${token}` }, /adminConnections\.0\.url is not a valid URL/],
    [{ name: 'a', url: `http://admin:${token}@db:5432/x` }, /adminConnections\.0\.url must start with postgres:\/\//],
    [{ name: 'a', url: `${token}`.repeat(400) }, /adminConnections\.0\.url/],
    [{ name: 'a', urlFile: file }, /adminConnections\.0\.urlFile: the URL in .*bad\.url must start with/],
    // no port, or no host: the target (described by the control plane) would choose where the password goes
    [{ name: 'a', url: `postgres://admin:${token}@db.internal/postgres` }, /adminConnections\.0\.url must name the server's host and port/],
    [{ name: 'a', url: `postgres://admin:${token}@/postgres` }, /adminConnections\.0\.url (must name the server's host and port|is not a valid URL)/],
    [{ name: 'a', url: `redis://:${token}@127.0.0.1` }, /adminConnections\.0\.url must name the server's host and port/],
  ];
  for (const [entry, message] of attempts) {
    try {
      compileAgentConfig({ ...base, adminConnections: [entry] }, 'c');
      t.fail('should throw');
    } catch (err) {
      t.match(err, { code: 'ERR_CONFIG_INVALID', message }, String(message));
      const rendered = `${String(err)} ${JSON.stringify(err)} ${String((err as Error).cause)} ${(err as Error).stack ?? ''}`;
      t.notOk(rendered.includes(token), 'the URL is not in the message, stack, cause or details');
    }
  }
});
