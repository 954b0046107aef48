import { chmodSync, lstatSync, mkdirSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { SikkerError } from '../../shared/errors/sikker-error.js';

/** Files inside the agent's state directory. */
export function identityPath(stateDir: string): string {
  return join(stateDir, 'identity.json');
}

export function journalPath(stateDir: string): string {
  return join(stateDir, 'journal.json');
}

/**
 * The state directory holds the agent's private keys and journal: it must be a real
 * directory (not a symlink), owned by the current user, with no group or other
 * permission bits. Throws ERR_AGENT_STATE naming the path and the fix.
 */
export function checkStateDir(dir: string): void {
  let stat: Stats;
  try {
    stat = lstatSync(dir);
  } catch (err) {
    const missing = (err as { code?: unknown }).code === 'ENOENT';
    throw new SikkerError('ERR_AGENT_STATE', missing ? `state directory ${dir} does not exist (run "sikker-agent enroll" first)` : `cannot inspect state directory ${dir}`, { cause: err });
  }
  if (!stat.isDirectory()) throw new SikkerError('ERR_AGENT_STATE', `state directory ${dir} is not a directory`);
  if ((stat.mode & 0o077) !== 0) {
    throw new SikkerError('ERR_AGENT_STATE', `state directory ${dir} has mode ${(stat.mode & 0o777).toString(8)}; it must be 0700 (run: chmod 700 ${dir})`);
  }
  const uid = typeof process.getuid === 'function' ? process.getuid() : undefined;
  if (uid !== undefined && stat.uid !== uid) {
    throw new SikkerError('ERR_AGENT_STATE', `state directory ${dir} is owned by uid ${stat.uid}, not by this user (uid ${uid}); run the agent as its owner or chown it`);
  }
}

/**
 * Creates the state directory with mode 0700 if it is absent (parents as needed),
 * then checks it as `checkStateDir` does: an existing directory with looser
 * permissions or another owner is refused, never silently tightened.
 */
export function ensureStateDir(dir: string): void {
  let exists = true;
  try {
    lstatSync(dir);
  } catch {
    exists = false; // the normal case on first enrollment
  }
  if (!exists) {
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      chmodSync(dir, 0o700); // the umask may have removed bits; never added any
    } catch (err) {
      throw new SikkerError('ERR_AGENT_STATE', `cannot create state directory ${dir}`, { cause: err });
    }
  }
  checkStateDir(dir);
}
