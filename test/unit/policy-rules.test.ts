import t from 'tap';
import { userForNextRun } from '../../control-plane/rotation/policy-rules.js';

const alternate = { strategy: 'alternate' as const, user: 'app_a', alternate_user: 'app_b' };

t.test('alternate: the run goes to the user that is not current now', async (t) => {
  t.equal(userForNextRun({ ...alternate, current_version: 3, current_user: 'app_a' }), 'app_b');
  t.equal(userForNextRun({ ...alternate, current_version: 4, current_user: 'app_b' }), 'app_a');
});

t.test('alternate: a current version with no user recorded is the target user\'s, so the other user gets the run', async (t) => {
  // written with `secret set` (db_user NULL): consumers log in as the target's user with it
  t.equal(userForNextRun({ ...alternate, current_version: 1, current_user: null }), 'app_b');
});

t.test('alternate with no current version: the target user goes first', async (t) => {
  t.equal(userForNextRun({ ...alternate, current_version: null, current_user: null }), 'app_a');
});

t.test('replace and dual, or no alternate user: always the target user', async (t) => {
  t.equal(userForNextRun({ ...alternate, strategy: 'replace', current_version: 2, current_user: 'app_a' }), 'app_a');
  t.equal(userForNextRun({ ...alternate, strategy: 'dual', current_version: 2, current_user: null }), 'app_a');
  t.equal(userForNextRun({ ...alternate, alternate_user: null, current_version: 2, current_user: 'app_a' }), 'app_a');
});
