import { StringDecoder } from 'node:string_decoder';
import { SikkerError } from '../errors/sikker-error.js';

/**
 * Reads all of `stream` as UTF-8 text, refusing more than `maxBytes` (the read stops
 * there) and invalid UTF-8. Errors are ERR_VALIDATION naming `what`, never the data.
 * Secrets come in this way rather than as arguments, which `ps` and shell history see.
 */
async function readAllText(stream: NodeJS.ReadableStream, maxBytes: number, what: string): Promise<string> {
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

/** A terminal whose echo and line editing can be switched off (tty.ReadStream). */
interface RawCapable {
  isTTY?: boolean;
  setRawMode?: (raw: boolean) => unknown;
}

/**
 * A secret from stdin: as {@link readAllText}, except at a terminal, where what is typed or
 * pasted is not shown (no echo; the terminal shows it otherwise, and keeps it in its
 * scrollback). There the input ends at Ctrl-D; Enter adds a line break, Backspace removes the
 * last character, Ctrl-U the current line, Ctrl-C cancels (ERR_VALIDATION, nothing sent), and
 * other control keys are ignored. The terminal is put back as it was in every case.
 */
export async function readSecretText(stream: NodeJS.ReadableStream, maxBytes: number, what: string): Promise<string> {
  const tty = stream as NodeJS.ReadableStream & RawCapable;
  if (tty.isTTY !== true || typeof tty.setRawMode !== 'function') return readAllText(stream, maxBytes, what);
  tty.setRawMode(true);
  try {
    return await readTyped(stream, maxBytes, what);
  } finally {
    tty.setRawMode(false);
    stream.pause();
  }
}

/** The keys of a raw terminal, interpreted as {@link readSecretText} says, until Ctrl-D. */
function readTyped(stream: NodeJS.ReadableStream, maxBytes: number, what: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const keys = new TypedKeys(maxBytes, what);
    const decoder = new StringDecoder('utf8');
    const finish = (outcome: string | SikkerError): void => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      if (outcome instanceof SikkerError) reject(outcome);
      else resolve(outcome);
    };
    const onData = (chunk: Buffer | string): void => {
      for (const ch of typeof chunk === 'string' ? chunk : decoder.write(chunk)) {
        const outcome = keys.press(ch);
        if (outcome !== undefined) return finish(outcome);
      }
      return undefined;
    };
    const onEnd = (): void => finish(keys.text());
    const onError = (): void => finish(new SikkerError('ERR_VALIDATION', `${what}: the terminal could not be read`));
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', onError);
    stream.resume();
  });
}

/** What {@link readSecretText} does with each key at a terminal. */
class TypedKeys {
  readonly #chars: string[] = [];
  #bytes = 0;
  #afterCr = false;
  /** 0: no escape sequence; 1: ESC seen; 2: inside `ESC [ …` or `ESC O …`, up to its final letter or `~`. */
  #escape: 0 | 1 | 2 = 0;

  constructor(private readonly maxBytes: number, private readonly what: string) {}

  text(): string {
    return this.#chars.join('');
  }

  /** Takes one character; returns the text when input ended, an error when it was cancelled or too long, else undefined. */
  press(ch: string): string | SikkerError | undefined {
    const lfAfterCr = this.#afterCr && ch === '\n';
    this.#afterCr = ch === '\r';
    if (this.#escape === 1) {
      this.#escape = ch === '[' || ch === 'O' ? 2 : 0;
      return undefined;
    }
    if (this.#escape === 2) {
      if (/[A-Za-z~]/.test(ch)) this.#escape = 0;
      return undefined;
    }
    if (ch === '\x04') return this.text();
    if (ch === '\x03') return new SikkerError('ERR_VALIDATION', `${this.what}: cancelled (Ctrl-C); nothing was sent`);
    if (ch === '\x1b') this.#escape = 1;
    else if (ch === '\x7f' || ch === '\b') this.#pop();
    else if (ch === '\x15') {
      while (this.#chars.length > 0 && this.#chars[this.#chars.length - 1] !== '\n') this.#pop();
    } else if (ch === '\r' || (ch === '\n' && !lfAfterCr)) this.#push('\n');
    else if (ch >= ' ' || ch === '\t') this.#push(ch);
    return this.#bytes > this.maxBytes ? new SikkerError('ERR_VALIDATION', `${this.what} on stdin is larger than ${this.maxBytes} bytes`) : undefined;
  }

  #push(ch: string): void {
    this.#chars.push(ch);
    this.#bytes += Buffer.byteLength(ch, 'utf8');
  }

  #pop(): void {
    const ch = this.#chars.pop();
    if (ch !== undefined) this.#bytes -= Buffer.byteLength(ch, 'utf8');
  }
}
