import type { Redis } from 'ioredis';
import { SikkerError } from '../../shared/errors/sikker-error.js';

/**
 * How much longer than the window in which a request is valid its nonce is kept: the
 * replicas' clocks may differ, and each judges the window by its own (replica clocks are
 * assumed to agree within this).
 */
export const NONCE_TTL_MARGIN_MS = 60_000;

/**
 * Remembers every nonce for as long as its request could be accepted anywhere — twice the
 * clock-skew window (a request is valid from its timestamp − skew to + skew), plus
 * {@link NONCE_TTL_MARGIN_MS} — so a replayed request is refused. Shared by all replicas
 * through Redis. Any Redis failure is a refusal (fail closed): a request is never accepted
 * without its nonce recorded.
 */
export class NonceStore {
  private readonly ttlMs: number;

  constructor(private readonly redis: Pick<Redis, 'set'>, private readonly prefix: string, clockSkewMs: number) {
    this.ttlMs = 2 * clockSkewMs + NONCE_TTL_MARGIN_MS;
  }

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
