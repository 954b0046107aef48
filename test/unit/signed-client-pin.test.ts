import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import * as z from 'zod';
import { SignedClient } from '../../shared/http-client/signed-client.js';

/** A throwaway self-signed Ed25519 certificate for 127.0.0.1, made by openssl in a temp dir. */
function makeCertificate(): { certPem: string; keyPem: string } {
  const dir = mkdtempSync(join(tmpdir(), 'sikker-pin-test-'));
  try {
    execFileSync(
      'openssl',
      [
        'req', '-x509', '-newkey', 'ed25519', '-nodes', '-days', '1',
        '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
        '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
      ],
      { stdio: 'ignore' },
    );
    return { certPem: readFileSync(join(dir, 'cert.pem'), 'utf8'), keyPem: readFileSync(join(dir, 'key.pem'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const { certPem, keyPem } = makeCertificate();
const rightPin = new X509Certificate(certPem).fingerprint256;
const wrongPin = 'AB'.repeat(32);
let requestsSeen = 0;

const server = createServer({ cert: certPem, key: keyPem }, (req, res) => {
  requestsSeen += 1;
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"sealed":false}');
  });
});
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
t.teardown(() => {
  server.closeAllConnections();
  server.close();
});

const Status = z.object({ sealed: z.boolean() });

async function statusWith(options: { caCertPem?: string; pinSha256?: string }): Promise<unknown> {
  const client = new SignedClient({ server: url, ...options });
  try {
    return await client.request('GET', '/v1/sys/status', undefined, Status, { signed: false });
  } finally {
    client.close();
  }
}

t.test('pin – wrong pin is refused before any request is sent', async (t) => {
  const before = requestsSeen;
  await t.rejects(statusWith({ caCertPem: certPem, pinSha256: wrongPin }), { code: 'ERR_TRANSPORT_PIN_MISMATCH' });
  t.equal(requestsSeen, before, 'the server saw no request');
});

t.test('pin – right pin in colon-hex form connects', async (t) => {
  t.same(await statusWith({ caCertPem: certPem, pinSha256: rightPin }), { sealed: false });
});

t.test('pin – right pin as plain lower-case hex connects', async (t) => {
  const plain = rightPin.replace(/:/g, '').toLowerCase();
  t.same(await statusWith({ caCertPem: certPem, pinSha256: plain }), { sealed: false });
});

t.test('pin – a self-signed certificate without the CA is refused', async (t) => {
  await t.rejects(statusWith({ pinSha256: rightPin }), { code: 'ERR_SERVER_UNREACHABLE', retryable: false });
});

t.test('pin – the CA alone (no pin) connects', async (t) => {
  t.same(await statusWith({ caCertPem: certPem }), { sealed: false });
});
