import { Writable } from 'node:stream';
import t from 'tap';
import { createLogger } from '../../shared/logging/logger.js';
import { SikkerError } from '../../shared/errors/sikker-error.js';

const CANARY = 'canary-log-4a1f-secret';

function capture(): { stream: Writable; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({ write(chunk, _e, done) { chunks.push(String(chunk)); done(); } });
  return { stream, text: () => chunks.join('') };
}

t.test('logger – sensitive keys are redacted at every depth', async (t) => {
  const out = capture();
  const logger = createLogger({ name: 't', destination: out.stream });
  logger.info({ password: CANARY, value: CANARY, nested: { token: CANARY, deeper: { share: CANARY, privateKey: CANARY } }, headers: { 'x-sikker-signature': CANARY } }, 'event');
  logger.info({ a: { b: { c: { password: CANARY } } } }, 'deep');
  t.notOk(out.text().includes(CANARY), out.text());
  t.match(out.text(), /\[redacted\]/);
});

t.test('logger – an error whose cause carried a secret-bearing object keeps only message and code', async (t) => {
  const out = capture();
  const logger = createLogger({ name: 't', destination: out.stream });
  const driverError = Object.assign(new Error('connection refused'), { code: 'ECONNREFUSED', config: { password: CANARY }, parameters: [CANARY] });
  const err = new SikkerError('ERR_SERVER_UNREACHABLE', 'database unreachable', { cause: driverError });
  logger.error({ err }, 'failed');
  t.notOk(out.text().includes(CANARY), 'the cause chain was sanitised');
  t.match(out.text(), /connection refused/, 'the cause message is kept');
  t.equal((err.cause as { code?: string }).code, 'ECONNREFUSED', 'and its code');
  t.notOk(JSON.stringify(err.cause).includes(CANARY));
});
