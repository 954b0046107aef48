/**
 * A TDS 7.4 test server that speaks just enough of SQL Server's protocol for the
 * mssql applier with the real driver (tedious): PRELOGIN without encryption,
 * LOGIN7 checked against stored logins and contained users, SQL batches and
 * sp_executesql RPCs for the statements in tsql.ts / queries.ts, result sets,
 * ERROR tokens with real numbers, ATTENTION, and sessions that KILL ends.
 *
 * It writes nothing to stdout, stderr or disk; passwords live in memory only.
 * Loopback only.
 */
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { Catalog, type ContainedUserOptions, type LoginOptions, type Session } from './catalog.js';
import { execute, type Outcome } from './execute.js';
import { parseLogin7, preloginResponse, SERVER_VERSION } from './handshake.js';
import { encodeMessage, MessageReader, PACKET, type Message } from './packets.js';
import { parseRpc, skipAllHeaders, SP_EXECUTESQL, type RpcCall } from './rpc.js';
import { SqlError } from './sql-error.js';
import { CUR_CMD, DONE_STATUS, TDS_7_4, TokenStream, type Value } from './tokens.js';
import { parseStatement } from './tsql.js';

/** What reached the server, without any text: enough to assert how statements travel. */
export interface StatementRecord {
  transport: 'batch' | 'rpc';
  kind: 'alter-password' | 'kill' | 'set-options' | 'query' | 'rejected';
}

export interface FakeTdsServer {
  port: number;
  addLogin(name: string, password: string, options?: LoginOptions): void;
  addContainedUser(database: string, name: string, password: string, options?: ContainedUserOptions): void;
  /** Live sessions that authenticated as `name`. */
  sessionCount(name: string): number;
  /** LOGIN7 messages received (successful or not). */
  readonly loginAttempts: number;
  readonly statements: readonly StatementRecord[];
  stop(): Promise<void>;
}

export async function start(): Promise<FakeTdsServer> {
  const catalog = new Catalog();
  const sockets = new Set<Socket>();
  const statements: StatementRecord[] = [];
  let loginAttempts = 0;
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    new Connection(socket, catalog, statements, () => loginAttempts++);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    addLogin: (name, password, options) => catalog.addLogin(name, password, options),
    addContainedUser: (database, name, password, options) => catalog.addContainedUser(database, name, password, options),
    sessionCount: (name) => [...catalog.sessions.values()].filter((s) => principal(s).toLowerCase() === name.toLowerCase()).length,
    get loginAttempts() {
      return loginAttempts;
    },
    statements,
    stop: () => new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    }),
  };
}

function principal(session: Session): string {
  return session.identity.kind === 'login' ? session.identity.login.name : session.identity.user.name;
}

class Connection {
  private readonly reader = new MessageReader();
  private packetSize = 4096;
  private session: Session | undefined;
  private state: 'prelogin' | 'login' | 'ready' = 'prelogin';

  constructor(
    private readonly socket: Socket,
    private readonly catalog: Catalog,
    private readonly statements: StatementRecord[],
    private readonly countLogin: () => void,
  ) {
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const message of this.reader.push(chunk)) this.handle(message);
      } catch {
        // a malformed message ends the connection, as a real server does
        socket.destroy();
      }
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      if (this.session !== undefined) catalog.closeSession(this.session.spid);
    });
  }

  private handle(message: Message): void {
    if (this.state === 'prelogin' && message.type === PACKET.PRELOGIN) {
      this.state = 'login';
      this.send(preloginResponse());
    } else if (this.state === 'login' && message.type === PACKET.LOGIN7) {
      this.login(message.payload);
    } else if (this.state === 'ready' && message.type === PACKET.SQL_BATCH) {
      const sql = message.payload.subarray(skipAllHeaders(message.payload)).toString('ucs2');
      this.respond('batch', () => {
        const statement = parseStatement(sql);
        return { statement, outcome: execute(this.catalog, this.requireSession(), statement, {}) };
      });
    } else if (this.state === 'ready' && message.type === PACKET.RPC_REQUEST) {
      const call = parseRpc(message.payload);
      this.respond('rpc', () => this.executeSql(call));
    } else if (this.state === 'ready' && message.type === PACKET.ATTENTION) {
      this.send(new TokenStream().done('DONE', DONE_STATUS.ATTN, CUR_CMD.NONE).toBuffer());
    } else {
      throw new Error(`unexpected TDS message 0x${message.type.toString(16)} in state ${this.state}`);
    }
  }

  private login(payload: Buffer): void {
    this.countLogin();
    const login = parseLogin7(payload);
    const tokens = new TokenStream();
    const identity = login.tdsVersion === TDS_7_4
      ? this.catalog.authenticate(login.userName, login.password, login.database)
      : [new SqlError(4002, 'The incoming tabular data stream (TDS) protocol stream is incorrect.', 20)];
    if (Array.isArray(identity)) {
      for (const error of identity) tokens.error(error.number, error.message, { severity: error.severity });
      this.send(tokens.done('DONE', DONE_STATUS.ERROR, CUR_CMD.NONE).toBuffer());
      this.socket.end();
      return;
    }
    const database = login.database === '' ? (identity.kind === 'user' ? identity.user.database : 'master') : login.database;
    this.packetSize = Math.min(Math.max(login.packetSize, 512), 32767);
    this.session = this.catalog.openSession(identity, database, () => this.socket.destroy());
    this.state = 'ready';
    tokens.envChange(1, database, 'master').collation().envChange(2, 'us_english', '')
      .loginAck('Microsoft SQL Server', SERVER_VERSION)
      .envChange(4, String(this.packetSize), '4096')
      .done('DONE', DONE_STATUS.FINAL, CUR_CMD.NONE);
    this.send(tokens.toBuffer());
  }

  /** sp_executesql: @statement, @params (declarations), then the declared values. */
  private executeSql(call: RpcCall): { statement: ReturnType<typeof parseStatement>; outcome: Outcome } {
    if (call.procId !== SP_EXECUTESQL) throw new SqlError(2812, `Could not find stored procedure '${call.procName ?? call.procId}'.`);
    const [statementParam, declarations, ...values] = call.parameters;
    if (statementParam?.type !== 'nvarchar' || typeof statementParam.value !== 'string') {
      throw new SqlError(214, "Procedure expects parameter '@statement' of type 'ntext/nchar/nvarchar'.");
    }
    const declared = parseDeclarations(typeof declarations?.value === 'string' ? declarations.value : '');
    if (declared.length !== values.length || values.some((v, i) => v.name !== `@${declared[i]?.name}` || v.type !== declared[i]?.type)) {
      throw new SqlError(8178, 'The parameterized query expects parameters that were not supplied or do not match their declarations.');
    }
    const params: Record<string, Value> = Object.fromEntries(values.map((v) => [v.name.slice(1), v.value]));
    const statement = parseStatement(statementParam.value);
    return { statement, outcome: execute(this.catalog, this.requireSession(), statement, params) };
  }

  private respond(transport: 'batch' | 'rpc', run: () => { statement: ReturnType<typeof parseStatement>; outcome: Outcome }): void {
    const tokens = new TokenStream();
    const inner = transport === 'rpc' ? 'DONEINPROC' : 'DONE';
    let failed = false;
    try {
      const { statement, outcome } = run();
      this.statements.push({ transport, kind: statement.kind });
      if (outcome.kind === 'rows') {
        tokens.resultSet(outcome.result.columns, outcome.result.rows)
          .done(inner, DONE_STATUS.COUNT, CUR_CMD.SELECT, outcome.result.rows.length);
      } else if (transport === 'rpc') {
        tokens.done(inner, DONE_STATUS.FINAL, CUR_CMD.NONE);
      } else {
        tokens.done('DONE', DONE_STATUS.FINAL, CUR_CMD.NONE);
      }
    } catch (err) {
      if (!(err instanceof SqlError)) throw err;
      failed = true;
      this.statements.push({ transport, kind: 'rejected' });
      tokens.error(err.number, err.message, { severity: err.severity, ...(transport === 'rpc' ? { procName: '' } : {}) });
      if (transport === 'batch') tokens.done('DONE', DONE_STATUS.ERROR, CUR_CMD.NONE);
    }
    if (transport === 'rpc') tokens.returnStatus(0).done('DONEPROC', failed ? DONE_STATUS.ERROR : DONE_STATUS.FINAL, CUR_CMD.EXECUTE);
    if (!this.socket.destroyed) this.send(tokens.toBuffer());
  }

  private requireSession(): Session {
    if (this.session === undefined) throw new Error('no session');
    return this.session;
  }

  private send(payload: Buffer): void {
    this.socket.write(encodeMessage(PACKET.TABULAR_RESULT, payload, this.packetSize, this.session?.spid ?? 0));
  }
}

/** `@name nvarchar(128), @n int` → names and types; anything else is a syntax error. */
function parseDeclarations(text: string): { name: string; type: 'nvarchar' | 'int' }[] {
  if (text.trim() === '') return [];
  return text.split(',').map((part) => {
    const match = /^\s*@(\w+)\s+(nvarchar\((?:\d+|max)\)|int)\s*$/i.exec(part);
    if (match === null) throw new SqlError(102, `Incorrect syntax near '${part.trim()}'.`, 15);
    return { name: match[1] ?? '', type: (match[2] ?? '').toLowerCase() === 'int' ? 'int' : 'nvarchar' };
  });
}
