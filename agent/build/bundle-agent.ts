/**
 * Builds the shipped agent, `dist/agent/sikker-agent.cjs`, from what `tsc` wrote to
 * `dist/agent/`. Run by `npm run build` after `tsc`; the `sikker-agent` bin, the systemd
 * unit and every test and benchmark that starts the agent as a process use this file.
 *
 * Why a bundle: the agent idles on customer hosts with a budget of 1.3× a bare node
 * process (`npm run bench -- agent-rss`). Loaded module by module, zod's entry pulls in
 * all of its ~60 locales (its namespace re-exports them), and node's ES-module loader
 * keeps its own bookkeeping per file; together about 3.5 MiB of the agent's ~13 MiB above
 * bare node. One CommonJS file with zod tree-shaken (we import it as `* as z` and use only
 * named members) carries neither. docs/benchmarks.md has the figures.
 *
 * Only our own code and zod go into the bundle. Every other package stays an ordinary
 * `require()` from node_modules, so a database driver is still loaded only when a target of
 * its engine exists (the appliers are imported lazily, see agent/appliers/index.ts), and
 * packages that find their own files at run time (pino, ws, the drivers) work unchanged.
 */
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

/** Packages compiled into the bundle; every other dependency is external. */
const BUNDLED_PACKAGES = new Set(['zod']);

const agentDir = fileURLToPath(new URL('..', import.meta.url)); // dist/agent/
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const AGENT_BUNDLE = `${agentDir}sikker-agent.cjs`;
/** What went into the bundle, for test/unit/agent-bundle.test.ts (esbuild's metafile format). */
const AGENT_BUNDLE_META = `${agentDir}sikker-agent.meta.json`;

async function bundleAgent(): Promise<void> {
  const pkg = JSON.parse(readFileSync(`${repoRoot}package.json`, 'utf8')) as { dependencies: Record<string, string> };
  const external = Object.keys(pkg.dependencies).filter((name) => !BUNDLED_PACKAGES.has(name));
  const result = await build({
    entryPoints: [`${agentDir}main.js`],
    outfile: AGENT_BUNDLE,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    external,
    // CommonJS has no import.meta; the few modules that use import.meta.url (createRequire,
    // the package.json lookup in version.ts) get the bundle's own URL, which sits in the same
    // directory as main.js, so their relative paths still hold.
    inject: [`${agentDir}build/bundle-url.js`],
    define: { 'import.meta.url': 'bundleUrl' },
    sourcemap: 'linked',
    legalComments: 'none',
    metafile: true,
    logLevel: 'warning',
  });
  if (result.errors.length > 0 || result.warnings.length > 0) {
    throw new Error(`bundling the agent: ${result.errors.length} errors, ${result.warnings.length} warnings (printed above)`);
  }
  chmodSync(AGENT_BUNDLE, 0o755);
  writeFileSync(AGENT_BUNDLE_META, JSON.stringify(result.metafile));
}

bundleAgent().catch((err: unknown) => {
  process.stderr.write(`bundle-agent: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
