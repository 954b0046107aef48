/**
 * `sikker leak` through the real programs: the CLI, the control plane and the agent as
 * processes, on a PostgreSQL cluster that checks passwords.
 */
import t from 'tap';
import { runProgram, CLI_BIN } from '../support/processes.js';
import { startRotationStack } from '../support/rotation-processes.js';
import { startScramPostgres } from '../support/scram-postgres.js';

const cluster = await startScramPostgres();
t.teardown(() => cluster.stop());

t.test('sikker leak by name and by value: the leaked password is refused, the report is printed', async (t) => {
  const stack = await startRotationStack(t, cluster);
  const byName = await stack.sikker(['leak', 'shop/orders-db', '--kill-sessions', '--wait', '30s']);
  t.equal(byName.matched, true);
  t.match(byName.leaks, [{ secret: 'orders-db', leakedVersion: 1, state: 'neutralised', target: 'orders' }]);
  t.equal(await stack.logsIn(stack.role, stack.initialPassword), false, 'the leaked (initial) password is refused');
  const current = await stack.sikker(['secret', 'get', 'shop/orders-db']);
  t.equal(await stack.logsIn(stack.role, current.value), true, 'the new one logs in');

  const byValue = await stack.sikker(['leak', '--value', '--wait', '30s'], current.value);
  t.match(byValue.leaks, [{ secret: 'orders-db', leakedVersion: 2, foundBy: 'value', state: 'neutralised' }]);
  t.equal(byValue.leaks[0].readers.length, 1, 'the operator read version 2 once (secret get above)');
  t.equal(await stack.logsIn(stack.role, current.value), false, 'the value leaked by value is refused too');

  const none = await stack.sikker(['leak', '--value'], 'nothing-we-manage-123');
  t.same(none, { matched: false, leaks: [] });
  const human = await runProgram(CLI_BIN, ['leak', 'shop/orders-db', '--wait', '30s'], { env: { SIKKER_SERVER: stack.server, SIKKER_IDENTITY: stack.identityPath, HOME: stack.home } });
  t.equal(human.code, 0, human.stderr);
  t.match(human.stdout, /neutralised: the leaked values are refused/);
});
