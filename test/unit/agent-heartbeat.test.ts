import type { Socket } from 'node:net';
import t from 'tap';
import { FakeHub, makeKeys, startClient, type HubSide } from './agent-test-hub.js';

/** Stops the hub side from reading: pings pile up unanswered, like a half-open connection. */
function goSilent(side: HubSide): void {
  (side.socket as unknown as { _socket: Socket })._socket.pause();
}

t.test('heartbeat – a hub that stops answering pings is dropped within two intervals', async (t) => {
  const hub = await FakeHub.start(t, { welcome: { heartbeatMs: 1000 } });
  const { client } = startClient(t, hub, makeKeys(), { heartbeatMs: 60_000 });
  const side = await hub.nextConnection(0);
  await side.next((m) => m.type === 'hello');
  const started = Date.now();
  goSilent(side);
  await new Promise((resolve) => client.once('disconnected', resolve));
  const elapsed = Date.now() - started;
  t.ok(elapsed >= 900 && elapsed < 2600, `dropped after ${elapsed} ms (the welcome's 1000 ms interval applies)`);
});

t.test('heartbeat – before the welcome the configured interval applies (300 ms)', async (t) => {
  const hub = await FakeHub.start(t, { welcome: null });
  const { client } = startClient(t, hub, makeKeys(), { heartbeatMs: 300, handshakeTimeoutMs: 10_000 });
  const side = await hub.nextConnection(0);
  const started = Date.now();
  goSilent(side);
  const failed = await new Promise<{ error: Error }>((resolve) => client.once('connect-failed', resolve));
  const elapsed = Date.now() - started;
  t.ok(elapsed < 900, `dropped after ${elapsed} ms`);
  t.match(failed.error.message, /closed the connection before its welcome/);
});

t.test('heartbeat – a hub that answers pings keeps the connection', async (t) => {
  const hub = await FakeHub.start(t, { welcome: { heartbeatMs: 1000 } });
  const { client } = startClient(t, hub, makeKeys());
  await hub.nextConnection(0);
  await new Promise((resolve) => client.once('connected', resolve));
  let dropped = false;
  client.once('disconnected', () => (dropped = true));
  await new Promise((resolve) => setTimeout(resolve, 2500));
  t.notOk(dropped);
  t.equal(client.connected, true);
});

t.test('reconnect – after the hub drops the socket the agent connects again and says hello', async (t) => {
  const hub = await FakeHub.start(t);
  const { client } = startClient(t, hub, makeKeys());
  const first = await hub.nextConnection(0);
  await first.next((m) => m.type === 'hello');
  first.socket.terminate();
  const second = await hub.nextConnection(1);
  await second.next((m) => m.type === 'hello');
  t.equal(client.state, 'RUNNING');
});

t.test('reconnect – a hub that does not answer the upgrade is retried with backoff', async (t) => {
  const hub = await FakeHub.start(t, { refuse: { status: 503, code: 'ERR_VAULT_SEALED' } });
  const { client } = startClient(t, hub, makeKeys());
  const attempts: number[] = [];
  await new Promise<void>((resolve) => {
    client.on('connect-failed', ({ attempt }) => {
      attempts.push(attempt);
      if (attempts.length === 4) resolve();
    });
  });
  t.same(attempts, [1, 2, 3, 4], 'each failure counts one attempt');
});
