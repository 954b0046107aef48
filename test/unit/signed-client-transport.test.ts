import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import * as z from 'zod';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { SignedClient } from '../../shared/http-client/signed-client.js';
import { isLoopbackHost, normalisePin } from '../../shared/http-client/signed-client-options.js';
import { generateIdentityKeyPair } from '../../shared/signing/ed25519-keys.js';
import { ENROLLING_IDENTITY, SIGNATURE_HEADERS, verifySignature } from '../../shared/signing/request-signature.js';

const IDENTITY_ID = '6f1c7a52-3f0e-4c43-9a55-0d6f3c1e2b7a';

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: Buffer;
}
type Reply = { status: number; body?: string | Buffer };

/** A 127.0.0.1 server that records each request and answers with `reply(seen)`. */
async function startServer(t: Test, reply: (seen: Seen) => Reply): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const request = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks) };
      seen.push(request);
      const answer = reply(request);
      res.writeHead(answer.status, answer.body === undefined ? {} : { 'content-type': 'application/json' });
      res.end(answer.body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

const keys = generateIdentityKeyPair();
const identity = { privateKey: keys.privateKey, identityId: IDENTITY_ID };
const Echo = z.object({ ok: z.boolean() });

function clientFor(t: Test, server: string, extra: Partial<ConstructorParameters<typeof SignedClient>[0]> = {}): SignedClient {
  const client = new SignedClient({ server, identity, ...extra });
  t.teardown(() => client.close());
  return client;
}

function verifies(seen: Seen, identityId: string): boolean {
  const header = (name: string): string => String(seen.headers[name] ?? '');
  return verifySignature(
    keys.publicKey,
    {
      method: seen.method,
      pathWithQuery: seen.url,
      body: seen.body,
      timestampMs: Number(header(SIGNATURE_HEADERS.timestamp)),
      nonce: header(SIGNATURE_HEADERS.nonce),
      identityId,
    },
    header(SIGNATURE_HEADERS.signature),
  );
}

t.test('transport – plain http to a non-loopback host is refused', async (t) => {
  t.throws(() => new SignedClient({ server: 'http://10.1.2.3:8200', identity }), { code: 'ERR_TRANSPORT_INSECURE' });
  t.throws(() => new SignedClient({ server: 'http://vault.example.com', identity }), { code: 'ERR_TRANSPORT_INSECURE' });
});

t.test('transport – plain http to loopback is allowed', async (t) => {
  for (const server of ['http://127.0.0.1:8200', 'http://127.9.9.9', 'http://localhost:1', 'http://[::1]:8200']) {
    t.doesNotThrow(() => new SignedClient({ server, identity }).close(), server);
  }
  t.ok(isLoopbackHost('127.0.0.1'));
  t.notOk(isLoopbackHost('127.0.0.1.evil.example'));
});

t.test('transport – allowInsecureHttp opts in to plain http anywhere', async (t) => {
  t.doesNotThrow(() => new SignedClient({ server: 'http://10.1.2.3', identity, allowInsecureHttp: true }).close());
});

t.test('transport – server URL with a path or credentials is refused', async (t) => {
  t.throws(() => new SignedClient({ server: 'https://host/v1' }), { code: 'ERR_CONFIG_INVALID' });
  t.throws(() => new SignedClient({ server: 'https://u:p@host' }), { code: 'ERR_CONFIG_INVALID' });
  t.throws(() => new SignedClient({ server: 'ftp://host' }), { code: 'ERR_CONFIG_INVALID' });
});

t.test('transport – pins are normalised and malformed pins refused', async (t) => {
  const hex = 'ab'.repeat(32);
  t.equal(normalisePin(hex), Array(32).fill('AB').join(':'));
  t.equal(normalisePin(Array(32).fill('ab').join(':')), Array(32).fill('AB').join(':'));
  t.throws(() => normalisePin('abcd'), { code: 'ERR_CONFIG_INVALID' });
});

t.test('request – signature covers the exact bytes sent', async (t) => {
  const server = await startServer(t, () => ({ status: 200, body: '{"ok":true}' }));
  const body = { value: 'héllo "world"', n: 1 };
  const result = await clientFor(t, server.url).request('PUT', '/v1/projects/p/secrets/a%2Fb?x=1', body, Echo);
  t.same(result, { ok: true });
  const seen = server.seen[0]!;
  t.equal(seen.body.toString('utf8'), JSON.stringify(body));
  t.equal(seen.headers['content-type'], 'application/json');
  t.equal(seen.url, '/v1/projects/p/secrets/a%2Fb?x=1');
  t.ok(verifies(seen, IDENTITY_ID), 'signature verifies over method, path, body');
  t.notOk(verifies({ ...seen, body: Buffer.from('{}') }, IDENTITY_ID), 'a different body does not verify');
});

t.test('request – identityIdOverride and a supplied nonce are signed', async (t) => {
  const server = await startServer(t, () => ({ status: 200, body: '{"ok":true}' }));
  await clientFor(t, server.url).request('POST', '/v1/enroll', { a: 1 }, Echo, { identityIdOverride: ENROLLING_IDENTITY, nonce: 'fixed-nonce-123' });
  const seen = server.seen[0]!;
  t.equal(seen.headers[SIGNATURE_HEADERS.identity], ENROLLING_IDENTITY);
  t.equal(seen.headers[SIGNATURE_HEADERS.nonce], 'fixed-nonce-123');
  t.ok(verifies(seen, ENROLLING_IDENTITY));
});

t.test('request – unsigned requests carry no signature and need no identity', async (t) => {
  const server = await startServer(t, () => ({ status: 200, body: '{"ok":true}' }));
  const client = new SignedClient({ server: server.url });
  t.teardown(() => client.close());
  await client.request('GET', '/v1/sys/status', undefined, Echo, { signed: false });
  t.equal(server.seen[0]!.headers[SIGNATURE_HEADERS.signature], undefined);
  t.equal(server.seen[0]!.headers['content-type'], undefined);
  await t.rejects(client.request('GET', '/v1/whoami', undefined, Echo), { code: 'ERR_IDENTITY_KEY_FILE' });
});

t.test('request – error body maps to SikkerError with the server code and status', async (t) => {
  const server = await startServer(t, () => ({ status: 403, body: '{"error":{"code":"ERR_AUTH_FORBIDDEN","message":"no"}}' }));
  const err = await clientFor(t, server.url).request('GET', '/v1/projects', undefined, Echo).catch((e: unknown) => e);
  t.type(err, SikkerError);
  t.match(err, { code: 'ERR_AUTH_FORBIDDEN', message: 'no', details: { status: 403 } });
});

t.test('request – unknown error code becomes ERR_INTERNAL with the message kept', async (t) => {
  const server = await startServer(t, () => ({ status: 500, body: '{"error":{"code":"ERR_WHATEVER","message":"kaput"}}' }));
  await t.rejects(clientFor(t, server.url).request('GET', '/v1/x', undefined, Echo), {
    code: 'ERR_INTERNAL',
    message: 'kaput',
    details: { status: 500 },
  });
});

t.test('request – non-JSON error page becomes ERR_INTERNAL naming the status', async (t) => {
  const server = await startServer(t, () => ({ status: 502, body: '<html>bad gateway</html>' }));
  await t.rejects(clientFor(t, server.url).request('GET', '/v1/x', undefined, Echo), { code: 'ERR_INTERNAL', details: { status: 502 } });
});

t.test('request – response of the wrong shape is ERR_VALIDATION', async (t) => {
  const server = await startServer(t, () => ({ status: 200, body: '{"ok":"yes"}' }));
  await t.rejects(clientFor(t, server.url).request('GET', '/v1/x', undefined, Echo), {
    code: 'ERR_VALIDATION',
    message: 'unexpected response from server',
  });
});

t.test('request – 204 yields undefined', async (t) => {
  const server = await startServer(t, () => ({ status: 204 }));
  t.equal(await clientFor(t, server.url).request('POST', '/v1/x', { a: 1 }, z.undefined()), undefined);
});

t.test('request – response above the cap is refused', async (t) => {
  const server = await startServer(t, () => ({ status: 200, body: Buffer.alloc(4096, 0x20) }));
  const client = clientFor(t, server.url, { maxResponseBytes: 1024 });
  await t.rejects(client.request('GET', '/v1/x', undefined, Echo), { code: 'ERR_VALIDATION' });
});

t.test('request – connection refused is ERR_SERVER_UNREACHABLE naming only the URL', async (t) => {
  const client = clientFor(t, 'http://127.0.0.1:1');
  const err = await client.request('PUT', '/v1/x', { value: 'hunter2-secret' }, Echo).catch((e: unknown) => e);
  t.match(err, { code: 'ERR_SERVER_UNREACHABLE', message: /http:\/\/127\.0\.0\.1:1/ });
  t.notMatch((err as Error).message, /hunter2|x-sikker/);
});

t.test('request – no answer within timeoutMs is ERR_SERVER_UNREACHABLE', async (t) => {
  const silent = createServer(() => undefined);
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    silent.closeAllConnections();
    silent.close();
  });
  const client = clientFor(t, `http://127.0.0.1:${(silent.address() as AddressInfo).port}`, { timeoutMs: 200 });
  await t.rejects(client.request('GET', '/v1/x', undefined, Echo), { code: 'ERR_SERVER_UNREACHABLE', message: /200 ms/ });
});

t.test('request – a path that is not percent-encoded ASCII is refused', async (t) => {
  const client = clientFor(t, 'http://127.0.0.1:1');
  await t.rejects(client.request('GET', 'v1/x', undefined, Echo), { code: 'ERR_VALIDATION' });
  await t.rejects(client.request('GET', '/v1/a b', undefined, Echo), { code: 'ERR_VALIDATION' });
});
