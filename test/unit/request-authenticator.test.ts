import { generateKeyPairSync } from 'node:crypto';
import t from 'tap';
import { RequestAuthenticator } from '../../control-plane/auth/request-authenticator.js';
import { NONCE_TTL_MARGIN_MS, NonceStore } from '../../control-plane/auth/nonce-store.js';
import { buildBlockList } from '../../control-plane/identity/identity-dal.js';
import type { AuthIdentity } from '../../control-plane/identity/identity-types.js';
import { signRequest } from '../../shared/signing/request-signature.js';
import { exportPublicKey } from '../../shared/signing/ed25519-keys.js';

const ID = '11111111-2222-4333-8444-555555555555';
const keys = generateKeyPairSync('ed25519');

function identity(overrides: Partial<AuthIdentity> = {}): AuthIdentity {
  return {
    identityId: ID, name: 'x', publicKey: keys.publicKey, publicKeyText: exportPublicKey(keys.publicKey),
    disabled: false, cidrs: [], allowedSources: null, grants: [], ...overrides,
  };
}

/** An in-memory stand-in for Redis SET NX PX, or one that is down. */
function fakeRedis(down = false) {
  const seen = new Set<string>();
  return {
    seen,
    async set(key: string): Promise<'OK' | null> {
      if (down) throw new Error('connect ECONNREFUSED 127.0.0.1:6379');
      if (seen.has(key)) return null;
      seen.add(key);
      return 'OK';
    },
  };
}

function setup(opts: { identity?: AuthIdentity | null; redisDown?: boolean } = {}) {
  const redis = fakeRedis(opts.redisDown);
  const auth = new RequestAuthenticator(
    { forAuthentication: async () => (opts.identity === undefined ? identity() : opts.identity) },
    new NonceStore(redis as never, 'p:', 60_000), 60_000,
  );
  return { auth, redis };
}

function request(now = Date.now(), body = Buffer.from('{"a":1}')) {
  const headers = signRequest(keys.privateKey, { method: 'PUT', pathWithQuery: '/v1/x?y=1', body, identityId: ID }, now);
  return { method: 'PUT', url: '/v1/x?y=1', headers: headers as Record<string, string>, rawBody: body, sourceIp: '127.0.0.1' };
}

t.test('authenticator – a correctly signed request passes once', async (t) => {
  const { auth } = setup();
  const req = request();
  t.equal((await auth.authenticate(req)).identity.identityId, ID);
  await t.rejects(auth.authenticate(req), { code: 'ERR_AUTH_REPLAY' });
});

t.test('authenticator – skew beyond the window', async (t) => {
  const { auth, redis } = setup();
  await t.rejects(auth.authenticate(request(Date.now() - 61_000)), { code: 'ERR_AUTH_CLOCK_SKEW', message: /clock skew/ });
  t.equal(redis.seen.size, 0, 'no nonce was recorded for a refused request');
});

t.test('authenticator – each signed part matters', async (t) => {
  const { auth } = setup();
  const alter: Array<[string, (r: ReturnType<typeof request>) => void]> = [
    ['method', (r) => { r.method = 'POST'; }],
    ['path', (r) => { r.url = '/v1/z?y=1'; }],
    ['query', (r) => { r.url = '/v1/x?y=2'; }],
    ['body', (r) => { r.rawBody = Buffer.from('{"a":2}'); }],
    ['timestamp', (r) => { r.headers['x-sikker-timestamp'] = String(Number(r.headers['x-sikker-timestamp']) + 1); }],
    ['nonce', (r) => { r.headers['x-sikker-nonce'] = 'ZZZZZZZZZZZZZZZZZZZZZZZZ'; }],
  ];
  for (const [name, change] of alter) {
    const r = request();
    change(r);
    await t.rejects(auth.authenticate(r), { code: 'ERR_AUTH_BAD_SIGNATURE' }, name);
  }
});

t.test('authenticator – missing and malformed headers', async (t) => {
  const { auth } = setup();
  const r = request();
  delete r.headers['x-sikker-nonce'];
  await t.rejects(auth.authenticate(r), { code: 'ERR_AUTH_MISSING' });
  const m = request();
  m.headers['x-sikker-identity'] = 'not-a-uuid';
  await t.rejects(auth.authenticate(m), { code: 'ERR_AUTH_MALFORMED' });
});

t.test('authenticator – unknown, disabled, wrong source', async (t) => {
  await t.rejects(setup({ identity: null }).auth.authenticate(request()), { code: 'ERR_AUTH_UNKNOWN_IDENTITY' });
  await t.rejects(setup({ identity: identity({ disabled: true }) }).auth.authenticate(request()), { code: 'ERR_AUTH_IDENTITY_DISABLED' });
  const bound = identity({ cidrs: ['10.0.0.0/8'], allowedSources: buildBlockList(['10.0.0.0/8']) });
  await t.rejects(setup({ identity: bound }).auth.authenticate(request()), { code: 'ERR_AUTH_SOURCE_DENIED' });
  const mapped = { ...request(), sourceIp: '::ffff:10.1.2.3' };
  t.ok(await setup({ identity: bound }).auth.authenticate(mapped), 'an IPv4-mapped address inside the CIDR passes');
});

t.test('authenticator – nonce store down refuses (fail closed)', async (t) => {
  await t.rejects(setup({ redisDown: true }).auth.authenticate(request()), { code: 'ERR_AUTH_NONCE_STORE_UNAVAILABLE' });
});

t.test('nonce store – a nonce is kept for the whole window a request is valid in, plus a margin for replica clocks', async (t) => {
  const calls: unknown[][] = [];
  const store = new NonceStore({ set: async (...args: unknown[]) => (calls.push(args), 'OK') } as never, 'p:', 60_000);
  t.equal(await store.claim('id', 'n'.repeat(16)), true);
  t.same(calls[0], ['p:nonce:id:nnnnnnnnnnnnnnnn', '1', 'PX', 120_000 + NONCE_TTL_MARGIN_MS, 'NX']);
  t.ok(NONCE_TTL_MARGIN_MS >= 10_000, 'a margin of at least ten seconds');
});
