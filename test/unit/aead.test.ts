import t from 'tap';
import { envelopeKeyVersion, newKey, open, seal, type AeadBinding } from '../../shared/crypto/aead.js';

const binding: AeadBinding = { purpose: 'secret-value', projectId: 'p1', secretId: 's1', secretVersion: 3 };
const plaintext = Buffer.from('correct horse battery staple');

function flip(buf: Buffer, index: number): Buffer {
  const copy = Buffer.from(buf);
  copy[index]! ^= 0x01;
  return copy;
}

t.test('aead – round trip and key version in the header', async (t) => {
  const key = newKey();
  const envelope = seal(key, 7, plaintext, binding);
  t.equal(envelopeKeyVersion(envelope), 7);
  t.same(open(key, envelope, binding), plaintext);
  t.notOk(envelope.includes(plaintext), 'plaintext does not appear in the envelope');
});

t.test('aead – every bit flip in header, nonce, tag or ciphertext fails', async (t) => {
  const key = newKey();
  const envelope = seal(key, 1, plaintext, binding);
  const regions: Array<[string, number]> = [['format', 0], ['key version', 4], ['nonce', 5], ['nonce end', 16], ['tag', 17], ['tag end', 32], ['ciphertext', 33], ['ciphertext end', envelope.length - 1]];
  for (const [name, index] of regions) {
    t.throws(() => open(key, flip(envelope, index), binding), { code: /ERR_CRYPTO_(DECRYPT|FORMAT)/ }, name);
  }
});

t.test('aead – a ciphertext bound to another secret, version, project or purpose fails', async (t) => {
  const key = newKey();
  const envelope = seal(key, 1, plaintext, binding);
  const others: AeadBinding[] = [
    { ...binding, secretId: 's2' }, { ...binding, secretVersion: 4 }, { ...binding, projectId: 'p2' },
    { ...binding, purpose: 'data-key' }, { ...binding, keyVersion: 1 },
  ];
  for (const other of others) t.throws(() => open(key, envelope, other), { code: 'ERR_CRYPTO_DECRYPT' }, JSON.stringify(other));
});

t.test('aead – a wrong key, a truncated envelope and a bad key length fail cleanly', async (t) => {
  const envelope = seal(newKey(), 1, plaintext, binding);
  t.throws(() => open(newKey(), envelope, binding), { code: 'ERR_CRYPTO_DECRYPT' });
  t.throws(() => open(newKey(), envelope.subarray(0, 20), binding), { code: 'ERR_CRYPTO_FORMAT' });
  t.throws(() => seal(Buffer.alloc(16), 1, plaintext, binding), { code: 'ERR_INTERNAL' });
  t.throws(() => seal(newKey(), 0, plaintext, binding), { code: 'ERR_INTERNAL' });
});
