import t from 'tap';
import { startHarness } from '../support/control-plane-harness.js';
import { createTestDatabase } from '../support/databases.js';

t.test('vault – a restart leaves it sealed; k shares unseal; wrong or too few shares never do', async (t) => {
  const db = await createTestDatabase('seal');
  t.teardown(() => db.drop());
  const first = await startHarness(t, { label: 'seal', database: db });
  await first.admin.ok('POST', '/v1/projects', { name: 'p' });
  await first.admin.ok('PUT', '/v1/projects/p/secrets/s', { value: 'seal-test-value' });
  const shares = first.shares;
  await first.stop();

  // A second, unrelated vault gives shares of the right shape for the wrong key.
  const other = await startHarness(t, { label: 'seal-other' });

  const h = await startHarness(t, { label: 'seal', database: db, redisPrefix: first.redisPrefix, init: false });
  h.admin.privateKey = first.admin.privateKey;
  h.admin.identityId = first.admin.identityId;
  const status = await h.admin.ok('GET', '/v1/sys/status', undefined, { signed: false });
  t.match(status, { initialised: true, sealed: true, progress: 0 }, 'sealed after restart');
  const sealedRead = await h.admin.call('GET', '/v1/projects/p/secrets/s');
  t.equal(sealedRead.status, 503);
  t.equal(sealedRead.body.error.code, 'ERR_VAULT_SEALED');
  t.equal((await h.admin.call('GET', '/readyz', undefined, { signed: false })).status, 503, 'not ready while sealed');

  const one = await h.admin.ok('POST', '/v1/sys/unseal', { share: shares[0] }, { signed: false });
  t.match(one, { sealed: true, progress: 1 }, 'one share of two is not enough');
  const dup = await h.admin.call('POST', '/v1/sys/unseal', { share: shares[0] }, { signed: false });
  t.equal(dup.body.error.code, 'ERR_VAULT_SHARE_INVALID', 'the same share twice is refused');

  const wrong = await h.admin.call('POST', '/v1/sys/unseal', { share: other.shares[1] }, { signed: false });
  t.equal(wrong.status, 400);
  t.equal(wrong.body.error.code, 'ERR_VAULT_SHARE_INVALID', 'a share of another vault is refused on its own');
  t.match(await h.admin.ok('GET', '/v1/sys/status', undefined, { signed: false }), { sealed: true, progress: 1 }, 'and does not disturb the progress so far');

  const corrupted = `${shares[1]!.slice(0, -2)}AA`;
  const bad = await h.admin.call('POST', '/v1/sys/unseal', { share: corrupted }, { signed: false });
  t.equal(bad.body.error.code, 'ERR_VAULT_SHARE_INVALID', 'a corrupted share is refused');
  const malformed = await h.admin.call('POST', '/v1/sys/unseal', { share: 'sks1-short' }, { signed: false });
  t.equal(malformed.body.error.code, 'ERR_VAULT_SHARE_INVALID');
  t.ok(h.plane.root.isSealed());

  // If the stored check value does not match what the shares rebuild, nothing is installed.
  const check = (await h.plane.pool.query<{ root_check: Buffer }>('SELECT root_check FROM vault_state')).rows[0]!.root_check;
  await h.plane.pool.query('UPDATE vault_state SET root_check = $1', [Buffer.alloc(32, 7)]);
  const mismatch = await h.admin.call('POST', '/v1/sys/unseal', { share: shares[1] }, { signed: false });
  t.equal(mismatch.body.error.code, 'ERR_VAULT_UNSEAL_FAILED', 'a reconstruction that fails the check is never installed');
  t.ok(h.plane.root.isSealed());
  t.match(await h.admin.ok('GET', '/v1/sys/status', undefined, { signed: false }), { sealed: true, progress: 0 }, 'progress reset');
  await h.plane.pool.query('UPDATE vault_state SET root_check = $1', [check]);

  await h.admin.ok('POST', '/v1/sys/unseal', { share: shares[2] }, { signed: false });
  const done = await h.admin.ok('POST', '/v1/sys/unseal', { share: shares[0] }, { signed: false });
  t.match(done, { sealed: false }, 'two right shares unseal');
  t.equal((await h.admin.ok('GET', '/v1/projects/p/secrets/s')).value, 'seal-test-value', 'the secret reads back');

  await h.admin.ok('POST', '/v1/sys/seal');
  t.ok(h.plane.root.isSealed(), 'seal drops the key at once');
  t.equal((await h.admin.call('GET', '/v1/projects/p/secrets/s')).status, 503);
});

t.test('vault – init twice is refused', async (t) => {
  const h = await startHarness(t, { label: 'init-twice' });
  const intruder = h.newClient();
  const again = await intruder.call('POST', '/v1/sys/init', { shares: 3, threshold: 2, publicKey: intruder.publicKeyText, name: 'intruder' });
  t.equal(again.status, 409);
  t.equal(again.body.error.code, 'ERR_VAULT_ALREADY_INITIALISED');
});

t.test('vault – init refuses a threshold above the share count', async (t) => {
  const h = await startHarness(t, { label: 'init-bad', init: false });
  const r = await h.admin.call('POST', '/v1/sys/init', { shares: 2, threshold: 3, publicKey: h.admin.publicKeyText, name: 'a' });
  t.equal(r.status, 400);
  t.equal(r.body.error.code, 'ERR_VALIDATION');
  t.match(r.body.error.message, /threshold/);
});
