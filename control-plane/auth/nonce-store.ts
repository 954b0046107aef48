import type { Redis } from 'ioredis';
import { SikkerError } from '../../shared/errors/sikker-error.js';

/**
 * Remembers every nonce for twice the clock-skew window, so a request replayed within
 * its validity is refused. Shared by all replicas through Redis. Any Redis failure is
 * a refusal (fail closed): a request is never accepted without its nonce recorded.
 */
export class NonceStore {
  constructor(private readonly redis: Pick<Redis, 'set'>, private readonly prefix: string, private readonly ttlMs: number) {}

  /** Resolves true if the nonce was unused (and records it), false if it was seen before. */
  async claim(identityKey: string, nonce: string): Promise<boolean> {
    try {
      const result = await this.redis.set(`${this.prefix}nonce:${identityKey}:${nonce}`, '1', 'PX', this.ttlMs, 'NX');
      return result === 'OK';
    } catch (err) {
      throw new SikkerError('ERR_AUTH_NONCE_STORE_UNAVAILABLE', 'the replay-protection store is unavailable; request refused', { cause: err, retryable: true });
    }
  }
}
