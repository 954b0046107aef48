/**
 * Rotation runs end to end in one process: control plane, real agent (HubClient),
 * private PostgreSQL cluster that checks SCRAM passwords. Every "accepted" or
 * "refused" below is a fresh login on that cluster.
 */
import { randomUUID } from 'node:crypto';
import pg, { type Pool } from 'pg';
import t, { type Test } from 'tap';
import { createApplier } from '../../agent/appliers/index.js';
import { applierError } from '../../agent/appliers/applier-errors.js';
import type { ApplierFactory } from '../../agent/commands/rotation-context.js';
import { AuditChainWriter } from '../../control-plane/audit/audit-appender.js';
import { withTransaction } from '../../control-plane/db/transaction.js';
import { createLogger } from '../../shared/logging/logger.js';
import { findPolicy, findTargetAndPolicyInProject, findTargetById, findTargetInProject, insertRun, lockRunWithTarget, runSteps, updateRunWithSteps } from '../../control-plane/rotation/rotation-dal.js';
import { eventually } from '../support/agents.js';
import { dumpRedisPrefix, SHARED_REDIS_URL } from '../support/databases.js';
import { rotationFixture, startScramCluster } from '../support/rotation-fixture.js';

const server = await startScramCluster(t);

const stepNames = (run: { steps: Array<{ step: string }> }): string[] => run.steps.map((s) => s.step);

/** A fixture with one preflighted target `name`, its role's password `password` adopted. */
async function preflightedTarget(t: Test, name: string, password: string): Promise<{ fx: Awaited<ReturnType<typeof rotationFixture>>; role: string; pool: Pool }> {
  const fx = await rotationFixture(t, server);
  const role = await fx.createRole(password);
  await fx.addTarget(name, role, { adoptPassword: password });
  await fx.h.admin.ok('POST', `/v1/projects/p/targets/${name}/test`, {});
  return { fx, role, pool: fx.h.plane.pool };
}

/** A preflighted target `name` on user blue (password `first` adopted) and green, with an alternate policy of `graceSeconds`. */
async function alternateTarget(fx: Awaited<ReturnType<typeof rotationFixture>>, name: string, first: string, graceSeconds: number): Promise<{ blue: string; green: string }> {
  const blue = await fx.createRole(first);
  const green = await fx.createRole(`${name}-Green-unknown-2`);
  await fx.addTarget(name, blue, { adoptPassword: first, alternateUser: green });
  await fx.h.admin.ok('POST', `/v1/projects/p/targets/${name}/test`, {});
  await fx.h.admin.ok('PUT', `/v1/projects/p/targets/${name}/policy`, { policy: { schedule: { kind: 'every', seconds: 86400 }, strategy: 'alternate', graceSeconds } });
  return { blue, green };
}

/** Triggers a manual rotation of `name` and waits until its run has ended (done, failed or parked). */
async function rotateToEnd(fx: Awaited<ReturnType<typeof rotationFixture>>, name: string): Promise<Awaited<ReturnType<Awaited<ReturnType<typeof rotationFixture>>['waitRun']>>> {
  const started = await fx.h.admin.ok('POST', `/v1/projects/p/targets/${name}/rotate`, {});
  return fx.waitRun(started.run.runId, ['done', 'failed', 'parked']);
}

/**
 * A BEFORE UPDATE trigger `name` on `table` for rows matching `when`: the first such update
 * runs `first` (plpgsql statements ending in RETURN), later ones go through. Returns how many
 * such updates were tried (a sequence: its count survives a rollback).
 */
async function onFirstUpdate(pool: Pool, name: string, table: string, when: string, first: string): Promise<() => Promise<number>> {
  await pool.query(`CREATE SEQUENCE ${name}_seq;
    CREATE FUNCTION ${name}() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF nextval('${name}_seq') = 1 THEN ${first} END IF; RETURN NEW; END $$;
    CREATE TRIGGER ${name} BEFORE UPDATE ON ${table} FOR EACH ROW WHEN (${when}) EXECUTE FUNCTION ${name}();`);
  return async () => Number((await pool.query<{ n: string }>(`SELECT last_value AS n FROM ${name}_seq`)).rows[0]?.n);
}

t.test('replace: rotate now → pending, dispatched, verified, committed; the old password is refused', async (t) => {
  const fx = await rotationFixture(t, server);
  const oldPassword = 'old-Pass-1-canary-5f3a9';
  const role = await fx.createRole(oldPassword);
  await fx.addTarget('orders', role, { adoptPassword: oldPassword });
  const tested = await fx.h.admin.ok('POST', `/v1/projects/p/targets/orders/test`, {});
  t.equal(tested.finished, true);
  t.equal(tested.target.preflight.ok, true, 'preflight passes');
  t.same(tested.target.preflight.strategies, ['replace'], 'PostgreSQL offers replace only');

  const started = await fx.h.admin.ok('POST', '/v1/projects/p/targets/orders/rotate', {});
  t.equal(started.joined, false);
  const run = await fx.waitRun(started.run.runId, ['done', 'failed', 'parked']);
  t.equal(run.state, 'done', `run ended ${run.state} ${run.errorCode ?? ''}`);
  t.match(stepNames(run), ['created', 'pending stored', 'dispatched to agent', 'applied and verified by agent', 'committed (verified)']);
  t.same(stepNames(started.run), ['created', 'pending stored', 'dispatched to agent'], 'the trigger answers with the steps of the start');
  t.same(started.run.steps, run.steps.slice(0, 3), 'exactly as stored (seq, time, detail)');
  const newPassword = await fx.secretValue('orders-password');
  t.not(newPassword, oldPassword);
  t.equal(newPassword.length, 32, 'default rules: 32 characters');
  t.equal(await fx.logsIn(role, newPassword), true, 'the new password logs in');
  t.equal(await fx.logsIn(role, oldPassword), false, 'the old password is refused');

  const versions = await fx.h.admin.ok('GET', '/v1/projects/p/secrets/orders-password/versions');
  t.match(versions.versions, [{ version: 1, label: 'previous', state: 'revoked' }, { version: 2, label: 'current', state: 'active' }]);
  const byHand = await fx.h.admin.call('PUT', '/v1/projects/p/secrets/orders-password', { value: 'typed-by-hand-1' });
  t.match(byHand, { status: 409, body: { error: { code: 'ERR_CONFLICT', message: /changes only by rotation/ } } }, 'a rotated secret cannot be overwritten by hand');
  const audit = await fx.h.admin.ok('GET', '/v1/audit?limit=200');
  const actions = audit.records.map((r: { action: string }) => r.action);
  for (const a of ['target.add', 'target.test', 'rotation.start', 'rotation.pending', 'rotation.dispatch', 'rotation.commit']) t.ok(actions.includes(a), `audited ${a}`);
  // The agent's result was stored by the run's commit step (not by the hub): once, audited once, in an intact chain.
  const applies = (await fx.h.plane.pool.query<{ command_id: string; state: string }>("SELECT command_id, state FROM agent_commands WHERE kind = 'rotation.apply'")).rows;
  t.equal(applies.length, 1, 'one apply command');
  t.equal(applies[0]?.state, 'succeeded', 'stored as succeeded');
  const resultAudits = (await fx.h.plane.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_records WHERE action = 'agent.command.result' AND detail->>'commandId' = $1", [applies[0]?.command_id])).rows[0]?.n;
  t.equal(resultAudits, 1, 'its result is audited exactly once');
  t.match(await fx.h.admin.ok('POST', '/v1/audit/verify'), { ok: true }, 'the audit chain verifies');
  t.equal((await findTargetAndPolicyInProject(fx.h.plane.pool, 'p', 'orders'))?.policy, null, 'a target without a policy reads with policy null');
  // Each step reads its run and target in one statement: the target as the plain read has it.
  const locked = await lockRunWithTarget(fx.h.plane.pool, started.run.runId);
  t.same(locked?.target, await findTargetById(fx.h.plane.pool, locked?.run.target_id ?? ''), 'the target read with the run lock equals the plain read (dates included)');
  t.type(locked?.target?.created_at, Date);
  // A step's other writes go in the same statement as its run change and steps, each with its own parameters, each counted.
  const before = (await runSteps(fx.h.plane.pool, started.run.runId)).length;
  const counts = await updateRunWithSteps(fx.h.plane.pool, started.run.runId, { error_message: 'flush check' }, [{ step: 'flush check', detail: { n: 1 }, at: new Date() }], [
    { name: 'check-commands', sql: "UPDATE agent_commands SET deliveries = deliveries WHERE kind = $1 AND command_id = ANY($2::uuid[]) RETURNING 1", values: ['rotation.apply', [applies[0]?.command_id]] },
    { name: 'check-leaks', sql: 'UPDATE leaks SET reason = $1 WHERE run_id = $2 RETURNING 1', values: ['never', started.run.runId] },
    // a write with CTEs of its own (named apart from any other write's) that returns its rows
    {
      name: 'check-rows', before: [['picked', 'SELECT command_id FROM agent_commands WHERE command_id = $1']],
      sql: 'UPDATE agents a SET next_generation = a.next_generation FROM picked JOIN agent_commands c USING (command_id) WHERE a.agent_id = c.agent_id RETURNING c.command_id, c.kind', values: [applies[0]?.command_id], rows: true,
    },
    { name: 'check-rows-again', before: [['picked', 'SELECT command_id FROM agent_commands WHERE command_id = $1']], sql: 'SELECT * FROM picked', values: [applies[1]?.command_id ?? applies[0]?.command_id] },
  ]);
  t.same(counts, [{ changed: 1 }, { changed: 0 }, { changed: 1, rows: [{ command_id: applies[0]?.command_id, kind: 'rotation.apply' }] }, { changed: 1 }], 'each write counted on its own parameters, its rows returned when asked for');
  const after = await runSteps(fx.h.plane.pool, started.run.runId);
  t.equal(after.length, before + 1, 'the step was appended');
  t.equal(after[after.length - 1]?.step, 'flush check');
  t.equal((await fx.h.plane.pool.query('SELECT error_message FROM rotation_runs WHERE run_id = $1', [started.run.runId])).rows[0]?.error_message, 'flush check', 'the run change was written');
  const logs = fx.h.logs.text();
  t.notOk(logs.includes(newPassword), 'the new password is in no control-plane log line');
  t.notOk(logs.includes('canary-5f3a9'), 'the old password is in no control-plane log line');
  const redis = await dumpRedisPrefix(SHARED_REDIS_URL, fx.h.redisPrefix);
  t.match(redis, /rotation/, 'the BullMQ keys were dumped');
  t.notOk(redis.includes(newPassword) || redis.includes('canary-5f3a9'), 'no password in Redis (BullMQ jobs carry ids only)');
  const rows = await fx.h.plane.pool.query(`SELECT (SELECT json_agg(r) FROM rotation_runs r)::text || (SELECT json_agg(s) FROM rotation_steps s)::text
    || (SELECT json_agg(c) FROM agent_commands c)::text || (SELECT json_agg(a) FROM audit_records a)::text || (SELECT json_agg(v.*)::text FROM secret_versions v) AS dump`);
  const dump: string = rows.rows[0].dump;
  t.notOk(dump.includes(newPassword) || dump.includes('canary-5f3a9'), 'no password in clear in runs, steps, commands, audit or versions');
  t.equal((await fx.h.plane.pool.query('SELECT count(*)::int AS n FROM agent_commands WHERE sealed IS NOT NULL')).rows[0].n, 0, 'sealed command payloads are erased once the commands end');
});

t.test('a policy cannot be enabled before a passing preflight, and the failure says why', async (t) => {
  const fx = await rotationFixture(t, server);
  await fx.addTarget('ghost', 'no_such_role_here');
  const policy = { schedule: { kind: 'every', seconds: 3600 } };
  const untested = await fx.h.admin.call('PUT', '/v1/projects/p/targets/ghost/policy', { policy });
  t.equal(untested.status, 409);
  t.match(untested.body, { error: { code: 'ERR_PREFLIGHT_FAILED', message: /target test/ } });
  const tested = await fx.h.admin.ok('POST', '/v1/projects/p/targets/ghost/test', {});
  t.equal(tested.target.preflight.ok, false);
  t.match(tested.target.preflight.problems, /ERR_APPLIER_UNKNOWN_USER/);
  const refused = await fx.h.admin.call('PUT', '/v1/projects/p/targets/ghost/policy', { policy });
  t.match(refused.body, { error: { code: 'ERR_PREFLIGHT_FAILED', message: /UNKNOWN_USER/ } });
  const paused = await fx.h.admin.ok('PUT', '/v1/projects/p/targets/ghost/policy', { policy, paused: true });
  t.equal(paused.state, 'paused', 'a paused policy may be stored');
  const bad = await fx.h.admin.call('PUT', '/v1/projects/p/targets/ghost/policy', { policy: { schedule: { kind: 'cron', expression: '61 * * * *' } }, paused: true });
  t.match(bad.body, { error: { code: 'ERR_POLICY_INVALID' } });
});

t.test('alternate: the resting user gets the new password; the previous one works through the grace period, then is refused', async (t) => {
  const fx = await rotationFixture(t, server);
  const first = 'Alt-first-1';
  const { blue, green } = await alternateTarget(fx, 'alt', first, 2);

  const started = await fx.h.admin.ok('POST', '/v1/projects/p/targets/alt/rotate', {});
  t.equal(started.run.user, green, 'the resting user is rotated');
  const committed = await fx.waitRun(started.run.runId, ['committed', 'revoking', 'done', 'failed', 'parked']);
  t.not(committed.state, 'failed');
  const greenPassword = await fx.secretValue('alt-password');
  t.equal(await fx.logsIn(green, greenPassword), true, 'the new user logs in');
  if (committed.state !== 'done') t.equal(await fx.logsIn(blue, first), true, 'the previous user still logs in during the grace period');
  const done = await fx.waitRun(started.run.runId, ['done']);
  t.ok(stepNames(done).includes('previous revoked'));
  t.equal(await fx.logsIn(blue, first), false, 'after the grace period the previous credential is refused');
  t.equal(await fx.logsIn(green, greenPassword), true, 'the current one still works');

  const again = await fx.h.admin.ok('POST', '/v1/projects/p/targets/alt/rotate', {});
  t.equal(again.run.user, blue, 'the next rotation goes back to the first user');
  await fx.waitRun(again.run.runId, ['committed', 'revoking', 'done']);
  t.equal(await fx.logsIn(blue, await fx.secretValue('alt-password')), true);
});

t.test('a step that fails during the grace period does not cut the grace short', async (t) => {
  const fx = await rotationFixture(t, server);
  const first = 'Grace-first-1';
  const { blue } = await alternateTarget(fx, 'longgrace', first, 3600);
  const started = await fx.h.admin.ok('POST', '/v1/projects/p/targets/longgrace/rotate', {});
  await fx.waitRun(started.run.runId, ['committed']);
  const pool = fx.h.plane.pool;
  const graceEnd = async (): Promise<number> => (await pool.query<{ at: Date }>('SELECT next_action_at AS at FROM rotation_runs WHERE run_id = $1', [started.run.runId])).rows[0]!.at.getTime();
  const before = await graceEnd();
  t.ok(before > Date.now() + 3500_000, 'the run waits for the grace period');

  // The step's first statement reads the target, which joins `secrets`: with that table locked
  // elsewhere it fails on the control plane's lock_timeout, and the engine's error path runs.
  const locker = await pool.connect();
  t.teardown(() => locker.release());
  await locker.query('BEGIN; LOCK TABLE secrets IN ACCESS EXCLUSIVE MODE');
  try {
    await fx.h.plane.services.engine.advance(started.run.runId);
  } finally {
    await locker.query('ROLLBACK');
  }
  t.equal(await graceEnd(), before, 'the run still waits until the end of its grace period');
  t.equal(await fx.logsIn(blue, first), true, 'the previous user still logs in');
});

t.test('scheduled rotations happen on time; a manual trigger during a run joins it', async (t) => {
  const fx = await rotationFixture(t, server);
  const role = await fx.createRole('Sched-old-1');
  await fx.addTarget('sched', role, { adoptPassword: 'Sched-old-1' });
  await fx.h.admin.ok('POST', '/v1/projects/p/targets/sched/test', {});
  const set = await fx.h.admin.ok('PUT', '/v1/projects/p/targets/sched/policy', { policy: { schedule: { kind: 'every', seconds: 2 } } });
  const firstDue = new Date(set.nextRunAt).getTime();
  // A manual trigger reads the target and its policy in one query: the same as the two plain reads.
  const pool = fx.h.plane.pool;
  const both = await findTargetAndPolicyInProject(pool, 'p', 'sched');
  t.same(both?.target, await findTargetInProject(pool, 'p', 'sched'), 'target as the plain read has it');
  const plain = await findPolicy(pool, both?.target.target_id ?? '');
  t.same(both?.policy, plain === null ? null : { target_id: plain.target_id, spec: plain.spec, state: plain.state, next_run_at: plain.next_run_at, next_base_at: plain.next_base_at, last_run_at: plain.last_run_at, updated_at: plain.updated_at }, 'policy as the plain read has it');
  t.equal(plain?.next_base_at?.getTime(), firstDue, 'no jitter: the first run is due at its base');
  t.type(both?.policy?.updated_at, Date);
  t.equal((await findTargetAndPolicyInProject(pool, 'p', 'early-none'))?.policy ?? null, null, 'no target: nothing');
  const runs = await eventually(async () => {
    const list = await fx.h.admin.ok('GET', '/v1/projects/p/runs?target=sched');
    return list.runs.filter((r: { state: string }) => r.state === 'done').length >= 2 ? list.runs : undefined;
  }, 20_000, 'two scheduled runs');
  const scheduled = runs.filter((r: { trigger: string }) => r.trigger === 'schedule');
  t.ok(scheduled.length >= 2, 'runs were started by the schedule');
  const oldest = scheduled[scheduled.length - 1];
  t.equal(new Date(oldest.scheduledFor).getTime(), firstDue, 'the first run was the one due at nextRunAt');
  for (const r of scheduled) t.ok(new Date(r.createdAt).getTime() - new Date(r.scheduledFor).getTime() < 1000, 'started within a second of its due time');
  for (const r of scheduled) t.equal((new Date(r.scheduledFor).getTime() - firstDue) % 2000, 0, 'due on the 2 s steps from the first: the sweep\'s lateness does not carry over');
  t.equal(await fx.logsIn(role, await fx.secretValue('sched-password')), true);

  await fx.h.admin.ok('POST', '/v1/projects/p/targets/sched/policy/pause', {});
  await fx.agent.stop(1000); // the next run waits for the agent
  const manual = await fx.h.admin.ok('POST', '/v1/projects/p/targets/sched/rotate', {});
  const [a, b] = await Promise.all([
    fx.h.admin.ok('POST', '/v1/projects/p/targets/sched/rotate', {}),
    fx.h.admin.ok('POST', '/v1/projects/p/targets/sched/rotate', {}),
  ]);
  t.equal(a.joined && b.joined, true, 'later triggers join the run in flight');
  t.equal(a.run.runId, manual.run.runId);
  t.equal(b.run.runId, manual.run.runId);

  // The schedule falls due while the manual run holds the target: still exactly one run.
  await fx.h.admin.ok('POST', '/v1/projects/p/targets/sched/policy/resume', {});
  const chosen = new Date();
  await fx.h.admin.ok('PUT', '/v1/projects/p/targets/sched/policy/next-run', { nextRunAt: chosen.toISOString() });
  const moved = await eventually(async () => {
    const p = await fx.h.admin.ok('GET', '/v1/projects/p/targets/sched/policy');
    return new Date(p.nextRunAt).getTime() > Date.now() ? p : undefined;
  }, 5000, 'the sweep to claim the due schedule');
  t.ok(moved, 'the due schedule was claimed and moved on');
  const after = await findPolicy(pool, both?.target.target_id ?? '');
  t.equal(((after?.next_base_at?.getTime() ?? NaN) - chosen.getTime()) % 2000, 0, 'the schedule steps on from the time the DBA chose');
  t.equal(after?.next_base_at?.getTime(), after?.next_run_at?.getTime(), 'no jitter: due at its base');
  const open = (await fx.h.admin.ok('GET', '/v1/projects/p/runs?target=sched&limit=100')).runs.filter((r: { state: string }) => !['done', 'failed', 'parked'].includes(r.state));
  t.equal(open.length, 1, 'one run in flight: the scheduled trigger joined the manual one');
  t.equal(open[0].runId, manual.run.runId);
});

t.test('a password the server rejects is retried with a new password, not looped', async (t) => {
  let applies = 0;
  const rejectFirst: ApplierFactory = async (target, admin) => {
    const real = await createApplier(target, admin);
    return Object.assign(Object.create(real) as typeof real, {
      apply: async (req: Parameters<typeof real.apply>[0]) => {
        applies += 1;
        if (applies === 1) throw applierError('ERR_APPLIER_REJECTED_PASSWORD', { engine: 'postgres', operation: 'apply' }, 'the server\'s password policy refused the new password');
        return real.apply(req);
      },
      close: () => real.close(),
    });
  };
  const fx = await rotationFixture(t, server, { createApplier: rejectFirst });
  const role = await fx.createRole('Rej-old-1');
  await fx.addTarget('rej', role, { adoptPassword: 'Rej-old-1' });
  await fx.h.admin.ok('POST', '/v1/projects/p/targets/rej/test', {});
  const started = await fx.h.admin.ok('POST', '/v1/projects/p/targets/rej/rotate', {});
  const run = await fx.waitRun(started.run.runId, ['done', 'failed', 'parked']);
  t.equal(run.state, 'done');
  t.equal(run.attempt, 2, 'a second attempt');
  t.ok(stepNames(run).includes('attempt failed; retrying with a new password'));
  const versions = (await fx.h.admin.ok('GET', '/v1/projects/p/secrets/rej-password/versions')).versions;
  t.match(versions, [{ version: 1 }, { version: 2, state: 'revoked', label: null }, { version: 3, label: 'current' }], 'the refused password was discarded, a new one committed');
  t.equal(await fx.logsIn(role, await fx.secretValue('rej-password')), true);
});

t.test('an apply whose outcome is unknown is reconciled by asking which credential logs in', async (t) => {
  const breakAfterApply: ApplierFactory = async (target, admin) => {
    const real = await createApplier(target, admin);
    return Object.assign(Object.create(real) as typeof real, {
      apply: async (req: Parameters<typeof real.apply>[0]) => {
        await real.apply(req); // the change reaches the server ...
        throw applierError('ERR_APPLIER_UNREACHABLE', { engine: 'postgres', operation: 'apply' }, 'the connection broke'); // ... but the agent cannot tell
      },
      close: () => real.close(),
    });
  };
  const fx = await rotationFixture(t, server, { createApplier: breakAfterApply });
  const role = await fx.createRole('Unk-old-1');
  await fx.addTarget('unk', role, { adoptPassword: 'Unk-old-1' });
  await fx.h.admin.ok('POST', '/v1/projects/p/targets/unk/test', {});
  const started = await fx.h.admin.ok('POST', '/v1/projects/p/targets/unk/rotate', {});
  const run = await fx.waitRun(started.run.runId, ['done', 'failed', 'parked']);
  t.equal(run.state, 'done');
  t.match(stepNames(run), ['created', 'pending stored', 'dispatched to agent', 'agent reported failed', 'outcome uncertain: reconciling', 'asked agent which credential logs in', 'agent checked credentials', 'committed (reconciled)']);
  t.equal(await fx.logsIn(role, await fx.secretValue('unk-password')), true, 'the vault holds what the database accepts');
  t.equal(await fx.logsIn(role, 'Unk-old-1'), false);
});

t.test('self-rotation: the user changes its own password with the current one', async (t) => {
  const fx = await rotationFixture(t, server);
  const role = await fx.createRole('Self-old-1');
  await fx.addTarget('self', role, { adoptPassword: 'Self-old-1', connection: { engine: 'postgres', host: '127.0.0.1', port: server.port, database: 'postgres', user: role, tls: { mode: 'disable' }, privilege: { mode: 'self' } } });
  const tested = await fx.h.admin.ok('POST', '/v1/projects/p/targets/self/test', {});
  t.equal(tested.target.preflight.ok, true, tested.target.preflight.problems);
  const started = await fx.h.admin.ok('POST', '/v1/projects/p/targets/self/rotate', {});
  const run = await fx.waitRun(started.run.runId, ['done', 'failed', 'parked']);
  t.equal(run.state, 'done');
  t.equal(await fx.logsIn(role, await fx.secretValue('self-password')), true);
  t.equal(await fx.logsIn(role, 'Self-old-1'), false);
});

t.test('a run created from a stale read of the target (another run committed meanwhile) starts from the version current now', async (t) => {
  const fx = await rotationFixture(t, server);
  const role = await fx.createRole('stale-start-1');
  await fx.addTarget('orders', role, { adoptPassword: 'stale-start-1' });
  await fx.h.admin.ok('POST', '/v1/projects/p/targets/orders/test', {});
  const first = await fx.h.admin.ok('POST', '/v1/projects/p/targets/orders/rotate', {});
  t.equal((await fx.waitRun(first.run.runId, ['done', 'failed', 'parked'])).state, 'done');
  // What a trigger that read the target before that commit inserts: previous version 1, not 2.
  const { rows: [target] } = await fx.h.plane.pool.query('SELECT target_id, project_id FROM targets WHERE name = $1', ['orders']);
  const runId = randomUUID();
  await insertRun(fx.h.plane.pool, {
    runId, targetId: target.target_id, projectId: target.project_id, trigger: 'manual', scheduledFor: null, strategy: 'replace', graceSeconds: 0,
    dbUser: role, maxAttempts: 3, previousVersion: 1, requestedBy: null,
  });
  const run = await fx.waitRun(runId, ['done', 'failed', 'parked']);
  t.equal(run.state, 'done', `the sweep ran it: ${run.state} ${run.errorCode ?? ''}`);
  t.equal(run.previousVersion, 2, 'the run names the version that was current when it started');
  t.ok(stepNames(run).includes('previous version re-read'), 'and says so in its steps');
  const versions = await fx.h.admin.ok('GET', '/v1/projects/p/secrets/orders-password/versions');
  t.match(versions.versions, [{ version: 1, state: 'revoked' }, { version: 2, label: 'previous', state: 'revoked' }, { version: 3, label: 'current', state: 'active' }]);
  t.equal(await fx.logsIn(role, await fx.secretValue('orders-password')), true, 'the new password logs in');
});

t.test('a replace run\'s start and its commit each send their last statement with the COMMIT, in one round trip', async (t) => {
  const { fx, role } = await preflightedTarget(t, 'inline', 'Inline-old-1');
  const cpDatabase = (fx.h.plane.pool as unknown as { options: { connectionString?: string; database?: string } }).options;
  // every query the control plane's pool sends while the run goes through: its text and whether COMMIT travelled with it
  const sent: Array<{ text: string; withCommit: boolean }> = [];
  const original = pg.Client.prototype.query;
  pg.Client.prototype.query = function (this: pg.Client, config: unknown, ...rest: unknown[]) {
    const text = typeof config === 'string' ? config : String((config as { text?: string } | null)?.text ?? '');
    if (this.database !== undefined && (cpDatabase.connectionString ?? '').endsWith(`/${this.database}`)) {
      sent.push({ text, withCommit: (config as object | null)?.constructor?.name === 'ThenCommit' });
    }
    return (original as (...a: unknown[]) => unknown).call(this, config, ...rest);
  } as typeof original;
  let run;
  try {
    run = await rotateToEnd(fx, 'inline');
  } finally {
    pg.Client.prototype.query = original;
  }
  t.equal(run.state, 'done', `run ended ${run.state} ${run.errorCode ?? ''}`);
  const flushes = sent.filter((q) => q.text.startsWith('WITH run AS (UPDATE rotation_runs'));
  t.same(flushes.map((q) => q.withCommit), [true, true], 'two steps (start, commit), each ended by one statement that carried the COMMIT');
  t.equal(await fx.logsIn(role, await fx.secretValue('inline-password')), true, 'the committed password logs in');
  t.equal(await fx.logsIn(role, 'Inline-old-1'), false, 'the old one is refused');
  t.match(await fx.h.admin.ok('POST', '/v1/audit/verify'), { ok: true }, 'the audit chain verifies');
});

t.test('a start whose audit head moved (another writer appended) is run again at once: the trigger succeeds, nothing is stored twice', async (t) => {
  const { fx, role, pool } = await preflightedTarget(t, 'moved', 'Moved-old-1');
  // another replica's append: this control plane's remembered head is stale from here
  const other = new AuditChainWriter(() => null);
  await withTransaction(pool, createLogger({ name: 'test', level: 'silent' }), (client) => other.append(client, [{ identityId: null, sourceIp: null, action: 'test.other-replica', outcome: 'success' }]));
  const started = await fx.h.admin.ok('POST', '/v1/projects/p/targets/moved/rotate', {});
  t.same(stepNames(started.run), ['created', 'pending stored', 'dispatched to agent'], 'started: the first try failed on the moved head and was run again');
  const run = await fx.waitRun(started.run.runId, ['done', 'failed', 'parked']);
  t.equal(run.state, 'done', `run ended ${run.state} ${run.errorCode ?? ''}`);
  t.equal((await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_records WHERE action = 'rotation.start' AND detail->>'runId' = $1", [run.runId])).rows[0]?.n, 1, 'its start audited once');
  t.equal((await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM secret_versions v JOIN secrets s USING (secret_id) WHERE s.name = 'moved-password'")).rows[0]?.n, 2, 'one pending version stored, not two');
  t.equal(await fx.logsIn(role, await fx.secretValue('moved-password')), true, 'the committed password logs in');
  t.match(await fx.h.admin.ok('POST', '/v1/audit/verify'), { ok: true }, 'the audit chain verifies, the other writer\'s record included');
});

t.test('a commit step that fails after taking the agent\'s result leaves the result to the hub: stored and audited once, and the run still commits', async (t) => {
  const { fx, role, pool } = await preflightedTarget(t, 'fallback', 'Fallback-old-1');
  // The first promotion of a pending version fails.
  const promotions = await onFirstUpdate(pool, 'fail_promote_once', 'secret_versions', "OLD.label = 'pending' AND NEW.label = 'current'", "RAISE EXCEPTION 'test: the first commit step fails';");
  const run = await rotateToEnd(fx, 'fallback');
  t.equal(run.state, 'done', `run ended ${run.state} ${run.errorCode ?? ''}`);
  t.equal(await promotions(), 2, 'the promotion was tried twice: the first step failed');
  t.equal(stepNames(run).filter((s) => s === 'applied and verified by agent').length, 1, 'one verified step (from the committed pass)');
  const { rows: [command] } = await pool.query("SELECT command_id, state FROM agent_commands WHERE kind = 'rotation.apply'");
  t.equal(command.state, 'succeeded', 'the hub stored the result the failed step had taken');
  const audits = (await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_records WHERE action = 'agent.command.result' AND detail->>'commandId' = $1", [command.command_id])).rows[0]?.n;
  t.equal(audits, 1, 'the result is audited once');
  t.equal(await fx.logsIn(role, await fx.secretValue('fallback-password')), true, 'the committed password logs in');
  t.equal(await fx.logsIn(role, 'Fallback-old-1'), false, 'the old one is refused');
});

t.test('a commit step that finds the labels not as it read them fails, and commits on its next try', async (t) => {
  const { fx, role, pool } = await preflightedTarget(t, 'labels', 'Labels-old-1');
  // The first time the current version is to become previous, it keeps no label instead: what
  // another writer moving the labels between the step's read and its statement would leave.
  const moves = await onFirstUpdate(pool, 'labels_moved_once', 'secret_versions', "OLD.label = 'current' AND NEW.label = 'previous'", 'NEW.label := NULL;');
  const run = await rotateToEnd(fx, 'labels');
  t.equal(run.state, 'done', `run ended ${run.state} ${run.errorCode ?? ''}`);
  t.equal(await moves(), 2, 'the labels were moved twice: the first step failed and rolled back');
  t.match(fx.h.logs.text(), /the secret's labels changed during the commit/, 'the failure says why');
  t.same((await pool.query("SELECT version, label FROM secret_versions v JOIN secrets s USING (secret_id) WHERE s.name = 'labels-password' ORDER BY version")).rows,
    [{ version: 1, label: 'previous' }, { version: 2, label: 'current' }], 'labels as one commit leaves them');
  t.equal(await fx.logsIn(role, await fx.secretValue('labels-password')), true, 'the committed password logs in');
  t.match(await fx.h.admin.ok('POST', '/v1/audit/verify'), { ok: true }, 'the audit chain verifies');
});

t.test('a result stored by another path while the run takes it: the step fails rather than audit it twice, and the run commits', async (t) => {
  const { fx, role, pool } = await preflightedTarget(t, 'twice', 'Twice-old-1');
  // The first attempt to store the apply's result changes no row (as if already stored).
  await onFirstUpdate(pool, 'result_skipped_once', 'agent_commands', "NEW.kind = 'rotation.apply' AND NEW.state = 'succeeded'", 'RETURN NULL;');
  const run = await rotateToEnd(fx, 'twice');
  t.equal(run.state, 'done', `run ended ${run.state} ${run.errorCode ?? ''}`);
  t.match(fx.h.logs.text(), /the command's result was stored meanwhile by another path/, 'the first step failed for it');
  const { rows: [command] } = await pool.query("SELECT command_id, state FROM agent_commands WHERE kind = 'rotation.apply'");
  t.equal(command.state, 'succeeded', 'the result is stored');
  const audits = (await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_records WHERE action = 'agent.command.result' AND detail->>'commandId' = $1", [command.command_id])).rows[0]?.n;
  t.equal(audits, 1, 'and audited once');
  t.equal(await fx.logsIn(role, await fx.secretValue('twice-password')), true, 'the committed password logs in');
});

t.test('a result read off another agent\'s socket for a run\'s command is not acted on; the real agent\'s is', async (t) => {
  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => { release = resolve; });
  const heldApply: ApplierFactory = async (target, admin) => {
    const real = await createApplier(target, admin);
    return Object.assign(Object.create(real) as typeof real, {
      apply: async (req: Parameters<typeof real.apply>[0]) => {
        await gate;
        return real.apply(req);
      },
      close: () => real.close(),
    });
  };
  const fx = await rotationFixture(t, server, { createApplier: heldApply });
  const role = await fx.createRole('Early-old-1');
  await fx.addTarget('early', role, { adoptPassword: 'Early-old-1' });
  await fx.h.admin.ok('POST', '/v1/projects/p/targets/early/test', {});
  const started = await fx.h.admin.ok('POST', '/v1/projects/p/targets/early/rotate', {});
  const { rows: [run] } = await fx.h.plane.pool.query('SELECT command_id FROM rotation_runs WHERE run_id = $1', [started.run.runId]);
  const forged = { commandId: run.command_id, outcome: 'succeeded' as const, result: { verified: true, unchanged: false, oldPasswordRetained: false, persisted: true }, error: null };
  const claim = fx.h.plane.services.engine.resultArrived(randomUUID(), forged, { sourceIp: '127.0.0.1', projectId: null });
  t.not(claim, null, 'the run was waiting for that command');
  t.equal(await claim, false, 'the run did not store the report (left to the hub, which takes results only from the command\'s agent)');
  const meanwhile = await fx.h.admin.ok('GET', `/v1/projects/p/runs/${started.run.runId}`);
  t.equal(meanwhile.state, 'dispatched', 'not committed on a report from the wrong agent');
  const { rows: [command] } = await fx.h.plane.pool.query('SELECT state FROM agent_commands WHERE command_id = $1', [run.command_id]);
  t.not(command.state, 'succeeded', 'the command is not marked finished by the forged report');
  release();
  const done = await fx.waitRun(started.run.runId, ['done', 'failed', 'parked']);
  t.equal(done.state, 'done', 'committed on the real agent\'s report');
  t.equal(await fx.logsIn(role, await fx.secretValue('early-password')), true, 'and the committed password logs in');
});
