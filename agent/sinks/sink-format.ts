import { isUtf8 } from 'node:buffer';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import type { SinkConfig } from './sink-config.js';

/** Facts about the delivered secret that formats may include (never the value). */
export interface SecretFacts {
  project: string;
  secret: string;
  version: number;
}

/**
 * Renders the file content for a sink. Works on bytes only, so the value never
 * becomes an immutable JS string and the caller can zero both the value and the
 * result. Throws ERR_SINK_WRITE (without the value) when the value cannot be
 * represented: a NUL byte in env format, invalid UTF-8 in env or json format.
 */
export function renderSinkContent(sink: Pick<SinkConfig, 'format' | 'envName'>, value: Buffer, facts: SecretFacts): Buffer {
  switch (sink.format) {
    case 'raw':
      return Buffer.from(value);
    case 'env':
      return renderEnv(sink.envName, value);
    case 'json':
      return renderJson(value, facts);
  }
}

const QUOTE = 0x27;
/** `'\''`: close the quote, an escaped quote, reopen. */
const ESCAPED_QUOTE = Buffer.from("'\\''", 'latin1');

/**
 * `NAME='value'\n` with POSIX shell single quoting: inside single quotes every byte
 * is literal except the quote itself, written as '\''. Safe to `source` whatever the
 * value holds (newlines, $, backticks, backslashes). NUL cannot be represented.
 */
function renderEnv(name: string, value: Buffer): Buffer {
  if (!isUtf8(value)) throw new SikkerError('ERR_SINK_WRITE', 'the secret is not valid UTF-8 text; use the raw format');
  if (value.includes(0)) throw new SikkerError('ERR_SINK_WRITE', 'the secret contains a NUL byte, which the env format cannot hold; use the raw format');
  let quotes = 0;
  for (const byte of value) if (byte === QUOTE) quotes += 1;
  const prefix = Buffer.from(`${name}='`, 'latin1');
  const out = Buffer.alloc(prefix.length + value.length + quotes * (ESCAPED_QUOTE.length - 1) + 2);
  let at = prefix.copy(out, 0);
  for (const byte of value) {
    if (byte === QUOTE) at += ESCAPED_QUOTE.copy(out, at);
    else out[at++] = byte;
  }
  out[at++] = QUOTE;
  out[at++] = 0x0a;
  return out;
}

/** Bytes that JSON strings must escape; others (including UTF-8 multibyte sequences) pass through. */
function jsonEscapeLength(byte: number): number {
  if (byte === 0x22 || byte === 0x5c) return 2;
  return byte < 0x20 ? 6 : 1;
}

function renderJson(value: Buffer, facts: SecretFacts): Buffer {
  if (!isUtf8(value)) throw new SikkerError('ERR_SINK_WRITE', 'the secret is not valid UTF-8 text; use the raw format');
  const head = Buffer.from(`{"project":${JSON.stringify(facts.project)},"secret":${JSON.stringify(facts.secret)},"version":${facts.version},"value":"`, 'utf8');
  const tail = Buffer.from('"}\n', 'latin1');
  let length = 0;
  for (const byte of value) length += jsonEscapeLength(byte);
  const out = Buffer.alloc(head.length + length + tail.length);
  let at = head.copy(out, 0);
  for (const byte of value) {
    const size = jsonEscapeLength(byte);
    if (size === 1) out[at++] = byte;
    else if (size === 2) {
      out[at++] = 0x5c;
      out[at++] = byte;
    } else at += out.write(`\\u${byte.toString(16).padStart(4, '0')}`, at, 'latin1');
  }
  tail.copy(out, at);
  return out;
}
