import type { KeyObject } from 'node:crypto';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { zero } from '../../shared/crypto/aead.js';

/**
 * The only place the root key lives: this process's memory. Sealing zeroes it and
 * every key derived from it that this process cached. Nothing here touches disk.
 */
export class RootKeyHolder {
  private rootKey: Buffer | null = null;
  private signingKey: { key: KeyObject; version: number } | null = null;
  private readonly sealListeners: Array<() => void> = [];

  isSealed(): boolean {
    return this.rootKey === null;
  }

  /** The root key, for the duration of one synchronous use. Throws ERR_VAULT_SEALED when sealed. */
  rootKeyOrThrow(): Buffer {
    if (this.rootKey === null) throw new SikkerError('ERR_VAULT_SEALED', 'the vault is sealed; unseal it with `sikker operator unseal`', { retryable: true });
    return this.rootKey;
  }

  /** The server's Ed25519 signing key, or null while sealed. */
  signer(): { key: KeyObject; version: number } | null {
    return this.signingKey;
  }

  /** Takes ownership of `rootKey` (it will be zeroed on seal). */
  install(rootKey: Buffer, signingKey: KeyObject, signingKeyVersion: number): void {
    this.seal();
    this.rootKey = rootKey;
    this.signingKey = { key: signingKey, version: signingKeyVersion };
  }

  /** Registers cleanup of caches that hold keys derived from the root key. */
  onSeal(listener: () => void): void {
    this.sealListeners.push(listener);
  }

  /** Drops the root key (zeroed) and every derived key cache at once. Idempotent. */
  seal(): void {
    zero(this.rootKey);
    this.rootKey = null;
    this.signingKey = null;
    for (const listener of this.sealListeners) listener();
  }
}
