import t from 'tap';
import { startHarness } from '../support/control-plane-harness.js';
import { startPrivateRedis } from '../support/private-redis.js';

async function harnessWithSecret(t: { teardown(fn: () => unknown): void }, label: string, env: Record<string, string> = {}) {
  const h = await startHarness(t, { label, env });
  await h.admin.ok('POST', '/v1/projects', { name: 'p' });
  await h.admin.ok('PUT', '/v1/projects/p/secrets/s', { value: 'signed-request-value' });
  return h;
}

t.test('signed requests – a replayed request is refused', async (t) => {
  const h = await harnessWithSecret(t, 'replay');
  const first = await h.admin.call('GET', '/v1/projects/p/secrets/s');
  t.equal(first.status, 200);
  const replay = await h.admin.call('GET', '/v1/projects/p/secrets/s', undefined, { mutate: (r) => { r.headers = { ...first.headers.headers }; } });
  t.equal(replay.status, 401);
  t.equal(replay.body.error.code, 'ERR_AUTH_REPLAY');
  t.notOk(JSON.stringify(replay.body).includes('signed-request-value'));
});

t.test('signed requests – clock skew beyond the window is refused with a clear error', async (t) => {
  const h = await harnessWithSecret(t, 'skew');
  for (const offset of [-120_000, 120_000]) {
    const r = await h.admin.call('GET', '/v1/projects/p/secrets/s', undefined, { now: Date.now() + offset });
    t.equal(r.status, 401);
    t.equal(r.body.error.code, 'ERR_AUTH_CLOCK_SKEW');
    t.match(r.body.error.message, /clock skew/);
  }
  t.equal((await h.admin.call('GET', '/v1/projects/p/secrets/s', undefined, { now: Date.now() - 20_000 })).status, 200, 'small skew is fine');
});

t.test('signed requests – changing any signed part breaks the signature', async (t) => {
  const h = await harnessWithSecret(t, 'alter');
  await h.admin.ok('PUT', '/v1/projects/p/secrets/other', { value: 'other' });
  const cases: Array<[string, (r: { method: string; path: string; headers: Record<string, string>; body: Buffer }) => void, string?]> = [
    ['path', (r) => { r.path = '/v1/projects/p/secrets/other'; }],
    ['query', (r) => { r.path = `${r.path}?version=1`; }],
    ['timestamp', (r) => { r.headers['x-sikker-timestamp'] = String(Number(r.headers['x-sikker-timestamp']) - 1); }],
    ['nonce', (r) => { r.headers['x-sikker-nonce'] = 'AAAAAAAAAAAAAAAAAAAAAAAA'; }],
    ['signature', (r) => { const s = Buffer.from(r.headers['x-sikker-signature']!, 'base64'); s[5]! ^= 1; r.headers['x-sikker-signature'] = s.toString('base64'); }],
  ];
  for (const [part, mutate] of cases) {
    const r = await h.admin.call('GET', '/v1/projects/p/secrets/s', undefined, { mutate });
    t.equal(r.body.error?.code, 'ERR_AUTH_BAD_SIGNATURE', `changed ${part}`);
  }
  const body = await h.admin.call('PUT', '/v1/projects/p/secrets/s', { value: 'mine' }, { mutate: (r) => { r.body = Buffer.from(JSON.stringify({ value: 'theirs' })); } });
  t.equal(body.body.error?.code, 'ERR_AUTH_BAD_SIGNATURE', 'changed body');
  const method = await h.admin.call('GET', '/v1/projects/p/secrets/s', undefined, { mutate: (r) => { r.method = 'DELETE'; } });
  t.not(method.status, 200, 'changed method');
  const unsigned = await h.admin.call('GET', '/v1/projects/p/secrets/s', undefined, { signed: false });
  t.equal(unsigned.body.error.code, 'ERR_AUTH_MISSING');
  const stranger = h.newClient();
  stranger.identityId = h.admin.identityId;
  const forged = await stranger.call('GET', '/v1/projects/p/secrets/s');
  t.equal(forged.body.error.code, 'ERR_AUTH_BAD_SIGNATURE', 'another key claiming the admin identity');
  t.equal((await h.admin.ok('GET', '/v1/projects/p/secrets/s')).value, 'signed-request-value', 'nothing was changed by refused writes');
  const failures = await h.admin.ok('GET', '/v1/audit?action=auth.failure&limit=100');
  t.ok(failures.records.length >= 7, 'every refusal was audited');
});

t.test('signed requests – source addresses outside the identity\'s CIDRs are refused', async (t) => {
  const h = await harnessWithSecret(t, 'cidr');
  const { token: remoteToken } = await h.admin.ok('POST', '/v1/tokens', { project: 'p', role: 'oncall', cidrs: ['10.0.0.0/8'] });
  const outsider = h.newClient();
  const refused = await outsider.call('POST', '/v1/enroll', { token: remoteToken, publicKey: outsider.publicKeyText, name: 'outsider' });
  t.equal(refused.body.error.code, 'ERR_AUTH_SOURCE_DENIED', 'a token bound to 10/8 cannot be redeemed from loopback');

  const { token } = await h.admin.ok('POST', '/v1/tokens', { project: 'p', role: 'oncall', cidrs: ['127.0.0.2/32'] });
  const bound = h.newClient();
  const enrolled = await bound.ok('POST', '/v1/enroll', { token, publicKey: bound.publicKeyText, name: 'bound' }, { localAddress: '127.0.0.2' });
  bound.identityId = enrolled.identityId;
  const ok = await bound.call('GET', '/v1/projects/p/secrets/s', undefined, { localAddress: '127.0.0.2' });
  t.equal(ok.status, 200, 'from 127.0.0.2: allowed');
  const denied = await bound.call('GET', '/v1/projects/p/secrets/s', undefined, { localAddress: '127.0.0.1' });
  t.equal(denied.status, 403);
  t.equal(denied.body.error.code, 'ERR_AUTH_SOURCE_DENIED', 'from 127.0.0.1: refused');
});

t.test('signed requests – a disabled identity is refused at once', async (t) => {
  const h = await harnessWithSecret(t, 'disabled');
  const oncall = await h.enroll('p', 'oncall');
  t.equal((await oncall.call('GET', '/v1/projects/p/secrets/s')).status, 200);
  await h.admin.ok('POST', `/v1/identities/${oncall.identityId}/disable`);
  const r = await oncall.call('GET', '/v1/projects/p/secrets/s');
  t.equal(r.status, 401);
  t.equal(r.body.error.code, 'ERR_AUTH_IDENTITY_DISABLED');
});

t.test('signed requests – with Redis down every signed request is refused (fail closed)', async (t) => {
  const redis = await startPrivateRedis();
  t.teardown(() => redis.stop());
  const h = await harnessWithSecret(t, 'redisdown', { SIKKER_REDIS_URL: redis.url });
  t.equal((await h.admin.call('GET', '/v1/projects/p/secrets/s')).status, 200);
  await redis.stop();
  const r = await h.admin.call('GET', '/v1/projects/p/secrets/s');
  t.equal(r.status, 503);
  t.equal(r.body.error.code, 'ERR_AUTH_NONCE_STORE_UNAVAILABLE');
  t.notOk(JSON.stringify(r.body).includes('signed-request-value'));
  const write = await h.admin.call('PUT', '/v1/projects/p/secrets/s', { value: 'while-redis-down' });
  t.equal(write.status, 503, 'writes too');
});
