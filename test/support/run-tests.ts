/**
 * `npm test` entry point (after `tsc -p .`): make sure PostgreSQL, Redis and
 * MariaDB run, then let tap run every compiled test file.
 *
 * Usage: node dist/test/support/run-tests.js [tap options] [test files or dirs]
 *
 * - Without file arguments it runs every `*.test.js` under dist/test/unit,
 *   dist/test/integration and dist/test/e2e (in that order, 2 at a time).
 *   A compiled test whose TypeScript source no longer exists (stale output
 *   left in dist/ by tsc) is skipped with a warning.
 * - Arguments that name existing files or directories select what to run
 *   instead; every other argument is passed to tap (e.g. `--grep=rotation`,
 *   `--reporter=tap`, `--bail`).
 * - Coverage is off, each test file gets 300 s, the `base` reporter is used
 *   (with Ink's static CI output when stdout is not a terminal); tap itself
 *   runs node with --enable-source-maps, so failures point at the .ts files.
 * - Exits with tap's exit code; 1 if there are no test files at all or the
 *   services cannot be started.
 *
 * Environment: SIKKER_TEST_SKIP_SERVICES=1 skips ensureServices (e.g. when
 * running only unit tests on a machine without the servers).
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sweepStaleTestDatabases } from './databases.js';
import { ensureServices } from './services.js';

/** Repository root: dist/test/support/run-tests.js → ../../.. */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** Test suites, in the order they are handed to tap. */
export const SUITES = ['unit', 'integration', 'e2e'] as const;

const TAP_BIN = join(REPO_ROOT, 'node_modules', '.bin', 'tap');
const TEST_FILE = /\.test\.js$/;

/**
 * Every compiled test file (`*.test.js`) under dist/test/<suite>/ for the
 * three suites, sorted, as paths relative to the repo root. Missing or empty
 * suite directories contribute nothing. Files whose source
 * (test/<suite>/.../<name>.test.ts, .mts or .tsx) is gone are returned in
 * `stale` instead of `files`.
 */
export function findTestFiles(root = REPO_ROOT): { files: string[]; stale: string[] } {
  const files: string[] = [];
  const stale: string[] = [];
  for (const suite of SUITES) {
    const dir = join(root, 'dist', 'test', suite);
    for (const file of walk(dir).filter((f) => TEST_FILE.test(f)).sort()) {
      const rel = relative(root, file);
      const srcBase = join(root, relative(join(root, 'dist'), file)).replace(/\.js$/, '');
      const hasSource = ['.ts', '.mts', '.tsx'].some((ext) => existsSync(srcBase + ext));
      (hasSource ? files : stale).push(rel);
    }
  }
  return { files, stale };
}

function walk(dir: string): string[] {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...walk(path));
    else if (entry.isFile()) out.push(path);
  }
  return out;
}

function looksLikeMissingPath(arg: string): boolean {
  return !arg.startsWith('-') && (arg.includes(sep) || TEST_FILE.test(arg)) && !existsSync(resolve(arg));
}

function log(message: string): void {
  process.stderr.write(`[run-tests] ${message}\n`);
}

async function main(argv: string[]): Promise<number> {
  // Split the arguments into explicit test selections and tap options.
  const selected: string[] = [];
  const tapOptions: string[] = [];
  for (const arg of argv) {
    if (!arg.startsWith('-') && existsSync(resolve(arg))) {
      const abs = resolve(arg);
      if (statSync(abs).isDirectory()) {
        selected.push(...walk(abs).filter((f) => TEST_FILE.test(f)).sort().map((f) => relative(REPO_ROOT, f)));
      } else {
        selected.push(relative(REPO_ROOT, abs));
      }
    } else {
      tapOptions.push(arg);
    }
  }

  if (argv.some(looksLikeMissingPath)) {
    log(`no such test file or directory: ${argv.filter(looksLikeMissingPath).join(', ')}`);
    return 1;
  }
  let files: string[];
  if (selected.length > 0) {
    files = selected;
  } else {
    const found = findTestFiles();
    for (const file of found.stale) {
      log(`skipping ${file}: its TypeScript source no longer exists (stale build output; delete dist/ to clean)`);
    }
    files = found.files;
  }
  if (files.length === 0) {
    log(`no test files found under dist/test/{${SUITES.join(',')}} — did \`tsc -p .\` run?`);
    return 1;
  }

  if (process.env['SIKKER_TEST_SKIP_SERVICES'] !== '1') {
    const started = Date.now();
    try {
      await ensureServices({ log });
    } catch (err) {
      log(err instanceof Error ? err.message : String(err));
      return 1;
    }
    try {
      const dropped = await sweepStaleTestDatabases();
      if (dropped.length > 0) log(`dropped ${dropped.length} stale test database(s) left by killed runs`);
    } catch (err) {
      log(`could not sweep stale test databases: ${err instanceof Error ? err.message : String(err)}`);
    }
    const ms = Date.now() - started;
    if (ms > 2000) log(`services ready after ${ms} ms`);
  }

  if (!existsSync(TAP_BIN)) {
    log(`${relative(REPO_ROOT, TAP_BIN)} is missing — run \`npm ci\``);
    return 1;
  }

  const hasOption = (...names: string[]) =>
    tapOptions.some((o) => names.some((n) => o === n || o.startsWith(`${n}=`) || (n.length === 2 && o.startsWith(n))));
  const args = ['--disable-coverage', '--allow-empty-coverage'];
  if (!hasOption('--timeout', '-t')) args.push('--timeout=300');
  if (!hasOption('--jobs', '-j')) args.push('--jobs=2');
  if (!hasOption('--reporter', '-R')) args.push('--reporter=base');
  args.push(...tapOptions, ...files);

  const env = { ...process.env };
  // Ink (behind tap's reporters) redraws a progress area on every update;
  // without a terminal that floods the log. Its CI mode prints each result
  // once and the failure details plus summary at the end.
  const ciKnown = 'CI' in env || 'CONTINUOUS_INTEGRATION' in env || Object.keys(env).some((k) => k.startsWith('CI_'));
  if (!process.stdout.isTTY && !ciKnown) env['CONTINUOUS_INTEGRATION'] = '1';

  log(`running ${files.length} test file(s)`);
  const child = spawn(TAP_BIN, args, { cwd: REPO_ROOT, stdio: 'inherit', env });
  const forward = (signal: NodeJS.Signals) => () => {
    child.kill(signal);
  };
  const onInt = forward('SIGINT');
  const onTerm = forward('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  return new Promise<number>((resolvePromise) => {
    child.on('error', (err) => {
      log(`cannot run tap: ${err.message}`);
      resolvePromise(1);
    });
    child.on('close', (code, signal) => {
      process.removeListener('SIGINT', onInt);
      process.removeListener('SIGTERM', onTerm);
      if (signal) log(`tap was killed by ${signal}`);
      resolvePromise(code ?? 1);
    });
  });
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      log(err instanceof Error ? (err.stack ?? err.message) : String(err));
      process.exitCode = 1;
    },
  );
}
