import { SikkerError } from '../../shared/errors/sikker-error.js';
import { loadIdentityFile } from '../../shared/signing/identity-file.js';
import { importPublicKey } from '../../shared/signing/ed25519-keys.js';
import type { AgentIdentity } from '../hub-client/hub-client-options.js';
import { checkStateDir, identityPath } from './state-dir.js';

/**
 * Loads an enrolled agent's keys from `<stateDir>/identity.json` after checking the
 * directory (0700, ours) and the file (regular, 0600, ours). Throws ERR_AGENT_STATE or
 * ERR_IDENTITY_KEY_FILE naming the path and the fix; ERR_AGENT_STATE when the file is
 * not a fully enrolled agent identity (no id, no pinned server key, no box key).
 */
export function loadAgentIdentity(stateDir: string): AgentIdentity {
  checkStateDir(stateDir);
  const path = identityPath(stateDir);
  const loaded = loadIdentityFile(path);
  if (loaded.identityId === null || loaded.serverPublicKey === null || loaded.boxPrivateKey == null) {
    throw new SikkerError('ERR_AGENT_STATE', `${path} is not an enrolled agent identity (run "sikker-agent enroll")`);
  }
  let serverPublicKey;
  try {
    serverPublicKey = importPublicKey(loaded.serverPublicKey);
  } catch (err) {
    throw new SikkerError('ERR_AGENT_STATE', `${path} holds a malformed server public key; enroll again`, { cause: err });
  }
  return { identityId: loaded.identityId, privateKey: loaded.privateKey, boxPrivateKey: loaded.boxPrivateKey, serverPublicKey };
}
