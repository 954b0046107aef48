#!/usr/bin/env node
/**
 * sikker-agent: `enroll` once, then `run` as a service. Each subcommand's module is
 * loaded only when chosen, so `run` never loads the HTTP client and `enroll` never
 * loads the WebSocket stack. Exit codes: 0 done, 1 failure, 2 usage or config error.
 */
import { dropDriverDebug } from './cli/driver-debug.js';
import { collectStartupGarbage, useBaselineCompilerOnly } from './cli/startup-memory.js';
import { agentVersion } from './version.js';

const USAGE = `usage:
  sikker-agent enroll --server URL --token T|- --state-dir DIR [--name N] [--insecure-http] [--ca-cert FILE] [--pin-sha256 FP]
  sikker-agent run --config FILE [--server URL] [--state-dir DIR]
  sikker-agent --version`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'enroll':
      return (await import('./cli/enroll-command.js')).enrollCommand(rest);
    case 'run':
      if (dropDriverDebug(process.env) !== undefined) process.stderr.write('sikker-agent: DEBUG is ignored: driver debug output would show passwords\n');
      useBaselineCompilerOnly(); // before the daemon's modules load: see startup-memory.ts
      collectStartupGarbage(1000);
      return (await import('./cli/run-command.js')).runCommand(rest);
    case '--version':
      process.stdout.write(`${agentVersion()}\n`);
      return 0;
    case '--help':
    case 'help':
      process.stdout.write(`${USAGE}\n`);
      return 0;
    default:
      process.stderr.write(`sikker-agent: ${command === undefined ? 'missing command' : `unknown command "${command}"`}\n${USAGE}\n`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    // Subcommands translate their own failures; reaching this is a bug. No secret is in scope here.
    process.stderr.write(`sikker-agent: unexpected failure: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
