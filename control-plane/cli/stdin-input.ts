import { SikkerError } from '../../shared/errors/sikker-error.js';

/**
 * Reads all of `stream` as UTF-8 text, refusing more than `maxBytes` (the read stops
 * there) and invalid UTF-8. Errors are ERR_VALIDATION naming `what`, never the data.
 * Secrets come in this way rather than as arguments, which `ps` and shell history see.
 */
export async function readAllText(stream: NodeJS.ReadableStream, maxBytes: number, what: string): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const buffer = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : Buffer.from(chunk);
    size += buffer.length;
    if (size > maxBytes) {
      throw new SikkerError('ERR_VALIDATION', `${what} on stdin is larger than ${maxBytes} bytes`);
    }
    chunks.push(buffer);
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks));
  } catch {
    throw new SikkerError('ERR_VALIDATION', `${what} on stdin is not valid UTF-8`);
  }
}

/** True when a person is typing at the terminal (so a hint on stderr helps). */
export function isInteractive(stream: NodeJS.ReadableStream): boolean {
  return (stream as { isTTY?: boolean }).isTTY === true;
}

/** Removes exactly one trailing line break (`\n` or `\r\n`), as `echo` and editors add one. */
export function stripOneNewline(text: string): string {
  if (text.endsWith('\r\n')) return text.slice(0, -2);
  if (text.endsWith('\n')) return text.slice(0, -1);
  return text;
}
