import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { HubClient } from '../../agent/hub-client/hub-client.js';
import { MemoryCommandJournal } from '../../agent/journal/memory-command-journal.js';
import { captureLogger, FakeHub, makeKeys, startClient } from './agent-test-hub.js';

/** A throwaway self-signed Ed25519 certificate for 127.0.0.1, made by openssl in a temp dir. */
function makeCertificate(): { certPem: string; keyPem: string } {
  const dir = mkdtempSync(join(tmpdir(), 'sikker-agent-tls-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ed25519', '-nodes', '-days', '1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    return { certPem: readFileSync(join(dir, 'cert.pem'), 'utf8'), keyPem: readFileSync(join(dir, 'key.pem'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const cert = makeCertificate();
const rightPin = new X509Certificate(cert.certPem).fingerprint256;

t.test('tls – the hub is reached over wss with the given CA and the right pin', async (t) => {
  const hub = await FakeHub.start(t, { tls: cert });
  const { client } = startClient(t, hub, makeKeys(), { tls: { caCertPem: cert.certPem, pinSha256: rightPin } });
  await new Promise((resolve) => client.once('connected', resolve));
  t.equal(client.connected, true);
});

t.test('tls – a wrong pin is a failed attempt with ERR_TRANSPORT_PIN_MISMATCH', async (t) => {
  const hub = await FakeHub.start(t, { tls: cert });
  const { client } = startClient(t, hub, makeKeys(), { tls: { caCertPem: cert.certPem, pinSha256: 'AB'.repeat(32) } });
  const { error } = await new Promise<{ error: { code: string } }>((resolve) => client.once('connect-failed', resolve));
  t.equal(error.code, 'ERR_TRANSPORT_PIN_MISMATCH');
  t.equal(hub.connections.length, 0);
});

t.test('tls – a self-signed hub without its CA is refused', async (t) => {
  const hub = await FakeHub.start(t, { tls: cert });
  const { client } = startClient(t, hub, makeKeys());
  const { error } = await new Promise<{ error: { code: string; message: string } }>((resolve) => client.once('connect-failed', resolve));
  t.equal(error.code, 'ERR_SERVER_UNREACHABLE');
  t.match(error.message, /self[- ]signed/i);
});

t.test('tls – ws:// to a non-loopback host is refused unless allowed', async (t) => {
  const keys = makeKeys();
  const base = { identity: keys.identity, journal: new MemoryCommandJournal(), logger: captureLogger().logger };
  t.throws(() => new HubClient({ ...base, serverUrl: 'http://10.9.8.7:8200' }), { code: 'ERR_TRANSPORT_INSECURE' });
  t.doesNotThrow(() => new HubClient({ ...base, serverUrl: 'http://10.9.8.7:8200', tls: { allowInsecureHttp: true } }));
  t.throws(() => new HubClient({ ...base, serverUrl: 'http://127.0.0.1:1', tls: { pinSha256: rightPin } }), { code: 'ERR_CONFIG_INVALID' });
});
