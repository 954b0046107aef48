/**
 * The shipped agent is one CommonJS bundle (agent/build/bundle-agent.ts) so that an idle agent
 * stays within 1.3× a bare node process. This guards what makes it small, from the metafile
 * the build writes beside it: zod is compiled in but tree-shaken (no locale except English,
 * which breaks if a file goes back to `import { z } from 'zod'`), and no other package is
 * compiled in (drivers, ws and pino stay ordinary requires, loaded when used).
 */
import t from 'tap';
import { readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const DIST_AGENT = fileURLToPath(new URL('../../agent/', import.meta.url));

interface Metafile {
  outputs: Record<string, { inputs: Record<string, { bytesInOutput: number }>; imports: { path: string; external?: boolean }[] }>;
}

const meta = JSON.parse(readFileSync(`${DIST_AGENT}sikker-agent.meta.json`, 'utf8')) as Metafile;
const bundle = Object.entries(meta.outputs).find(([path]) => path.endsWith('sikker-agent.cjs'))?.[1];
/** Modules that left code in the bundle (esbuild lists tree-shaken ones with 0 bytes). */
const inputs = Object.entries(bundle?.inputs ?? {}).filter(([, i]) => i.bytesInOutput > 0).map(([path]) => path);
const packageOf = (path: string) => /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(path)?.[1];

t.test('the bundle exists, is executable and starts with a shebang', async (t) => {
  const bundle = `${DIST_AGENT}sikker-agent.cjs`;
  t.ok((statSync(bundle).mode & 0o111) !== 0, 'executable');
  t.match(readFileSync(bundle, 'utf8').slice(0, 40), /^#!\/usr\/bin\/env node\n"use strict";/, 'shebang, then strict mode');
});

t.test('only zod is compiled in; every other package is required at run time', async (t) => {
  const packages = [...new Set(inputs.map(packageOf).filter((p) => p !== undefined))];
  t.strictSame(packages, ['zod']);
  const externals = new Set(bundle?.imports.filter((i) => i.external).map((i) => i.path));
  // ws, mssql and exponential-backoff are loaded through createRequire, which esbuild leaves alone.
  for (const name of ['pg', 'mysql2/promise', 'ioredis', 'mongodb', 'pino']) {
    t.ok(externals.has(name), `${name} is required from node_modules`);
  }
});

t.test('zod is tree-shaken: no locale but English', async (t) => {
  const locales = inputs.filter((p) => /node_modules\/zod\/.*\/locales\//.test(p)).map((p) => p.replace(/.*\/locales\//, ''));
  // locales/index.js leaves only its (empty) namespace wrapper; every locale module is listed by name.
  t.strictSame(locales.filter((name) => name !== 'index.js'), ['en.js']);
});

t.test('our own code comes from the agent and shared only', async (t) => {
  const ours = inputs.filter((p) => packageOf(p) === undefined);
  t.ok(ours.length > 20, `${ours.length} modules of our own`);
  t.strictSame(ours.filter((p) => !/^dist\/(agent|shared)\//.test(p)), []);
});
