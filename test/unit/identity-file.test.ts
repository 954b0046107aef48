import { chmodSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { checkPrivateFileMode, createIdentityFile, loadIdentityFile } from '../../shared/signing/identity-file.js';

function dir(t: { teardown(fn: () => unknown): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'sikker-idfile-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

t.test('identity file – created 0600 and loads back', async (t) => {
  const path = join(dir(t), 'id.json');
  createIdentityFile(path);
  t.equal(loadIdentityFile(path).identityId, null);
});

t.test('identity file – a looser mode is refused with the fix', async (t) => {
  const path = join(dir(t), 'id.json');
  createIdentityFile(path);
  chmodSync(path, 0o644);
  t.throws(() => loadIdentityFile(path), { code: 'ERR_IDENTITY_KEY_FILE', message: /mode 644.*chmod 600/ });
});

t.test('identity file – a symbolic link is refused, not followed', async (t) => {
  const d = dir(t);
  const real = join(d, 'real.json');
  createIdentityFile(real);
  const link = join(d, 'link.json');
  symlinkSync(real, link);
  t.throws(() => loadIdentityFile(link), { code: 'ERR_IDENTITY_KEY_FILE', message: /symbolic link/ });
  t.throws(() => checkPrivateFileMode(link), { code: 'ERR_IDENTITY_KEY_FILE', message: /not a regular file/ });
  t.ok(loadIdentityFile(real), 'the file itself still loads');
});
