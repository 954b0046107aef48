/**
 * Leak response on a PostgreSQL cluster that checks SCRAM passwords: by name and by
 * value, the leaked password is refused afterwards and the new one works, the report
 * lists exactly the identities that read the leaked version, live sessions can be
 * ended, an unmanaged value matches nothing, and a project leak with an offline agent
 * reports that target as still exposed while finishing the others.
 */
import pg from 'pg';
import t from 'tap';
import { createApplier } from '../../agent/appliers/index.js';
import { enrollAgent, eventually } from '../support/agents.js';
import { rotationFixture, startScramCluster, type RotationFixture } from '../support/rotation-fixture.js';

const server = await startScramCluster(t);

async function waitLeak(fx: RotationFixture, leakId: string, timeoutMs = 20_000): Promise<any> {
  return eventually(async () => {
    const r = await fx.h.admin.ok('GET', `/v1/projects/p/leaks/${leakId}`);
    return r.state === 'open' ? undefined : r;
  }, timeoutMs, `leak ${leakId} to be handled`);
}

async function testedTarget(fx: RotationFixture, name: string, password: string, extra: Record<string, unknown> = {}): Promise<string> {
  const role = await fx.createRole(password);
  await fx.addTarget(name, role, { adoptPassword: password, ...extra });
  const tested = await fx.h.admin.ok('POST', `/v1/projects/p/targets/${name}/test`, {});
  if (tested.target.preflight.ok !== true) throw new Error(tested.target.preflight.problems);
  return role;
}

/** A tested target `name` on user blue (password `password` adopted) and green, with an alternate policy of one hour's grace. */
async function alternateTarget(fx: RotationFixture, name: string, password: string): Promise<{ blue: string; green: string }> {
  const green = await fx.createRole(`${name}-green-Unused-1`);
  const blue = await testedTarget(fx, name, password, { alternateUser: green });
  await fx.h.admin.ok('PUT', `/v1/projects/p/targets/${name}/policy`, { policy: { schedule: { kind: 'every', seconds: 86400 }, strategy: 'alternate', graceSeconds: 3600 } });
  return { blue, green };
}

/** A session held open as `user` with `password` on the private cluster (closed at teardown). */
async function heldSession(t: { teardown(fn: () => unknown): void }, user: string, password: string): Promise<pg.Client> {
  const held = new pg.Client({ host: '127.0.0.1', port: server.port, database: 'postgres', user, password });
  held.on('error', () => undefined);
  await held.connect();
  t.teardown(() => held.end().catch(() => undefined));
  return held;
}

/** Resolves once `held` no longer answers: its session was ended (bounded). */
const ended = (held: pg.Client): Promise<true> => eventually(async () => held.query('SELECT 1').then(() => undefined, () => true), 10_000, 'the held session to be ended');

/** The steps of `runId`, by name, in order. */
async function stepsOf(fx: RotationFixture, runId: string): Promise<string[]> {
  return (await fx.h.admin.ok('GET', `/v1/projects/p/runs/${runId}`)).steps.map((s: { step: string }) => s.step);
}

t.test('leak by name: rotated at once, the leaked password refused, the report names exactly who read it', async (t) => {
  const fx = await rotationFixture(t, server);
  const leaked = 'Leaked-by-name-1';
  const role = await testedTarget(fx, 'orders', leaked);
  const reader = await fx.h.enroll('p', 'reader');
  const bystander = await fx.h.enroll('p', 'reader');
  await fx.h.admin.ok('POST', '/v1/projects/p/secrets/orders-password/grants', { identityId: reader.identityId });
  t.equal((await reader.ok('GET', '/v1/projects/p/secrets/orders-password')).value, leaked, 'the reader read the leaked version');
  t.equal((await bystander.call('GET', '/v1/projects/p/secrets/orders-password')).status, 404, 'the bystander could not');

  const started = await fx.h.admin.ok('POST', '/v1/projects/p/leaks', { secret: 'orders-password' });
  t.match(started, { matched: true, leaks: [{ secret: 'orders-password', version: 1, target: 'orders', joined: false }] });
  const report = await waitLeak(fx, started.leaks[0].leakId);
  t.equal(report.state, 'neutralised', `${report.reason ?? ''}`);
  t.ok(report.secondsToNeutralise < 15, `neutralised in ${report.secondsToNeutralise} s`);
  t.equal(await fx.logsIn(role, leaked), false, 'the leaked password is refused by the server');
  t.equal(await fx.logsIn(role, await fx.secretValue('orders-password')), true, 'the new one works');
  t.same(report.readers.map((r: { identityId: string }) => r.identityId), [reader.identityId], 'exactly the identity that read the leaked version');
  t.equal(report.readers[0].version, 1);
  const versions = (await fx.h.admin.ok('GET', '/v1/projects/p/secrets/orders-password/versions')).versions;
  t.match(versions, [{ version: 1, state: 'revoked' }, { version: 2, label: 'current', state: 'active' }]);
  const audit = (await fx.h.admin.ok('GET', '/v1/audit?limit=200')).records.map((r: { action: string }) => r.action);
  t.ok(audit.includes('secret.leaked'), 'the leak is in the audit log');
});

t.test('leak by value: found by fingerprint; an unmanaged value matches nothing and nothing is decrypted', async (t) => {
  const fx = await rotationFixture(t, server);
  const leaked = 'Leaked-by-value-2';
  const role = await testedTarget(fx, 'billing', leaked);
  const before = (await fx.h.admin.ok('GET', '/v1/audit?limit=500')).records.length;
  const none = await fx.h.admin.ok('POST', '/v1/leaks/by-value', { value: 'not-a-value-we-manage-9' });
  t.same(none, { matched: false, leaks: [] }, 'no match');
  const after = (await fx.h.admin.ok('GET', '/v1/audit?limit=500')).records;
  t.same(after.slice(0, after.length - before).map((r: { action: string }) => r.action).filter((a: string) => a !== 'audit.read'), ['fingerprint.match'], 'only the match is recorded: no secret was read');

  const started = await fx.h.admin.ok('POST', '/v1/leaks/by-value', { value: leaked });
  t.match(started, { matched: true, leaks: [{ project: 'p', secret: 'billing-password', version: 1, target: 'billing' }] });
  const report = await waitLeak(fx, started.leaks[0].leakId);
  t.equal(report.state, 'neutralised');
  t.equal(report.foundBy, 'value');
  t.equal(await fx.logsIn(role, leaked), false, 'the leaked password is refused');
  t.notOk(fx.h.logs.text().includes(leaked), 'the leaked value is in no log line');
});

t.test('leak with --kill-sessions ends the sessions that logged in with the leaked password', async (t) => {
  const fx = await rotationFixture(t, server);
  const leaked = 'Leaked-session-3';
  const role = await testedTarget(fx, 'sess', leaked);
  const held = await heldSession(t, role, leaked);
  await held.query('SELECT 1');
  const started = await fx.h.admin.ok('POST', '/v1/projects/p/leaks', { secret: 'sess-password', killSessions: true });
  const report = await waitLeak(fx, started.leaks[0].leakId);
  t.equal(report.state, 'neutralised');
  await ended(held);
  t.pass('the session opened with the leaked password was ended');
});

t.test('a leak with --kill-sessions that joins a run in flight ends the sessions when that run commits', async (t) => {
  // the agent's apply waits until the leak has joined the run
  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  const fx = await rotationFixture(t, server, {
    createApplier: async (target, admin) => {
      const real = await createApplier(target, admin);
      return new Proxy(real, { get: (obj, key) => (key === 'apply' ? async (req: Parameters<typeof real.apply>[0]) => gate.then(() => real.apply(req)) : Reflect.get(obj, key)) });
    },
  });
  t.teardown(() => release());
  const leaked = 'Leaked-joined-4';
  const role = await testedTarget(fx, 'joined', leaked);
  const held = await heldSession(t, role, leaked);
  const manual = await fx.h.admin.ok('POST', '/v1/projects/p/targets/joined/rotate', {});
  await fx.waitRun(manual.run.runId, ['dispatched']);
  const started = await fx.h.admin.ok('POST', '/v1/projects/p/leaks', { secret: 'joined-password', killSessions: true });
  t.match(started.leaks[0], { runId: manual.run.runId, joined: true }, 'the leak joined the run in flight');
  release();
  const report = await waitLeak(fx, started.leaks[0].leakId);
  t.equal(report.state, 'neutralised', `${report.reason ?? ''}`);
  await ended(held);
  t.pass('the session opened with the leaked password was ended');
  t.equal(await fx.logsIn(role, leaked), false, 'the leaked password is refused');
});

t.test('alternate, --kill-sessions: the previous user\'s sessions are ended after its password is revoked, so they cannot log in again', async (t) => {
  const fx = await rotationFixture(t, server);
  const leaked = 'Leaked-alternate-5';
  const { blue } = await alternateTarget(fx, 'alt', leaked);
  const held = await heldSession(t, blue, leaked);
  const started = await fx.h.admin.ok('POST', '/v1/projects/p/leaks', { secret: 'alt-password', killSessions: true });
  const report = await waitLeak(fx, started.leaks[0].leakId);
  t.equal(report.state, 'neutralised', `${report.reason ?? ''}`);
  await ended(held);
  t.equal(await fx.logsIn(blue, leaked), false, 'the leaked password is refused');
  const steps = await stepsOf(fx, started.leaks[0].runId);
  t.ok(steps.indexOf('ending the user\'s live sessions') > steps.indexOf('previous revoked'), `sessions ended after the revoke (${steps.join(', ')})`);
});

t.test('a leak with --kill-sessions that joins a run already in its grace period: revoked at once, then the sessions are ended', async (t) => {
  const fx = await rotationFixture(t, server);
  const first = 'Leaked-in-grace-7';
  const { blue, green } = await alternateTarget(fx, 'grace', first);
  const manual = await fx.h.admin.ok('POST', '/v1/projects/p/targets/grace/rotate', {});
  await fx.waitRun(manual.run.runId, ['committed']);
  const held = await heldSession(t, blue, first);
  const started = await fx.h.admin.ok('POST', '/v1/projects/p/leaks', { secret: 'grace-password', version: 1, killSessions: true });
  t.match(started.leaks[0], { runId: manual.run.runId, joined: true }, 'the leak joined the run in its grace period');
  const report = await waitLeak(fx, started.leaks[0].leakId);
  t.equal(report.state, 'neutralised', `${report.reason ?? ''}`);
  await ended(held);
  t.equal(await fx.logsIn(blue, first), false, 'the leaked password is refused');
  t.equal(await fx.logsIn(green, await fx.secretValue('grace-password')), true, 'the current one still works');
});

t.test('a leak that finds a run as it finishes starts a run of its own instead of joining the finished one', async (t) => {
  const fx = await rotationFixture(t, server);
  const first = 'Leaked-late-9';
  const { blue } = await alternateTarget(fx, 'late', first);
  const manual = await fx.h.admin.ok('POST', '/v1/projects/p/targets/late/rotate', {});
  await fx.waitRun(manual.run.runId, ['committed']);
  // the run's row held as a step holds it while the leak looks at the run; the step then finishes it
  const pool = fx.h.plane.pool;
  const locker = await pool.connect();
  t.teardown(() => locker.release());
  await locker.query('BEGIN');
  await locker.query('SELECT 1 FROM rotation_runs WHERE run_id = $1 FOR UPDATE', [manual.run.runId]);
  const leak = fx.h.admin.ok('POST', '/v1/projects/p/leaks', { secret: 'late-password', version: 1 });
  await eventually(async () => ((await pool.query(`SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE rotation_runs SET grace_seconds%'`)).rowCount === 1 ? true : undefined), 10_000, 'the leak waiting for the run\'s row');
  await locker.query(`UPDATE rotation_runs SET state = 'done', holds_target = false, finished_at = now(), next_action_at = NULL WHERE run_id = $1`, [manual.run.runId]);
  await locker.query('COMMIT');
  const started = await leak;
  t.equal(started.leaks[0].joined, false, 'not joined to the run that finished');
  t.not(started.leaks[0].runId, manual.run.runId, 'a run of its own');
  const report = await waitLeak(fx, started.leaks[0].leakId);
  t.equal(report.state, 'neutralised', `${report.reason ?? ''}`);
  t.equal(await fx.logsIn(blue, first), false, 'the leaked password is refused');
});

t.test('a project leak with one agent offline finishes the rest and reports that target as still exposed', async (t) => {
  const fx = await rotationFixture(t, server, { env: { SIKKER_ROTATION_COMMAND_SECONDS: '5' } });
  const a = await testedTarget(fx, 'one', 'Proj-one-1');
  const b = await testedTarget(fx, 'two', 'Proj-two-1');
  const offline = await enrollAgent(fx.h.admin, 'p');
  const role = await fx.createRole('Proj-three-1');
  await fx.h.admin.ok('POST', '/v1/projects/p/targets', {
    name: 'three', secret: 'three-password', agentId: offline.identityId, adoptPassword: 'Proj-three-1',
    connection: { engine: 'postgres', host: '127.0.0.1', port: server.port, database: 'postgres', user: role, tls: { mode: 'disable' }, privilege: { mode: 'admin', adminConnection: 'pg' } },
  });
  await fx.h.plane.pool.query(`UPDATE targets SET preflight_ok = true, preflight_at = now(), preflight = '{"ok":true,"strategy":"replace","problems":"","warnings":"","server":null,"strategies":["replace"]}' WHERE name = 'three'`);
  await fx.h.admin.ok('PUT', '/v1/projects/p/targets/three/policy', { policy: { schedule: { kind: 'every', seconds: 3600 }, maxAttempts: 1 }, paused: true });

  const started = await fx.h.admin.ok('POST', '/v1/projects/p/leaks', { all: true });
  t.equal(started.leaks.length, 3);
  const reports = await Promise.all(started.leaks.map((l: { leakId: string }) => waitLeak(fx, l.leakId, 30_000)));
  const byTarget = Object.fromEntries(reports.map((r) => [r.target, r]));
  t.equal(byTarget.one.state, 'neutralised');
  t.equal(byTarget.two.state, 'neutralised');
  t.equal(byTarget.three.state, 'exposed', 'the offline agent\'s target is reported as still exposed');
  t.match(byTarget.three.reason, /ERR_AGENT_UNREACHABLE/);
  t.equal(await fx.logsIn(a, 'Proj-one-1'), false);
  t.equal(await fx.logsIn(b, 'Proj-two-1'), false);
  t.equal(await fx.logsIn(role, 'Proj-three-1'), true, 'exposed: the leaked password still works, and the report says so');
});
