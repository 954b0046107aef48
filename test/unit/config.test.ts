import t from 'tap';
import { loadConfig } from '../../control-plane/config/config.js';

const base = { SIKKER_DATABASE_URL: 'postgres://u:topsecretpw@db/x', SIKKER_REDIS_URL: 'redis://r:6379' };

t.test('config – defaults and durations compiled once', async (t) => {
  const c = loadConfig(base);
  t.equal(c.listenHost, '127.0.0.1');
  t.equal(c.listenPort, 8200);
  t.equal(c.clockSkewMs, 60_000);
  t.equal(c.tls, null);
});

t.test('config – bad values are named, values never echoed', async (t) => {
  t.throws(() => loadConfig({ SIKKER_REDIS_URL: 'redis://r' }), { code: 'ERR_CONFIG_INVALID', message: /SIKKER_DATABASE_URL/ });
  t.throws(() => loadConfig({ ...base, SIKKER_LISTEN: 'nope' }), { message: /SIKKER_LISTEN/ });
  t.throws(() => loadConfig({ ...base, SIKKER_LISTEN: '127.0.0.1:99999' }), { message: /port/ });
  t.throws(() => loadConfig({ ...base, SIKKER_TLS_CERT: '/x' }), { message: /go together/ });
  try {
    loadConfig({ ...base, SIKKER_DATABASE_URL: 'mysql://u:topsecretpw@db/x' });
    t.fail('should throw');
  } catch (err) {
    t.notMatch(String((err as Error).message), /topsecretpw/);
  }
});
