import { createServer } from 'node:net';

/**
 * Ask the kernel for a TCP port that is free on 127.0.0.1 right now.
 *
 * Contract: binds an ephemeral port on 127.0.0.1, reads its number, closes the
 * listener and resolves with the number. The port is NOT reserved: another
 * process may take it between this call and the caller's bind, so callers that
 * start a server on it should retry with a fresh port when the bind fails
 * (startPrivateRedis and startScramPostgres do).
 *
 * Failure modes: rejects with the underlying socket error if no port can be
 * bound at all (e.g. loopback is down or the ephemeral range is exhausted).
 */
export function freePort(): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error('freePort: listener has no TCP address'));
        return;
      }
      const { port } = address;
      server.close((err) => (err ? reject(err) : resolve(port)));
    });
  });
}
