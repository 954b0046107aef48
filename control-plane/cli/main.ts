#!/usr/bin/env node
/**
 * `sikker` entry point: runs the CLI on the real process streams and environment,
 * then leaves the exit code on process.exitCode (so pending output is flushed).
 */
import { runCli } from './run-cli.js';

process.exitCode = await runCli(process.argv.slice(2), {
  stdin: process.stdin,
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
});
