import { execFileSync } from 'node:child_process';
import t from 'tap';
import { startHarness } from '../support/control-plane-harness.js';

const CANARY = 'canary-Zq8!sikker-7f3a9c-value';

t.test('secrets – versions carry labels current, previous, pending', async (t) => {
  const h = await startHarness(t, { label: 'labels' });
  await h.admin.ok('POST', '/v1/projects', { name: 'p' });
  await h.admin.ok('PUT', '/v1/projects/p/secrets/db', { value: 'v1' });
  await h.admin.ok('PUT', '/v1/projects/p/secrets/db', { value: 'v2' });
  await h.admin.ok('PUT', '/v1/projects/p/secrets/db', { value: 'v3' });
  await h.admin.ok('PUT', '/v1/projects/p/secrets/db', { value: 'v4', label: 'pending' });
  const { versions } = await h.admin.ok('GET', '/v1/projects/p/secrets/db/versions');
  t.same(versions.map((v: { version: number; label: string | null }) => [v.version, v.label]), [[1, null], [2, 'previous'], [3, 'current'], [4, 'pending']]);
  t.equal((await h.admin.ok('GET', '/v1/projects/p/secrets/db')).value, 'v3', 'default read is current');
  t.equal((await h.admin.ok('GET', '/v1/projects/p/secrets/db?version=1')).value, 'v1');
  t.equal((await h.admin.ok('GET', '/v1/projects/p/secrets/db?label=pending')).value, 'v4');
  const list = await h.admin.ok('GET', '/v1/projects/p/secrets');
  t.same(list.secrets.map((s: { name: string; currentVersion: number }) => [s.name, s.currentVersion]), [['db', 3]]);
  const missing = await h.admin.call('GET', '/v1/projects/p/secrets/db?version=9');
  t.equal(missing.status, 404);
});

t.test('secrets – bad input is refused with a clear error and nothing is stored', async (t) => {
  const h = await startHarness(t, { label: 'badinput' });
  await h.admin.ok('POST', '/v1/projects', { name: 'p' });
  const badName = await h.admin.call('PUT', '/v1/projects/p/secrets/..%2Fetc', { value: 'x' });
  t.equal(badName.status, 400);
  t.equal(badName.body.error.code, 'ERR_VALIDATION');
  const empty = await h.admin.call('PUT', '/v1/projects/p/secrets/ok', { value: '' });
  t.equal(empty.body.error.code, 'ERR_VALIDATION');
  const huge = await h.admin.call('PUT', '/v1/projects/p/secrets/ok', { value: 'x'.repeat(70000) });
  t.equal(huge.body.error.code, 'ERR_VALIDATION');
  const extra = await h.admin.call('PUT', '/v1/projects/p/secrets/ok', { value: 'x', label: 'previous' });
  t.equal(extra.body.error.code, 'ERR_VALIDATION');
  const notJson = await h.admin.call('PUT', '/v1/projects/p/secrets/ok', undefined, { mutate: (r) => { r.headers['content-type'] = 'application/json'; r.body = Buffer.from('{nope'); } });
  t.equal(notJson.status, 400, 'malformed JSON (the signature is checked first, so it fails as unauthenticated or invalid)');
  t.same((await h.admin.ok('GET', '/v1/projects/p/secrets')).secrets, [], 'nothing was stored');
});

t.test('secrets – a ciphertext copied to another secret or version fails to decrypt', async (t) => {
  const h = await startHarness(t, { label: 'aad' });
  await h.admin.ok('POST', '/v1/projects', { name: 'p' });
  await h.admin.ok('PUT', '/v1/projects/p/secrets/a', { value: 'value-a-1' });
  await h.admin.ok('PUT', '/v1/projects/p/secrets/a', { value: 'value-a-2' });
  await h.admin.ok('PUT', '/v1/projects/p/secrets/b', { value: 'value-b-1' });
  const pool = h.plane.pool;
  // Version 1 of a gets version 2's ciphertext (same data key, other version).
  await pool.query(`UPDATE secret_versions v SET ciphertext = (SELECT ciphertext FROM secret_versions w WHERE w.secret_id = v.secret_id AND w.version = 2)
    WHERE v.version = 1 AND v.secret_id = (SELECT secret_id FROM secrets WHERE name = 'a')`);
  const moved = await h.admin.call('GET', '/v1/projects/p/secrets/a?version=1');
  t.equal(moved.body.error?.code, 'ERR_CRYPTO_DECRYPT', 'copied to another version');
  t.notMatch(JSON.stringify(moved.body), /value-a/);
  // b gets a's wrapped data key and a's ciphertext: both bound to a.
  await pool.query(`UPDATE secrets SET wrapped_data_key = (SELECT wrapped_data_key FROM secrets WHERE name = 'a') WHERE name = 'b'`);
  const swapped = await h.admin.call('GET', '/v1/projects/p/secrets/b');
  t.equal(swapped.body.error?.code, 'ERR_CRYPTO_DECRYPT', 'a data key copied to another secret');
  t.equal((await h.admin.ok('GET', '/v1/projects/p/secrets/a')).value, 'value-a-2', 'the untouched version still reads');
});

t.test('secrets – a plain pg_dump holds neither the value nor any key material', async (t) => {
  const h = await startHarness(t, { label: 'dump' });
  await h.admin.ok('POST', '/v1/projects', { name: 'p' });
  await h.admin.ok('PUT', '/v1/projects/p/secrets/db', { value: CANARY });
  t.equal((await h.admin.ok('GET', '/v1/projects/p/secrets/db')).value, CANARY);
  const root = Buffer.from(h.plane.root.rootKeyOrThrow());
  const project = (await h.plane.pool.query<{ project_id: string }>("SELECT project_id FROM projects WHERE name = 'p'")).rows[0]!;
  // Reach into the keyring the way the read path does, to learn the project key's bytes.
  const keyring = (h.plane.services.secrets as unknown as { keyring: { projectKey(db: unknown, id: string, v: number): Promise<Buffer> } }).keyring;
  const projectKey = Buffer.from(await keyring.projectKey(h.plane.pool, project.project_id, 1));
  const dump = execFileSync('pg_dump', ['--no-owner', h.db.url], { maxBuffer: 64 * 1024 * 1024 }).toString('utf8');
  t.ok(dump.includes('secret_versions'), 'the dump has the data');
  const forms = (b: Buffer): string[] => [b.toString('hex'), b.toString('base64'), b.toString('base64url')];
  for (const form of [CANARY, ...forms(Buffer.from(CANARY)), ...forms(root), ...forms(projectKey)]) {
    t.notOk(dump.includes(form), `dump does not contain ${form.slice(0, 6)}…`);
  }
  for (const share of h.shares) t.notOk(dump.includes(share.slice(5)), 'no share in the dump');
  t.notOk(h.logs.text().includes(CANARY), 'the canary never reached the logs');
});
