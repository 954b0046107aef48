import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync, fchmodSync } from 'node:fs';
import { open, readdir, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/**
 * Replacing a file so that a reader (or a crash) sees either the old content or the
 * new, never a mix: write a temp file in the same directory with the final mode,
 * fsync it, rename it over the target, fsync the directory. The temp file is
 * created exclusively (O_EXCL), so a planted file or symlink is never written through.
 * On failure the temp file is removed and the target is untouched; errors are the
 * fs errors as thrown (they name paths, never content).
 */
function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
}

function fsyncDirectorySync(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Synchronous variant, for small state files written on the event loop (the journal). */
export function writeFileAtomicSync(path: string, data: Buffer | string, mode: number): void {
  const temp = tempPathFor(path);
  const fd = openSync(temp, 'wx', mode);
  try {
    fchmodSync(fd, mode); // the umask may have cleared bits we asked for
    writeSync(fd, typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
    fsyncSync(fd);
    closeSync(fd);
    renameSync(temp, path);
  } catch (err) {
    try {
      closeSync(fd);
    } catch {
      // already closed on the success path before rename failed
    }
    unlinkQuietSync(temp);
    throw err;
  }
  fsyncDirectorySync(dirname(path));
}

/**
 * Removes temp files of earlier writes to `path` that a crash (kill -9 between open
 * and rename) left behind: they may hold an old secret, which must not outlive its
 * rotation. Only names this module creates are touched.
 */
async function removeStaleTemps(path: string): Promise<void> {
  const prefix = `.${basename(path)}.tmp-`;
  const names = await readdir(dirname(path)).catch(() => [] as string[]);
  for (const name of names) {
    if (name.startsWith(prefix)) await unlink(join(dirname(path), name)).catch(() => undefined); // gone already: fine
  }
}

/** Asynchronous variant, for sink files. `data` is not copied, so the caller can zero it afterwards. */
export async function writeFileAtomic(path: string, data: Buffer, mode: number): Promise<void> {
  await removeStaleTemps(path);
  const temp = tempPathFor(path);
  const handle = await open(temp, 'wx', mode);
  try {
    try {
      await handle.chmod(mode);
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (err) {
    await unlink(temp).catch(() => undefined); // best effort: the temp file may not exist
    throw err;
  }
  const dir = await open(dirname(path), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

function unlinkQuietSync(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // best effort cleanup of our own temp file; the original error is what matters
  }
}
