/**
 * A transaction's last statement carrying its COMMIT (db/commit-with.ts), and the statement
 * expectations that make that safe (rotation-dal.ts updateRunWithSteps, migration 008).
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import t from 'tap';
import { AuditChainWriter, AuditHeadMovedError } from '../../control-plane/audit/audit-appender.js';
import { queryThenCommit } from '../../control-plane/db/commit-with.js';
import { migrate } from '../../control-plane/db/migrate.js';
import { isRunAgain, RunAgainError, withTransaction } from '../../control-plane/db/transaction.js';
import { updateRunWithSteps } from '../../control-plane/rotation/rotation-dal.js';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { createLogger } from '../../shared/logging/logger.js';
import { createTestDatabase } from '../support/databases.js';

const db = await createTestDatabase('commitwith');
t.teardown(() => db.drop());
const pool = new pg.Pool({ connectionString: db.url, max: 2 });
t.teardown(() => pool.end());
const logger = createLogger({ name: 'test', level: 'silent' });
await migrate(pool);
await pool.query('CREATE TABLE items (id int PRIMARY KEY, note text)');

const note = async (id: number): Promise<string | null> => (await pool.query<{ note: string }>('SELECT note FROM items WHERE id = $1', [id])).rows[0]?.note ?? null;
/** The transaction state of the session behind `client` ('idle' after a commit, 'idle in transaction (aborted)' after a failed statement, …). */
const sessionState = async (client: pg.PoolClient): Promise<string> => {
  const pid = (client as unknown as { processID: number }).processID;
  return (await pool.query<{ state: string }>('SELECT state FROM pg_stat_activity WHERE pid = $1', [pid])).rows[0]!.state;
};

t.test('the statement\'s rows come back and the transaction is committed, in one query', async (t) => {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query("INSERT INTO items VALUES (1, 'before')");
    const result = await queryThenCommit<{ id: number; note: string }>(client, { name: 'item-update', text: 'UPDATE items SET note = $2 WHERE id = $1 RETURNING id, note', values: [1, 'after'] });
    t.same(result.rows, [{ id: 1, note: 'after' }]);
    t.equal(await note(1), 'after', 'another connection sees it: committed');
    t.equal(await sessionState(client), 'idle', 'no transaction left open on the connection');
    // the named statement stays prepared on the connection, and a second use works the same
    await client.query('BEGIN');
    const again = await queryThenCommit<{ id: number; note: string }>(client, { name: 'item-update', text: 'UPDATE items SET note = $2 WHERE id = $1 RETURNING id, note', values: [1, 'again'] });
    t.same(again.rows, [{ id: 1, note: 'again' }]);
    t.equal(await note(1), 'again');
  } finally {
    client.release();
  }
});

t.test('a failing statement never reaches its COMMIT: the transaction is aborted and rolls back', async (t) => {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query("INSERT INTO items VALUES (2, 'in the transaction')");
    await t.rejects(queryThenCommit(client, { name: 'item-divide', text: 'UPDATE items SET note = (10 / $2::int)::text WHERE id = $1 RETURNING id', values: [2, 0] }), { code: '22012' });
    t.equal(await sessionState(client), 'idle in transaction (aborted)', 'still in the failed transaction: COMMIT did not run');
    await client.query('ROLLBACK');
    t.equal(await note(2), null, 'nothing of the transaction was stored');
  } finally {
    client.release();
  }
});

t.test('withTransaction does not commit again after a statement that carried the COMMIT, and the next transaction on the connection is normal', async (t) => {
  const committed = await withTransaction(pool, logger, async (client) => {
    await client.query("INSERT INTO items VALUES (3, 'three')");
    return (await queryThenCommit<{ id: number }>(client, { name: 'item-touch', text: "UPDATE items SET note = note || '!' WHERE id = $1 RETURNING id", values: [3] })).rows;
  });
  t.same(committed, [{ id: 3 }]);
  t.equal(await note(3), 'three!');
  // both connections of the pool: a later transaction that fails must still roll back
  for (let i = 0; i < 2; i += 1) {
    await t.rejects(withTransaction(pool, logger, async (client) => {
      await client.query("UPDATE items SET note = 'lost' WHERE id = 3");
      throw new Error('work failed');
    }), { message: 'work failed' });
  }
  t.equal(await note(3), 'three!', 'rolled back, not committed by a stale mark');
});

t.test('a RunAgainError runs the whole transaction again, marked as such, a few times at most', async (t) => {
  let runs = 0;
  const marks: boolean[] = [];
  const result = await withTransaction(pool, logger, async (client) => {
    runs += 1;
    marks.push(isRunAgain(client));
    await client.query('INSERT INTO items VALUES ($1, $2)', [100 + runs, 'try']);
    if (runs < 2) throw new RunAgainError('ERR_CONFLICT', 'moved', { retryable: true });
    return runs;
  });
  t.equal(result, 2);
  t.same(marks, [false, true], 'the second run knows it is one (it must not take the optimistic path again)');
  const after = await pool.connect();
  try {
    t.equal(isRunAgain(after), false, 'and the mark ends with it (the pool\'s connections are unmarked)');
  } finally {
    after.release();
  }
  t.equal(await note(101), null, 'the first try was rolled back');
  t.equal(await note(102), 'try');
  let endless = 0;
  await t.rejects(withTransaction(pool, logger, async () => {
    endless += 1;
    throw new RunAgainError('ERR_CONFLICT', 'moved for good', { retryable: true });
  }), { message: 'moved for good' });
  t.equal(endless, 3, 'three tries, then the error stands');
});

t.test('a write\'s expectation fails the combined statement: nothing of it is stored, even with the COMMIT in the same round trip', async (t) => {
  await pool.query("INSERT INTO items VALUES (10, 'ten'), (11, 'eleven')");
  const touch = (id: number) => ({
    name: 'item-note', sql: "UPDATE items SET note = note || '+' WHERE id = $1 RETURNING 1", values: [id],
    expect: { sql: '(SELECT count(*) FROM self) = $1', values: [1], error: () => new SikkerError('ERR_CONFLICT', `item ${id} was not there`) },
  });
  const other = { name: 'item-other', sql: "UPDATE items SET note = 'touched' WHERE id = $1 RETURNING 1", values: [11] };
  for (const thenCommit of [false, true]) {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      // an unknown run id: the statement stores no steps and changes no run
      await t.rejects(updateRunWithSteps(client, randomUUID(), {}, [], [other, touch(99)], thenCommit), { code: 'ERR_CONFLICT', message: 'item 99 was not there' }, `the write's own error (COMMIT with it: ${thenCommit})`);
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    t.equal(await note(11), 'eleven', 'the other write of the statement was not stored either');
  }
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const outcomes = await updateRunWithSteps(client, randomUUID(), {}, [], [other, touch(10)], true);
    t.same(outcomes, [{ changed: 1 }, { changed: 1 }], 'met: each write\'s count');
    t.equal(await sessionState(client), 'idle', 'and committed with it');
  } finally {
    client.release();
  }
  t.equal(await note(10), 'ten+');
  t.equal(await note(11), 'touched');
});

t.test('audit records linked with failIfMoved fail the statement when another writer moved the head; the writer then settles for a while', async (t) => {
  const writer = new AuditChainWriter(() => null);
  const other = new AuditChainWriter(() => null);
  const draft = (action: string) => ({ identityId: null, sourceIp: null, action, outcome: 'success' });
  await withTransaction(pool, logger, (client) => writer.append(client, [draft('test.first')]));
  t.equal(writer.inlineAllowed(), true);
  await withTransaction(pool, logger, (client) => other.append(client, [draft('test.other-writer')])); // writer's head is stale now
  const linked = writer.appendWrite([draft('test.linked')], { failIfMoved: true });
  t.ok(linked?.write.expect, 'the write carries its expectation');
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await t.rejects(updateRunWithSteps(client, randomUUID(), {}, [], [linked!.write], true), AuditHeadMovedError);
    await client.query('ROLLBACK');
  } finally {
    client.release();
  }
  t.ok(new AuditHeadMovedError() instanceof RunAgainError, 'a transaction failed this way is run again');
  t.equal(writer.inlineAllowed(), false, 'and for a while statements settle their records instead');
  const actions = async () => (await pool.query<{ action: string }>('SELECT action FROM audit_records ORDER BY seq')).rows.map((r) => r.action);
  t.same(await actions(), ['test.first', 'test.other-writer'], 'nothing of the failed statement was stored');
  await withTransaction(pool, logger, (c) => writer.append(c, [draft('test.after')]));
  t.same(await actions(), ['test.first', 'test.other-writer', 'test.after'], 'the writer links onto the real head afterwards');
  const settling = writer.appendWrite([draft('test.settled')]);
  t.equal(settling?.write.expect, undefined, 'without failIfMoved a write settles after the statement (no expectation)');
});
