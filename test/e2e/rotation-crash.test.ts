/**
 * Kills the real programs at each dangerous point of a rotation run and checks that,
 * after restarting them, the vault and the database agree — and that DESIGN.md's
 * invariant held throughout (some non-revoked version logged in at every sample).
 * Fault points: SIKKER_AGENT_TEST_CRASH_AT=after-apply (agent dies after the database
 * changed, before it verified or reported), SIKKER_TEST_CRASH_AT=before-announce (control
 * plane dies after committing the pending version and the apply command, counted as delivered
 * with them, before sending it to the agent) and before-commit
 * (control plane dies after reading the agent's verified report, before the commit).
 */
import t, { type Test } from 'tap';
import { startInvariantChecker, type InvariantReport } from '../support/invariant-checker.js';
import { exited, startRotationStack, type RotationStack } from '../support/rotation-processes.js';
import { startScramPostgres } from '../support/scram-postgres.js';

const cluster = await startScramPostgres();
t.teardown(() => cluster.stop());

function checkInvariant(stack: RotationStack): { stop(): Promise<InvariantReport> } {
  return startInvariantChecker({ databaseUrl: stack.db.url, secretId: stack.secretId, fetchValue: stack.fetchValue, logsIn: stack.logsIn });
}

async function agreeAfterwards(t: Test, stack: RotationStack, runId: string, checker: { stop(): Promise<InvariantReport> }): Promise<void> {
  const run = await stack.sikker(['runs', 'show', 'shop', runId]);
  t.equal(run.state, 'done', `the run finished: ${run.state} ${run.errorCode ?? ''}`);
  const current = await stack.sikker(['secret', 'get', 'shop/orders-db']);
  t.equal(await stack.logsIn(stack.role, current.value), true, 'the vault\'s current version logs in');
  t.equal(await stack.logsIn(stack.role, stack.initialPassword), false, 'the old password is refused');
  const runs = await stack.sikker(['runs', 'list', 'shop']);
  t.equal(runs.runs.length, 1, 'exactly one run');
  const versions = await stack.sikker(['secret', 'versions', 'shop/orders-db']);
  t.equal(versions.versions.length, 2, 'one new version: nothing was generated twice');
  const report = await checker.stop();
  t.ok(report.samples >= 10, `the invariant was sampled (${report.samples} samples, ${report.inconclusive} inconclusive)`);
  t.same(report.violations, [], 'at every sample some non-revoked version logged in');
}

t.test('kill -9 the agent after the database changed, before it reported: on restart it finishes and the vault agrees', async (t) => {
  const stack = await startRotationStack(t, cluster, { agentEnv: { SIKKER_AGENT_TEST_CRASH_AT: 'after-apply' } });
  const checker = checkInvariant(stack);
  const started = await stack.sikker(['rotate', 'shop/orders']);
  t.equal(await exited(stack.agent), 'SIGKILL', 'the agent died right after applying');
  const meanwhile = (await stack.dbPool.query('SELECT state FROM rotation_runs WHERE run_id = $1', [started.runId])).rows[0];
  t.equal(meanwhile.state, 'dispatched', 'not committed: the agent never reported');
  stack.startAgent();
  await stack.waitRun(started.runId, ['done', 'failed', 'parked']);
  await agreeAfterwards(t, stack, started.runId, checker);
});

t.test('kill the control plane after storing pending and the command, before the agent hears of it: after restart the run goes on', async (t) => {
  // The apply command exists before the crash, so its expiry runs while the control plane is
  // down and restarting: 60 s rather than the stack's 10 s, or under load it can expire first,
  // and the (correct) retry after backoff would outlast the wait below.
  const longExpiry = { SIKKER_ROTATION_COMMAND_SECONDS: '60' };
  const stack = await startRotationStack(t, cluster, { controlPlaneEnv: { SIKKER_TEST_CRASH_AT: 'before-announce', ...longExpiry } });
  const checker = checkInvariant(stack);
  await stack.sikker(['rotate', 'shop/orders']).catch(() => undefined); // the control plane dies answering
  t.equal(await exited(stack.controlPlane), 'SIGKILL', 'the control plane died after storing pending');
  const stalled = (await stack.dbPool.query(`SELECT r.run_id, r.state, c.state AS command_state, c.deliveries, v.label AS pending_label
    FROM rotation_runs r JOIN agent_commands c ON c.command_id = r.command_id
    JOIN targets tg ON tg.target_id = r.target_id JOIN secret_versions v ON v.secret_id = tg.secret_id AND v.version = r.pending_version`)).rows;
  // The command is counted as delivered in the same transaction (the hub holds the agent's socket)
  // and would have been sent right after the commit: counted, never sent, is the safe direction.
  t.match(stalled, [{ state: 'dispatched', command_state: 'delivered', deliveries: 1, pending_label: 'pending' }], 'pending version and command stored together, the command counted as delivered');
  t.equal(await stack.logsIn(stack.role, stack.initialPassword), true, 'nothing reached the agent: the database still has the old password');
  await stack.restartControlPlane(longExpiry);
  await stack.waitRun(stalled[0].run_id, ['done', 'failed', 'parked'], 60_000);
  await agreeAfterwards(t, stack, stalled[0].run_id, checker);
});

t.test('kill the control plane between the agent\'s report and the commit: after restart it commits', async (t) => {
  const stack = await startRotationStack(t, cluster, { controlPlaneEnv: { SIKKER_TEST_CRASH_AT: 'before-commit' } });
  const checker = checkInvariant(stack);
  await stack.sikker(['rotate', 'shop/orders']).catch(() => undefined);
  t.equal(await exited(stack.controlPlane), 'SIGKILL', 'the control plane died before committing');
  const stalled = (await stack.dbPool.query(`SELECT r.run_id, r.state, c.state AS command_state FROM rotation_runs r JOIN agent_commands c ON c.command_id = r.command_id`)).rows;
  // The run's commit step stores the report with the commit, so dying before it leaves the command
  // open ('delivered', or 'accepted' once the hub's delayed mark is written); the agent sends the
  // result again after the restart (it keeps results until the hub acknowledges them).
  t.match(stalled, [{ state: 'dispatched', command_state: /^(delivered|accepted)$/ }], 'the verified report arrived, the commit did not happen');
  await stack.restartControlPlane();
  await stack.waitRun(stalled[0].run_id, ['done', 'failed', 'parked']);
  await agreeAfterwards(t, stack, stalled[0].run_id, checker);
});
