/**
 * `sikker scan` in-process against a control plane: values the vault manages are found
 * by fingerprint at the right line with their project, secret and version; the dirty
 * fixture shows every secret shape and the clean one nothing; stdin, --no-vault without a
 * server, the file walker's skips, and the exit codes (0 clean, 1 found, 2 trouble).
 * No output ever contains a secret value.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { SHAPE_KINDS } from '../../control-plane/cli/scan/finding.js';
import { runCli } from '../../control-plane/cli/run-cli.js';
import { writeIdentityFile } from '../../shared/signing/identity-file.js';
import { startHarness } from '../support/control-plane-harness.js';
import type { TestClient } from '../support/test-client.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const DIRTY = join(ROOT, 'test', 'fixtures', 'scan', 'dirty');
const CLEAN = join(ROOT, 'test', 'fixtures', 'scan', 'clean');

/** The secret strings of the dirty fixture (fake), for the canary check. */
const DIRTY_VALUES = [
  'Vx9-fixture-pw-41', 'Fx7-kq2Lw9pZr', 'AKIAIOSFODNN7EXAMPLE', 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', 'sk_live_FAKE0fixture0scan0key0not0real00',
  'ASIAIOSFODNN7EXAMPLE', 'je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY', 'Yaml-fixture-pw-77', 'Rd-fixture-9f2k', 'Amqp-fixture-3x', 'N0t-a-real-pw-3c9',
  'xoxb-123456789012-1234567890123-FAKEfixtureSlackTok0n00', 'glpat-FAKEfixtureScanTok3n0', 'Props-fixture-pw-12', 'Ado-fixture-pw-5',
  '6umfXfKm/r5kJP1VrT+1FJors', 'TKWTddB+XhkAS1voQG6yyzyN9zHYIa4U', 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9', 'pTyGJMuHbEL31IeL2HPcHyGcFRl1SPnXNYvMIHa_2o7',
  'ghp_FAKE0fixture0scan0token0not0real0abc', 'github_pat_11FAKE0FIXTURE0SCAN0AB', 'AIzaSyFAKE0fixture0scan0key0not0real000', 'My-fixture-pw-8',
];
/** Values stored in the vault (secret shop/orders-db, versions 1 and 2). */
const MANAGED_V1 = 'Orders-db-v1-Kx82-canary';
const MANAGED_V2 = 'Orders-db-v2-Zq8!7f3a9c-canary';

const h = await startHarness(t, { label: 'scan' });
await h.admin.ok('POST', '/v1/projects', { name: 'shop' });
await h.admin.ok('POST', '/v1/projects', { name: 'other' });
await h.admin.ok('PUT', '/v1/projects/shop/secrets/orders-db', { value: MANAGED_V1 });
await h.admin.ok('PUT', '/v1/projects/shop/secrets/orders-db', { value: MANAGED_V2 });
const { serverPublicKey } = await h.admin.ok('GET', '/v1/sys/status', undefined, { signed: false });

/** Every stdout and stderr of the file, checked for secret values at the end. */
const allOutput: string[] = [];

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'sikker-scan-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** An identity file for `client` in a fresh home directory. */
function identityFor(t: Test, client: TestClient): { home: string; identity: string } {
  const home = tempDir(t);
  const identity = join(home, 'identity.json');
  writeIdentityFile(identity, { privateKey: client.privateKey, identityId: client.identityId, serverPublicKey });
  return { home, identity };
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(args: string[], env: Record<string, string>, stdin = ''): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const sink = (append: (text: string) => void): Writable => new Writable({ write: (chunk: Buffer, _e, done) => { append(chunk.toString()); done(); } });
  const code = await runCli(args, {
    stdin: Readable.from(stdin === '' ? [] : [Buffer.from(stdin)]), stdout: sink((text) => (stdout += text)), stderr: sink((text) => (stderr += text)), env,
  });
  allOutput.push(stdout, stderr);
  return { code, stdout, stderr };
}

/** Runs `sikker scan ...` as the admin against the harness. */
async function scan(t: Test, args: string[], stdin = '', client: TestClient = h.admin): Promise<Run> {
  const { home, identity } = identityFor(t, client);
  return run(['scan', ...args], { SIKKER_SERVER: h.baseUrl, SIKKER_IDENTITY: identity, HOME: home }, stdin);
}

async function scanJson(t: Test, args: string[], stdin = ''): Promise<{ code: number; doc: any; stderr: string }> {
  const result = await scan(t, [...args, '--json'], stdin);
  return { code: result.code, doc: JSON.parse(result.stdout), stderr: result.stderr };
}

t.test('scan – a managed value is found by fingerprint at its line, with project, secret and version', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'app.env'), `# orders service\nORDERS_DB=${MANAGED_V2}\nLOG_LEVEL=info\nold: "${MANAGED_V1}"\n`);
  writeFileSync(join(dir, 'other.env'), '# nothing managed here\nLOG_LEVEL=debug\nORDERS_DB=not-a-managed-value-123\n');
  const { code, doc } = await scanJson(t, [dir]);
  t.equal(code, 1, 'exit 1: something was found');
  t.equal(doc.vault, 'checked');
  t.same(doc.scanned, { files: 2, lines: 7, skipped: 0 });
  t.same(doc.findings, [
    { path: join(dir, 'app.env'), line: 2, column: 11, kind: 'managed-secret', project: 'shop', secret: 'orders-db', version: 2, label: 'current', state: 'active', leaked: false },
    { path: join(dir, 'app.env'), line: 4, column: 7, kind: 'managed-secret', project: 'shop', secret: 'orders-db', version: 1, label: 'previous', state: 'active', leaked: false },
  ]);

  const human = await scan(t, [dir]);
  t.equal(human.code, 1);
  t.match(human.stdout, `${join(dir, 'app.env')}:2:11  managed-secret  [shop/orders-db v2 (current, active)]\n`);
  t.match(human.stdout, `${join(dir, 'app.env')}:4:7   managed-secret  [shop/orders-db v1 (previous, active)]\n`);
  t.match(human.stdout, /2 findings in 1 file: scanned 2 files, 7 lines; vault values checked\n$/);
});

t.test('scan – values in a long file are sent in batches and still found', async (t) => {
  const dir = tempDir(t);
  const filler = Array.from({ length: 2600 }, (_, i) => `token-${String(i).padStart(6, '0')}-filler`);
  writeFileSync(join(dir, 'big.log'), `${filler.join('\n')}\nconnect with ${MANAGED_V2}\n`);
  const { code, doc } = await scanJson(t, [dir]);
  t.equal(code, 1);
  t.same(doc.findings.map((f: any) => [f.line, f.kind, f.version]), [[2601, 'managed-secret', 2]]);
});

t.test('scan – --project limits matching to that project', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'app.env'), `ORDERS_DB=${MANAGED_V2}\n`);
  t.same((await scanJson(t, [dir, '--project', 'other'])).doc.findings, [], 'not a value of project other');
  t.same((await scanJson(t, [dir, '--project', 'shop'])).doc.findings.map((f: any) => f.secret), ['orders-db']);
});

t.test('scan – the dirty fixture shows every secret shape, exit 1', async (t) => {
  const { code, doc } = await scanJson(t, [DIRTY]);
  t.equal(code, 1);
  t.same(new Set(doc.findings.map((f: any) => f.kind)), new Set(SHAPE_KINDS), 'the set of kinds');
  t.equal(doc.findings.length, 22);
  t.same(doc.scanned, { files: 7, lines: 48, skipped: 0 });
  t.ok(doc.findings.every((f: any) => f.path.startsWith(DIRTY) && f.line >= 1 && f.column >= 1), 'positions inside the fixture');
});

t.test('scan – the clean fixture has no findings, exit 0', async (t) => {
  const result = await scan(t, [CLEAN]);
  t.equal(result.code, 0, result.stdout + result.stderr);
  t.equal(result.stdout, 'no findings: scanned 5 files, 67 lines; vault values checked\n');
  const { code, doc } = await scanJson(t, [CLEAN]);
  t.equal(code, 0);
  t.same(doc, { findings: [], scanned: { files: 5, lines: 67, skipped: 0 }, vault: 'checked' });
});

t.test('scan – stdin, with no path or "-"', async (t) => {
  const input = `first line\nghp_FAKE0fixture0scan0token0not0real0abc\n\nused ${MANAGED_V2} here\n`;
  for (const args of [[], ['-']]) {
    const { code, doc } = await scanJson(t, args, input);
    t.equal(code, 1);
    t.same(doc.findings.map((f: any) => [f.path, f.line, f.column, f.kind]), [['(stdin)', 2, 1, 'github-token'], ['(stdin)', 4, 6, 'managed-secret']], args.join(' ') || 'no path');
    t.same(doc.scanned, { files: 1, lines: 4, skipped: 0 });
  }
  const clean = await scan(t, ['-'], 'nothing to see\n');
  t.equal(clean.code, 0);
});

t.test('scan – --no-vault works without a server, and no server means vault matching is skipped', async (t) => {
  const home = tempDir(t);
  const noServer = { HOME: home, SIKKER_IDENTITY: join(home, 'missing.json') };
  const skipped = await run(['scan', DIRTY, '--no-vault', '--json'], noServer);
  t.equal(skipped.code, 1);
  const doc = JSON.parse(skipped.stdout);
  t.equal(doc.vault, 'skipped');
  t.same(new Set(doc.findings.map((f: any) => f.kind)), new Set(SHAPE_KINDS));
  t.match(skipped.stderr, /vault matching skipped \(--no-vault\)/);

  const unconfigured = await run(['scan', CLEAN], noServer);
  t.equal(unconfigured.code, 0);
  t.match(unconfigured.stderr, /vault matching skipped: no server configured/);
  t.match(unconfigured.stdout, /; vault matching skipped\n$/);

  const managed = await run(['scan', '-', '--no-vault'], noServer, `x=${MANAGED_V2}\n`);
  t.equal(managed.code, 0, 'a managed value has no shape: only the vault knows it');
});

t.test('scan – directories: binary, too large, excluded, node_modules and links out of the tree are skipped', async (t) => {
  const dir = tempDir(t);
  const outside = tempDir(t);
  const token = 'glpat-FAKEfixtureScanTok3n0';
  const tree = join(dir, 'tree');
  for (const sub of ['node_modules/lib', '.git', 'dist', 'vendor/deep', 'src']) mkdirSync(join(tree, sub), { recursive: true });
  writeFileSync(join(tree, 'src', 'found.env'), `TOKEN=${token}\n`);
  for (const path of ['node_modules/lib/x.env', '.git/config', 'dist/x.js', 'vendor/deep/y.env', 'src/z.min.js']) writeFileSync(join(tree, path), `${token}\n`);
  writeFileSync(join(tree, 'image.bin'), Buffer.concat([Buffer.from('PNG\0\0'), Buffer.from(token)]));
  writeFileSync(join(tree, 'huge.log'), Buffer.concat([Buffer.from(`${token}\n`), Buffer.alloc(10 * 1024 * 1024, 0x61)]));
  writeFileSync(join(outside, 'elsewhere.env'), `TOKEN=${token}\n`);
  symlinkSync(join(outside, 'elsewhere.env'), join(tree, 'link.env'));
  symlinkSync(outside, join(tree, 'linked-dir'));

  const result = await scan(t, [tree, '--no-vault', '--exclude', 'vendor', '--exclude', '*.min.js', '--json']);
  const doc = JSON.parse(result.stdout);
  t.equal(result.code, 1);
  t.same(doc.findings.map((f: any) => f.path), [join(tree, 'src', 'found.env')]);
  t.same(doc.scanned, { files: 1, lines: 1, skipped: 2 }, 'the binary and the large file are counted as skipped');
  t.match(result.stderr, `skipped ${join(tree, 'huge.log')}: larger than 10 MiB`);

  const named = await scan(t, [join(tree, 'node_modules'), join(tree, 'link.env'), '--no-vault', '--json']);
  t.same(JSON.parse(named.stdout).findings.map((f: any) => f.path), [join(tree, 'node_modules', 'lib', 'x.env'), join(tree, 'link.env')], 'paths named on the command line are scanned');
});

t.test('scan – usage errors and failures exit 2 with an error, not a result', async (t) => {
  const missing = await scan(t, [join(tempDir(t), 'nope')]);
  t.equal(missing.code, 2);
  t.match(missing.stderr, /^error ERR_VALIDATION: cannot scan .*nope: ENOENT/);
  t.equal(missing.stdout, '');
  const badProject = await scan(t, [CLEAN, '--project', 'Not_A_Project']);
  t.equal(badProject.code, 2);
  t.match(badProject.stderr, /error ERR_VALIDATION: invalid --project/);
  const both = await scan(t, [CLEAN, '--project', 'shop', '--no-vault']);
  t.equal(both.code, 2);
  const emptyGlob = await scan(t, [CLEAN, '--exclude', ' ']);
  t.equal(emptyGlob.code, 2);
  const twice = await scan(t, ['-', '-']);
  t.equal(twice.code, 2);

  const json = await scan(t, [join(tempDir(t), 'nope'), '--json']);
  t.equal(json.code, 2);
  t.equal(JSON.parse(json.stdout).error.code, 'ERR_VALIDATION');

  const reader = await h.enroll('shop', 'reader');
  const forbidden = await scan(t, [CLEAN], '', reader);
  t.equal(forbidden.code, 2, 'a reader may not match values');
  t.match(forbidden.stderr, /error ERR_AUTH_FORBIDDEN/);

  const { home, identity } = identityFor(t, h.admin);
  const unreachable = await run(['scan', CLEAN], { SIKKER_SERVER: 'http://127.0.0.1:9', SIKKER_IDENTITY: identity, HOME: home });
  t.equal(unreachable.code, 2, 'a vault that cannot be asked is not a clean scan');
  t.match(unreachable.stderr, /error ERR_SERVER_UNREACHABLE/);
});

t.test('scan – no output and no control-plane log line contains a secret value', async (t) => {
  t.ok(allOutput.length > 20, `${allOutput.length} outputs checked`);
  const output = allOutput.join('\n');
  for (const value of [MANAGED_V1, MANAGED_V2, ...DIRTY_VALUES]) {
    t.notOk(output.includes(value), `output never contains ${value.slice(0, 4)}…`);
  }
  const logs = h.logs.text();
  for (const value of [MANAGED_V1, MANAGED_V2, 'not-a-managed-value-123']) t.notOk(logs.includes(value), `logs never contain ${value.slice(0, 4)}…`);
});
