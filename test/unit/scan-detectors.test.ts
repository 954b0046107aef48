/**
 * `sikker scan` shape detectors: each kind is found where it is (line and column of
 * the value) and not in its look-alikes — placeholders, documentation masks, code that
 * only mentions a marker. No finding carries the matched text.
 */
import t from 'tap';
import { SHAPE_KINDS } from '../../control-plane/cli/scan/finding.js';
import { LineDetector, type LocatedShape } from '../../control-plane/cli/scan/line-detector.js';
import { isPlaceholder } from '../../control-plane/cli/scan/placeholders.js';

/** Fake, well-formed values (never real credentials). */
const JWT = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJzY2FuLXVuaXQiLCJpYXQiOjE3MDAwMDAwMDB9.c2lnbmF0dXJlLW9mLWEtZmFrZS10b2tlbi0wMQ';
const AWS_KEY_ID = 'AKIAIOSFODNN7EXAMPLE';
const AWS_TEMP_KEY_ID = 'ASIAIOSFODNN7EXAMPLE';
const AWS_SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
const GITHUB_CLASSIC = 'ghp_FAKE0unit0scan0token0not0real0abcdef';
const GITHUB_FINE = 'github_pat_11FAKE0UNIT0SCAN0TOKAB_bENqTyH5xJ8tpqXJQ4I9dOv8GZ4fKq1OKtbgZVaMWUFuXBVjdctBYVhnSg9';
const GITLAB = 'glpat-FAKEunitScanTok3n000';
const SLACK = 'xoxb-123456789012-1234567890123-FAKEunitSlackTok0n00';
const STRIPE = 'sk_live_FAKE0unit0scan0key0not0real000';
const GOOGLE = 'AIzaSyFAKE0unit0scan0key0not0real0a1b2c';
const PEM_BODY = 'TKWTddB+XhkAS1voQG6yyzyN9zHYIa4UOrGNATMuDJawTgsu8PO+799nKSNrh9UC';
const DB_PASSWORD = 'Fx7-kq2Lw9pZr';

/** Runs one detector over `lines` as one source. */
function detect(...lines: string[]): LocatedShape[] {
  const detector = new LineDetector();
  return lines.flatMap((text, i) => detector.scan(i + 1, text));
}

function kinds(...lines: string[]): string[] {
  return detect(...lines).map((f) => f.kind);
}

t.test('detectors – the value list names every shape kind once', async (t) => {
  t.equal(new Set(SHAPE_KINDS).size, SHAPE_KINDS.length);
  t.equal(SHAPE_KINDS.length, 11);
});

t.test('private key – a PEM block with its body on the next line, at the header column', async (t) => {
  t.same(detect('-----BEGIN RSA PRIVATE KEY-----', PEM_BODY, '-----END RSA PRIVATE KEY-----'), [{ line: 1, column: 1, kind: 'private-key' }]);
  for (const type of ['', 'EC ', 'OPENSSH ', 'DSA ', 'ENCRYPTED ']) {
    t.same(kinds(`  "-----BEGIN ${type}PRIVATE KEY-----`, `  ${PEM_BODY}`), ['private-key'], type || 'PKCS#8');
  }
  t.same(kinds('-----BEGIN RSA PRIVATE KEY-----', 'Proc-Type: 4,ENCRYPTED'), ['private-key'], 'legacy encrypted PEM');
});

t.test('private key – a PEM block inside a JSON string (literal \\n) is found on its line', async (t) => {
  t.same(detect(`  "private_key": "-----BEGIN PRIVATE KEY-----\\n${PEM_BODY}\\n-----END PRIVATE KEY-----\\n",`), [{ line: 1, column: 19, kind: 'private-key' }]);
});

t.test('private key – code that mentions the marker, a public key or a certificate is not reported', async (t) => {
  t.same(kinds("if (pem.includes('-----BEGIN PRIVATE KEY-----')) return true;", PEM_BODY), []);
  t.same(kinds('-----BEGIN PRIVATE KEY-----', 'const next = 1;'), [], 'header without a body');
  t.same(kinds('-----BEGIN PUBLIC KEY-----', PEM_BODY), []);
  t.same(kinds('-----BEGIN CERTIFICATE-----', PEM_BODY), []);
  t.same(kinds('-----BEGIN PGP PUBLIC KEY BLOCK-----', PEM_BODY), []);
});

t.test('jwt – three base64url parts whose header is JSON with "alg"', async (t) => {
  t.same(detect(`Authorization: Bearer ${JWT}`), [{ line: 1, column: 23, kind: 'jwt' }]);
});

t.test('jwt – look-alikes are not reported', async (t) => {
  const noAlg = `${Buffer.from('{"typ":"JWT"}').toString('base64url')}.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLW9mLWEtZmFrZS10b2tlbi0wMQ`;
  t.same(kinds(noAlg), [], 'header without alg');
  t.same(kinds('eyJhbGciOi...'), [], 'truncated in documentation');
  t.same(kinds('eyJub3QganNvbg.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLW9mLWEtZmFrZS10b2tlbi0wMQ'), [], 'header that is not JSON');
  t.same(kinds(`${JWT.split('.').slice(0, 2).join('.')}.`), [], 'unsigned (alg none)');
});

t.test('aws access key id – AKIA and ASIA followed by 16 characters', async (t) => {
  t.same(detect(`AWS_ACCESS_KEY_ID=${AWS_KEY_ID}`), [{ line: 1, column: 19, kind: 'aws-access-key-id' }]);
  t.same(kinds(`aws_access_key_id = ${AWS_TEMP_KEY_ID}`), ['aws-access-key-id']);
});

t.test('aws access key id – masks, wrong lengths and longer words are not reported', async (t) => {
  t.same(kinds('AWS_ACCESS_KEY_ID=AKIAXXXXXXXXXXXXXXXX'), []);
  t.same(kinds('AKIAIOSFODNN7EXAMPL'), [], '15 characters');
  t.same(kinds('XAKIAIOSFODNN7EXAMPLE'), [], 'inside a longer word');
  t.same(kinds('AKIAIOSFODNN7EXAMPLE1'), [], '17 characters');
});

t.test('aws secret access key – named on its line, or within five lines of a key id (either side)', async (t) => {
  t.same(detect(`aws_secret_access_key = ${AWS_SECRET}`), [{ line: 1, column: 25, kind: 'aws-secret-access-key' }]);
  t.same(detect(`"SecretAccessKey": "${AWS_SECRET}",`), [{ line: 1, column: 21, kind: 'aws-secret-access-key' }]);
  t.same(
    detect(`KEY_ID=${AWS_KEY_ID}`, 'REGION=eu-north-1', `SECRET=${AWS_SECRET}`),
    [{ line: 1, column: 8, kind: 'aws-access-key-id' }, { line: 3, column: 8, kind: 'aws-secret-access-key' }],
  );
  t.same(
    detect(`SECRET=${AWS_SECRET}`, 'REGION=eu-north-1', `KEY_ID=${AWS_KEY_ID}`),
    [{ line: 1, column: 8, kind: 'aws-secret-access-key' }, { line: 3, column: 8, kind: 'aws-access-key-id' }],
    'the secret before the key id is reported once the key id is seen',
  );
});

t.test('aws secret access key – alone, far from a key id, or a hex digest is not reported', async (t) => {
  t.same(kinds(`SECRET=${AWS_SECRET}`), [], 'no key id and not named');
  t.same(kinds(`KEY_ID=${AWS_KEY_ID}`, '', '', '', '', '', `SECRET=${AWS_SECRET}`), ['aws-access-key-id'], 'six lines away');
  t.same(kinds(`aws_secret_access_key = 9fceb02d0ae598e95dc970b74767f19372d61af8`), [], 'git hash (no upper case)');
  t.same(kinds('aws_secret_access_key = <your-secret-access-key>'), []);
  t.same(kinds(`aws_secret_access_key = ${'A1b2'.repeat(10)}`), [], 'too few distinct characters');
});

t.test('github tokens – classic prefixes with 36 characters and fine-grained github_pat_', async (t) => {
  for (const prefix of ['ghp', 'gho', 'ghu', 'ghs', 'ghr']) {
    t.same(kinds(`token: ${prefix}${GITHUB_CLASSIC.slice(3)}`), ['github-token'], prefix);
  }
  t.same(detect(`GH=${GITHUB_FINE}`), [{ line: 1, column: 4, kind: 'github-token' }]);
});

t.test('github tokens – masks, other prefixes and wrong lengths are not reported', async (t) => {
  t.same(kinds(`GITHUB_TOKEN=ghp_${'x'.repeat(36)}`), []);
  t.same(kinds(`ghx_${GITHUB_CLASSIC.slice(4)}`), []);
  t.same(kinds(GITHUB_CLASSIC.slice(0, -1)), [], '35 characters');
  t.same(kinds(`${GITHUB_CLASSIC}0`), [], '37 characters');
});

t.test('gitlab, slack, stripe live and google keys – found at the value', async (t) => {
  t.same(detect(`GITLAB_TOKEN=${GITLAB}`), [{ line: 1, column: 14, kind: 'gitlab-token' }]);
  for (const prefix of ['xoxa', 'xoxb', 'xoxp', 'xoxo', 'xoxs', 'xoxr']) t.same(kinds(`${prefix}${SLACK.slice(4)}`), ['slack-token'], prefix);
  t.same(detect(`stripe.key = "${STRIPE}"`), [{ line: 1, column: 15, kind: 'stripe-live-key' }]);
  t.same(kinds(`rk_live${STRIPE.slice(7)}`), ['stripe-live-key'], 'restricted key');
  t.same(detect(`key=${GOOGLE}&q=oslo`), [{ line: 1, column: 5, kind: 'google-api-key' }]);
});

t.test('gitlab, slack, stripe and google – placeholders, test keys and masks are not reported', async (t) => {
  t.same(kinds('GITLAB_TOKEN=glpat-xxxxxxxxxxxxxxxxxxxx'), []);
  t.same(kinds('SLACK_TOKEN=xoxb-your-bot-token'), []);
  t.same(kinds('STRIPE_KEY=sk_test_FAKE0unit0scan0key0not0real000'), [], 'test-mode key');
  t.same(kinds('STRIPE_KEY=sk_live_xxxxxxxxxxxxxxxxxxxxxxxx'), []);
  t.same(kinds(`key=AIza${'X'.repeat(35)}`), []);
  t.same(kinds(`key=${GOOGLE}0`), [], '36 characters after AIza');
});

t.test('connection strings – a password in scheme://user:password@host, at the password', async (t) => {
  t.same(detect(`DATABASE_URL=postgres://app:${DB_PASSWORD}@db.internal:5432/orders`), [{ line: 1, column: 29, kind: 'connection-string' }]);
  const schemes = ['postgres', 'postgresql', 'mysql', 'mariadb', 'mongodb', 'mongodb+srv', 'redis', 'rediss', 'amqp', 'mssql', 'sqlserver'];
  for (const scheme of schemes) t.same(kinds(`url: ${scheme}://svc:${DB_PASSWORD}@host.example:1234/x`), ['connection-string'], scheme);
  t.same(kinds(`redis://:${DB_PASSWORD}@cache:6379/0`), ['connection-string'], 'empty user');
  t.same(kinds(`jdbc:mysql://root:${DB_PASSWORD}@127.0.0.1:3306/legacy`), ['connection-string'], 'inside jdbc:');
});

t.test('connection strings – placeholders, no password and other schemes are not reported', async (t) => {
  for (const placeholder of ['${DB_PASSWORD}', '$DB_PASSWORD', '****', '<password>', 'password', 'PASSWORD', '{{ db_password }}', '%3Cpassword%3E', '…', 'p', '']) {
    t.same(kinds(`postgres://app:${placeholder}@db:5432/orders`), [], placeholder || 'empty');
  }
  t.same(kinds('postgres://app@db:5432/orders'), [], 'no password');
  t.same(kinds('redis://cache.internal:6379/0'), [], 'port, not a password');
  t.same(kinds(`https://user:${DB_PASSWORD}@example.com/`), [], 'not a database scheme');
});

t.test('password assignments – config-like lines, at the value', async (t) => {
  t.same(detect(`DB_PASSWORD=${DB_PASSWORD}`), [{ line: 1, column: 13, kind: 'password-assignment' }]);
  const lines = [
    `export PGPASSWORD=${DB_PASSWORD}`,
    `ENV MYSQL_ROOT_PASSWORD=${DB_PASSWORD}`,
    `  - POSTGRES_PASSWORD=${DB_PASSWORD}`,
    `  password: "${DB_PASSWORD}"`,
    `PASSWORD: '${DB_PASSWORD}'  # rotate me`,
    `spring.datasource.password=${DB_PASSWORD}`,
    `  "password": "${DB_PASSWORD}",`,
    `'password' => '${DB_PASSWORD}',`,
    `redis_pass = ${DB_PASSWORD}`,
    `passphrase = "${DB_PASSWORD}"`,
    `Server=sql.internal;Database=r;User Id=sa;Password=${DB_PASSWORD};`,
  ];
  for (const line of lines) t.same(kinds(line), ['password-assignment'], line.replace(DB_PASSWORD, '…'));
});

t.test('password assignments – placeholders, code, types and prose are not reported', async (t) => {
  const lines = [
    'DB_PASSWORD=',
    'DB_PASSWORD=changeme',
    'DB_PASSWORD=${DB_PASSWORD}',
    'password: "{{ vault_db_password }}"',
    'password: <password>',
    'password: "****"',
    'password: !vault |',
    'POSTGRES_PASSWORD_FILE=/run/secrets/db',
    'password_min_length: 12',
    'const password = readPassword();',
    '  password: process.env.DB_PASSWORD,',
    '  password: string;',
    '  target.password = statement.password;',
    "  ERR_REJECTED_PASSWORD: 'the database refused the new password',",
    'DB_PASSWORD=abc12',
    'PWD=/home/someone/projects',
    'Server=db;User Id=sa;Password=${SA_PASSWORD};',
  ];
  for (const line of lines) t.same(kinds(line), [], line);
});

t.test('placeholders – the forms people write instead of a secret', async (t) => {
  for (const value of ['', '   ', '${X}', '$${X}', '$X', '%X%', '{{ x }}', '#{password}', '<pw>', '[REDACTED]', '%(password)s', '%s', '****', 'xxxxxxxx', '••••', 'aaaaaaaa', 'changeme', 'Example', 'your-db-password', 'somepassword', 'vault:secret/data/db#password', 'op://vault/item/password']) {
    t.ok(isPlaceholder(value), value);
  }
  for (const value of [DB_PASSWORD, 'hunter2!', 'Passw0rd-41', 's3cr3t-value']) t.notOk(isPlaceholder(value), value);
});

t.test('detectors – one position is reported once, as its most specific kind', async (t) => {
  t.same(kinds(`GITHUB_PASSWORD=${GITHUB_CLASSIC}`), ['github-token']);
  t.same(kinds(`${AWS_KEY_ID} ${JWT} ${STRIPE}`), ['aws-access-key-id', 'jwt', 'stripe-live-key'], 'several on one line, in column order');
});

t.test('detectors – no finding contains any part of the value it found', async (t) => {
  const values = [JWT, AWS_KEY_ID, AWS_SECRET, GITHUB_CLASSIC, GITHUB_FINE, GITLAB, SLACK, STRIPE, GOOGLE, PEM_BODY, DB_PASSWORD];
  const findings = detect(
    '-----BEGIN PRIVATE KEY-----', PEM_BODY, JWT, `id=${AWS_KEY_ID}`, `secret=${AWS_SECRET}`, GITHUB_CLASSIC, GITHUB_FINE, GITLAB, SLACK, STRIPE, GOOGLE,
    `postgres://u:${DB_PASSWORD}@h/db`, `DB_PASSWORD=${DB_PASSWORD}`,
  );
  t.same(new Set(findings.map((f) => f.kind)), new Set(SHAPE_KINDS), 'every kind was found');
  const text = JSON.stringify(findings);
  for (const value of values) {
    for (let i = 0; i + 8 <= value.length; i += 4) t.notOk(text.includes(value.slice(i, i + 8)), `no part of ${value.slice(0, 4)}…`);
  }
  for (const finding of findings) t.same(Object.keys(finding).sort(), ['column', 'kind', 'line'], 'positions and kind only');
});
