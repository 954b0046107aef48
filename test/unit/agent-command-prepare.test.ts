/**
 * An executor's `prepare`: called by the command processor once a command passed
 * every check and before it is journaled; its value reaches `execute`. For
 * rotation.apply it opens the sealed secrets and starts PostgreSQL's SCRAM verifier,
 * which the applier then uses — for exactly the password it applies. No database:
 * the apply executor gets fake appliers, and the verifier is checked by recomputing
 * it from its own salt.
 */
import { randomUUID } from 'node:crypto';
import t, { type Test } from 'tap';
import { sealTo } from '../../shared/crypto/sealed-box.js';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { signCommand, type AgentToHub, type CommandEnvelope } from '../../shared/protocol/agent-messages.js';
import type { TargetSpec } from '../../shared/protocol/rotation-commands.js';
import type { Applier, ApplyRequest } from '../../agent/appliers/applier.js';
import { PasswordDerivation } from '../../agent/appliers/password-derivation.js';
import type { WarmSocket } from '../../agent/appliers/postgres-warm-socket.js';
import { parseScramVerifier, scramSha256Verifier } from '../../agent/appliers/postgres-scram-verifier.js';
import { createApplyExecutor } from '../../agent/commands/apply-command.js';
import type { CommandExecutor, ExecutorRegistry } from '../../agent/commands/command-executor.js';
import type { RotationExecutorDeps } from '../../agent/commands/rotation-context.js';
import { CommandProcessor } from '../../agent/hub-client/command-processor.js';
import type { CommandJournal } from '../../agent/journal/command-journal.js';
import { MemoryCommandJournal } from '../../agent/journal/memory-command-journal.js';
import { captureLogger, envelope, makeKeys, type TestKeys } from './agent-test-hub.js';

const CANARY = 'canary-prepare-7c2e-secret';

interface Harness {
  keys: TestKeys;
  processor: CommandProcessor;
  journal: CommandJournal;
  sent: AgentToHub[];
  lines: string[];
  /** Signs and hands `e` to the processor; returns its decision. */
  send(e: CommandEnvelope, signature?: string): ReturnType<CommandProcessor['handleCommand']>;
  /** The result message for `commandId`, once the queue has drained. */
  result(commandId: string): Promise<AgentToHub | undefined>;
}

function harness(t: Test, executors: (keys: TestKeys) => CommandExecutor[], journal: CommandJournal = new MemoryCommandJournal()): Harness {
  const keys = makeKeys();
  const { logger, lines } = captureLogger();
  const registry: ExecutorRegistry = new Map(executors(keys).map((e) => [e.kind, e]));
  const processor = new CommandProcessor({
    agentId: keys.identity.identityId,
    serverPublicKey: keys.identity.serverPublicKey,
    journal,
    executors: registry,
    logger,
    agentVersion: 'test',
  });
  const sent: AgentToHub[] = [];
  processor.attach((m) => {
    sent.push(m);
    return true;
  });
  t.teardown(() => processor.drain(5000));
  return {
    keys,
    processor,
    journal,
    sent,
    lines,
    send: (e, signature) => processor.handleCommand(e, signature ?? signCommand(keys.serverPrivateKey, e)),
    async result(commandId) {
      t.ok(await processor.drain(10_000), 'the queue drained');
      return sent.find((m) => m.type === 'result' && m.commandId === commandId);
    },
  };
}

/** A probe-like executor that records what the processor does with it, in order, into `events`. */
function spyExecutor(events: string[], options: { prepareThrows?: boolean } = {}): CommandExecutor<{ parsed: true }, string> {
  return {
    kind: 'agent.probe',
    idempotent: true,
    checkPayload(payload) {
      events.push('checkPayload');
      if (payload['bad'] === true) throw new SikkerError('ERR_VALIDATION', 'agent.probe payload is invalid at bad');
      return { parsed: true };
    },
    prepare(e, payload) {
      events.push(`prepare ${payload.parsed}`);
      if (options.prepareThrows === true) throw new SikkerError('ERR_INTERNAL', 'prepare broke its contract');
      return `prepared ${e.commandId}`;
    },
    async execute({ envelope: e, prepared }) {
      events.push(`execute ${prepared === `prepared ${e.commandId}` ? 'with its prepared value' : String(prepared)}`);
      return { ok: true };
    },
  };
}

/** Journal wrapper that records when `recordAccepted` runs, or throws there. */
function recordingJournal(events: string[], fail = false): CommandJournal {
  const inner = new MemoryCommandJournal();
  return {
    get highestGeneration() {
      return inner.highestGeneration;
    },
    get: (commandId) => inner.get(commandId),
    recordAccepted(e, signature) {
      events.push('journal');
      if (fail) throw new SikkerError('ERR_AGENT_STATE', 'disk full');
      inner.recordAccepted(e, signature);
    },
    recordFinal(result) {
      events.push('journal final');
      inner.recordFinal(result);
    },
    acknowledge: (commandId) => inner.acknowledge(commandId),
    unacknowledgedResults: (limit) => inner.unacknowledgedResults(limit),
    inProgress: () => inner.inProgress(),
  };
}

t.test('prepare – after every check, before the journal write; execute gets its value', async (t) => {
  const events: string[] = [];
  const h = harness(t, () => [spyExecutor(events)], recordingJournal(events));
  h.processor.attach((m) => {
    events.push(`send ${m.type}`);
    h.sent.push(m);
    return true;
  });
  const e = envelope(h.keys.identity.identityId);
  t.same(h.send(e), { action: 'accepted' });
  t.match(await h.result(e.commandId), { outcome: 'succeeded' });
  // accepted only once journaled; the result sent first and journaled right after (command-processor.ts #finish)
  t.same(events, ['checkPayload', 'prepare true', 'journal', 'send accepted', 'execute with its prepared value', 'send result', 'journal final']);
});

t.test('prepare – not called for a command that is refused or already known', async (t) => {
  const events: string[] = [];
  const h = harness(t, () => [spyExecutor(events)]);
  const id = h.keys.identity.identityId;
  const good = envelope(id);
  h.send(good);
  await h.result(good.commandId);
  events.length = 0;
  const refused: [string, ReturnType<Harness['send']>][] = [
    ['bad signature', h.send(envelope(id), signCommand(h.keys.serverPrivateKey, envelope(id)))],
    ['another agent', h.send(envelope(randomUUID()))],
    ['expired', h.send(envelope(id, { expiresAt: Date.now() - 1000 }))],
    ['stale', h.send(envelope(id, { generation: 1 }))],
    ['bad payload', h.send(envelope(id, { payload: { bad: true } }))],
    ['duplicate', h.send(good)],
  ];
  for (const [what, decision] of refused) t.not(decision.action, 'accepted', what);
  t.same(events, ['checkPayload'], 'only the bad payload got as far as checkPayload; nothing was prepared or executed');
});

t.test('prepare – one that throws anyway: the command runs unprepared and the code is logged', async (t) => {
  const events: string[] = [];
  const h = harness(t, () => [spyExecutor(events, { prepareThrows: true })]);
  const e = envelope(h.keys.identity.identityId);
  t.same(h.send(e), { action: 'accepted' });
  t.match(await h.result(e.commandId), { outcome: 'succeeded' });
  t.same(events, ['checkPayload', 'prepare true', 'execute undefined']);
  t.ok(h.lines.some((l) => l.includes('preparing the command failed') && l.includes('"code":"ERR_INTERNAL"')), 'logged with its code');
});

t.test('prepare – a command resumed after a restart is executed without a prepared value', async (t) => {
  const events: string[] = [];
  const journal = new MemoryCommandJournal();
  const h = harness(t, () => [spyExecutor(events)], journal);
  const e = envelope(h.keys.identity.identityId);
  journal.recordAccepted(e, signCommand(h.keys.serverPrivateKey, e));
  h.processor.resumeInterrupted();
  t.match(await h.result(e.commandId), { outcome: 'succeeded' });
  t.same(events, ['execute undefined']);
});

// --- rotation.apply -------------------------------------------------------------------------------

/** A stand-in for the verify login's early connection: records where it was opened and how often it was closed. */
interface FakeWarm {
  at: string;
  closed: number;
}

interface ApplyHarness extends Harness {
  /** Every ApplyRequest the fake applier got, in order. */
  applies: ApplyRequest[];
  /** Appliers the factory built. */
  built: () => number;
  /** Every early connection the executor opened (deps.openWarmSocket), in order. */
  warms: FakeWarm[];
}

/** The real apply executor; the applier is a fake that refuses `refuse` at verify and records every apply. */
function applyHarness(t: Test, options: { refuse?: string; journal?: CommandJournal; firstApplyWaitsFor?: Promise<void> } = {}): ApplyHarness {
  const warms: FakeWarm[] = [];
  const applies: ApplyRequest[] = [];
  let built = 0;
  const fake: Applier = {
    engine: 'postgres',
    preflight: () => Promise.reject(new Error('not used')),
    async apply(req) {
      applies.push(req);
      if (applies.length === 1) await options.firstApplyWaitsFor;
      return { strategy: req.strategy, oldPasswordRetained: false, unchanged: false, persisted: true };
    },
    async verify(req) {
      return { outcome: req.password === options.refuse ? 'refused' : 'ok' };
    },
    revoke: () => Promise.reject(new Error('not used')),
    terminateSessions: () => Promise.reject(new Error('not used')),
    close: async () => undefined,
  };
  const h = harness(t, (keys) => {
    const deps: RotationExecutorDeps = {
      agentId: keys.identity.identityId,
      boxPrivateKey: keys.identity.boxPrivateKey,
      adminConnections: new Map([['admin', { url: 'postgres://admin:x@127.0.0.1:1/postgres' }]]),
      createApplier: async () => {
        built += 1;
        return fake;
      },
      openWarmSocket(host, port) {
        const warm: FakeWarm = { at: `${host}:${port}`, closed: 0 };
        warms.push(warm);
        return { take: () => null, close: () => void (warm.closed += 1), fake: warm } as unknown as WarmSocket;
      },
    };
    return [createApplyExecutor(deps)];
  }, options.journal);
  return { ...h, applies, built: () => built, warms };
}

/** The FakeWarm behind what an ApplyRequest carried as `warm`. */
function fakeOf(warm: ApplyRequest['warm']): FakeWarm | undefined {
  return (warm as unknown as { fake?: FakeWarm } | null | undefined)?.fake;
}

function target(engine: TargetSpec['engine'] = 'postgres', mode: 'admin' | 'self' = 'admin'): TargetSpec {
  return { engine, host: '127.0.0.1', port: 5432, user: 'app', tls: { mode: 'disable' }, privilege: mode === 'admin' ? { mode: 'admin', adminConnection: 'admin' } : { mode: 'self' } };
}

function applyCommand(keys: TestKeys, secrets: unknown, options: { target?: TargetSpec; sealFor?: string } = {}): CommandEnvelope {
  const commandId = randomUUID();
  const sealed = sealTo(keys.boxPublicKey, Buffer.from(JSON.stringify(secrets)), { commandId: options.sealFor ?? commandId, agentId: keys.identity.identityId }).toString('base64');
  const payload = { runId: randomUUID(), attempt: 1, target: options.target ?? target(), user: 'app', strategy: 'replace' };
  return envelope(keys.identity.identityId, { commandId, kind: 'rotation.apply', payload, sealed });
}

/** True when `verifier` is a SCRAM-SHA-256 verifier of `password` (recomputed from its own salt). */
async function isVerifierOf(verifier: string, password: string): Promise<boolean> {
  const parsed = parseScramVerifier(verifier);
  if (parsed === undefined) return false;
  return (await scramSha256Verifier(password, { salt: parsed.salt, iterations: parsed.iterations })) === verifier;
}

t.test('rotation.apply – the applier gets the verifier started at acceptance, for exactly the new password', async (t) => {
  const h = applyHarness(t);
  const newPassword = `${CANARY}-new`;
  const e = applyCommand(h.keys, { newPassword });
  t.same(h.send(e), { action: 'accepted' });
  t.match(await h.result(e.commandId), { outcome: 'succeeded', result: { verified: true } });
  const [req] = h.applies;
  t.ok(req?.derived instanceof PasswordDerivation, 'the apply request carries the derivation');
  const verifier = req?.derived?.scramCredential(newPassword)?.then((c) => c.verifier);
  t.ok(verifier !== undefined, 'handed out for the new password');
  t.ok(await isVerifierOf((await verifier) ?? '', newPassword), 'a valid SCRAM-SHA-256 verifier of it');
  t.equal(req?.derived?.scramCredential(`${CANARY}-other`)?.then((c) => c.verifier), undefined, 'nothing for any other password');
  t.notOk(JSON.stringify(req?.derived).includes(CANARY), 'the derivation does not serialise its password');
  t.notOk(h.lines.some((l) => l.includes(CANARY)), 'no password in any log line');
});

t.test('rotation.apply – a PostgreSQL admin apply gets the verify connection opened at acceptance, closed when the command ends', async (t) => {
  const h = applyHarness(t);
  const e = applyCommand(h.keys, { newPassword: `${CANARY}-new` });
  t.same(h.send(e), { action: 'accepted' });
  t.same(h.warms.map((w) => w.at), ['127.0.0.1:5432'], 'opened when accepted, to the target');
  t.match(await h.result(e.commandId), { outcome: 'succeeded' });
  t.equal(fakeOf(h.applies[0]?.warm), h.warms[0], 'the apply request carries it');
  t.equal(h.warms[0]?.closed, 1, 'closed once the command ended (a no-op for one the applier took)');
  const self = applyCommand(h.keys, { newPassword: 'pw-self', currentPassword: 'pw-old' }, { target: target('postgres', 'self') });
  const redis = applyCommand(h.keys, { newPassword: 'pw-redis' }, { target: { ...target('redis'), redisPasswordMode: 'acl' } });
  for (const other of [self, redis]) {
    h.send(other);
    t.match(await h.result(other.commandId), { outcome: 'succeeded' });
  }
  t.equal(h.warms.length, 1, 'none for a self-rotation (it logs in as the user to apply) or another engine');
  t.same(h.applies.slice(1).map((r) => r.warm), [null, null]);
});

t.test('rotation.apply – a command queued behind another gets no early connection (the applier opens it when it runs)', async (t) => {
  let release = (): void => undefined;
  const h = applyHarness(t, { firstApplyWaitsFor: new Promise<void>((resolve) => (release = resolve)) });
  const first = applyCommand(h.keys, { newPassword: 'pw-first' });
  const queued = applyCommand(h.keys, { newPassword: 'pw-queued' });
  t.same(h.send(first), { action: 'accepted' });
  t.same(h.send(queued), { action: 'accepted' }, 'accepted while the first one runs');
  t.equal(h.warms.length, 1, 'only the command that ran at once opened one');
  release();
  t.match(await h.result(queued.commandId), { outcome: 'succeeded' });
  t.same(h.applies.map((r) => r.warm === null), [false, true]);
});

t.test('rotation.apply – the restore after a refused verify derives its own verifier', async (t) => {
  const newPassword = `${CANARY}-new`;
  const restorePassword = `${CANARY}-old`;
  const h = applyHarness(t, { refuse: newPassword });
  const e = applyCommand(h.keys, { newPassword, restorePassword });
  h.send(e);
  t.match(await h.result(e.commandId), { outcome: 'failed', error: { code: 'ERR_ROTATION_VERIFY_FAILED' } });
  t.same(h.applies.map((r) => r.newPassword), [newPassword, restorePassword], 'apply, then the restore');
  t.ok(h.applies[0]?.derived?.scramCredential(newPassword)?.then((c) => c.verifier), 'the first apply had the prepared verifier');
  t.equal(h.applies[1]?.derived, undefined, 'the restore had none (the applier computes it)');
  t.equal(h.applies[1]?.warm, undefined, 'nor an early connection (the applier opens its own)');
  t.notOk(h.lines.some((l) => l.includes(CANARY)), 'no password in any log line');
});

t.test('rotation.apply – other engines get no derivation; a resumed command derives in execute', async (t) => {
  const h = applyHarness(t);
  const redis = applyCommand(h.keys, { newPassword: 'pw-redis' }, { target: { ...target('redis'), redisPasswordMode: 'acl' } });
  h.send(redis);
  t.match(await h.result(redis.commandId), { outcome: 'succeeded' });
  t.equal(h.applies[0]?.derived, undefined, 'Redis: nothing to derive');
  const resumed = applyCommand(h.keys, { newPassword: 'pw-resumed' });
  h.journal.recordAccepted(resumed, signCommand(h.keys.serverPrivateKey, resumed));
  h.processor.resumeInterrupted();
  t.match(await h.result(resumed.commandId), { outcome: 'succeeded' });
  t.ok(await isVerifierOf((await h.applies[1]?.derived?.scramCredential('pw-resumed')?.then((c) => c.verifier)) ?? '', 'pw-resumed'), 'resumed: derived in execute, for its password');
});

t.test('rotation.apply – a secret that cannot be opened at acceptance fails the command with the same code as unprepared', async (t) => {
  const h = applyHarness(t);
  const cases: [string, (keys: TestKeys) => CommandEnvelope, string][] = [
    ['sealed for another command', (k) => applyCommand(k, { newPassword: CANARY }, { sealFor: randomUUID() }), 'ERR_CRYPTO_DECRYPT'],
    ['malformed secrets', (k) => applyCommand(k, { newPassword: CANARY, extra: CANARY }), 'ERR_VALIDATION'],
    ['self mode without the current password', (k) => applyCommand(k, { newPassword: CANARY }, { target: target('postgres', 'self') }), 'ERR_VALIDATION'],
  ];
  for (const [what, make, code] of cases) {
    const prepared = make(h.keys);
    t.same(h.send(prepared), { action: 'accepted' }, `${what}: accepted (the checks passed)`);
    t.match(await h.result(prepared.commandId), { outcome: 'failed', error: { code } }, `${what}: failed with ${code}`);
    const resumed = make(h.keys);
    h.journal.recordAccepted(resumed, signCommand(h.keys.serverPrivateKey, resumed));
    h.processor.resumeInterrupted();
    const unprepared = await h.result(resumed.commandId);
    const preparedResult = h.sent.find((m) => m.type === 'result' && m.commandId === prepared.commandId);
    t.same(unprepared?.type === 'result' ? unprepared.error : null, preparedResult?.type === 'result' ? preparedResult.error : undefined, `${what}: the same error as without prepare`);
  }
  t.equal(h.built(), 0, 'no applier was built');
  t.notOk([...h.lines, JSON.stringify(h.sent)].some((l) => l.includes(CANARY)), 'no password in a log line or message');
});

t.test('rotation.apply – the journal write fails after prepare: refused, nothing touched, no unhandled rejection', async (t) => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  t.teardown(() => void process.off('unhandledRejection', onUnhandled));
  const events: string[] = [];
  const h = applyHarness(t, { journal: recordingJournal(events, true) });
  const e = applyCommand(h.keys, { newPassword: CANARY });
  t.same(h.send(e), { action: 'rejected', code: 'ERR_AGENT_STATE' });
  t.same(events, ['journal']);
  await new Promise((resolve) => setTimeout(resolve, 200)); // the derivation runs out
  t.equal(h.built(), 0, 'no applier was built');
  t.same(h.applies, [], 'nothing applied');
  t.same(h.sent.map((m) => m.type), ['rejected']);
  t.same(h.warms.map((w) => w.closed), [1], 'the connection opened at acceptance was closed (executor.discard)');
  t.same(unhandled, []);
});

t.test('password derivation – a failed derivation rejects only for whoever awaits it', async (t) => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  t.teardown(() => void process.off('unhandledRejection', onUnhandled));
  // not a string: the verifier's PBKDF2 input cannot be built, so the derivation rejects
  const broken = undefined as unknown as string;
  const dropped = PasswordDerivation.start('postgres', broken);
  const awaited = PasswordDerivation.start('postgres', broken);
  t.ok(dropped !== undefined && awaited !== undefined, 'started');
  await t.rejects(async () => awaited?.scramCredential(broken)?.then((c) => c.verifier), 'awaiting it rejects');
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.same(unhandled, [], 'the dropped one rejected without an unhandled rejection');
  t.equal(PasswordDerivation.start('mysql', 'pw'), undefined, 'nothing to derive for MySQL');
});
