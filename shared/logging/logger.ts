import pino, { type Logger, type DestinationStream } from 'pino';

/**
 * Every key name that may hold a secret. pino's redaction matches exact paths, so
 * each name is listed at several depths; values are replaced, never logged.
 */
const SENSITIVE_KEYS = [
  'password', 'value', 'secret', 'plaintext', 'token', 'share', 'shares', 'privateKey', 'privateKeyPem',
  'rootKey', 'key', 'dataKey', 'authorization', 'x-sikker-signature', 'proof', 'newPassword', 'oldPassword',
];
const DEPTH_PREFIXES = ['', '*.', '*.*.', '*.*.*.'];

export const REDACT_PATHS = DEPTH_PREFIXES.flatMap((prefix) => SENSITIVE_KEYS.map((k) => `${prefix}${k.includes('-') ? `["${k}"]` : k}`))
  .map((p) => p.replace('.[', '['));

export type { Logger };

export interface LoggerOptions {
  level?: string;
  name: string;
  destination?: DestinationStream;
}

/** The project's one logger factory: JSON lines, redaction on, request bodies never logged. */
export function createLogger(options: LoggerOptions): Logger {
  const logger = pino(
    {
      name: options.name,
      level: options.level ?? 'info',
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      serializers: { err: pino.stdSerializers.err },
    },
    options.destination,
  );
  skipWildcardRedactionOfScalars(logger);
  return logger;
}

type Stringifier = (value: unknown, ...rest: unknown[]) => string | undefined;

/**
 * pino serialises every child binding, every value of a logged object and every
 * message through the redactor of the wildcard paths (`*.password`, `*.*.password`,
 * …) unless a top-level path names the key itself, and @pinojs/redact parses all
 * 51 of those paths again on each call: ~40 µs per value with TurboFan off (the
 * agent runs so, see agent/cli/startup-memory.ts) — a child with five bindings
 * cost ~190 µs, a line with three keys ~150 µs, on a fast path of the agent.
 *
 * A string, number, boolean or null has no properties, so that redactor can only
 * hand it back serialised by JSON.stringify (what pino's serialiser tries first,
 * and never fails for these). This gives them that same text directly; objects and
 * arrays still go through the redactor, and keys named by a top-level path
 * (`password: 'x'`) keep their own censor, which pino looks up before the wildcard.
 * So every line is byte for byte what it was (test/unit/logger-redaction.test.ts
 * compares with an unmodified pino). The table is shared by every child made
 * without a `redact` option of its own; if a pino version lays it out differently,
 * nothing is changed (only slower).
 */
function skipWildcardRedactionOfScalars(logger: Logger): void {
  const stringifiers = (logger as unknown as Record<symbol, Record<symbol, unknown> | undefined>)[pino.symbols.stringifiersSym];
  const wildcard = stringifiers?.[pino.symbols.wildcardFirstSym];
  if (stringifiers === undefined || typeof wildcard !== 'function') return;
  const redactWildcards = wildcard as Stringifier;
  const scalarsDirect: Stringifier = (value, ...rest) =>
    typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' || value === null
      ? JSON.stringify(value)
      : redactWildcards(value, ...rest);
  stringifiers[pino.symbols.wildcardFirstSym] = scalarsDirect;
}
