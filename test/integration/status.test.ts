/**
 * `GET /v1/status`, `sikker status` and the status gauges on /metrics, on one fixture:
 * project "shop" with an online and an offline agent and five targets (healthy, overdue
 * schedule, stuck run, parked run with its reason, failed run), leaks (one open, one
 * exposed, one neutralised), and project "other" with one healthy target. The rotation
 * sweep is stopped so the overdue policy stays overdue; runs and leaks are written
 * straight into PostgreSQL as the engine and the leak service would.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import t from 'tap';
import { runCli } from '../../control-plane/cli/run-cli.js';
import { writeIdentityFile } from '../../shared/signing/identity-file.js';
import { enrollAgent, eventually, once, startAgent } from '../support/agents.js';
import { startHarness } from '../support/control-plane-harness.js';

const h = await startHarness(t, { label: 'status' });
const { admin } = h;
const sql = (text: string, values: unknown[] = []): Promise<any> => h.plane.pool.query(text, values);
// Stopped: the sweep would claim the overdue policy (moving its schedule) and advance the inserted runs.
await h.plane.services.scheduler.close();

await admin.ok('POST', '/v1/projects', { name: 'shop' });
await admin.ok('POST', '/v1/projects', { name: 'other' });
const online = await enrollAgent(admin, 'shop', 'shop-online');
const offline = await enrollAgent(admin, 'shop', 'shop-offline');
const otherAgent = await enrollAgent(admin, 'other', 'other-agent');
const agent = startAgent(h.baseUrl, online);
t.teardown(() => agent.stop(1000));
await once(agent, 'connected');
await eventually(async () => ((await admin.ok('GET', '/v1/agents?project=shop')).agents.some((a: any) => a.online) ? true : undefined), 10_000, 'agent online');

async function addTarget(project: string, name: string, agentId: string): Promise<string> {
  const target = await admin.ok('POST', `/v1/projects/${project}/targets`, {
    name, secret: `${name}-pw`, agentId, adoptPassword: `Adopted-${name}-1`,
    connection: { engine: 'postgres', host: '127.0.0.1', port: 5432, user: `u_${name.replace(/-/g, '_')}`, tls: { mode: 'disable' }, privilege: { mode: 'admin', adminConnection: 'pg' } },
  });
  return target.targetId;
}
const ids: Record<string, string> = {};
for (const name of ['healthy', 'late', 'stuck', 'parked']) ids[name] = await addTarget('shop', name, online.identityId);
ids['failed'] = await addTarget('shop', 'failed', offline.identityId);
ids['elsewhere'] = await addTarget('other', 'elsewhere', otherAgent.identityId);
// No live preflight here: record a passing one as the agent would, so policies may be active.
await sql(`UPDATE targets SET preflight_ok = true, preflight_at = now(), preflight = '{"ok":true,"problems":"","warnings":"","server":null,"strategies":["replace"]}'`);
const hourly = { policy: { schedule: { kind: 'every', seconds: 3600 } } };
for (const name of ['healthy', 'late', 'stuck']) await admin.ok('PUT', `/v1/projects/shop/targets/${name}/policy`, hourly);
await admin.ok('PUT', '/v1/projects/shop/targets/parked/policy', { ...hourly, paused: true });
await admin.ok('PUT', '/v1/projects/other/targets/elsewhere/policy', hourly);
await sql(`UPDATE policies SET next_run_at = now() - interval '1 hour' WHERE target_id = $1`, [ids['late']]);

const projectOf = async (name: string): Promise<string> => (await sql('SELECT project_id FROM projects WHERE name = $1', [name])).rows[0].project_id;
const shopId = await projectOf('shop');
const otherId = await projectOf('other');
async function insertRun(targetId: string, projectId: string, r: { state: string; holds: boolean; createdAgo: string; committedAgo?: string; finishedAgo?: string; code?: string; message?: string; attempt?: number }): Promise<string> {
  const runId = randomUUID();
  await sql(
    `INSERT INTO rotation_runs (run_id, target_id, project_id, trigger, state, holds_target, strategy, grace_seconds, db_user, attempt, max_attempts, error_code, error_message, created_at, committed_at, finished_at)
     VALUES ($1, $2, $3, 'schedule', $4, $5, 'replace', 0, 'u', $6, 5, $7, $8, now() - $9::interval, now() - $10::interval, now() - $11::interval)`,
    [runId, targetId, projectId, r.state, r.holds, r.attempt ?? 1, r.code ?? null, r.message ?? null, r.createdAgo, r.committedAgo ?? null, r.finishedAgo ?? null],
  );
  return runId;
}
await insertRun(ids['healthy']!, shopId, { state: 'done', holds: false, createdAgo: '2 hours 1 minute', committedAgo: '2 hours', finishedAgo: '2 hours' });
await insertRun(ids['elsewhere']!, otherId, { state: 'done', holds: false, createdAgo: '3 hours 1 minute', committedAgo: '3 hours', finishedAgo: '3 hours' });
const stuckRun = await insertRun(ids['stuck']!, shopId, { state: 'dispatched', holds: true, createdAgo: '2 hours' });
await insertRun(ids['parked']!, shopId, { state: 'done', holds: false, createdAgo: '5 days', committedAgo: '5 days', finishedAgo: '5 days' });
const parkedRun = await insertRun(ids['parked']!, shopId, {
  state: 'parked', holds: false, createdAgo: '30 minutes', finishedAgo: '20 minutes', attempt: 5,
  code: 'ERR_APPLIER_AUTH', message: 'the admin connection was refused (after 5 attempts)',
});
const failedRun = await insertRun(ids['failed']!, shopId, { state: 'failed', holds: false, createdAgo: '10 minutes', finishedAgo: '9 minutes', code: 'ERR_APPLIER_UNREACHABLE', message: 'connection refused' });

async function insertLeak(projectId: string, secret: string, targetId: string | null, state: string, reason: string | null): Promise<string> {
  const leakId = randomUUID();
  const secretId = (await sql('SELECT secret_id FROM secrets WHERE project_id = $1 AND name = $2', [projectId, secret])).rows[0].secret_id;
  await sql(`INSERT INTO leaks (leak_id, project_id, secret_id, target_id, leaked_version, found_by, state, reason) VALUES ($1, $2, $3, $4, 1, 'value', $5, $6)`,
    [leakId, projectId, secretId, targetId, state, reason]);
  return leakId;
}
await admin.ok('PUT', '/v1/projects/shop/secrets/api-token', { value: 'not-rotated-token' });
const openLeak = await insertLeak(shopId, 'parked-pw', ids['parked']!, 'open', null);
const exposedLeak = await insertLeak(shopId, 'api-token', null, 'exposed', 'not rotated by SikkerKey: rotate it by hand');
await insertLeak(shopId, 'healthy-pw', ids['healthy']!, 'neutralised', null);

/** Runs the CLI in-process as the admin. */
async function sikker(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const home = mkdtempSync(join(tmpdir(), 'sikker-status-'));
  try {
    const path = join(home, 'identity.json');
    const { serverPublicKey } = await admin.ok('GET', '/v1/sys/status', undefined, { signed: false });
    writeIdentityFile(path, { privateKey: admin.privateKey, identityId: admin.identityId, serverPublicKey });
    let stdout = '';
    let stderr = '';
    const sink = (append: (text: string) => void): Writable => new Writable({ write: (chunk: Buffer, _e, done) => { append(chunk.toString()); done(); } });
    const code = await runCli(args, {
      stdin: Readable.from([]), stdout: sink((text) => (stdout += text)), stderr: sink((text) => (stderr += text)),
      env: { SIKKER_SERVER: h.baseUrl, SIKKER_IDENTITY: path, HOME: home },
    });
    return { code, stdout, stderr };
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

const byName = (report: any): Record<string, any> => Object.fromEntries(report.targets.map((x: any) => [`${x.project}/${x.name}`, x]));

t.test('status – the summary counts agents, targets, overdue, failed, parked, in flight and leaks of the project', async (t) => {
  const report = await admin.ok('GET', '/v1/status?project=shop');
  t.equal(report.project, 'shop');
  t.same(report.summary, { agentsOnline: 1, agentsOffline: 1, agentsDisabled: 0, targets: 5, overdue: 2, failed: 1, parked: 1, inFlight: 1, leaksOpen: 1, leaksExposed: 1 });
  t.same(report.thresholds, { overdueAfterSeconds: 300, stuckAfterSeconds: 3600 });
  t.same(report.agents.map((a: any) => [a.name, a.state]).sort(), [['shop-offline', 'offline'], ['shop-online', 'online']]);
});

t.test('status – each target has its flags, last and next rotation and last run', async (t) => {
  const targets = byName(await admin.ok('GET', '/v1/status?project=shop'));
  t.same(Object.keys(targets).sort(), ['shop/failed', 'shop/healthy', 'shop/late', 'shop/parked', 'shop/stuck'], 'only the project\'s targets');
  t.same(targets['shop/healthy'].flags, []);
  t.match(targets['shop/healthy'], { engine: 'postgres', user: 'u_healthy', agent: 'shop-online', agentOnline: true, policy: 'active', overdue: false, lastRun: { state: 'done' } });
  t.ok(Math.abs(Date.parse(targets['shop/healthy'].lastRotationAt) - (Date.now() - 2 * 3600_000)) < 60_000, 'last rotation: when the done run committed');
  t.ok(Date.parse(targets['shop/healthy'].nextRotationAt) > Date.now(), 'next rotation in the future');
  t.same(targets['shop/late'].flags, ['overdue']);
  t.equal(targets['shop/late'].overdue, true);
  t.equal(targets['shop/late'].lastRotationAt, null, 'never rotated');
  t.same(targets['shop/stuck'].flags, ['stuck']);
  t.match(targets['shop/stuck'], { overdue: true, lastRun: { runId: stuckRun, state: 'dispatched', holdsTarget: true } });
  t.same(targets['shop/parked'].flags, ['parked', 'leak', 'paused']);
  t.match(targets['shop/parked'], { overdue: false, nextRotationAt: null, lastRun: { runId: parkedRun, errorCode: 'ERR_APPLIER_AUTH' } });
  t.ok(Math.abs(Date.parse(targets['shop/parked'].lastRotationAt) - (Date.now() - 5 * 86_400_000)) < 60_000, 'last rotation: the older done run');
  t.same(targets['shop/failed'].flags, ['failed', 'agent-offline', 'no-policy']);
  t.equal(targets['shop/failed'].agentOnline, false);
});

t.test('status – targets needing attention come first', async (t) => {
  const report = await admin.ok('GET', '/v1/status?project=shop');
  t.same(report.targets.map((x: any) => x.name), ['failed', 'late', 'parked', 'stuck', 'healthy']);
  t.equal(report.targetsTruncated, false);
  const cut = await admin.ok('GET', '/v1/status?project=shop&limit=2');
  t.same(cut.targets.map((x: any) => x.name), ['failed', 'late']);
  t.equal(cut.targetsTruncated, true);
  t.equal(cut.summary.targets, 5, 'the summary still counts every target');
});

t.test('status – failed and parked runs are listed with their reason, newest first', async (t) => {
  const report = await admin.ok('GET', '/v1/status?project=shop');
  t.match(report.problemRuns, [
    { runId: failedRun, project: 'shop', target: 'failed', state: 'failed', errorCode: 'ERR_APPLIER_UNREACHABLE', errorMessage: 'connection refused' },
    { runId: parkedRun, project: 'shop', target: 'parked', state: 'parked', attempt: 5, errorCode: 'ERR_APPLIER_AUTH', errorMessage: 'the admin connection was refused (after 5 attempts)' },
  ]);
  t.equal(report.problemRuns.length, 2);
});

t.test('status – leaks not neutralised are listed with state and reason', async (t) => {
  const report = await admin.ok('GET', '/v1/status?project=shop');
  t.same(report.leaks.map((l: any) => [l.leakId, l.secret, l.target, l.state, l.reason]).sort(), [
    [exposedLeak, 'api-token', null, 'exposed', 'not rotated by SikkerKey: rotate it by hand'],
    [openLeak, 'parked-pw', 'parked', 'open', null],
  ].sort());
});

t.test('status – an admin without a project sees every project', async (t) => {
  const report = await admin.ok('GET', '/v1/status');
  t.equal(report.project, null);
  t.equal(report.summary.targets, 6);
  t.equal(report.summary.agentsOffline, 2);
  t.ok(byName(report)['other/elsewhere'], 'the other project\'s target');
});

t.test('status – others need a project they hold target.read in', async (t) => {
  const oncall = await h.enroll('shop', 'oncall');
  t.equal((await oncall.ok('GET', '/v1/status?project=shop')).summary.targets, 5, 'oncall in its project');
  t.match(await oncall.call('GET', '/v1/status'), { status: 400, body: { error: { code: 'ERR_VALIDATION' } } });
  t.match(await oncall.call('GET', '/v1/status?project=other'), { status: 404, body: { error: { code: 'ERR_NOT_FOUND' } } });
  const reader = await h.enroll('shop', 'reader');
  t.match(await reader.call('GET', '/v1/status?project=shop'), { status: 403, body: { error: { code: 'ERR_AUTH_FORBIDDEN' } } });
});

t.test('sikker status – one screen: header counts, offline agents, targets, problem runs, leaks; exit 0', async (t) => {
  const result = await sikker(['status', '--project', 'shop']);
  t.equal(result.code, 0, result.stderr);
  t.comment(`\n${result.stdout}`);
  const lines = result.stdout.split('\n');
  t.match(lines[0], /^project shop at \d{4}-/);
  t.equal(lines[1], 'agents 1 online, 1 offline | targets 5 | overdue 2 | failed 1 | parked 1 | in flight 1 | open leaks 1 (+1 exposed)');
  t.match(result.stdout, /AGENTS OFFLINE\nAGENT +PROJECT +ID +LAST HEARTBEAT +VERSION\nshop-offline +shop /);
  t.notMatch(result.stdout, /shop-online/, 'online agents are not listed');
  t.match(result.stdout, /TARGETS\nTARGET +ENGINE +USER +LAST ROTATION +NEXT ROTATION +LAST RUN +FLAGS\n/);
  t.match(result.stdout, /shop\/failed +postgres +u_failed +- +- +failed +failed,agent-offline,no-policy\n/);
  t.match(result.stdout, /shop\/late +postgres +u_late +- +\d+m ago +- +overdue\n/);
  t.match(result.stdout, /shop\/healthy +postgres +u_healthy +2h ago +in \d+m +done +ok/);
  t.match(result.stdout, /FAILED AND PARKED RUNS\n.*\nshop\/failed +failed .*ERR_APPLIER_UNREACHABLE: connection refused\nshop\/parked +parked +schedule +5 +20m ago .*ERR_APPLIER_AUTH: the admin connection was refused/);
  t.match(result.stdout, /OPEN LEAKS\n.*\nshop\/api-token +- +1 +exposed .*not rotated by SikkerKey/);
  t.equal(result.stderr, '');
});

t.test('sikker status --json – the API document as is', async (t) => {
  const result = await sikker(['status', '--project', 'shop', '--json']);
  t.equal(result.code, 0, result.stderr);
  const report = JSON.parse(result.stdout);
  t.equal(report.summary.overdue, 2);
  t.equal(report.targets.length, 5);
});

t.test('metrics – the status gauges for every project, computed on scrape', async (t) => {
  const { body } = await h.newClient().call('GET', '/metrics', undefined, { signed: false });
  const text = String(body);
  for (const line of [
    'sikker_agents{state="online"} 1', 'sikker_agents{state="offline"} 2', 'sikker_agents{state="disabled"} 0',
    'sikker_targets_overdue 2', 'sikker_runs{state="failed"} 1', 'sikker_runs{state="parked"} 1', 'sikker_runs{state="in_flight"} 1',
    'sikker_leaks_open 1', 'sikker_leaks_exposed 1',
  ]) t.ok(text.includes(`\n${line}\n`), line);
  const healthy = /sikker_target_last_rotation_timestamp_seconds\{project="shop",target="healthy"\} ([\d.e+]+)/.exec(text);
  t.ok(healthy !== null && Math.abs(Number(healthy[1]) - (Date.now() / 1000 - 7200)) < 60, 'the healthy target rotated two hours ago');
  t.match(text, /sikker_target_last_rotation_timestamp_seconds\{project="other",target="elsewhere"\}/);
  t.notMatch(text, /target="late"/, 'never-rotated targets have no series');
  t.notMatch(text, /Adopted-|not-rotated-token/, 'no secret value');
});

t.test('metrics – a failing read keeps the last values', async (t) => {
  const before = String((await h.newClient().call('GET', '/metrics', undefined, { signed: false })).body);
  await sql('ALTER TABLE leaks RENAME TO leaks_away');
  try {
    const during = await h.newClient().call('GET', '/metrics', undefined, { signed: false });
    t.equal(during.status, 200, '/metrics still answers');
    t.ok(String(during.body).includes('\nsikker_leaks_open 1\n'), 'the last value');
    t.match(h.logs.text(), /could not read the status figures for \/metrics/);
  } finally {
    await sql('ALTER TABLE leaks_away RENAME TO leaks');
  }
  t.ok(before.includes('\nsikker_targets_overdue 2\n'));
});

t.test('metrics and status – both answered while sealed (neither needs a key)', async (t) => {
  await sql(`UPDATE rotation_runs SET holds_target = false, state = 'done', committed_at = now(), finished_at = now() WHERE run_id = $1`, [stuckRun]);
  await admin.ok('POST', '/v1/sys/seal', {});
  const metrics = await h.newClient().call('GET', '/metrics', undefined, { signed: false });
  t.equal(metrics.status, 200);
  t.ok(String(metrics.body).includes('\nsikker_vault_sealed 1\n'));
  t.ok(String(metrics.body).includes('\nsikker_targets_overdue 1\n'), 'read fresh while sealed (the stuck run finished)');
  t.ok(String(metrics.body).includes('\nsikker_runs{state="in_flight"} 0\n'));
  t.match(await admin.call('GET', '/v1/status?project=shop'), { status: 200, body: { summary: {} } }, 'on-call sees status while sealed');
});
