/**
 * One SQL Server connection, promise-shaped, over tedious — the driver inside
 * `mssql`, loaded through mssql's own dependency so it is exactly the version the
 * lockfile pins. The applier uses it directly rather than mssql's pool: a pool
 * opens a throwaway probe login on `connect()` (two logins per verify), validates
 * connections with extra queries, and hides which session a request runs on,
 * while the applier needs one login per proof and a known session for KILL.
 *
 * What this module guarantees:
 * - `query` sends sp_executesql (an RPC) with every value bound as a parameter;
 *   `batch` sends a plain SQL batch with nothing bound (for statements SQL Server
 *   cannot parameterise; the caller has escaped them).
 * - Requests on one session run one at a time, in call order.
 * - Errors are {@link MssqlDriverError}s holding SQL Server's error numbers and a
 *   message written here: never the server's or tedious's text, which can quote
 *   the statement (and with it a password).
 * - With TLS on, a server that does not offer encryption is refused before the
 *   login is sent. tedious itself (19.x) silently carries on in the clear when the
 *   PRELOGIN answer says ENCRYPT_NOT_SUP or ENCRYPT_OFF, even with `encrypt: true`.
 */
import { createRequire } from 'node:module';
import type * as Tedious from 'tedious';
import type { TargetTls } from './target.js';

const fromHere = createRequire(import.meta.url);
const tedious = createRequire(fromHere.resolve('mssql'))('tedious') as typeof Tedious;

/** sysname: every string the applier binds is a principal name. */
const SYSNAME_LENGTH = 128;

export type Cell = string | number | boolean | null;
export type Row = Record<string, Cell>;

export interface SessionConfig {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string | undefined;
  tls: TargetTls;
  connectTimeoutMs: number;
  statementTimeoutMs: number;
}

/**
 * A failure of the connection or of one request. `code` is the first SQL Server
 * error number (`18456`, `15151`), a Node errno (`ECONNREFUSED`), a TLS error
 * code, or a tedious code (`ETIMEOUT`, `EINVALIDSTATE`); `numbers` lists every
 * server error number of the request or login, in order.
 */
export class MssqlDriverError extends Error {
  constructor(
    readonly code: string,
    readonly numbers: readonly number[],
    readonly phase: 'connect' | 'login' | 'request',
    /** The server answered with ERROR tokens: the connection is still usable. */
    readonly serverAnswered: boolean,
  ) {
    super(`SQL Server ${phase} failed (${code}); the server's message is withheld because it may quote the statement`);
    this.name = 'MssqlDriverError';
  }
}

export class MssqlSession {
  private queue: Promise<unknown> = Promise.resolve();
  private numbers: number[] = [];
  private endListeners: (() => void)[] = [];
  private ended = false;

  private constructor(private readonly connection: Tedious.Connection) {
    connection.on('errorMessage', (token) => this.numbers.push(token.number));
    // a broken idle connection; the next request reports it
    connection.on('error', () => undefined);
    connection.on('end', () => {
      this.ended = true;
      for (const listener of this.endListeners.splice(0)) listener();
    });
  }

  /** Connects and logs in. Throws MssqlDriverError (phase `connect` or `login`). */
  static async open(config: SessionConfig): Promise<MssqlSession> {
    const connection = new tedious.Connection(connectionConfig(config));
    const session = new MssqlSession(connection);
    if (config.tls.mode !== 'disable' && !refuseDowngrade(connection)) {
      throw new MssqlDriverError('ETLSGUARD', [], 'connect', false);
    }
    await new Promise<void>((resolve, reject) => {
      connection.connect((err) => (err === undefined ? resolve() : reject(session.translate(err, 'login'))));
    });
    return session;
  }

  /** Runs `sql` through sp_executesql; strings bind as nvarchar(128), numbers as int. */
  query(sql: string, params: Record<string, string | number> = {}): Promise<Row[]> {
    return this.run(sql, params, false);
  }

  /** Runs `sql` as a plain SQL batch (nothing bound). */
  batch(sql: string): Promise<Row[]> {
    return this.run(sql, {}, true);
  }

  /** Calls `listener` once, when the connection ends for any reason. */
  onEnd(listener: () => void): void {
    if (this.ended) listener();
    else this.endListeners.push(listener);
  }

  close(): Promise<void> {
    if (this.ended) return Promise.resolve();
    return new Promise((resolve) => {
      this.onEnd(resolve);
      this.connection.close();
    });
  }

  private run(sql: string, params: Record<string, string | number>, batch: boolean): Promise<Row[]> {
    const next = this.queue.then(() => this.request(sql, params, batch));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private request(sql: string, params: Record<string, string | number>, batch: boolean): Promise<Row[]> {
    return new Promise((resolve, reject) => {
      const rows: Row[] = [];
      this.numbers = [];
      const request = new tedious.Request(sql, (err) => (err == null ? resolve(rows) : reject(this.translate(err, 'request'))));
      for (const [name, value] of Object.entries(params)) {
        if (typeof value === 'number') request.addParameter(name, tedious.TYPES.Int, value);
        else request.addParameter(name, tedious.TYPES.NVarChar, value, { length: SYSNAME_LENGTH });
      }
      request.on('row', (columns: { value: unknown; metadata: { colName: string } }[]) => {
        rows.push(Object.fromEntries(columns.map((c) => [c.metadata.colName, toCell(c.value)])));
      });
      try {
        if (batch) this.connection.execSqlBatch(request);
        else this.connection.execSql(request);
      } catch (err) {
        // tedious throws synchronously when the connection is not logged in (e.g. after KILL)
        reject(this.translate(err, 'request'));
      }
    });
  }

  private translate(err: unknown, phase: 'login' | 'request'): MssqlDriverError {
    if (err instanceof MssqlDriverError) return err;
    const numbers = [...this.numbers];
    // several ERROR tokens reach the callback as an AggregateError, without a code
    const code = tokenOf(err, 'code') ?? 'EDRIVER';
    const network = code === 'ESOCKET' || code === 'ETIMEOUT';
    if (numbers.length > 0 && !network) return new MssqlDriverError(String(numbers[0]), numbers, phase, phase === 'request');
    // socket and TLS failures: tedious wraps the Node error as `cause`
    const inner = tokenOf((err as { cause?: unknown } | null)?.cause, 'code');
    return new MssqlDriverError(inner ?? code, numbers, network && phase === 'login' ? 'connect' : phase, false);
  }
}

function connectionConfig(config: SessionConfig): Tedious.ConnectionConfiguration {
  const { tls } = config;
  return {
    server: config.host,
    authentication: { type: 'default', options: { userName: config.user, password: config.password } },
    options: {
      port: config.port,
      ...(config.database === undefined ? {} : { database: config.database }),
      appName: 'sikker-agent',
      connectTimeout: config.connectTimeoutMs,
      requestTimeout: config.statementTimeoutMs,
      encrypt: tls.mode !== 'disable',
      trustServerCertificate: tls.mode === 'require',
      ...(tls.mode === 'verify-full' ? { serverName: tls.serverName ?? config.host } : {}),
      ...(tls.mode === 'verify-full' && tls.caPem !== undefined ? { cryptoCredentialsDetails: { ca: tls.caPem } } : {}),
      // tedious's own fallback would log in to the login's default database instead of the one asked for
      fallbackToDefaultDb: false,
    },
  };
}

/** The private step of tedious's login sequence that starts TLS after PRELOGIN. */
interface TlsStep {
  performTlsNegotiation?: (prelogin: { encryptionString?: string }, signal: AbortSignal) => Promise<void>;
}

/**
 * Makes the connection fail, before LOGIN7 is sent, when the server's PRELOGIN
 * answer does not turn encryption on. Returns false when this tedious build has
 * no such step to guard (the caller then refuses to connect rather than risk it).
 */
function refuseDowngrade(connection: Tedious.Connection): boolean {
  const internals = connection as unknown as TlsStep;
  const negotiate = internals.performTlsNegotiation;
  if (typeof negotiate !== 'function') return false;
  internals.performTlsNegotiation = function guarded(this: unknown, prelogin, signal) {
    if (prelogin.encryptionString !== 'ON' && prelogin.encryptionString !== 'REQ') {
      return Promise.reject(new MssqlDriverError('ENOTLS', [], 'connect', false));
    }
    return negotiate.call(this, prelogin, signal);
  };
  return true;
}

function tokenOf(value: unknown, key: string): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const found = (value as Record<string, unknown>)[key];
  return typeof found === 'string' && /^[A-Za-z0-9_]{1,64}$/.test(found) ? found : undefined;
}

function toCell(value: unknown): Cell {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') return value;
  return String(value);
}
