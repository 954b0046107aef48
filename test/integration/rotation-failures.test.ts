/**
 * Runs that cannot finish: an offline agent, an unreachable database. They back off,
 * then park with a clear reason and a webhook alert — never dropped silently — and a
 * run whose outcome is unknown keeps its target until a check tells what happened.
 * Also: sinks get the committed password before the previous one is revoked.
 */
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { createApplier } from '../../agent/appliers/index.js';
import { applierError } from '../../agent/appliers/applier-errors.js';
import type { Applier } from '../../agent/appliers/applier.js';
import type { ApplierFactory } from '../../agent/commands/rotation-context.js';
import { eventually } from '../support/agents.js';
import { rotationFixture, startScramCluster } from '../support/rotation-fixture.js';

const server = await startScramCluster(t);

/** A webhook receiver; returns its URL and what it received. */
async function webhook(t: Test): Promise<{ url: string; received: any[] }> {
  const received: any[] = [];
  const http = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => { body += c.toString('utf8'); });
    req.on('end', () => {
      received.push(JSON.parse(body));
      res.end('ok');
    });
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => http.close(() => resolve())));
  const address = http.address() as { port: number };
  return { url: `http://127.0.0.1:${address.port}/alerts`, received };
}

const fastRetries = { schedule: { kind: 'every', seconds: 3600 }, maxAttempts: 2, retryBaseSeconds: 1 };

t.test('an offline agent: each attempt expires undelivered, then the run is parked with an alert; nothing changed', async (t) => {
  const hook = await webhook(t);
  const fx = await rotationFixture(t, server, { env: { SIKKER_ALERT_WEBHOOK_URL: hook.url, SIKKER_ROTATION_COMMAND_SECONDS: '5' } });
  const role = await fx.createRole('Off-old-1');
  await fx.addTarget('off', role, { adoptPassword: 'Off-old-1' });
  await fx.h.admin.ok('POST', '/v1/projects/p/targets/off/test', {});
  await fx.h.admin.ok('PUT', '/v1/projects/p/targets/off/policy', { policy: fastRetries, paused: true });
  await fx.agent.stop(1000);
  const started = await fx.h.admin.ok('POST', '/v1/projects/p/targets/off/rotate', {});
  const run = await fx.waitRun(started.run.runId, ['parked', 'done', 'failed'], 40_000);
  t.equal(run.state, 'parked');
  t.equal(run.errorCode, 'ERR_AGENT_UNREACHABLE');
  t.match(run.errorMessage, /after 2 attempts/);
  t.equal(run.steps.filter((s: { step: string }) => s.step === 'attempt failed; retrying with a new password').length, 1, 'one retry');
  t.notOk(run.steps.some((s: { step: string }) => s.step.startsWith('outcome uncertain')), 'never sent, so never uncertain');
  await eventually(async () => (hook.received.length > 0 ? true : undefined), 5000, 'the alert');
  t.match(hook.received[0], { source: 'sikkerkey', event: 'rotation.parked', project: 'p', target: 'off', runId: run.runId, code: 'ERR_AGENT_UNREACHABLE' });
  t.equal(await fx.logsIn(role, 'Off-old-1'), true, 'the current password still logs in');
  const versions = (await fx.h.admin.ok('GET', '/v1/projects/p/secrets/off-password/versions')).versions;
  t.match(versions, [{ version: 1, label: 'current', state: 'active' }, { version: 2, state: 'revoked' }, { version: 3, state: 'revoked' }], 'discarded passwords are revoked, the current one untouched');
  const next = await fx.h.admin.ok('POST', '/v1/projects/p/targets/off/rotate', {});
  t.equal(next.joined, false, 'a parked run with nothing live releases its target');
  t.notOk(JSON.stringify(hook.received).includes('Off-old-1'), 'the alert carries no secret');
});

t.test('an unreachable database: the outcome is unknown, so the run parks but keeps its target, and finishes once a check succeeds', async (t) => {
  const hook = await webhook(t);
  let down = true;
  const flaky: ApplierFactory = async (target, admin) => {
    const real = await createApplier(target, admin);
    const unreachable = (operation: 'apply' | 'verify') => applierError('ERR_APPLIER_UNREACHABLE', { engine: 'postgres', operation }, 'connection refused');
    return Object.assign(Object.create(real) as Applier, {
      apply: async (req: Parameters<Applier['apply']>[0]) => { if (down) throw unreachable('apply'); return real.apply(req); },
      verify: async (req: Parameters<Applier['verify']>[0]) => { if (down) throw unreachable('verify'); return real.verify(req); },
      close: () => real.close(),
    });
  };
  const fx = await rotationFixture(t, server, { env: { SIKKER_ALERT_WEBHOOK_URL: hook.url }, createApplier: flaky });
  const role = await fx.createRole('Down-old-1');
  await fx.addTarget('down', role, { adoptPassword: 'Down-old-1' });
  down = false;
  await fx.h.admin.ok('POST', '/v1/projects/p/targets/down/test', {});
  await fx.h.admin.ok('PUT', '/v1/projects/p/targets/down/policy', { policy: fastRetries, paused: true });
  down = true;
  const started = await fx.h.admin.ok('POST', '/v1/projects/p/targets/down/rotate', {});
  const parked = await fx.waitRun(started.run.runId, ['parked', 'done', 'failed'], 30_000);
  t.equal(parked.state, 'parked');
  t.equal(parked.errorCode, 'ERR_ROTATION_UNCERTAIN');
  await eventually(async () => (hook.received.length > 0 ? true : undefined), 5000, 'the alert');
  t.match(hook.received[0], { event: 'rotation.parked', code: 'ERR_ROTATION_UNCERTAIN' });
  const join = await fx.h.admin.ok('POST', '/v1/projects/p/targets/down/rotate', {});
  t.equal(join.joined, true, 'the target stays held: no second run while the outcome is unknown');
  t.equal(join.run.runId, started.run.runId);

  down = false; // the database is back; the hourly re-check is brought forward
  await fx.h.plane.pool.query('UPDATE rotation_runs SET next_action_at = now() WHERE run_id = $1', [started.run.runId]);
  const done = await fx.waitRun(started.run.runId, ['done', 'failed'], 20_000);
  t.equal(done.state, 'done');
  t.equal(done.attempt, 2, 'the check found nothing changed; a second attempt with a new password succeeded');
  t.equal(await fx.logsIn(role, await fx.secretValue('down-password')), true);
  t.equal(await fx.logsIn(role, 'Down-old-1'), false);
});

t.test('sinks receive the committed password before the previous one is revoked', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sikker-sink-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'db.env');
  const fx = await rotationFixture(t, server, { sinks: [{ name: 'app', path, format: 'env', envName: 'DB_PASSWORD', mode: 0o600, reloadCommand: null, reloadTimeoutMs: 5000 }] });
  const blue = await fx.createRole('Sink-blue-1');
  const green = await fx.createRole('Sink-green-1');
  await fx.addTarget('sinky', blue, { adoptPassword: 'Sink-blue-1', alternateUser: green, sinks: ['app'] });
  await fx.h.admin.ok('POST', '/v1/projects/p/targets/sinky/test', {});
  await fx.h.admin.ok('PUT', '/v1/projects/p/targets/sinky/policy', { policy: { schedule: { kind: 'every', seconds: 3600 }, strategy: 'alternate', graceSeconds: 3 }, paused: true });
  const started = await fx.h.admin.ok('POST', '/v1/projects/p/targets/sinky/rotate', {});
  await fx.waitRun(started.run.runId, ['committed', 'revoking', 'done']);
  const value = await fx.secretValue('sinky-password');
  const written = await eventually(async () => {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      return undefined;
    }
  }, 5000, 'the sink file');
  t.equal(written, `DB_PASSWORD='${value}'\n`, 'the sink holds the committed password');
  const run = await fx.h.admin.ok('GET', `/v1/projects/p/runs/${started.run.runId}`);
  t.not(run.state, 'done', 'written while the previous credential is still in its grace period');
  const done = await fx.waitRun(started.run.runId, ['done']);
  const steps = done.steps.map((s: { step: string }) => s.step);
  t.ok(steps.indexOf('sent to sink') < steps.indexOf('grace over: revoking previous'), 'sink before revoke');
});
