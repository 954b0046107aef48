/**
 * Benchmark runner: `node dist/bench/run.js <name>` (via `npm run bench -- <name>`).
 *
 * - <name> must be a benchmark present both as bench/<name>.ts and as its compiled
 *   dist/bench/<name>.js; otherwise the known names are listed and the exit code is 2.
 * - Makes sure the shared services (PostgreSQL, Redis, MariaDB) are up, then imports
 *   the module and awaits its exported `run(): Promise<Record<string, unknown>>`.
 * - Progress goes to stderr (or to stdout before the end); the very last line of
 *   stdout is ONE JSON object: `{"benchmark": <name>, ...result}`. On failure that
 *   line is `{"benchmark": <name>, "error": <message>}` and the exit code is 1.
 * - A module may export `timeoutMs` (number): past it the run is abandoned, every
 *   registered cleanup (bench/support/cleanup.ts) runs, and the exit code is 1.
 *   Default 10 minutes. SIGINT/SIGTERM also run the cleanups before exiting.
 */
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ensureServices } from '../test/support/services.js';
import { runAllCleanups } from './support/cleanup.js';

const DEFAULT_TIMEOUT_MS = 10 * 60 * 1000;
const NAME_RE = /^[a-z0-9][a-z0-9-]*$/;

const distBenchDir = dirname(fileURLToPath(import.meta.url));
/** The repository root: dist/bench/ → ../.. */
const repoRoot = join(distBenchDir, '..', '..');
const sourceBenchDir = join(repoRoot, 'bench');

/** Benchmarks present as dist/bench/<name>.js and (when the sources are here) bench/<name>.ts. */
function knownBenchmarks(): string[] {
  const compiled = readdirSync(distBenchDir)
    .filter((f) => f.endsWith('.js'))
    .map((f) => f.slice(0, -'.js'.length))
    .filter((n) => n !== 'run' && NAME_RE.test(n));
  const haveSources = existsSync(sourceBenchDir);
  return compiled.filter((n) => !haveSources || existsSync(join(sourceBenchDir, `${n}.ts`))).sort();
}

function usage(message: string): never {
  const known = knownBenchmarks();
  process.stderr.write(`${message}\nusage: npm run bench -- <name>\nknown benchmarks: ${known.length > 0 ? known.join(', ') : '(none)'}\n`);
  process.exit(2);
}

function finish(line: Record<string, unknown>, code: number): void {
  process.stdout.write(`${JSON.stringify(line)}\n`, () => process.exit(code));
}

let finished = false;

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args.length !== 1) usage(args.length === 0 ? 'missing benchmark name' : `expected one benchmark name, got ${args.length} arguments`);
  const name = args[0] ?? '';
  if (!NAME_RE.test(name) || !knownBenchmarks().includes(name)) usage(`unknown benchmark "${name}"`);

  const mod = (await import(pathToFileURL(join(distBenchDir, `${name}.js`)).href)) as { run?: unknown; timeoutMs?: unknown };
  if (typeof mod.run !== 'function') usage(`bench/${name}.ts does not export run()`);
  const run = mod.run as () => Promise<Record<string, unknown>>;
  const timeoutMs = typeof mod.timeoutMs === 'number' && mod.timeoutMs > 0 ? mod.timeoutMs : DEFAULT_TIMEOUT_MS;

  const fail = async (message: string, code: number, detail: string = message): Promise<void> => {
    if (finished) return;
    finished = true;
    process.stderr.write(`bench ${name}: ${detail}\n`);
    await runAllCleanups();
    finish({ benchmark: name, error: message }, code);
  };
  const onSignal = (signal: NodeJS.Signals): void => void fail(`interrupted by ${signal}`, 130);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const watchdog = setTimeout(() => void fail(`did not finish within ${timeoutMs / 1000} s; abandoned`, 1), timeoutMs);
  watchdog.unref();

  const started = Date.now();
  process.stderr.write(`bench ${name}: checking services\n`);
  try {
    await ensureServices();
    process.stderr.write(`bench ${name}: running\n`);
    const result = await run();
    if (finished) return;
    finished = true;
    clearTimeout(watchdog);
    process.stderr.write(`bench ${name}: done in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    finish({ benchmark: name, ...result }, 0);
  } catch (err) {
    clearTimeout(watchdog);
    const message = err instanceof Error ? err.message : String(err);
    await fail(message, 1, err instanceof Error ? (err.stack ?? message) : message);
  }
}

void main();
