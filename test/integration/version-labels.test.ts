/**
 * A secret's labels: at most one version per label (migration 006's constraint), and a
 * rotation's commit moving all three labels in one statement (promotePendingWrite, sent as
 * the engine sends it: rotation-dal.ts updateRunWithSteps, which checks its expectation).
 */
import { randomUUID } from 'node:crypto';
import t from 'tap';
import { standalone } from '../../control-plane/db/queryable.js';
import { updateRunWithSteps } from '../../control-plane/rotation/rotation-dal.js';
import { promotePendingWrite } from '../../control-plane/vault/version-store.js';
import { startHarness, type Harness } from '../support/control-plane-harness.js';

async function secretWithVersions(t: Parameters<typeof startHarness>[0], label: string): Promise<{ h: Harness; secretId: string }> {
  const h = await startHarness(t, { label });
  await h.admin.ok('POST', '/v1/projects', { name: 'p' });
  await h.admin.ok('PUT', '/v1/projects/p/secrets/s', { value: 'first-value' });
  await h.admin.ok('PUT', '/v1/projects/p/secrets/s', { value: 'second-value' });
  const secretId = (await h.plane.pool.query<{ secret_id: string }>("SELECT secret_id FROM secrets WHERE name = 's'")).rows[0]!.secret_id;
  // a third version waiting as pending (its ciphertext is never read here)
  await h.plane.pool.query("INSERT INTO secret_versions (secret_id, version, ciphertext, label) VALUES ($1, 3, '\\x00', 'pending')", [secretId]);
  return { h, secretId };
}

async function labels(h: Harness, secretId: string): Promise<Array<{ version: number; label: string | null; state: string }>> {
  return (await h.plane.pool.query('SELECT version, label, state FROM secret_versions WHERE secret_id = $1 ORDER BY version', [secretId])).rows;
}

/** Promotes `version`, expecting `expectPrevious` to become previous; returns the rows it moved. */
async function promote(h: Harness, secretId: string, version: number, revokePrevious: boolean, expectPrevious: number | null): Promise<Array<Record<string, unknown>>> {
  const client = await h.plane.pool.connect();
  try {
    await client.query('BEGIN');
    // no run: the statement's run CTE is left out (no changes), and it stores no steps
    const [outcome] = await updateRunWithSteps(client, randomUUID(), {}, [], [promotePendingWrite(secretId, version, revokePrevious, expectPrevious)]);
    await client.query('COMMIT');
    return [...(outcome?.rows ?? [])].sort((a, b) => Number(a['version']) - Number(b['version']));
  } catch (err) {
    await client.query('ROLLBACK');
    throw err;
  } finally {
    client.release();
  }
}

t.test('promoting a pending version moves all three labels in one statement', async (t) => {
  const { h, secretId } = await secretWithVersions(t, 'labels-promote');
  t.same(await labels(h, secretId), [
    { version: 1, label: 'previous', state: 'active' }, { version: 2, label: 'current', state: 'active' }, { version: 3, label: 'pending', state: 'active' },
  ], 'before');
  t.same(await promote(h, secretId, 3, false, 2), [{ version: 1, label: null }, { version: 2, label: 'previous' }, { version: 3, label: 'current' }], 'returns the rows it moved');
  t.same(await labels(h, secretId), [
    { version: 1, label: null, state: 'active' }, { version: 2, label: 'previous', state: 'active' }, { version: 3, label: 'current', state: 'active' },
  ], 'pending → current, current → previous, old previous unlabelled');
});

t.test('with revokePrevious the old current is revoked too', async (t) => {
  const { h, secretId } = await secretWithVersions(t, 'labels-revoke');
  t.same((await promote(h, secretId, 3, true, 2)).map((r) => r['label']), [null, 'previous', 'current']);
  t.same(await labels(h, secretId), [
    { version: 1, label: null, state: 'active' }, { version: 2, label: 'previous', state: 'revoked' }, { version: 3, label: 'current', state: 'active' },
  ]);
});

t.test('a version that is not pending is refused and nothing moves', async (t) => {
  const { h, secretId } = await secretWithVersions(t, 'labels-conflict');
  const before = await labels(h, secretId);
  await t.rejects(promote(h, secretId, 2, true, 1), { code: 'ERR_CONFLICT', message: /version 2 is not pending/ });
  await t.rejects(promote(h, secretId, 9, true, 2), { code: 'ERR_CONFLICT' }, 'nor a version that does not exist');
  await t.rejects(promote(h, secretId, 3, true, 1), { code: 'ERR_CONFLICT' }, 'nor a promotion whose old current is not the version the caller read as current');
  t.same(await labels(h, secretId), before, 'labels and states unchanged');
});

t.test('the first promotion of a secret without a current version returns null', async (t) => {
  const h = await startHarness(t, { label: 'labels-first' });
  await h.admin.ok('POST', '/v1/projects', { name: 'p' });
  await h.admin.ok('PUT', '/v1/projects/p/secrets/s', { value: 'only-value' });
  const secretId = (await h.plane.pool.query<{ secret_id: string }>("SELECT secret_id FROM secrets WHERE name = 's'")).rows[0]!.secret_id;
  await h.plane.pool.query("UPDATE secret_versions SET label = 'pending' WHERE secret_id = $1", [secretId]);
  t.same(await promote(h, secretId, 1, false, null), [{ version: 1, label: 'current' }], 'no version became previous');
  t.same(await labels(h, secretId), [{ version: 1, label: 'current', state: 'active' }]);
});

t.test('no two versions of a secret hold the same label', async (t) => {
  const { h, secretId } = await secretWithVersions(t, 'labels-unique');
  await t.rejects(h.plane.pool.query("UPDATE secret_versions SET label = 'current' WHERE secret_id = $1 AND version = 1", [secretId]), { code: '23P01' }, 'a second current is refused');
  await t.rejects(h.plane.pool.query("UPDATE secret_versions SET label = 'pending' WHERE secret_id = $1 AND version = 2", [secretId]), { code: '23P01' }, 'a second pending is refused');
  t.equal((await labels(h, secretId)).filter((v) => v.label === 'current').length, 1);
});

t.test('a pending version written with the highest version read at the lock: stored in one statement; with a stale reading nothing is stored', async (t) => {
  const h = await startHarness(t, { label: 'labels-known-max' });
  await h.admin.ok('POST', '/v1/projects', { name: 'p' });
  await h.admin.ok('PUT', '/v1/projects/p/secrets/s', { value: 'first-value' });
  const { secret_id: secretId, project_id: projectId } = (await h.plane.pool.query<{ secret_id: string; project_id: string }>("SELECT secret_id, project_id FROM secrets WHERE name = 's'")).rows[0]!;
  const store = h.plane.services.versions;
  /** Rows the write changed, and the version it was for; committed only when it stored one. */
  const writePending = async (value: string, staleBy: number): Promise<{ changed: number; version: number }> => {
    const client = await h.plane.pool.connect();
    try {
      await client.query('BEGIN');
      const locked = await store.lockSecret(client, projectId, secretId);
      try {
        const knownMax = (locked.maxVersion ?? 0) - staleBy;
        const { version, write } = await store.pendingVersionWrite(client, { projectId, secretId, dataKey: locked.dataKey, plaintext: Buffer.from(value), dbUser: null, createdBy: null, knownMax });
        const changed = (await client.query(standalone(write))).rowCount ?? 0;
        await client.query(changed === 1 ? 'COMMIT' : 'ROLLBACK');
        return { changed, version };
      } finally {
        locked.dataKey.fill(0);
      }
    } finally {
      client.release();
    }
  };
  t.same(await writePending('second-value', 0), { changed: 1, version: 2 }, 'the next version');
  t.same(await writePending('third-value', 0), { changed: 1, version: 3 }, 'and the next');
  t.same(await writePending('stale-value', 1), { changed: 0, version: 3 }, 'a stale highest version stores nothing (the caller fails)');
  t.same(await labels(h, secretId), [
    { version: 1, label: 'current', state: 'active' }, { version: 2, label: null, state: 'active' }, { version: 3, label: 'pending', state: 'active' },
  ], 'one pending label, on the newest');
  const client = await h.plane.pool.connect();
  try {
    t.equal((await store.decrypt(client, projectId, secretId, 3)).plaintext.toString(), 'third-value', 'encrypted for the version it was stored as');
    t.equal((await store.decrypt(client, projectId, secretId, 2)).plaintext.toString(), 'second-value');
  } finally {
    client.release();
  }
});
