/**
 * Database drivers' own debug output, switched off for the daemon.
 *
 * ioredis logs every command it writes, arguments included, through the `debug` package
 * when DEBUG names it (`DEBUG=ioredis:*`, `DEBUG=*`): `AUTH user <password>` and
 * `CONFIG SET requirepass <password>` would reach the service's journal in plaintext.
 * `debug` reads DEBUG once, when it is first loaded, so the variable is removed before
 * any driver loads; the agent's own logging (pino, with redaction) is unaffected.
 * MongoDB's and tedious's loggers are switched off where those clients are built.
 *
 * Returns the value removed (undefined: there was none), so the caller can say so.
 */
export function dropDriverDebug(env: NodeJS.ProcessEnv): string | undefined {
  const value = env['DEBUG'];
  delete env['DEBUG'];
  return value;
}
