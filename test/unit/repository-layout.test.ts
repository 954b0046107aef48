/**
 * Guards the fixed repository layout from docs/DESIGN: the agent never
 * imports control-plane code nor the reverse (both may import shared/, which
 * imports neither), and the top level holds only the known entries.
 *
 * Runs on the TypeScript sources; the compiled test lives in dist/test/unit,
 * so the repository root is three levels up.
 */
import t from 'tap';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

const ALLOWED_TOP_LEVEL = new Set([
  'package.json',
  'package-lock.json',
  'tsconfig.json',
  'README.md',
  'control-plane',
  'agent',
  'shared',
  'test',
  'systemd',
  'bench',
  'docs',
  '.ci',
  '.taprc',
  '.gitignore',
  'node_modules',
  'dist',
  '.git',
  '.tap',
]);

const SOURCE_FILE = /\.(ts|mts|cts|tsx)$/;

interface ImportRef {
  specifier: string;
  line: number;
}

/**
 * Replace comments with spaces (keeping line breaks) so that commented-out
 * imports are ignored, while string and template literals stay intact.
 */
function stripComments(source: string): string {
  let out = '';
  let i = 0;
  const n = source.length;
  while (i < n) {
    const c = source[i];
    const next = source[i + 1];
    if (c === '/' && next === '/') {
      while (i < n && source[i] !== '\n') {
        out += ' ';
        i++;
      }
    } else if (c === '/' && next === '*') {
      const end = source.indexOf('*/', i + 2);
      const stop = end === -1 ? n : end + 2;
      out += source.slice(i, stop).replace(/[^\n]/g, ' ');
      i = stop;
    } else if (c === '"' || c === "'" || c === '`') {
      let j = i + 1;
      while (j < n && source[j] !== c) {
        if (source[j] === '\\') j++;
        else if (c !== '`' && source[j] === '\n') break;
        j++;
      }
      out += source.slice(i, j + 1);
      i = j + 1;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** Every module specifier a TypeScript source refers to, with its line. */
function extractImports(source: string): ImportRef[] {
  const code = stripComments(source);
  const patterns = [
    // import x from '…', import { a } from '…', import type …, export … from '…'
    /\b(?:import|export)\s+(?:type\s+)?[^'"`;]*?\bfrom\s*(['"])([^'"\n]+)\1/g,
    // import '…' (side effects only)
    /\bimport\s*(['"])([^'"\n]+)\1/g,
    // import('…'), typeof import('…'), require('…'), import x = require('…'), import.meta.resolve('…')
    /\b(?:import|require|import\.meta\.resolve)\s*\(\s*(['"`])([^'"`\n]+)\1/g,
    // /// <reference path="…" /> (a comment, so matched on the raw source)
    /\/\/\/\s*<reference\s+path\s*=\s*(['"])([^'"\n]+)\1/g,
  ];
  const refs: ImportRef[] = [];
  const seen = new Set<string>();
  const scan = (text: string, pattern: RegExp) => {
    for (const match of text.matchAll(pattern)) {
      const specifier = match[2];
      if (specifier === undefined || match.index === undefined) continue;
      const line = text.slice(0, match.index + match[0].length).split('\n').length;
      const key = `${line}:${specifier}`;
      if (seen.has(key)) continue;
      seen.add(key);
      refs.push({ specifier, line });
    }
  };
  for (const pattern of patterns.slice(0, 3)) scan(code, pattern);
  const lastPattern = patterns[3];
  if (lastPattern) scan(source, lastPattern); // references live in comments
  return refs.sort((a, b) => a.line - b.line);
}

/**
 * The top-level area (`agent`, `control-plane`, `shared`, …) a specifier in
 * `fromFile` points into, or undefined for packages and node: builtins.
 * Relative paths are resolved; a path into dist/ counts as its source area;
 * bare, absolute or `#` specifiers are matched on a path segment.
 */
function targetArea(fromFile: string, specifier: string, root: string): string | undefined {
  if (specifier.startsWith('node:')) return undefined;
  if (specifier.startsWith('.')) {
    const rel = relative(root, resolve(dirname(fromFile), specifier)).split(sep);
    if (rel[0] === '..') return undefined;
    const parts = rel[0] === 'dist' ? rel.slice(1) : rel;
    return parts.length > 1 ? parts[0] : undefined;
  }
  const match = /(?:^|[/#@])(control-plane|agent|shared)\//.exec(specifier);
  return match?.[1];
}

function listSources(dir: string): string[] {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const entry of entries) {
    if (entry.name === 'node_modules' || entry.name.startsWith('.')) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listSources(path));
    else if (entry.isFile() && SOURCE_FILE.test(entry.name) && !entry.name.endsWith('.d.ts')) out.push(path);
  }
  return out.sort();
}

/** `file:line imports 'spec'` for every import from `area` into a forbidden area. */
function violations(area: string, forbidden: string[]): string[] {
  const found: string[] = [];
  for (const file of listSources(join(ROOT, area))) {
    for (const ref of extractImports(readFileSync(file, 'utf8'))) {
      const target = targetArea(file, ref.specifier, ROOT);
      if (target !== undefined && forbidden.includes(target)) {
        found.push(`${relative(ROOT, file)}:${ref.line} imports '${ref.specifier}' (${target}/)`);
      }
    }
  }
  return found;
}

t.test('the repository root was located', async (t) => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name?: string };
  t.equal(pkg.name, 'sikkerkey', `package.json at ${ROOT} is SikkerKey's`);
});

t.test('the import scanner sees every import form', async (t) => {
  const file = join(ROOT, 'agent', 'hub', 'client.ts');
  const source = [
    "import { a } from '../../control-plane/vault/vault.js';",
    "import type { B } from '../../control-plane/b.js';",
    "import {",
    "  c,",
    "} from \"../../control-plane/c.js\";",
    "export * from '../../control-plane/d.js';",
    "export { e } from '../../control-plane/e.js';",
    "import '../../control-plane/side-effect.js';",
    "const f = await import('../../control-plane/f.js');",
    "const g = require('../../control-plane/g.js');",
    "import h = require('../../control-plane/h.js');",
    "import i from 'sikkerkey/control-plane/i.js';",
    "import j from '#control-plane/j.js';",
    "import k from '../../dist/control-plane/k.js';",
    "// import l from '../../control-plane/l.js';",
    "/* import m from '../../control-plane/m.js'; */",
    "import n from '../../shared/n.js';",
    "import o from 'https-proxy-agent/dist/x.js';",
    "const url = 'http://example.test/control-plane/';",
    "import p from '../hub/p.js';",
    "const q = import.meta.resolve('../../control-plane/q.js');",
    "type R = typeof import('../../control-plane/r.js');",
  ].join('\n');
  const refs = extractImports(source);
  const areas = refs.map((r) => `${r.line}:${targetArea(file, r.specifier, ROOT) ?? '-'}`);
  t.strictSame(
    areas,
    [
      '1:control-plane', '2:control-plane', '5:control-plane', '6:control-plane', '7:control-plane',
      '8:control-plane', '9:control-plane', '10:control-plane', '11:control-plane', '12:control-plane',
      '13:control-plane', '14:control-plane', '17:shared', '18:-', '20:agent',
      '21:control-plane', '22:control-plane',
    ],
    'each import is found once, on its line, and mapped to its area; comments and plain strings are ignored',
  );
});

t.test('agent/ never imports control-plane/ code', async (t) => {
  const found = violations('agent', ['control-plane']);
  t.strictSame(found, [], found.length ? `forbidden imports:\n${found.join('\n')}` : 'none');
});

t.test('control-plane/ never imports agent/ code', async (t) => {
  const found = violations('control-plane', ['agent']);
  t.strictSame(found, [], found.length ? `forbidden imports:\n${found.join('\n')}` : 'none');
});

t.test('shared/ imports neither agent/ nor control-plane/', async (t) => {
  const found = violations('shared', ['agent', 'control-plane']);
  t.strictSame(found, [], found.length ? `forbidden imports:\n${found.join('\n')}` : 'none');
});

t.test('the top level holds only the allowed entries', async (t) => {
  const unknown = readdirSync(ROOT)
    .filter((name) => !ALLOWED_TOP_LEVEL.has(name))
    .sort();
  t.strictSame(
    unknown,
    [],
    unknown.length ? `unexpected top-level entries: ${unknown.join(', ')}` : 'only allowed entries',
  );
});
