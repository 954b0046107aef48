import { parseArgs, type ParseArgsConfig } from 'node:util';
import { SikkerError } from '../../shared/errors/sikker-error.js';

/** A usage mistake: printed with the usage line, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** node's parseArgs in strict mode; its errors become UsageError with its message. */
export function parseOptions<T extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: T) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : 'invalid arguments');
  }
}

/** Prints an error the way every subcommand does and returns its exit code. */
export function reportFailure(err: unknown, usage: string): number {
  if (err instanceof UsageError) {
    process.stderr.write(`sikker-agent: ${err.message}\n${usage}\n`);
    return 2;
  }
  if (err instanceof SikkerError) {
    process.stderr.write(`sikker-agent: ${err.message} [${err.code}]\n`);
    return err.code === 'ERR_CONFIG_INVALID' ? 2 : 1;
  }
  process.stderr.write(`sikker-agent: unexpected failure: ${err instanceof Error ? err.message : String(err)}\n`);
  return 1;
}
