import t from 'tap';
import { startHarness } from '../support/control-plane-harness.js';

const CANARY = 'canary-rotation-9d2e-Value';

t.test('project key rotation – re-wraps data keys, resumes after a crash halfway, values untouched', async (t) => {
  const h = await startHarness(t, { label: 'pkrot' });
  await h.admin.ok('POST', '/v1/projects', { name: 'p' });
  for (let i = 0; i < 25; i += 1) await h.admin.ok('PUT', `/v1/projects/p/secrets/s${i}`, { value: `${CANARY}-${i}` });
  const before = (await h.plane.pool.query<{ secret_id: string; ciphertext: Buffer }>('SELECT secret_id, ciphertext FROM secret_versions ORDER BY secret_id')).rows;

  const admin = await h.plane.services.identities.forAuthentication(h.admin.identityId);
  const project = (await h.plane.services.projects.list(admin!)).find((p) => p.name === 'p')!;
  let batches = 0;
  await t.rejects(h.plane.services.keyRotation.rotate(admin!, '127.0.0.1', project, {
    batchSize: 10,
    afterBatch: () => {
      batches += 1;
      if (batches === 1) throw new Error('simulated crash after the first batch');
    },
  }), /simulated crash/);
  const mid = (await h.plane.pool.query<{ v: number; n: string }>('SELECT data_key_version AS v, count(*) AS n FROM secrets GROUP BY 1 ORDER BY 1')).rows;
  t.same(mid.map((r) => [r.v, Number(r.n)]), [[1, 15], [2, 10]], 'halfway: 10 re-wrapped, 15 still on version 1');
  t.equal((await h.admin.ok('GET', '/v1/projects/p/secrets/s3')).value.startsWith(CANARY), true, 'every secret reads while halfway');
  await h.admin.ok('PUT', '/v1/projects/p/secrets/new', { value: 'written-mid-rotation' });

  const resumed = await h.admin.ok('POST', '/v1/projects/p/rotate-key');
  t.equal(resumed.keyVersion, 2, 'resuming does not create another key version');
  t.equal(resumed.rewrapped, 15);
  const after = (await h.plane.pool.query<{ v: number }>('SELECT DISTINCT data_key_version AS v FROM secrets')).rows;
  t.same(after, [{ v: 2 }], 'every data key is under version 2');
  const afterCipher = (await h.plane.pool.query<{ secret_id: string; ciphertext: Buffer }>('SELECT secret_id, ciphertext FROM secret_versions WHERE secret_id = ANY($1) ORDER BY secret_id', [before.map((b) => b.secret_id)])).rows;
  t.ok(afterCipher.every((row, i) => row.ciphertext.equals(before[i]!.ciphertext)), 'value ciphertexts were not touched');
  for (let i = 0; i < 25; i += 1) t.equal((await h.admin.ok('GET', `/v1/projects/p/secrets/s${i}`)).value, `${CANARY}-${i}`);
  t.equal((await h.admin.ok('GET', '/v1/projects/p/secrets/new')).value, 'written-mid-rotation');

  const again = await h.admin.ok('POST', '/v1/projects/p/rotate-key');
  t.equal(again.keyVersion, 3, 'a finished rotation lets the next one start');
  t.notOk(h.logs.text().includes(CANARY), 'no value in the logs');
});

t.test('project key rotation – an unfinished rotation is finished after unseal', async (t) => {
  const h = await startHarness(t, { label: 'pkrot-unseal' });
  await h.admin.ok('POST', '/v1/projects', { name: 'p' });
  for (let i = 0; i < 6; i += 1) await h.admin.ok('PUT', `/v1/projects/p/secrets/s${i}`, { value: `v${i}` });
  const admin = await h.plane.services.identities.forAuthentication(h.admin.identityId);
  const project = (await h.plane.services.projects.list(admin!)).find((p) => p.name === 'p')!;
  await t.rejects(h.plane.services.keyRotation.rotate(admin!, '127.0.0.1', project, { batchSize: 2, afterBatch: () => { throw new Error('crash'); } }));
  await h.admin.ok('POST', '/v1/sys/seal');
  await h.admin.ok('POST', '/v1/sys/unseal', { share: h.shares[0] }, { signed: false });
  await h.admin.ok('POST', '/v1/sys/unseal', { share: h.shares[1] }, { signed: false });
  for (let i = 0; i < 50; i += 1) {
    const left = (await h.plane.pool.query('SELECT 1 FROM secrets WHERE data_key_version <> 2')).rowCount;
    if (left === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  t.equal((await h.plane.pool.query('SELECT 1 FROM secrets WHERE data_key_version <> 2')).rowCount, 0, 'resumed on unseal');
  t.equal((await h.admin.ok('GET', '/v1/projects/p/secrets/s5')).value, 'v5');
});
