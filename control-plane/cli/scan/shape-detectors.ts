import type { ShapeHit, ShapeKind } from './finding.js';

/**
 * Single-line detectors for token formats with a fixed prefix and alphabet. Each
 * pattern is anchored on both sides so a token inside a longer word does not count,
 * and the random part must look random, so `ghp_xxxx…` in documentation does not.
 */
interface TokenShape {
  kind: ShapeKind;
  pattern: RegExp;
  /** Characters at the start of the match that are prefix, not random body. */
  prefixLength: (match: string) => number;
  verify?: (match: RegExpMatchArray) => boolean;
}

const fixed = (length: number) => (): number => length;
const upToLastUnderscore = (match: string): number => match.lastIndexOf('_') + 1;

const TOKEN_SHAPES: readonly TokenShape[] = [
  {
    kind: 'jwt',
    pattern: /(?<![A-Za-z0-9_-])(eyJ[A-Za-z0-9_-]{5,})\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{16,}(?![A-Za-z0-9_-])/g,
    prefixLength: fixed(0),
    verify: (match) => headerHasAlg(match[1] ?? ''),
  },
  { kind: 'aws-access-key-id', pattern: /(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])/g, prefixLength: fixed(4) },
  {
    kind: 'github-token',
    pattern: /(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59})(?![A-Za-z0-9_])/g,
    prefixLength: upToLastUnderscore,
  },
  { kind: 'gitlab-token', pattern: /(?<![A-Za-z0-9_-])glpat-[A-Za-z0-9_-]{20,}(?![A-Za-z0-9_-])/g, prefixLength: fixed(6) },
  { kind: 'slack-token', pattern: /(?<![A-Za-z0-9_-])xox[abposr]-[0-9]+-[A-Za-z0-9-]{10,}(?![A-Za-z0-9_-])/g, prefixLength: fixed(5) },
  { kind: 'stripe-live-key', pattern: /(?<![A-Za-z0-9_])[sr]k_live_[A-Za-z0-9]{24,}(?![A-Za-z0-9_])/g, prefixLength: fixed(8) },
  { kind: 'google-api-key', pattern: /(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])/g, prefixLength: fixed(4) },
];

/**
 * True when `body` could be random key material: at least 8 distinct characters and
 * no character 6 times in a row (rules out `xxxx…`, `0000…`, `****`).
 */
export function looksRandom(body: string): boolean {
  return new Set(body).size >= 8 && !/(.)\1{5}/.test(body);
}

/** A JWT header is base64url JSON naming its algorithm: `{"alg":"HS256",…}`. */
function headerHasAlg(encoded: string): boolean {
  try {
    const header: unknown = JSON.parse(Buffer.from(encoded, 'base64url').toString('utf8'));
    return typeof header === 'object' && header !== null && typeof (header as { alg?: unknown }).alg === 'string';
  } catch {
    return false; // not JSON: some other base64 that happens to start with eyJ
  }
}

/** Token-format secrets on `line` (JWTs, cloud and SaaS keys), with 1-based columns. */
export function findTokenShapes(line: string): ShapeHit[] {
  const hits: ShapeHit[] = [];
  for (const shape of TOKEN_SHAPES) {
    for (const match of line.matchAll(shape.pattern)) {
      if (match.index === undefined) continue;
      if (!looksRandom(match[0].slice(shape.prefixLength(match[0])))) continue;
      if (shape.verify !== undefined && !shape.verify(match)) continue;
      hits.push({ kind: shape.kind, column: match.index + 1 });
    }
  }
  return hits;
}

const AWS_SECRET = /(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])/g;
const AWS_SECRET_NAME = /aws_?secret_?(?:access_?)?key|secret_?access_?key/i;

/**
 * 0-based offsets of strings shaped like an AWS secret access key: 40 characters of
 * base64 with upper case, lower case and digits (so hex digests such as git hashes do
 * not count). Only reported when named or near a key id (see LineDetector).
 */
export function findAwsSecretShapes(line: string): number[] {
  const starts: number[] = [];
  for (const match of line.matchAll(AWS_SECRET)) {
    const text = match[0];
    if (match.index === undefined || !/[A-Z]/.test(text) || !/[a-z]/.test(text) || !/[0-9]/.test(text) || !looksRandom(text)) continue;
    starts.push(match.index);
  }
  return starts;
}

/** True when the line names the AWS secret key (`aws_secret_access_key`, `AWS_SECRET_ACCESS_KEY`, `SecretAccessKey`). */
export function namesAwsSecret(line: string): boolean {
  return AWS_SECRET_NAME.test(line);
}

const PEM_HEADER = /-----BEGIN (?:RSA |EC |OPENSSH |DSA |ENCRYPTED )?PRIVATE KEY-----/g;
const PEM_BODY = /^(?:[A-Za-z0-9+/]{16,}|Proc-Type:)/;

/** A PEM private key header; `bodyFollows` says whether the key body was already seen on this line. */
export interface PemHeader {
  start: number;
  bodyFollows: boolean;
  /** True when nothing but quotes, commas and spaces follow the header, so the body may start on the next line. */
  bodyMayFollow: boolean;
}

/**
 * PEM private key headers on `line`. A header only counts with key material after it
 * (on this line after `\n` or a literal `\n`, or on the next line; see `startsPemBody`),
 * so code that merely mentions the marker is not reported.
 */
export function findPemHeaders(line: string): PemHeader[] {
  const headers: PemHeader[] = [];
  for (const match of line.matchAll(PEM_HEADER)) {
    if (match.index === undefined) continue;
    const rest = line.slice(match.index + match[0].length);
    const inline = /^(?:\\r)?\\n/.exec(rest);
    headers.push({
      start: match.index,
      bodyFollows: inline !== null && PEM_BODY.test(rest.slice(inline[0].length)),
      bodyMayFollow: /^[\s"',]*$/.test(rest),
    });
  }
  return headers;
}

/** True when `line` starts a PEM body (base64 or the legacy `Proc-Type:` header), after indentation and quotes. */
export function startsPemBody(line: string): boolean {
  return PEM_BODY.test(line.replace(/^[\s"'+]*/, ''));
}
