import { connect, type Socket } from 'node:net';

/**
 * A TCP connection to the server opened ahead of the statement whose effect a fresh login
 * will prove (apply's ALTER ROLE): when the agent accepts the command (apply-command.ts
 * `prepare`, while the SCRAM verifier is derived), or else by the applier just before that
 * statement. The server's accept and the start of its backend process (~0.7 ms) then
 * happen before the login instead of in it, and — opened at accept — not alongside the
 * ALTER ROLE either, which they slow by ~0.3 ms on a 2-core host. Nothing is sent on it
 * until pg takes it for the login: the startup packet and the whole authentication with
 * the new password happen afterwards, so the login is as fresh as one on a socket opened
 * later. Plain TCP only (pg negotiates TLS on it as on any socket); not for Unix sockets.
 * A server that closes it while it waits (authentication_timeout) costs nothing: take()
 * then returns null and the login opens its own connection.
 */
export class WarmSocket {
  readonly #socket: Socket;
  #broken = false;
  /** Handed to pg by take(): from then on pg owns (and closes) it. */
  #taken = false;
  readonly #onError = (): void => {
    this.#broken = true; // reported by take() returning null: the login then opens its own connection
  };

  private constructor(host: string, port: number) {
    this.#socket = connect({ host, port });
    this.#socket.on('error', this.#onError);
    this.#socket.on('close', this.#onError);
  }

  /** Starts connecting; null for a Unix socket path. */
  static open(host: string, port: number): WarmSocket | null {
    return host.startsWith('/') ? null : new WarmSocket(host, port);
  }

  /**
   * For pg's `stream` option, once: the socket, whose `connect()` — which pg calls on a
   * custom stream before waiting for its 'connect' event — only reports the connection
   * (at once if it is already up). null when the socket broke meanwhile (it is then
   * closed), or was taken or closed before.
   */
  take(): (() => Socket) | null {
    if (this.#taken) return null;
    this.#taken = true;
    const socket = this.#socket;
    // #onError stays attached: pg adds its own listeners, and an error before it does is then no crash
    if (this.#broken || socket.destroyed) {
      socket.destroy();
      return null;
    }
    socket.connect = ((): Socket => {
      if (!socket.connecting) process.nextTick(() => socket.emit('connect'));
      return socket;
    }) as Socket['connect'];
    return () => socket;
  }

  /** Closes it unless take() handed it to pg (then a no-op); idempotent. */
  close(): void {
    if (this.#taken) return;
    this.#taken = true;
    this.#socket.destroy();
  }
}
