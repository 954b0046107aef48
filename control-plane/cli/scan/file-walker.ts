import type { Dirent, Stats } from 'node:fs';
import { open, readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { SikkerError } from '../../../shared/errors/sikker-error.js';
import type { ExcludeGlob } from './exclude-glob.js';

/** Directories not entered unless named on the command line. */
export const DEFAULT_SKIPPED_DIRECTORIES: ReadonlySet<string> = new Set(['.git', 'node_modules', 'dist']);
/** Files larger than this are skipped with a note. */
export const MAX_FILE_BYTES = 10 * 1024 * 1024;
/** A NUL byte in this many leading bytes marks a file as binary. */
export const BINARY_SNIFF_BYTES = 8 * 1024;

export type SkipReason = 'binary' | 'too-large' | 'unreadable' | 'not-a-file';

/** One entry met while walking: a text file's contents, why a file was passed over, or stdin's turn (`-`). */
export type WalkEntry =
  | { type: 'file'; path: string; content: Buffer }
  | { type: 'stdin' }
  | { type: 'skipped'; path: string; reason: SkipReason };

export interface WalkOptions {
  excludes: readonly ExcludeGlob[];
}

/**
 * Checks that every path exists before anything is read, so a typo fails the whole
 * scan up front. Throws ERR_VALIDATION naming the path.
 */
export async function checkPaths(paths: readonly string[]): Promise<void> {
  for (const path of paths) {
    if (path === '-') continue;
    try {
      await stat(path);
    } catch (err) {
      throw new SikkerError('ERR_VALIDATION', `cannot scan ${path}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`, { cause: err });
    }
  }
}

/**
 * Yields the files under `paths` in a stable order (directory entries sorted by name);
 * `-` yields a `stdin` entry in its place.
 * Named paths are followed even when they are symbolic links; inside a directory,
 * links are never followed (a link into the tree is scanned at its real place, one
 * out of the tree is not ours to scan). DEFAULT_SKIPPED_DIRECTORIES and excluded
 * entries are not entered, files above MAX_FILE_BYTES or with a NUL byte in the
 * first BINARY_SNIFF_BYTES are reported as skipped, a file reached twice is read once.
 */
export async function* walkPaths(paths: readonly string[], options: WalkOptions): AsyncGenerator<WalkEntry> {
  const seen = new Set<string>();
  for (const root of paths) {
    if (root === '-') {
      yield { type: 'stdin' };
      continue;
    }
    const info = await stat(root);
    if (info.isDirectory()) yield* walkDirectory(root, '', options, seen);
    else if (!isExcluded(basename(root), options)) yield* readFileEntry(root, info, seen);
  }
}

function isExcluded(relativePath: string, options: WalkOptions): boolean {
  return options.excludes.some((glob) => glob.matches(relativePath));
}

async function* walkDirectory(root: string, relative: string, options: WalkOptions, seen: Set<string>): AsyncGenerator<WalkEntry> {
  const directory = relative === '' ? root : join(root, relative);
  let entries: Dirent[];
  try {
    entries = await readdir(directory, { withFileTypes: true });
  } catch {
    yield { type: 'skipped', path: directory, reason: 'unreadable' }; // reported; the rest of the tree is still scanned
    return;
  }
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const entry of entries) {
    const childRelative = relative === '' ? entry.name : `${relative}/${entry.name}`;
    if (entry.isSymbolicLink() || isExcluded(childRelative, options)) continue;
    if (entry.isDirectory()) {
      if (!DEFAULT_SKIPPED_DIRECTORIES.has(entry.name)) yield* walkDirectory(root, childRelative, options, seen);
    } else if (entry.isFile()) {
      const path = join(root, childRelative);
      let info: Stats;
      try {
        info = await stat(path);
      } catch {
        yield { type: 'skipped', path, reason: 'unreadable' }; // vanished or forbidden since readdir
        continue;
      }
      yield* readFileEntry(path, info, seen);
    }
  }
}

async function* readFileEntry(path: string, info: Stats, seen: Set<string>): AsyncGenerator<WalkEntry> {
  const identity = `${info.dev}:${info.ino}`;
  if (seen.has(identity)) return;
  seen.add(identity);
  if (!info.isFile()) {
    yield { type: 'skipped', path, reason: 'not-a-file' }; // a device or pipe named on the command line: use "-" for stdin
    return;
  }
  if (info.size > MAX_FILE_BYTES) {
    yield { type: 'skipped', path, reason: 'too-large' };
    return;
  }
  let content: Buffer;
  try {
    const handle = await open(path, 'r');
    try {
      content = await handle.readFile();
    } finally {
      await handle.close();
    }
  } catch {
    yield { type: 'skipped', path, reason: 'unreadable' }; // reported as a note; other files are still scanned
    return;
  }
  if (content.length > MAX_FILE_BYTES) yield { type: 'skipped', path, reason: 'too-large' };
  else if (content.subarray(0, BINARY_SNIFF_BYTES).includes(0)) yield { type: 'skipped', path, reason: 'binary' };
  else yield { type: 'file', path, content };
}
