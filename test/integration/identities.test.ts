import { generateKeyPairSync, sign } from 'node:crypto';
import t from 'tap';
import { startHarness } from '../support/control-plane-harness.js';
import { exportPublicKey } from '../../shared/signing/ed25519-keys.js';
import { rekeyProofText } from '../../shared/protocol/api.js';

t.test('identities – a join token enrolls exactly once and binds project and role', async (t) => {
  const h = await startHarness(t, { label: 'tokens' });
  await h.admin.ok('POST', '/v1/projects', { name: 'p' });
  const { token } = await h.admin.ok('POST', '/v1/tokens', { project: 'p', role: 'dba' });
  const a = h.newClient();
  const enrolled = await a.ok('POST', '/v1/enroll', { token, publicKey: a.publicKeyText, name: 'dba-1' });
  t.match(enrolled, { project: 'p', role: 'dba' });
  t.equal(typeof enrolled.serverPublicKey, 'string');
  const b = h.newClient();
  const again = await b.call('POST', '/v1/enroll', { token, publicKey: b.publicKeyText, name: 'dba-2' });
  t.equal(again.status, 401);
  t.equal(again.body.error.code, 'ERR_TOKEN_INVALID', 'a used token is refused');
  a.identityId = enrolled.identityId;
  t.match(await a.ok('GET', '/v1/whoami'), { name: 'dba-1', grants: [{ project: 'p', role: 'dba' }] });
  const list = await h.admin.ok('GET', '/v1/identities');
  t.equal(list.identities.length, 2);
  t.equal((await a.call('GET', '/v1/identities')).status, 403, 'only admins list identities');
  t.equal((await a.call('POST', '/v1/projects', { name: 'q' })).status, 403, 'a dba cannot create projects');
});

t.test('identities – an expired token and a token signed by another key are refused', async (t) => {
  const h = await startHarness(t, { label: 'tokens-expired' });
  await h.admin.ok('POST', '/v1/projects', { name: 'p' });
  const { token } = await h.admin.ok('POST', '/v1/tokens', { project: 'p', role: 'reader', ttlSeconds: 30 });
  await h.plane.pool.query("UPDATE join_tokens SET expires_at = now() - interval '1 second'");
  const c = h.newClient();
  t.equal((await c.call('POST', '/v1/enroll', { token, publicKey: c.publicKeyText, name: 'late' })).body.error.code, 'ERR_TOKEN_INVALID');
  const { token: fresh } = await h.admin.ok('POST', '/v1/tokens', { project: 'p', role: 'reader' });
  const other = h.newClient();
  // Claims other's public key but signs with its own: possession is not proved.
  const forged = await c.call('POST', '/v1/enroll', { token: fresh, publicKey: other.publicKeyText, name: 'forged' });
  t.equal(forged.body.error.code, 'ERR_AUTH_BAD_SIGNATURE');
  t.equal((await other.call('POST', '/v1/enroll', { token: fresh, publicKey: other.publicKeyText, name: 'real' })).status, 200, 'the token was not spent by the forgery');
  const bogusRole = await h.admin.call('POST', '/v1/tokens', { project: 'p', role: 'root' });
  t.equal(bogusRole.body.error.code, 'ERR_VALIDATION');
});

t.test('identities – the join tokens a disabled identity created no longer enroll anyone', async (t) => {
  const h = await startHarness(t, { label: 'tokens-disabled' });
  await h.admin.ok('POST', '/v1/projects', { name: 'p' });
  const { token: adminToken } = await h.admin.ok('POST', '/v1/tokens', { project: 'p', role: 'admin' });
  const projectAdmin = h.newClient();
  projectAdmin.identityId = (await projectAdmin.ok('POST', '/v1/enroll', { token: adminToken, publicKey: projectAdmin.publicKeyText, name: 'p-admin' })).identityId;
  const { token: handedOut } = await projectAdmin.ok('POST', '/v1/tokens', { project: 'p', role: 'admin' });
  const { token: alsoHandedOut } = await projectAdmin.ok('POST', '/v1/tokens', { project: 'p', role: 'reader' });
  await h.admin.ok('POST', `/v1/identities/${projectAdmin.identityId}/disable`);
  for (const token of [handedOut, alsoHandedOut]) {
    const c = h.newClient();
    const refused = await c.call('POST', '/v1/enroll', { token, publicKey: c.publicKeyText, name: 'after-disable' });
    t.equal(refused.body.error?.code, 'ERR_TOKEN_INVALID', 'a token of the disabled identity is refused');
  }
  // the check at enroll holds on its own too (a token issued as the identity was being disabled)
  await h.plane.pool.query('UPDATE join_tokens SET expires_at = now() + interval \'1 hour\' WHERE used_at IS NULL');
  const c = h.newClient();
  t.equal((await c.call('POST', '/v1/enroll', { token: handedOut, publicKey: c.publicKeyText, name: 'raced' })).body.error?.code, 'ERR_TOKEN_INVALID');
  const { token: ownToken } = await h.admin.ok('POST', '/v1/tokens', { project: 'p', role: 'reader' });
  const ok = h.newClient();
  t.equal((await ok.call('POST', '/v1/enroll', { token: ownToken, publicKey: ok.publicKeyText, name: 'still-fine' })).status, 200, 'tokens of identities still enabled work');
});

t.test('identities – re-keying needs the old key and proof of the new one', async (t) => {
  const h = await startHarness(t, { label: 'rekey' });
  await h.admin.ok('POST', '/v1/projects', { name: 'p' });
  await h.admin.ok('PUT', '/v1/projects/p/secrets/s', { value: 'v' });
  const next = generateKeyPairSync('ed25519');
  const nextPublic = exportPublicKey(next.publicKey);
  let nonce = '';
  const badProof = await h.admin.call('POST', '/v1/identities/self/rekey', { publicKey: nextPublic, proof: sign(null, Buffer.from('other text'), next.privateKey).toString('base64') });
  t.equal(badProof.body.error.code, 'ERR_AUTH_BAD_SIGNATURE', 'a proof over other text is refused');
  const ok = await h.admin.call('POST', '/v1/identities/self/rekey', undefined, {
    mutate: (r) => {
      nonce = r.headers['x-sikker-nonce']!;
      const proof = sign(null, rekeyProofText(h.admin.identityId, nextPublic, nonce), next.privateKey).toString('base64');
      r.body = Buffer.from(JSON.stringify({ publicKey: nextPublic, proof }));
      r.headers['content-type'] = 'application/json';
    },
  });
  t.equal(ok.body.error?.code, 'ERR_AUTH_BAD_SIGNATURE', 'the body is signed too, so it cannot be swapped after signing');
  // Sign properly: the proof must name the nonce that the signed request carries.
  const fixedNonce = 'rekeyNonce0123456789AB';
  const proof = sign(null, rekeyProofText(h.admin.identityId, nextPublic, fixedNonce), next.privateKey).toString('base64');
  const { signRequest } = await import('../../shared/signing/request-signature.js');
  const body = Buffer.from(JSON.stringify({ publicKey: nextPublic, proof }));
  const done = await h.admin.call('POST', '/v1/identities/self/rekey', { publicKey: nextPublic, proof }, {
    mutate: (r) => {
      Object.assign(r.headers, signRequest(h.admin.privateKey, { method: 'POST', pathWithQuery: r.path, body, identityId: h.admin.identityId }, Date.now(), fixedNonce));
    },
  });
  t.equal(done.status, 200, 'accepted');
  t.equal(done.body.publicKey, nextPublic);
  t.equal((await h.admin.call('GET', '/v1/projects/p/secrets/s')).body.error?.code, 'ERR_AUTH_BAD_SIGNATURE', 'the old key no longer works');
  h.admin.privateKey = next.privateKey;
  t.equal((await h.admin.ok('GET', '/v1/projects/p/secrets/s')).value, 'v', 'the new key works');
});
