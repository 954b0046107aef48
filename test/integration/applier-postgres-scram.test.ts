/**
 * The agent-side SCRAM-SHA-256 verifier against vectors it did not compute:
 * RFC 7677's published exchange, verifiers that PostgreSQL 15 computed itself
 * (`ALTER ROLE … PASSWORD '<plain>'`, read back from pg_authid), and a live
 * check that a private scram-sha-256 cluster computes the same value for the
 * same salt. The first two need no server.
 */
import t from 'tap';
import { createHmac, randomBytes } from 'node:crypto';
import {
  parseScramVerifier,
  saslPrepPassword,
  scramKeys,
  scramSha256Verifier,
} from '../../agent/appliers/postgres-scram-verifier.js';
import { startScramPostgresWithSuperuser } from '../support/scram-postgres.js';

t.test('scram verifier – RFC 7677 example exchange', async (t) => {
  // RFC 7677 §3: user "user", password "pencil"
  const salt = Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64');
  const { clientKey, storedKey, serverKey } = await scramKeys('pencil', salt, 4096);
  const serverNonce = 'rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0';
  const authMessage = [
    'n=user,r=rOprNGfwEbeRWgbNEkqO',
    `r=${serverNonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096`,
    `c=biws,r=${serverNonce}`,
  ].join(',');
  const signature = createHmac('sha256', storedKey).update(authMessage).digest();
  const proof = Buffer.from(clientKey.map((byte, i) => byte ^ (signature[i] ?? 0)));
  t.equal(proof.toString('base64'), 'dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=', 'ClientProof matches the RFC');
  const serverSignature = createHmac('sha256', serverKey).update(authMessage).digest('base64');
  t.equal(serverSignature, '6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=', 'ServerSignature matches the RFC');
});

/** Computed by PostgreSQL 15.20 with password_encryption = scram-sha-256. */
const POSTGRES_VECTORS: [string, string][] = [
  ['pencil', 'SCRAM-SHA-256$4096:F8gn3Ht5dfMxEdQg598htg==$FnOT3oiEaAHZxendtRqSVoLeXAmmoODn6sT03Xr1n5k=:vPYhTWsFdL9I+PVaxxOre7WyVFxko1OrqSbMdqxeNZ8='],
  ['it\'s a "quote" \\ $$ %', 'SCRAM-SHA-256$4096:Pqpbd1DGg96DsDqVOo7MUA==$8e2Psqy9tOUH+29O3r7TpR24GCskYU/kN9pm4KB8nH0=:8AHuNik04ET5SUDSwonIQO4egHklxr1phnbkgNx/o40='],
  // non-ASCII space and a ligature: SASLprep maps them before hashing
  ['pa\u00A0ss\uFB01 ünïcødé ✓', 'SCRAM-SHA-256$4096:bCvuSyKtQkk43KjnMgaPcA==$abGPUvUShyIUSfAF/ubk6b8ymIdx6FGq0k6URGpy/co=:R/eXbcB+54jel21vHuSDbZ2jQSmHG8X7jM7HHVaAqMA='],
  // a private-use character is prohibited: PostgreSQL falls back to the raw bytes
  ['x\uE000y', 'SCRAM-SHA-256$4096:58guCKEJLRvHXh4+HqtfNQ==$Hxjc3XhxVq3YDhdxtdAcdD0R2DgU5uWry41XSQZJQ8U=:xMMBh+sflegLOO0xEUpsr4cFaC831Ix0p3J5Q0c3lWo='],
  // full-width letters: NFKC folds them to ASCII
  ['\uFF21\uFF22\uFF23', 'SCRAM-SHA-256$4096:D39xJj3l3GO1fK3KwgQuLA==$DVe3UeLCVAqO3ZNcwuvKDviKQmrDQ/rWw9psBKNTkGk=:nBCNcj4ry284mxjcIQJ/M7FF3aHm1SsFrwHinEnLNUE='],
];

t.test('scram verifier – matches verifiers PostgreSQL computed', async (t) => {
  for (const [password, expected] of POSTGRES_VECTORS) {
    const parsed = parseScramVerifier(expected);
    if (parsed === undefined) throw new Error('bad vector');
    t.equal(await scramSha256Verifier(password, { salt: parsed.salt, iterations: parsed.iterations }), expected, JSON.stringify(password));
  }
});

t.test('scram verifier – format, random salt', async (t) => {
  const a = await scramSha256Verifier('same password');
  const b = await scramSha256Verifier('same password');
  t.match(a, /^SCRAM-SHA-256\$4096:[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=$/, 'PostgreSQL storage format');
  t.not(a, b, 'a fresh salt each time');
  t.equal(parseScramVerifier('md5abc'), undefined, 'parse refuses other formats');
  t.equal(saslPrepPassword('plain ASCII \t ok'), 'plain ASCII \t ok', 'ASCII is used unchanged');
  await t.rejects(scramKeys('x', Buffer.alloc(0), 4096), RangeError, 'empty salt refused');
});

t.test('scram verifier – equals what a live scram-sha-256 cluster computes', async (t) => {
  const { superuser: client } = await startScramPostgresWithSuperuser(t);
  const role = `sk_scram_${randomBytes(4).toString('hex')}`;
  for (const password of ['correct horse battery staple', 'ünï\u00A0cødé', `q'"\\$$%`]) {
    await client.query(`CREATE ROLE ${role} LOGIN PASSWORD ${client.escapeLiteral(password)}`);
    const { rows } = await client.query<{ rolpassword: string }>('SELECT rolpassword FROM pg_authid WHERE rolname = $1', [role]);
    await client.query(`DROP ROLE ${role}`);
    const stored = rows[0]?.rolpassword ?? '';
    const parsed = parseScramVerifier(stored);
    t.ok(parsed, 'the server stored a SCRAM verifier');
    t.equal(await scramSha256Verifier(password, { salt: parsed?.salt ?? Buffer.alloc(1), iterations: parsed?.iterations ?? 1 }), stored, JSON.stringify(password));
  }
});
