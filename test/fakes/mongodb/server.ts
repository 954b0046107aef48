/**
 * A MongoDB test server that speaks enough of the real wire protocol for the
 * real `mongodb` driver: the OP_QUERY `ismaster` handshake and OP_MSG after
 * it, SCRAM-SHA-256 (speculative and explicit), user management with
 * mongod's privilege rules, logical sessions with cursors, and mongod's error
 * codes. It presents itself as a standalone 7.0 with authentication on.
 * Users and passwords live in memory; the server logs nothing, so no password
 * reaches any output.
 */
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { Binary, type Document } from 'bson';
import { AUTH_COMMANDS } from './commands-auth.js';
import { DATA_COMMANDS } from './commands-data.js';
import { SESSION_COMMANDS } from './commands-sessions.js';
import { USER_COMMANDS } from './commands-users.js';
import type { ClientState, CommandSpec, ServerState } from './context.js';
import { CommandError } from './errors.js';
import type { Privilege, RoleName } from './roles.js';
import { DEFAULT_ITERATIONS } from './scram.js';
import { SessionRegistry } from './sessions.js';
import { UserStore } from './users.js';
import { FrameReader, encodeReply, parseRequest, type WireRequest } from './wire.js';

export interface FakeMongodbOptions {
  /** SCRAM-SHA-256 iteration count for credentials (mongod's default: 15000; the driver refuses < 4096). */
  scramIterations?: number;
  /** What buildInfo reports. */
  version?: string;
}

export interface FakeMongodb {
  port: number;
  /** `mongodb://127.0.0.1:<port>/?directConnection=true`, without credentials. */
  url: string;
  /** Adds a user directly (no command, no privilege check). A role given as a string lives in `db`. */
  addUser(db: string, user: string, password: string, roles: (string | RoleName)[]): void;
  /** Adds a custom role directly, e.g. one granting `changeOwnPassword`. */
  addRole(db: string, role: string, privileges: Privilege[], roles?: RoleName[]): void;
  /** Open client connections right now. */
  connectionCount(): number;
  /** Closes the listener and every connection. Idempotent. */
  stop(): Promise<void>;
}

const COMMANDS: Record<string, CommandSpec> = { ...AUTH_COMMANDS, ...USER_COMMANDS, ...SESSION_COMMANDS, ...DATA_COMMANDS };

/** Runs one command; every failure becomes mongod's `{ ok: 0, errmsg, code, codeName }`. */
function execute(request: WireRequest, client: ClientState, state: ServerState): Document {
  const name = Object.keys(request.body)[0] ?? '';
  try {
    const spec = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
    if (spec === undefined) throw new CommandError('CommandNotFound', `no such command: '${name}'`);
    if (spec.requiresAuth && client.user === undefined) throw new CommandError('Unauthorized', `Command ${name} requires authentication`);
    const lsid = request.body['lsid'] as Document | undefined;
    const sessionKey = spec.attachesSession !== false && client.user !== undefined && lsid?.['id'] instanceof Binary
      ? state.sessions.touch(lsid['id'], client.user)
      : undefined;
    return spec.run({ name, db: request.db, body: request.body, client, server: state, sessionKey });
  } catch (err) {
    if (err instanceof CommandError) return err.reply();
    // a bug in the fake: answer like mongod's InternalError, and say nothing that could quote a command
    return new CommandError('InternalError', `the fake server failed to run ${name}`).reply();
  }
}

function serve(socket: Socket, client: ClientState, state: ServerState): void {
  const reader = new FrameReader();
  socket.on('data', (chunk: Buffer) => {
    try {
      for (const frame of reader.push(chunk)) {
        const request = parseRequest(frame);
        const reply = execute(request, client, state);
        if (!request.moreToCome && !socket.destroyed) socket.write(encodeReply(request, reply));
      }
    } catch {
      // an unparseable message (WireError, BSON error): mongod closes the connection too
      socket.destroy();
    }
  });
}

/** Starts a fake mongod on 127.0.0.1 with an ephemeral port. */
export async function start(options: FakeMongodbOptions = {}): Promise<FakeMongodb> {
  const iterations = options.scramIterations ?? DEFAULT_ITERATIONS;
  if (!Number.isInteger(iterations) || iterations < 4096) throw new RangeError('scramIterations must be an integer ≥ 4096');
  const state: ServerState = {
    users: new UserStore(iterations),
    sessions: new SessionRegistry(),
    collections: new Map(),
    version: options.version ?? '7.0.0',
  };
  const sockets = new Set<Socket>();
  let nextConnectionId = 1;
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {
      // the client went away mid-message; its socket closes and is forgotten
    });
    serve(socket, { connectionId: nextConnectionId++, user: undefined, conversation: undefined }, state);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  let stopped: Promise<void> | undefined;
  return {
    port,
    url: `mongodb://127.0.0.1:${port}/?directConnection=true`,
    addUser(db, user, password, roles) {
      state.users.create({ user, db }, password, roles.map((r) => (typeof r === 'string' ? { role: r, db } : r)));
    },
    addRole(db, role, privileges, roles = []) {
      state.users.createRole({ role, db, privileges, roles });
    },
    connectionCount: () => sockets.size,
    stop() {
      stopped ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      });
      return stopped;
    },
  };
}
