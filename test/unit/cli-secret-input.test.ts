/**
 * Secrets typed at a terminal (control-plane/cli/stdin-input.ts readSecretText): the
 * terminal's echo is off while they are read (raw mode) and back on afterwards, whatever
 * happens; piped input is read as before. The terminal is a fake: a stream with isTTY and
 * a setRawMode that records its calls.
 */
import { PassThrough } from 'node:stream';
import t from 'tap';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { readSecretText } from '../../shared/terminal/stdin-input.js';

/** A fake terminal that will "type" `keys` (each string one chunk) once read starts. */
function terminal(keys: Array<string | Buffer>): { stream: PassThrough & { isTTY: boolean; setRawMode(raw: boolean): void }; modes: boolean[] } {
  const modes: boolean[] = [];
  const stream = Object.assign(new PassThrough(), {
    isTTY: true,
    setRawMode(raw: boolean) {
      modes.push(raw);
      if (raw) setImmediate(() => keys.forEach((k) => stream.write(k)));
    },
  });
  return { stream, modes };
}

t.test('at a terminal: read with echo off, up to Ctrl-D; echo back on after', async (t) => {
  const { stream, modes } = terminal(['s3cr', 'et\r', '\x04', 'after']);
  t.equal(await readSecretText(stream, 1024, 'password'), 's3cret\n', 'Enter is a line break (stripped by the callers), Ctrl-D ends');
  t.same(modes, [true, false], 'raw mode (no echo) while reading, then restored');
});

t.test('at a terminal: Backspace, Ctrl-U, CR LF, escape sequences and control keys', async (t) => {
  const { stream } = terminal(['abX\x7fc', '\x1b[D\x1bOA\x07', 'é🔑\b', '\r\nline two', '\x15three\t.', Buffer.from([0xf0, 0x9f]), Buffer.from([0x94, 0x91]), '\x04']);
  t.equal(await readSecretText(stream, 1024, 'secret value'), 'abcé\nthree\t.🔑');
});

t.test('at a terminal: Ctrl-C cancels with a clear error, and echo comes back', async (t) => {
  const { stream, modes } = terminal(['canary-typed-secret', '\x03']);
  const err = await readSecretText(stream, 1024, 'unseal share').catch((e: unknown) => e);
  t.ok(err instanceof SikkerError && err.code === 'ERR_VALIDATION', 'ERR_VALIDATION');
  t.match((err as Error).message, /unseal share: cancelled \(Ctrl-C\); nothing was sent/);
  t.notOk((err as Error).message.includes('canary'), 'the typed text is not in the message');
  t.same(modes, [true, false]);
});

t.test('at a terminal: too long is refused, and echo comes back', async (t) => {
  const { stream, modes } = terminal(['x'.repeat(10), 'é', '\x04']);
  await t.rejects(readSecretText(stream, 11, 'password'), { code: 'ERR_VALIDATION', message: /larger than 11 bytes/ });
  t.same(modes, [true, false]);
});

t.test('at a terminal that closes: what was typed so far', async (t) => {
  const { stream, modes } = terminal(['partial']);
  setTimeout(() => stream.end(), 20);
  t.equal(await readSecretText(stream, 1024, 'password'), 'partial');
  t.same(modes, [true, false]);
});

t.test('piped (not a terminal): every byte as given, Ctrl-D and the rest are data', async (t) => {
  const stream = new PassThrough();
  stream.end('pw\x04\x7f\r\n');
  t.equal(await readSecretText(stream, 1024, 'password'), 'pw\x04\x7f\r\n');
});
