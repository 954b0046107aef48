/**
 * The agent's WebSocket handshake against endpoints that answer the upgrade with
 * something else (a proxy, a wrong URL): it gives up in bounded time and memory, so
 * the reconnect loop goes on. Loopback HTTP servers only.
 */
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { openHubSocket } from '../../agent/hub-client/hub-socket.js';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { AGENT_CONNECT_PATH } from '../../shared/protocol/agent-messages.js';

async function listen(t: { teardown(fn: () => unknown): void }, server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return `ws://127.0.0.1:${(server.address() as AddressInfo).port}${AGENT_CONNECT_PATH}`;
}

function connect(connectUrl: string, handshakeTimeoutMs: number): Promise<unknown> {
  const { privateKey } = generateKeyPairSync('ed25519');
  return openHubSocket({ connectUrl, identityId: randomUUID(), privateKey, caCertPem: undefined, pinSha256: undefined, handshakeTimeoutMs }, { onOpen: () => 'open' });
}

t.test('a refusal whose body never ends is given up on after the handshake timeout', async (t) => {
  const server = createServer((_req, res) => {
    res.writeHead(503, { 'content-type': 'text/plain' });
    const drip = setInterval(() => res.write('.'), 20);
    res.on('close', () => clearInterval(drip));
  });
  const url = await listen(t, server);
  const started = Date.now();
  const err = await connect(url, 400).then(() => null, (e: unknown) => e);
  t.ok(err instanceof SikkerError, 'refused with a SikkerError');
  t.equal((err as SikkerError).code, 'ERR_SERVER_UNREACHABLE');
  t.match((err as SikkerError).message, /HTTP 503/);
  t.ok(Date.now() - started < 5000, `settled in ${Date.now() - started} ms`);
});

t.test('a huge refusal body is read only as far as its first bytes', async (t) => {
  let wrote = 0;
  const server = createServer((_req, res) => {
    res.writeHead(403, { 'content-type': 'application/json' });
    res.write(JSON.stringify({ error: { code: 'ERR_AUTH_FORBIDDEN', message: 'not an agent' } }).padEnd(4096, ' '));
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    const more = (): void => {
      while (wrote < 64 * 1024 * 1024 && res.write(chunk)) wrote += chunk.length;
      if (wrote < 64 * 1024 * 1024) res.once('drain', more);
    };
    more();
  });
  const url = await listen(t, server);
  const err = await connect(url, 10_000).then(() => null, (e: unknown) => e);
  t.equal((err as SikkerError).code, 'ERR_AUTH_FORBIDDEN', 'the server\'s code, from the first bytes');
  t.ok(wrote < 64 * 1024 * 1024, `the rest was not read (${wrote} bytes written before the client hung up)`);
});
