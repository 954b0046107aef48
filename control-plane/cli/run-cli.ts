import { Command, CommanderError } from 'commander';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { registerAgentCommands } from './agent-commands.js';
import { registerAuditCommands } from './audit-commands.js';
import { CliContext, type CliIo } from './cli-context.js';
import { registerIdentityCommands } from './identity-commands.js';
import { registerOperatorCommands } from './operator-commands.js';
import { Output } from './output.js';
import { registerProjectCommands } from './project-commands.js';
import { registerSecretCommands } from './secret-commands.js';
import { registerRotationCommands } from './rotation-commands.js';
import { registerStatusCommands } from './status-commands.js';
import { registerTargetCommands } from './target-commands.js';
import { registerLeakCommands } from './leak-commands.js';
import { registerScanCommands } from './scan-commands.js';

export type { CliIo } from './cli-context.js';

/** Commander outcomes that are not failures of the user's request (help, version). */
const INFORMATIONAL = new Set(['commander.helpDisplayed', 'commander.help', 'commander.version']);

function buildProgram(ctx: CliContext): Command {
  const program = new Command('sikker')
    .description('SikkerKey command line: vault operations, secrets, identities and audit')
    .exitOverride()
    .configureOutput({
      writeOut: (text) => ctx.io.stdout.write(text),
      writeErr: (text) => ctx.io.stderr.write(text),
      // Usage errors are reported by runCli in the same format as every other error.
      outputError: () => undefined,
    });
  CliContext.root(program);
  registerOperatorCommands(program, ctx);
  registerProjectCommands(program, ctx);
  registerSecretCommands(program, ctx);
  registerIdentityCommands(program, ctx);
  registerAuditCommands(program, ctx);
  registerAgentCommands(program, ctx);
  registerTargetCommands(program, ctx);
  registerRotationCommands(program, ctx);
  registerLeakCommands(program, ctx);
  registerScanCommands(program, ctx);
  registerStatusCommands(program, ctx);
  return program;
}

function usageError(err: CommanderError): SikkerError {
  return new SikkerError('ERR_VALIDATION', err.message.replace(/^error: /, ''));
}

/**
 * Runs one CLI invocation in-process. `argv` holds the user's arguments only (no
 * node binary or script path). Returns the exit code: 0 on success, 2 on a usage error
 * (unknown option, missing argument), 1 on any other error
 * (printed as `error CODE: message` on stderr, or as `{"error":{code,message}}` on
 * stdout with --json) and when a command reports a negative result (audit verify).
 * Never throws; never writes secret values except the one a command was asked to print.
 */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  const out = new Output(argv.includes('--json'), io.stdout, io.stderr);
  const ctx = new CliContext(io, out);
  try {
    await buildProgram(ctx).parseAsync(argv, { from: 'user' });
    return ctx.exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (INFORMATIONAL.has(err.code)) return err.exitCode;
      out.error(usageError(err));
      return 2; // a usage error, not a failed request: scripts (sikker scan in CI) tell them apart
    }
    out.error(err);
    return 1;
  } finally {
    ctx.close();
  }
}
