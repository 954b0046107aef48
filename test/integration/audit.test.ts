import type { PoolClient } from 'pg';
import t from 'tap';
import { AuditChainWriter } from '../../control-plane/audit/audit-appender.js';
import { startHarness, type Harness } from '../support/control-plane-harness.js';

const VALUE = 'audit-test-value-6b1d';

async function withRecords(t: { teardown(fn: () => unknown): void }, label: string, env: Record<string, string> = {}): Promise<Harness> {
  const h = await startHarness(t, { label, env });
  await h.admin.ok('POST', '/v1/projects', { name: 'p' });
  await h.admin.ok('PUT', '/v1/projects/p/secrets/s', { value: VALUE });
  for (let i = 0; i < 8; i += 1) await h.admin.ok('GET', '/v1/projects/p/secrets/s');
  return h;
}

t.test('audit – a read whose record cannot be written returns no plaintext', async (t) => {
  const h = await withRecords(t, 'failclosed');
  await h.plane.pool.query(`CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit disk full'; END $$`);
  await h.plane.pool.query('CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_records FOR EACH ROW EXECUTE FUNCTION refuse_audit()');
  const r = await h.admin.call('GET', '/v1/projects/p/secrets/s');
  t.equal(r.status, 503);
  t.equal(r.body.error.code, 'ERR_AUDIT_WRITE_FAILED');
  t.notOk(JSON.stringify(r.body).includes(VALUE), 'no plaintext in the refusal');
  const concurrent = await Promise.all(Array.from({ length: 20 }, () => h.admin.call('GET', '/v1/projects/p/secrets/s')));
  t.ok(concurrent.every((c) => c.status === 503 && !JSON.stringify(c.body).includes(VALUE)), 'a whole failed batch is refused');
  await h.plane.pool.query('DROP TRIGGER refuse_audit ON audit_records');
  t.equal((await h.admin.ok('GET', '/v1/projects/p/secrets/s')).value, VALUE, 'reads work again once records can be written');
  t.equal((await h.admin.ok('POST', '/v1/audit/verify')).ok, true, 'the chain has no gap from the refused batch');
});

t.test('audit – records say who, from where, what, which version, outcome; never a value', async (t) => {
  const h = await withRecords(t, 'records');
  const reader = await h.enroll('p', 'reader');
  const denied = await reader.call('GET', '/v1/projects/p/secrets/s');
  t.equal(denied.status, 404, 'a reader without a per-secret grant is refused, as if the secret did not exist');
  t.equal((await reader.call('GET', '/v1/projects/p/secrets/s/versions')).status, 404, 'nor can it list its versions');
  await h.admin.ok('POST', '/v1/projects/p/secrets/s/grants', { identityId: reader.identityId });
  t.equal((await reader.ok('GET', '/v1/projects/p/secrets/s')).value, VALUE, 'granted: the reader reads');
  const { records } = await h.admin.ok('GET', `/v1/audit?identity=${reader.identityId}&project=p&secret=s&version=1`);
  t.same(records.map((r: { action: string; outcome: string }) => [r.action, r.outcome]), [['secret.read', 'success'], ['secret.read', 'denied']]);
  t.match(records[0], { identityId: reader.identityId, sourceIp: '127.0.0.1', secretVersion: 1 });
  const all = await h.admin.ok('GET', '/v1/audit?limit=1000');
  t.notOk(JSON.stringify(all).includes(VALUE), 'no record holds the value');
  const from = new Date(Date.now() - 60_000).toISOString();
  const ranged = await h.admin.ok('GET', `/v1/audit?from=${encodeURIComponent(from)}&action=secret.write`);
  t.equal(ranged.records.length, 1);
  const readerList = await reader.call('GET', '/v1/audit');
  t.equal(readerList.status, 403, 'a reader cannot list the audit log');
});

t.test('audit – verify names the first record changed, removed or reordered', async (t) => {
  const h = await withRecords(t, 'tamper');
  const q = (sql: string): Promise<unknown> => h.plane.pool.query(sql);
  t.match(await h.admin.ok('POST', '/v1/audit/verify'), { ok: true, firstBadSeq: null });

  await q("UPDATE audit_records SET outcome = 'denied' WHERE seq = 5");
  let v = await h.admin.ok('POST', '/v1/audit/verify');
  t.match(v, { ok: false, firstBadSeq: 5 }, 'an updated row');
  t.match(v.problem, /record 5 was changed/);
  await q("UPDATE audit_records SET outcome = 'success' WHERE seq = 5");
  t.match(await h.admin.ok('POST', '/v1/audit/verify'), { ok: true }, 'restored');

  await q('UPDATE audit_records SET seq = -1 WHERE seq = 6');
  await q('UPDATE audit_records SET seq = 6 WHERE seq = 7');
  await q('UPDATE audit_records SET seq = 7 WHERE seq = -1');
  v = await h.admin.ok('POST', '/v1/audit/verify');
  t.match(v, { ok: false, firstBadSeq: 6 }, 'two rows swapped');

  await q('UPDATE audit_records SET seq = -1 WHERE seq = 6');
  await q('UPDATE audit_records SET seq = 6 WHERE seq = 7');
  await q('UPDATE audit_records SET seq = 7 WHERE seq = -1');
  await q('DELETE FROM audit_records WHERE seq = 4');
  v = await h.admin.ok('POST', '/v1/audit/verify');
  t.match(v, { ok: false, firstBadSeq: 4 }, 'a deleted row');
  t.match(v.problem, /record 4 is missing/);
});

t.test('audit – removing the newest records is detected', async (t) => {
  const h = await withRecords(t, 'truncate');
  const head = (await h.plane.pool.query<{ seq: string }>('SELECT seq FROM audit_chain_head')).rows[0]!;
  await h.plane.pool.query('DELETE FROM audit_records WHERE seq >= $1', [Number(head.seq) - 1]);
  const v = await h.admin.ok('POST', '/v1/audit/verify');
  t.match(v, { ok: false, firstBadSeq: Number(head.seq) - 1 });
});

t.test('audit – a recomputed chain is caught by the signed checkpoints', async (t) => {
  const h = await withRecords(t, 'checkpoint', { SIKKER_AUDIT_CHECKPOINT_EVERY: '3' });
  const verified = await h.admin.ok('POST', '/v1/audit/verify');
  t.ok(verified.ok);
  t.ok(verified.checkpoints >= 2, 'checkpoints were signed');
  // An attacker with database access edits record 5 and recomputes every hash after it.
  const { chainHash } = await import('../../control-plane/audit/audit-chain.js');
  const { rowToRecord } = await import('../../control-plane/audit/audit-dal.js');
  await h.plane.pool.query("UPDATE audit_records SET source_ip = '203.0.113.9' WHERE seq = 5");
  const rows = (await h.plane.pool.query('SELECT * FROM audit_records ORDER BY seq')).rows.map(rowToRecord);
  let prev: Buffer = Buffer.alloc(32);
  for (const r of rows) {
    const hash = chainHash(prev, r);
    await h.plane.pool.query('UPDATE audit_records SET prev_hash = $2, record_hash = $3 WHERE seq = $1', [r.seq, prev, hash]);
    prev = hash;
  }
  await h.plane.pool.query('UPDATE audit_chain_head SET record_hash = $1', [prev]);
  const v = await h.admin.ok('POST', '/v1/audit/verify');
  t.equal(v.ok, false);
  t.ok(v.firstBadSeq <= 5, `names a record at or before the change (${v.firstBadSeq})`);
  t.match(v.problem, /rewritten/);
});

t.test('audit – removing a signed checkpoint is detected by the next one', async (t) => {
  const h = await withRecords(t, 'cp-removed', { SIKKER_AUDIT_CHECKPOINT_EVERY: '3' });
  const seqs = (await h.plane.pool.query<{ seq: string }>('SELECT seq FROM audit_checkpoints ORDER BY seq')).rows.map((r) => Number(r.seq));
  t.ok(seqs.length >= 2);
  await h.plane.pool.query('DELETE FROM audit_checkpoints WHERE seq = $1', [seqs[0]]);
  const v = await h.admin.ok('POST', '/v1/audit/verify');
  t.equal(v.ok, false);
  t.match(v.problem, /checkpoints after record 0 were removed/);
});

t.test('audit – group commits from two replicas and concurrent writes keep one linear chain', async (t) => {
  const a = await withRecords(t, 'two-replicas');
  const b = await startHarness(t, { label: 'two-replicas', database: a.db, redisPrefix: a.redisPrefix, init: false });
  await b.admin.ok('POST', '/v1/sys/unseal', { share: a.shares[0] }, { signed: false });
  await b.admin.ok('POST', '/v1/sys/unseal', { share: a.shares[1] }, { signed: false });
  b.admin.privateKey = a.admin.privateKey;
  b.admin.identityId = a.admin.identityId;
  const work: Array<Promise<unknown>> = [];
  for (let i = 0; i < 120; i += 1) {
    work.push((i % 2 === 0 ? a : b).admin.ok('GET', '/v1/projects/p/secrets/s'));
    if (i % 10 === 0) work.push(a.admin.ok('PUT', '/v1/projects/p/secrets/s', { value: `${VALUE}-${i}` }));
  }
  await Promise.all(work);
  const { rows } = await a.plane.pool.query<{ n: string; max: string }>('SELECT count(*) AS n, max(seq) AS max FROM audit_records');
  t.equal(rows[0]!.n, rows[0]!.max, 'sequence numbers have no gaps');
  t.match(await a.admin.ok('POST', '/v1/audit/verify'), { ok: true }, 'the chain verifies');
});

t.test('audit – the remembered head: a rolled-back append and a concurrent one never break the chain', async (t) => {
  const h = await withRecords(t, 'remembered-head');
  const pool = h.plane.pool;
  const chain = new AuditChainWriter(() => null); // a writer of its own, as a second replica would have
  const draft = (action: string) => ({ identityId: null, sourceIp: null, action, outcome: 'success', detail: { test: true } });
  const inTx = async (fn: (client: PoolClient) => Promise<void>, commit: boolean): Promise<void> => {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await fn(client);
      await client.query(commit ? 'COMMIT' : 'ROLLBACK');
    } finally {
      client.release();
    }
  };
  await inTx(async (c) => { await chain.append(c, [draft('test.first')]); }, true);
  t.not(chain.knownHead(), null, 'the writer remembers the head it wrote');
  await inTx(async (c) => { await chain.append(c, [draft('test.rolled-back')]); }, false);
  await h.admin.ok('PUT', '/v1/projects/p/secrets/s', { value: `${VALUE}-x` }); // the other writer moves the head
  await inTx(async (c) => { await chain.append(c, [draft('test.after-rollback')]); }, true);

  // Two transactions from the same remembered head: the second waits for the first's lock, then re-links.
  const a = await pool.connect();
  const b = await pool.connect();
  try {
    await a.query('BEGIN');
    await b.query('BEGIN');
    await chain.append(a, [draft('test.concurrent-a')]);
    chain.remember((await pool.query('SELECT seq, record_hash, checkpoint_seq, checkpoint_hash FROM audit_chain_head')).rows.map((r) => ({ seq: Number(r.seq), recordHash: r.record_hash, checkpointSeq: Number(r.checkpoint_seq), checkpointHash: r.checkpoint_hash }))[0] ?? null);
    const second = chain.append(b, [draft('test.concurrent-b')]);
    await new Promise((r) => setTimeout(r, 100));
    await a.query('COMMIT');
    await second;
    await b.query('COMMIT');
  } finally {
    a.release();
    b.release();
  }
  const actions = (await pool.query<{ action: string }>("SELECT action FROM audit_records WHERE action LIKE 'test.%' ORDER BY seq")).rows.map((r) => r.action);
  t.same(actions, ['test.first', 'test.after-rollback', 'test.concurrent-a', 'test.concurrent-b'], 'the rolled-back record is absent, the others are in commit order');
  const { rows } = await pool.query<{ n: string; max: string }>('SELECT count(*) AS n, max(seq) AS max FROM audit_records');
  t.equal(rows[0]!.n, rows[0]!.max, 'sequence numbers have no gaps');
  t.match(await h.admin.ok('POST', '/v1/audit/verify'), { ok: true }, 'the chain verifies');
});
