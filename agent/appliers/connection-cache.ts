/**
 * One lazily opened, reused connection (an applier's admin session). Opened on
 * first use, shared by concurrent callers, dropped and closed when it breaks so
 * the next call opens a fresh one. Driver-agnostic: engines pass open/close and
 * say which errors leave the connection unusable.
 */
export class ConnectionCache<C> {
  private pending: Promise<C> | undefined;
  private current: C | undefined;

  /**
   * @param open opens and authenticates a connection; should call
   *   {@link discard} when the driver reports the connection ended.
   * @param end closes a connection; must not throw for an already broken one.
   */
  constructor(
    private readonly open: () => Promise<C>,
    private readonly end: (connection: C) => Promise<void>,
  ) {}

  /**
   * Runs `fn` on the shared connection. When `fn` throws an error for which
   * `breaksConnection` is true, the connection is closed and forgotten before
   * the error is rethrown. A failed open is rethrown and not cached.
   */
  async use<T>(fn: (connection: C) => Promise<T>, breaksConnection: (err: unknown) => boolean): Promise<T> {
    let pending = this.pending;
    if (pending === undefined) {
      pending = this.open();
      this.pending = pending;
    }
    let connection: C;
    try {
      connection = await pending;
      if (this.pending === pending) this.current = connection;
    } catch (err) {
      if (this.pending === pending) this.pending = undefined;
      throw err;
    }
    try {
      return await fn(connection);
    } catch (err) {
      if (breaksConnection(err)) await this.discard(connection);
      throw err;
    }
  }

  /** Forgets and closes `connection` if it is the cached one; otherwise does nothing. Idempotent. */
  async discard(connection: C): Promise<void> {
    if (this.current !== connection) return;
    this.current = undefined;
    this.pending = undefined;
    await this.end(connection).catch(() => undefined);
  }

  /** Closes the cached connection, if any; the next `use` opens a new one. */
  async close(): Promise<void> {
    const pending = this.pending;
    this.pending = undefined;
    this.current = undefined;
    if (pending === undefined) return;
    const connection = await pending.catch(() => undefined);
    if (connection !== undefined) await this.end(connection).catch(() => undefined);
  }
}
