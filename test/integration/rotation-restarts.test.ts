/**
 * Schedules live in PostgreSQL: restarting the control plane (100 times, each one
 * unsealed and sweeping) adds no rotation and moves no schedule; a policy that fell
 * due while the control plane was down gets exactly one catch-up run, not a burst;
 * and a cron schedule keeps its time zone across restarts.
 */
import t from 'tap';
import { createTestDatabase } from '../support/databases.js';
import { enrollAgent } from '../support/agents.js';
import { startHarness, type Harness } from '../support/control-plane-harness.js';

const RESTARTS = 100;

t.test('100 control-plane restarts cause no extra rotation and move no schedule', async (t) => {
  const db = await createTestDatabase('restarts');
  t.teardown(() => db.drop());
  let h: Harness = await startHarness(t, { label: 'restarts', database: db, env: { SIKKER_ROTATION_SWEEP_MS: '100' } });
  const { redisPrefix, shares } = h;
  const admin = h.admin;
  await admin.ok('POST', '/v1/projects', { name: 'p' });
  const agent = await enrollAgent(admin, 'p');
  for (const name of ['later', 'overdue', 'cron']) {
    await admin.ok('POST', '/v1/projects/p/targets', {
      name, secret: `${name}-pw`, agentId: agent.identityId, adoptPassword: `Adopted-${name}-1`,
      connection: { engine: 'postgres', host: '127.0.0.1', port: 5432, user: `u_${name}`, tls: { mode: 'disable' }, privilege: { mode: 'admin', adminConnection: 'pg' } },
    });
  }
  // The agent is never connected here (runs wait for it); record a passing preflight as the agent would.
  await h.plane.pool.query(`UPDATE targets SET preflight_ok = true, preflight_at = now(), preflight = '{"ok":true,"problems":"","warnings":"","server":null,"strategies":["replace"]}'`);
  const inTenMinutes = new Date(Date.now() + 10 * 60_000).toISOString();
  await admin.ok('PUT', '/v1/projects/p/targets/later/policy', { policy: { schedule: { kind: 'every', seconds: 3600 } }, nextRunAt: inTenMinutes });
  const cron = await admin.ok('PUT', '/v1/projects/p/targets/cron/policy', { policy: { schedule: { kind: 'cron', expression: '30 3 * * *' }, timeZone: 'Asia/Tokyo' } });
  t.equal(new Date(cron.nextRunAt).getUTCHours(), 18, '03:30 in Tokyo is 18:30 UTC');
  await admin.ok('PUT', '/v1/projects/p/targets/overdue/policy', { policy: { schedule: { kind: 'every', seconds: 3600 } }, paused: true });
  await h.stop();
  // Fell due an hour ago while nobody was running.
  const raw = await h.plane.pool.query('SELECT 1').catch(() => null);
  t.equal(raw, null, 'the old control plane is stopped');

  const schedulesBefore = await schedules(db.url);
  await setOverdue(db.url);

  for (let i = 0; i < RESTARTS; i += 1) {
    h = await startHarness(t, { label: 'restarts', database: db, redisPrefix, init: false, env: { SIKKER_ROTATION_SWEEP_MS: '100' } });
    for (const share of shares.slice(0, 2)) await h.newClient().ok('POST', '/v1/sys/unseal', { share });
    await h.plane.services.scheduler.sweep();
    await h.stop();
  }

  const after = await schedules(db.url);
  t.same(after.later, schedulesBefore.later, 'the far schedule did not move');
  t.same(after.cron, schedulesBefore.cron, 'the cron schedule kept its time and time zone');
  t.equal(after.runs.later ?? 0, 0, 'no rotation for a policy not yet due');
  t.equal(after.runs.cron ?? 0, 0);
  t.equal(after.runs.overdue, 1, 'one catch-up run for the overdue policy, not one per restart');
  t.ok(new Date(after.overdue.next_run_at).getTime() > Date.now() + 50 * 60_000, 'and its next rotation is a whole interval away');
});

async function setOverdue(url: string): Promise<void> {
  const pg = (await import('pg')).default;
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  await c.query(`UPDATE policies SET state = 'active', next_run_at = now() - interval '1 hour' FROM targets WHERE targets.target_id = policies.target_id AND targets.name = 'overdue'`);
  await c.end();
}

async function schedules(url: string): Promise<{ later: unknown; cron: unknown; overdue: { next_run_at: Date }; runs: Record<string, number> }> {
  const pg = (await import('pg')).default;
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  const rows = (await c.query(`SELECT t.name, p.next_run_at, p.spec->>'timeZone' AS tz, p.state FROM policies p JOIN targets t ON t.target_id = p.target_id`)).rows;
  const runs = (await c.query(`SELECT t.name, count(*)::int AS n FROM rotation_runs r JOIN targets t ON t.target_id = r.target_id GROUP BY t.name`)).rows;
  await c.end();
  const by = Object.fromEntries(rows.map((r) => [r.name, r]));
  return { later: by.later, cron: by.cron, overdue: by.overdue, runs: Object.fromEntries(runs.map((r) => [r.name, r.n])) };
}
