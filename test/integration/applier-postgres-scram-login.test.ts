/**
 * The verify login answered from the SCRAM keys computed with the verifier
 * (agent/appliers/postgres-scram-login.ts), on a private cluster that really checks
 * passwords: the keys are used only for the verifier they belong to, the server still
 * checks the proof, pg still checks the server's signature, and the applier's
 * apply → verify takes that path (this fails if a pg release moves the internal
 * the client overrides).
 */
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { createApplier } from '../../agent/appliers/index.js';
import { ScramKeyedClient, type ScramLoginKeys } from '../../agent/appliers/postgres-scram-login.js';
import { scramCredential } from '../../agent/appliers/postgres-scram-verifier.js';
import { PasswordDerivation } from '../../agent/appliers/password-derivation.js';
import { randomPassword } from '../support/applier-fixtures.js';
import { startScramPostgresWithSuperuser } from '../support/scram-postgres.js';

const { server, superuser } = await startScramPostgresWithSuperuser(t);

const prefix = `sk_scraml_${randomBytes(3).toString('hex')}`;
let counter = 0;

/** A LOGIN role whose stored password is `verifier`; dropped in teardown. */
async function roleWithVerifier(t: Test, verifier: string): Promise<string> {
  const name = `${prefix}_${counter++}`;
  await superuser.query(`CREATE ROLE ${superuser.escapeIdentifier(name)} LOGIN PASSWORD ${superuser.escapeLiteral(verifier)}`);
  t.teardown(async () => {
    await superuser.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1', [name]);
    await superuser.query(`DROP ROLE IF EXISTS ${superuser.escapeIdentifier(name)}`);
  });
  return name;
}

/** Logs in as `user` with `password` and `keys`; the client's provedWithKeys, or the error's SQLSTATE / message. */
async function login(user: string, password: string, keys: ScramLoginKeys): Promise<{ ok: true; provedWithKeys: boolean } | { ok: false; error: string }> {
  const client = new ScramKeyedClient({ host: '127.0.0.1', port: server.port, database: 'postgres', user, password, connectionTimeoutMillis: 5000 }, keys);
  client.on('error', () => undefined);
  try {
    await client.connect();
    const { rows } = await client.query<{ who: string }>('SELECT current_user AS who');
    if (rows[0]?.who !== user) return { ok: false, error: `logged in as ${rows[0]?.who ?? '?'}` };
    return { ok: true, provedWithKeys: client.provedWithKeys };
  } catch (err) {
    return { ok: false, error: (err as { code?: string }).code ?? (err as Error).message };
  } finally {
    await client.end().catch(() => undefined);
  }
}

t.test('the keys of the stored verifier answer the login, without the password', async (t) => {
  const password = randomPassword('keyed');
  const credential = await scramCredential(password);
  const user = await roleWithVerifier(t, credential.verifier);
  t.same(await login(user, password, credential), { ok: true, provedWithKeys: true }, 'logged in from the keys');
  // the proof came from the keys alone: a wrong password beside them changes nothing
  t.same(await login(user, `${password}-not-it`, credential), { ok: true, provedWithKeys: true }, 'the password was not what proved it');
});

t.test('keys for another salt are not used: pg logs in with the password', async (t) => {
  const password = randomPassword('salt');
  const stored = await scramCredential(password);
  const other = await scramCredential(password);
  const user = await roleWithVerifier(t, stored.verifier);
  t.same(await login(user, password, other), { ok: true, provedWithKeys: false }, 'the password, not the keys');
  t.same(await login(user, randomPassword('wrong'), other), { ok: false, error: '28P01' }, 'and a wrong password is refused as ever');
});

t.test('keys of another password with the same salt are refused by the server', async (t) => {
  const stored = await scramCredential(randomPassword('right'));
  const forged = await scramCredential(randomPassword('forged'), { salt: stored.salt, iterations: stored.iterations });
  const user = await roleWithVerifier(t, stored.verifier);
  t.same(await login(user, 'unused', forged), { ok: false, error: '28P01' }, 'the server checks the proof');
});

t.test('pg still checks the server signature: a wrong ServerKey fails the login', async (t) => {
  const password = randomPassword('sig');
  const credential = await scramCredential(password);
  const user = await roleWithVerifier(t, credential.verifier);
  const result = await login(user, password, { ...credential, serverKey: Buffer.alloc(32) });
  t.equal(result.ok, false, 'refused by the client');
  t.match(!result.ok && result.error, /server signature does not match/, 'for the server signature');
});

t.test('apply then verify: the verify login uses the keys of the verifier just stored, once', async (t) => {
  const password = randomPassword('old');
  const user = await roleWithVerifier(t, (await scramCredential(password)).verifier);
  const applier = await createApplier(
    { engine: 'postgres', host: '127.0.0.1', port: server.port, database: 'postgres', user, tls: { mode: 'disable' }, privilege: { mode: 'admin', adminConnection: 'su' } },
    { url: server.superuserUrl },
  );
  t.teardown(() => applier.close());
  const proofs: boolean[] = [];
  const original = ScramKeyedClient.prototype._handleAuthSASLContinue;
  ScramKeyedClient.prototype._handleAuthSASLContinue = async function (this: ScramKeyedClient, msg: { data: string }) {
    await original.call(this, msg);
    proofs.push(this.provedWithKeys);
  };
  t.teardown(() => {
    ScramKeyedClient.prototype._handleAuthSASLContinue = original;
  });

  const next = randomPassword('new');
  const derived = PasswordDerivation.start('postgres', next);
  await applier.apply({ user, newPassword: next, strategy: 'replace', derived });
  t.same(await applier.verify({ user, password: next }), { outcome: 'ok' }, 'the new password is proved');
  t.same(proofs, [true], 'by a login answered from the keys');
  t.same(await applier.verify({ user, password: next }), { outcome: 'ok' }, 'a second verify');
  t.same(proofs, [true], 'logs in with the password (the keys were used once and dropped)');
  t.same(await applier.verify({ user, password: password }), { outcome: 'refused' }, 'the old password is refused');

  // the derivation's own keys are zeroed once the command is done
  derived?.dispose();
  await new Promise((resolve) => setImmediate(resolve));
  const after = await derived?.scramCredential(next);
  t.ok(after !== undefined && after.clientKey.equals(Buffer.alloc(32)) && after.serverKey.equals(Buffer.alloc(32)), 'disposed keys are zeros');
});
