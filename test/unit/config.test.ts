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

t.test('cidr – networks with host bits zero only', async (t) => {
  const { isNetworkCidr } = await import('../../shared/protocol/cidr.js');
  for (const ok of ['10.0.0.0/8', '127.0.0.2/32', '0.0.0.0/0', 'fd00::/8', '::1/128', '2001:db8::/32', '::ffff:10.0.0.0/104']) t.ok(isNetworkCidr(ok), ok);
  for (const bad of ['10.0.0.1/8', '10.0.0.0/33', '10.0.0.0', 'fd00::1/8', 'x/8', '10.0.0.0/8/1', '1.2.3/8', '::/129']) t.notOk(isNetworkCidr(bad), bad);
});
