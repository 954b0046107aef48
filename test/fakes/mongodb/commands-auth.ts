/**
 * The handshake and authentication commands of the fake server: `hello`
 * (and its legacy spellings), SCRAM-SHA-256 `saslStart` / `saslContinue`
 * including the speculative first step the driver piggybacks on its first
 * `ismaster`, and the commands mongod answers without a login.
 */
import { Binary, type Document } from 'bson';
import { CommandError, authenticationFailed } from './errors.js';
import { bytesOf, type CommandContext, type CommandSpec } from './context.js';
import { ScramConversation } from './scram.js';
import { MAX_MESSAGE_BYTES } from './wire.js';

/** MongoDB 7.0's wire version; the 7.x driver needs 9 (4.4) or more. */
const MAX_WIRE_VERSION = 21;
const CONVERSATION_ID = 1;

function hello(ctx: CommandContext): Document {
  const legacy = ctx.name !== 'hello';
  const reply: Document = {
    helloOk: true,
    [legacy ? 'ismaster' : 'isWritablePrimary']: true,
    // no topologyVersion: the driver's monitor polls instead of streaming (awaitable hello)
    maxBsonObjectSize: 16 * 1024 * 1024,
    maxMessageSizeBytes: MAX_MESSAGE_BYTES,
    maxWriteBatchSize: 100_000,
    localTime: new Date(),
    logicalSessionTimeoutMinutes: 30,
    connectionId: ctx.client.connectionId,
    minWireVersion: 0,
    maxWireVersion: MAX_WIRE_VERSION,
    readOnly: false,
  };
  const mechs = supportedMechanisms(ctx, ctx.body['saslSupportedMechs']);
  if (mechs !== undefined) reply['saslSupportedMechs'] = mechs;
  const speculative = ctx.body['speculativeAuthenticate'];
  if (typeof speculative === 'object' && speculative !== null && ctx.client.user === undefined) {
    const spec = speculative as Document;
    try {
      if (typeof spec['db'] !== 'string') throw authenticationFailed();
      reply['speculativeAuthenticate'] = startConversation(ctx, spec, spec['db']);
    } catch (err) {
      // a failed speculative step is left out of the reply; the driver then runs saslStart itself
      if (!(err instanceof CommandError)) throw err;
    }
  }
  return { ...reply, ok: 1 };
}

/** `saslSupportedMechs: "db.user"` → the user's mechanisms; omitted for an unknown user, as mongod does. */
function supportedMechanisms(ctx: CommandContext, value: unknown): string[] | undefined {
  if (typeof value !== 'string' || !value.includes('.')) return undefined;
  const dot = value.indexOf('.');
  return ctx.server.users.find({ db: value.slice(0, dot), user: value.slice(dot + 1) })?.mechanisms;
}

function startConversation(ctx: CommandContext, body: Document, db: string): Document {
  // SCRAM-SHA-1 counts as enabled (a driver negotiating for an unknown user falls back to it),
  // but no user here holds a SCRAM-SHA-1 credential
  if (body['mechanism'] === 'SCRAM-SHA-1') throw authenticationFailed();
  if (body['mechanism'] !== 'SCRAM-SHA-256') {
    throw new CommandError('MechanismUnavailable', `Received authentication for mechanism ${String(body['mechanism'])} which is not enabled`);
  }
  const payload = bytesOf(body['payload']);
  if (payload === undefined) throw authenticationFailed();
  const scram = new ScramConversation((user) => ctx.server.users.find({ user, db })?.credential);
  const serverFirst = scram.start(payload);
  const options = body['options'] as Document | undefined;
  ctx.client.conversation = { scram, db, skipEmptyExchange: options?.['skipEmptyExchange'] === true };
  return { conversationId: CONVERSATION_ID, done: false, payload: new Binary(serverFirst) };
}

function saslStart(ctx: CommandContext): Document {
  ctx.client.conversation = undefined;
  return { ...startConversation(ctx, ctx.body, ctx.db), ok: 1 };
}

function saslContinue(ctx: CommandContext): Document {
  const conversation = ctx.client.conversation;
  if (conversation === undefined || conversation.db !== ctx.db || ctx.body['conversationId'] !== CONVERSATION_ID) {
    ctx.client.conversation = undefined;
    throw authenticationFailed();
  }
  if (conversation.pendingUser !== undefined) {
    // the empty last exchange of a client that did not ask for skipEmptyExchange
    ctx.client.conversation = undefined;
    ctx.client.user = { user: conversation.pendingUser, db: conversation.db };
    return { conversationId: CONVERSATION_ID, done: true, payload: new Binary(Buffer.alloc(0)), ok: 1 };
  }
  const payload = bytesOf(ctx.body['payload']);
  let result: { reply: Buffer; user: string };
  try {
    if (payload === undefined) throw authenticationFailed();
    result = conversation.scram.finish(payload);
  } catch (err) {
    ctx.client.conversation = undefined;
    throw err;
  }
  if (!conversation.skipEmptyExchange) {
    conversation.pendingUser = result.user;
    return { conversationId: CONVERSATION_ID, done: false, payload: new Binary(result.reply), ok: 1 };
  }
  ctx.client.conversation = undefined;
  ctx.client.user = { user: result.user, db: conversation.db };
  return { conversationId: CONVERSATION_ID, done: true, payload: new Binary(result.reply), ok: 1 };
}

function connectionStatus(ctx: CommandContext): Document {
  const user = ctx.client.user;
  const record = user === undefined ? undefined : ctx.server.users.find(user);
  const authInfo: Document = {
    authenticatedUsers: user === undefined ? [] : [{ user: user.user, db: user.db }],
    authenticatedUserRoles: record?.roles.map((r) => ({ role: r.role, db: r.db })) ?? [],
  };
  if (ctx.body['showPrivileges'] === true) authInfo['authenticatedUserPrivileges'] = user === undefined ? [] : ctx.server.users.privileges(user);
  return { authInfo, ok: 1 };
}

function buildInfo(ctx: CommandContext): Document {
  const versionArray = ctx.server.version.split('.').map(Number);
  return { version: ctx.server.version, gitVersion: 'sikkerkey-fake', versionArray: [...versionArray, 0], bits: 64, maxBsonObjectSize: 16 * 1024 * 1024, ok: 1 };
}

export const AUTH_COMMANDS: Record<string, CommandSpec> = {
  hello: { run: hello, requiresAuth: false },
  isMaster: { run: hello, requiresAuth: false },
  ismaster: { run: hello, requiresAuth: false },
  saslStart: { run: saslStart, requiresAuth: false },
  saslContinue: { run: saslContinue, requiresAuth: false },
  ping: { run: () => ({ ok: 1 }), requiresAuth: false },
  buildInfo: { run: buildInfo, requiresAuth: false },
  buildinfo: { run: buildInfo, requiresAuth: false },
  connectionStatus: { run: connectionStatus, requiresAuth: false },
};
