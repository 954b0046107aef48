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
  return pino(
    {
      name: options.name,
      level: options.level ?? 'info',
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      serializers: { err: pino.stdSerializers.err },
    },
    options.destination,
  );
}
