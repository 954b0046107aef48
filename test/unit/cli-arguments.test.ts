import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import t from 'tap';
import { parseDurationSeconds, parseSecretRef, queryString } from '../../control-plane/cli/cli-arguments.js';
import { defaultIdentityPath, resolveCliConfig } from '../../control-plane/cli/config.js';
import { defaultIdentityName } from '../../control-plane/cli/identity-setup.js';
import { runCli } from '../../control-plane/cli/run-cli.js';

/** Runs the CLI in-process with in-memory streams; no server is started, so nothing may reach the network. */
async function run(argv: string[], env: Record<string, string | undefined> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const sink = (append: (text: string) => void): Writable =>
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        append(chunk.toString('utf8'));
        callback();
      },
    });
  const code = await runCli(argv, {
    stdin: Readable.from([]),
    stdout: sink((text) => (stdout += text)),
    stderr: sink((text) => (stderr += text)),
    env: { SIKKER_SERVER: 'http://127.0.0.1:9', ...env },
  });
  return { code, stdout, stderr };
}

t.test('secret ref – PROJECT/NAME parses', async (t) => {
  t.same(parseSecretRef('payments/db-password'), { project: 'payments', name: 'db-password' });
  t.same(parseSecretRef('p1/DB_PASS.v2'), { project: 'p1', name: 'DB_PASS.v2' });
});

t.test('secret ref – malformed references are refused', async (t) => {
  for (const bad of ['payments', 'a/b/c', '/x', 'p/', 'Payments/x', 'p/-x', 'p/x y', '../p/x', 'p/%2e']) {
    t.throws(() => parseSecretRef(bad), { code: 'ERR_VALIDATION' }, bad);
  }
});

t.test('duration – accepted forms become seconds', async (t) => {
  t.equal(parseDurationSeconds('15m', '--ttl'), 900);
  t.equal(parseDurationSeconds('2h', '--ttl'), 7200);
  t.equal(parseDurationSeconds('900s', '--ttl'), 900);
  t.equal(parseDurationSeconds('3600', '--ttl'), 3600);
  t.equal(parseDurationSeconds('1d', '--ttl'), 86400);
});

t.test('duration – other forms are refused', async (t) => {
  for (const bad of ['', '15 minutes', '-5m', '1.5h', 'm', '2w', '1e3']) {
    t.throws(() => parseDurationSeconds(bad, '--ttl'), { code: 'ERR_VALIDATION', message: /--ttl/ }, bad);
  }
});

t.test('query string – undefined values are left out and values encoded', async (t) => {
  t.equal(queryString({ a: undefined }), '');
  t.equal(queryString({ from: '2024-01-01T00:00:00+02:00', limit: 5 }), '?from=2024-01-01T00%3A00%3A00%2B02%3A00&limit=5');
});

t.test('config – flags win over env, env over defaults', async (t) => {
  const env = { SIKKER_SERVER: 'https://env:1', SIKKER_IDENTITY: '/env/id.json', HOME: '/home/u' };
  t.equal(resolveCliConfig({ server: 'https://flag:1' }, env).server, 'https://flag:1');
  t.equal(resolveCliConfig({}, env).identityPath, '/env/id.json');
  t.equal(defaultIdentityPath({ HOME: '/home/u' }), '/home/u/.config/sikker/identity.json');
  t.equal(defaultIdentityPath({ HOME: '/home/u', XDG_CONFIG_HOME: '/xdg' }), '/xdg/sikker/identity.json');
  t.equal(defaultIdentityPath({ HOME: '/home/u', XDG_CONFIG_HOME: 'relative' }), '/home/u/.config/sikker/identity.json');
});

t.test('identity name – $USER@hostname is sanitised', async (t) => {
  t.equal(defaultIdentityName({ USER: 'alice' }, 'db-1.example'), 'alice@db-1.example');
  t.equal(defaultIdentityName({ USER: 'a b/c' }, 'h'), 'a-b-c@h');
  t.equal(defaultIdentityName({ USER: '~~' }, '~~'), 'operator');
});

t.test('cli – bad PROJECT/NAME exits 1 with "error ERR_VALIDATION" on stderr', async (t) => {
  const result = await run(['secret', 'get', 'no-slash']);
  t.equal(result.code, 1);
  t.match(result.stderr, /^error ERR_VALIDATION: secret must be given as PROJECT\/NAME/);
  t.equal(result.stdout, '');
});

t.test('cli – --json puts exactly one error document on stdout', async (t) => {
  const result = await run(['secret', 'versions', 'a/b/c', '--json']);
  t.equal(result.code, 1);
  t.same(JSON.parse(result.stdout), { error: { code: 'ERR_VALIDATION', message: 'secret must be given as PROJECT/NAME, e.g. payments/db-password' } });
  t.equal(result.stderr, '');
});

t.test('cli – unknown role is refused naming --role', async (t) => {
  const result = await run(['identity', 'token', '--project', 'payments', '--role', 'king']);
  t.equal(result.code, 1);
  t.match(result.stderr, /error ERR_VALIDATION: invalid --role/);
});

t.test('cli – malformed ttl is refused', async (t) => {
  const result = await run(['identity', 'token', '--project', 'payments', '--role', 'agent', '--ttl', '10 years']);
  t.match(result.stderr, /error ERR_VALIDATION: invalid --ttl: use a duration/);
});

t.test('cli – ttl out of range is refused', async (t) => {
  t.match((await run(['identity', 'token', '--project', 'p', '--role', 'agent', '--ttl', '10s'])).stderr, /invalid --ttl: must be between 30s and 7d/);
  t.match((await run(['identity', 'token', '--project', 'p', '--role', 'agent', '--ttl', '8d'])).stderr, /invalid --ttl/);
});

t.test('cli – malformed cidr is refused', async (t) => {
  const result = await run(['identity', 'token', '--project', 'p', '--role', 'agent', '--cidr', 'anywhere']);
  t.match(result.stderr, /error ERR_VALIDATION: invalid --cidr/);
});

t.test('cli – grant needs a UUID identity', async (t) => {
  const result = await run(['secret', 'grant', 'p/x', '--identity', 'bob']);
  t.match(result.stderr, /error ERR_VALIDATION: invalid --identity/);
});

t.test('cli – audit filters are validated', async (t) => {
  t.match((await run(['audit', 'list', '--limit', '0'])).stderr, /error ERR_VALIDATION: invalid audit filter: limit/);
  t.match((await run(['audit', 'list', '--from', 'yesterday'])).stderr, /error ERR_VALIDATION: invalid audit filter: from/);
});

t.test('cli – init with threshold above shares creates no key file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sikker-cli-args-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const identity = join(dir, 'identity.json');
  const result = await run(['operator', 'init', '--shares', '3', '--threshold', '5', '--identity', identity]);
  t.match(result.stderr, /error ERR_VALIDATION: invalid --threshold/);
  t.notOk(existsSync(identity));
});

t.test('cli – plain http to a non-loopback server is refused', async (t) => {
  const result = await run(['operator', 'status', '--server', 'http://10.20.30.40:8200']);
  t.equal(result.code, 1);
  t.match(result.stderr, /^error ERR_TRANSPORT_INSECURE: /);
});

t.test('cli – missing server is a configuration error', async (t) => {
  const result = await run(['operator', 'status'], { SIKKER_SERVER: undefined });
  t.match(result.stderr, /^error ERR_CONFIG_INVALID: no server given/);
});

t.test('cli – unknown command and missing option are usage errors', async (t) => {
  t.match((await run(['secret', 'frobnicate'])).stderr, /^error ERR_VALIDATION: /);
  t.match((await run(['operator', 'init', '--shares', '3'])).stderr, /^error ERR_VALIDATION: .*--threshold/);
});

t.test('cli – help exits 0 on stdout', async (t) => {
  const result = await run(['secret', 'put', '--help']);
  t.equal(result.code, 0);
  t.match(result.stdout, /--pending/);
});
