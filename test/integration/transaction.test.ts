/** withTransactionFrom: BEGIN and a first statement in one round trip, with withTransaction's guarantees. */
import pg from 'pg';
import t from 'tap';
import { createLogger } from '../../shared/logging/logger.js';
import { sqlLiteral, withTransactionFrom } from '../../control-plane/db/transaction.js';
import { createTestDatabase } from '../support/databases.js';

const db = await createTestDatabase('txfrom');
t.teardown(() => db.drop());
const pool = new pg.Pool({ connectionString: db.url, max: 2 });
t.teardown(() => pool.end());
const logger = createLogger({ name: 'test', level: 'silent' });
await pool.query('CREATE TABLE items (id int PRIMARY KEY, note text)');
await pool.query("INSERT INTO items VALUES (1, 'one'), (2, 'two')");
const item = (id: number) => ({ name: 'item_lock', prepare: 'PREPARE item_lock(int) AS SELECT id, note FROM items WHERE id = $1 FOR UPDATE', args: [String(id)] });

t.test('the first statement\'s rows reach the work, which runs in the same transaction', async (t) => {
  const seen = await withTransactionFrom(pool, logger, [item(1)], async (client, [rows]) => {
    await client.query("UPDATE items SET note = 'uno' WHERE id = 1");
    const inTx = (await client.query<{ n: string }>("SELECT count(*) AS n FROM pg_stat_activity WHERE pid = pg_backend_pid() AND state = 'active' AND xact_start IS NOT NULL")).rows[0]?.n;
    return { rows, inTx };
  });
  t.same(seen.rows, [{ id: 1, note: 'one' }]);
  t.equal(seen.inTx, '1', 'inside a transaction');
  t.equal((await pool.query('SELECT note FROM items WHERE id = 1')).rows[0].note, 'uno', 'committed');
});

t.test('a failing work rolls everything back, and the connection is clean afterwards', async (t) => {
  await t.rejects(withTransactionFrom(pool, logger, [item(2)], async (client) => {
    await client.query("UPDATE items SET note = 'dos' WHERE id = 2");
    throw new Error('work failed');
  }), { message: 'work failed' });
  t.equal((await pool.query('SELECT note FROM items WHERE id = 2')).rows[0].note, 'two', 'rolled back');
  await t.rejects(withTransactionFrom(pool, logger, [{ name: 'broken', prepare: 'PREPARE broken AS SELECT no_such_column FROM items', args: [] }], async () => 'never'), { code: '42703' }, 'a failing first statement is the error');
  // a statement whose execution fails after it was prepared is still known as prepared on that connection
  const failing = (divisor: number) => ({ name: 'divide', prepare: 'PREPARE divide(int) AS SELECT 10 / $1 AS q', args: [String(divisor)] });
  for (let i = 0; i < 4; i += 1) await t.rejects(withTransactionFrom(pool, logger, [failing(0)], async () => 'never'), { code: '22012' }, 'division by zero each time, never "already exists"');
  t.same(await withTransactionFrom(pool, logger, [failing(5)], async (_c, [rows]) => rows), [{ q: 2 }]);
  for (let i = 0; i < 3; i += 1) {
    t.same(await withTransactionFrom(pool, logger, [{ name: 'one', prepare: 'PREPARE one AS SELECT 1 AS one', args: [] }], async (_c, [rows]) => rows), [{ one: 1 }], 'the pool\'s connections are usable again');
  }
});

t.test('arguments are inlined as literals that round-trip exactly, hostile text included', async (t) => {
  const hostile = "x'); DROP TABLE items; -- \\ back\\slash \" quote é ∞";
  const echo = { name: 'echo', prepare: 'PREPARE echo(text, int, timestamptz, text) AS SELECT $1 AS s, $2 AS n, $3 AS d, $4 AS z', args: [sqlLiteral(hostile), sqlLiteral(42), sqlLiteral(new Date('2026-01-02T03:04:05.678Z')), sqlLiteral(null)] };
  const [rows] = await withTransactionFrom(pool, logger, [echo], async (_c, r) => r);
  t.same(rows, [{ s: hostile, n: 42, d: new Date('2026-01-02T03:04:05.678Z'), z: null }]);
  t.equal((await pool.query('SELECT count(*)::int AS n FROM items')).rows[0].n, 2, 'the table is still there');
  t.throws(() => sqlLiteral(1.5), /only integers/);
});

t.test('several first statements: each on its own snapshot, their rows in order', async (t) => {
  const insert = (id: number) => ({ name: 'item_insert', prepare: 'PREPARE item_insert(int) AS INSERT INTO items VALUES ($1, \'new\') RETURNING id', args: [String(id)] });
  const count = { name: 'item_count', prepare: 'PREPARE item_count AS SELECT count(*)::int AS n FROM items', args: [] };
  const [inserted, counted] = await withTransactionFrom(pool, logger, [insert(3), count], async (_c, results) => results);
  t.same(inserted, [{ id: 3 }]);
  t.same(counted, [{ n: 3 }], 'the second statement sees the first one\'s row');
});
