/**
 * `npm run demo`: a password rotation end to end, with real processes and the real CLI.
 * A control plane (shared PostgreSQL: a new database; shared Redis: a new key prefix) and
 * an enrolled `sikker-agent` rotate the password of a PostgreSQL role every few seconds.
 * The managed role lives on a private cluster that checks SCRAM passwords, because the
 * shared server trusts every local login. After each run the new password must log in and
 * the previous one must be refused. Exit 0 when every check passed, 1 otherwise; whatever
 * it created is removed in both cases and on Ctrl-C.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { cleanupRedisPrefix, createTestDatabase, SHARED_PG_ADMIN_URL, SHARED_REDIS_URL, uniqueRedisPrefix } from '../support/databases.js';
import { freePort } from '../support/free-port.js';
import { CLI_BIN, CONTROL_PLANE_BIN, REPO_ROOT, runProgram, startProgram, waitForHealthy, type RunningProcess } from '../support/processes.js';
import { startScramPostgres, type ScramPostgres } from '../support/scram-postgres.js';
import { ensureServices } from '../support/services.js';

const PROJECT = 'shop';
const TARGET = 'orders-db';
const SECRET = 'orders-db-password';
const APP_ROLE = 'demo_app';
const ROTATOR_ROLE = 'sikker_rotator';
const RUNS = 3;
const EVERY = '5s';
const RUN_TIMEOUT_MS = 20_000;
const AGENT_BIN = join(REPO_ROOT, 'dist', 'agent', 'sikker-agent.cjs');

/** A check that did not hold: reported as such, exit 1. */
class DemoCheckFailed extends Error {}

function check(ok: boolean, message: string): asserts ok {
  if (!ok) throw new DemoCheckFailed(message);
}

// ---- output ----------------------------------------------------------------
const style = (code: string) => (s: string): string => (process.stdout.isTTY ? `\x1b[${code}m${s}\x1b[0m` : s);
const bold = style('1');
const green = style('32');
const red = style('31');
let sectionNumber = 0;
const write = (text: string): void => void process.stdout.write(text);
const indent = (text: string, by: string): string => text.trimEnd().split('\n').map((l) => `${by}${l}`).join('\n');
const section = (title: string): void => write(`\n${bold(`── ${++sectionNumber}. ${title} ──`)}\n`);
const say = (text: string): void => write(`${indent(text, '  ')}\n`);
const echo = (command: string, note = ''): void => write(`  ${bold('$')} ${command}${note === '' ? '' : `   # ${note}`}\n`);
const output = (text: string): void => { if (text.trim() !== '') write(`${indent(text, '    ')}\n`); };
/** Passwords are never printed: only the first 8 hex digits of their SHA-256. */
const fingerprint = (password: string): string => `sha256:${createHash('sha256').update(password).digest('hex').slice(0, 8)}`;
const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

// ---- cleanup: everything created is registered here, undone in reverse order ----
const cleanups: Array<{ what: string; undo: () => Promise<string> }> = [];
const processes = new Map<string, RunningProcess>();
let cleaning: Promise<string[]> | undefined;
let interrupted = false;
/** Every password the demo saw: to prove none reached a log line, and to mask them in logs shown on failure. */
const passwords: string[] = [];
const mask = (text: string): string => passwords.reduce((t, p) => t.split(p).join(`<${fingerprint(p)}>`), text);

/**
 * Undoes every registered resource, newest first, once (later calls share the result);
 * returns what was done or failed. Resources registered while it runs (a signal arrived
 * mid-step) are undone too.
 */
function cleanUp(): Promise<string[]> {
  cleaning ??= (async () => {
    const lines: string[] = [];
    for (let next = cleanups.pop(); next !== undefined; next = cleanups.pop()) {
      const { what, undo } = next;
      // keep going: one failed cleanup must not leave the other resources behind
      const line = await undo().catch((err: unknown) => red(`${what}: cleanup failed: ${message(err)}`));
      if (line !== '') lines.push(line);
    }
    return lines;
  })();
  return cleaning;
}

async function stopProcess(name: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  const proc = processes.get(name);
  if (proc === undefined) return null;
  if (interrupted && proc.child.exitCode === null && proc.child.signalCode === null) {
    // Ctrl-C reached the whole process group: let it finish its own shutdown rather than send a second signal
    await new Promise((r) => { const t = setTimeout(r, 2000); proc.child.once('exit', () => { clearTimeout(t); r(undefined); }); });
  }
  const timer = setTimeout(() => void proc.kill('SIGKILL'), 10_000);
  const code = await proc.kill(signal);
  clearTimeout(timer);
  processes.delete(name);
  return code;
}

/** Starts a long-running program that cleanup stops; refused once a signal started the cleanup. */
function launch(name: string, bin: string, args: string[], env: Record<string, string>): void {
  if (interrupted) throw new Error(`interrupted: ${name} not started`);
  processes.set(name, startProgram(bin, args, env));
  cleanups.push({ what: name, undo: () => stopIfRunning(name) });
}

/** For cleanup: '' when the process was already stopped (and reported) by the demo. */
async function stopIfRunning(name: string): Promise<string> {
  return processes.has(name) ? `${name} stopped (exit ${await stopProcess(name)})` : '';
}

// ---- programs ----------------------------------------------------------------
interface Demo {
  home: string;
  databaseUrl: string;
  redisPrefix: string;
  cluster: ScramPostgres;
  server: string;
  cliEnv: Record<string, string>;
  agentId: string;
  /** The agent's admin login (CREATEROLE) on the private cluster. */
  rotatorUrl: string;
}

/** Runs `sikker ARGS`; prints the command line and (unless `quiet`) its output; throws when it fails. */
async function sikker(demo: Demo, args: string[], options: { stdin?: string; note?: string; quiet?: boolean } = {}): Promise<string> {
  if (options.quiet !== true || options.note !== undefined) echo(`sikker ${args.join(' ')}`, options.note);
  const r = await runProgram(CLI_BIN, args, { env: demo.cliEnv, ...(options.stdin === undefined ? {} : { stdin: options.stdin }) });
  if (r.code !== 0) throw new DemoCheckFailed(`\`sikker ${args.join(' ')}\` exited ${r.code}: ${(r.stderr.trim() || r.stdout.trim()).slice(0, 1500)}`);
  if (options.quiet !== true) output(r.stdout);
  return r.stdout;
}

async function sikkerJson<T>(demo: Demo, args: string[], options: { stdin?: string; note?: string } = {}): Promise<T> {
  return JSON.parse(await sikker(demo, [...args, '--json'], { ...options, quiet: true })) as T;
}

async function poll<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new DemoCheckFailed(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

type LoginResult = { accepted: true; currentUser: string } | { accepted: false; reason: string };

/** A fresh login, as `psql -h 127.0.0.1 -p PORT -U USER -d postgres` would open; only 28P01 counts as refused. */
async function tryLogin(port: number, user: string, password: string): Promise<LoginResult> {
  const client = new pg.Client({ host: '127.0.0.1', port, database: 'postgres', user, password, connectionTimeoutMillis: 5000 });
  client.on('error', () => undefined); // a dropped connection surfaces through connect/query
  try {
    await client.connect();
    const { rows } = await client.query<{ u: string }>('SELECT current_user AS u');
    return { accepted: true, currentUser: rows[0]?.u ?? '?' };
  } catch (err) {
    if ((err as { code?: string }).code === '28P01') return { accepted: false, reason: `28P01 ${message(err)}` };
    throw err;
  } finally {
    await client.end().catch(() => undefined); // closing a failed connection may reject again
  }
}

// ---- the demo, section by section ----------------------------------------------
async function setUpServices(): Promise<Demo> {
  section('Services');
  await ensureServices({ log: (m) => say(m) });
  const db = await createTestDatabase('demo');
  cleanups.push({ what: `database ${db.name}`, undo: async () => { await db.drop(); return `shared PostgreSQL: database ${db.name} dropped`; } });
  const redisPrefix = uniqueRedisPrefix('demo');
  cleanups.push({ what: 'Redis keys', undo: async () => `shared Redis: ${await cleanupRedisPrefix(SHARED_REDIS_URL, redisPrefix)} keys under ${redisPrefix} deleted` });
  const home = mkdtempSync(join(tmpdir(), 'sikker-demo-'));
  cleanups.push({ what: home, undo: async () => { rmSync(home, { recursive: true, force: true }); return `${home} removed (CLI identity, agent state and config)`; } });
  const shared = new URL(SHARED_PG_ADMIN_URL);
  say(`control plane state: shared PostgreSQL ${shared.host}, new database ${db.name}`);
  say(`                     shared Redis ${new URL(SHARED_REDIS_URL).host}, key prefix ${redisPrefix}`);
  const trusted = await tryLogin(Number(shared.port || 5432), 'postgres', 'a-made-up-password');
  say(`shared PostgreSQL, user postgres with a made-up password → ${trusted.accepted ? 'accepted (it trusts local logins)' : 'refused'}`);
  say('so "the old password is refused" would prove nothing there. The managed role lives on a private');
  say('cluster that checks passwords (initdb + pg_ctl as the postgres user, pg_hba: scram-sha-256):');
  const cluster = await startScramPostgres();
  cleanups.push({ what: 'private cluster', undo: async () => { await cluster.stop(); return `private PostgreSQL on port ${cluster.port} stopped, its directory removed`; } });
  const probe = await tryLogin(cluster.port, 'postgres', 'a-made-up-password');
  check(!probe.accepted, 'the private cluster accepted a wrong password: it does not check passwords');
  say(`private PostgreSQL 127.0.0.1:${cluster.port}, user postgres with a made-up password → refused (${probe.reason})`);
  const server = `http://127.0.0.1:${await freePort()}`;
  const cliEnv = { SIKKER_SERVER: server, SIKKER_IDENTITY: join(home, 'operator.json'), HOME: home };
  passwords.push(cluster.superuserPassword);
  return { home, databaseUrl: db.url, redisPrefix, cluster, server, cliEnv, agentId: '', rotatorUrl: '' };
}

async function startControlPlane(demo: Demo): Promise<void> {
  section('Control plane and vault');
  launch('control plane', CONTROL_PLANE_BIN, [], {
    SIKKER_DATABASE_URL: demo.databaseUrl, SIKKER_REDIS_URL: SHARED_REDIS_URL, SIKKER_REDIS_PREFIX: demo.redisPrefix,
    SIKKER_LISTEN: demo.server.replace('http://', ''), SIKKER_LOG_LEVEL: 'info', SIKKER_ROTATION_SWEEP_MS: '200',
  });
  await waitForHealthy(`${demo.server}/healthz`);
  say(`sikker-control-plane listening on ${demo.server}: sealed, not yet initialised`);
  const { shares } = await sikkerJson<{ shares: string[] }>(demo, ['operator', 'init', '--shares', '3', '--threshold', '2'], { note: 'this CLI identity becomes the first admin' });
  output(shares.map((s, i) => `share ${i + 1}: ${s.slice(0, 10)}… (shown once, abbreviated here; any 2 of 3 unseal after a restart)`).join('\n'));
  say('the root key lives only in the control plane\'s memory; after a restart it is sealed until 2 shares arrive');
  await sikker(demo, ['project', 'create', PROJECT]);
}

async function startAgent(demo: Demo): Promise<void> {
  section('Agent');
  const { token } = await sikkerJson<{ token: string }>(demo, ['identity', 'token', '--project', PROJECT, '--role', 'agent'], { note: 'one-time join token' });
  const stateDir = join(demo.home, 'agent-state');
  echo(`sikker-agent enroll --server ${demo.server} --token - --state-dir ${stateDir} --name demo-agent`, 'token on stdin; the key pair is generated here');
  const enrolled = await runProgram(AGENT_BIN, ['enroll', '--server', demo.server, '--token', '-', '--state-dir', stateDir, '--name', 'demo-agent'], { stdin: token, env: { HOME: demo.home } });
  check(enrolled.code === 0, `sikker-agent enroll exited ${enrolled.code}: ${enrolled.stderr.trim()}`);
  output(enrolled.stdout);

  const urlFile = join(demo.home, 'admin-pg.url');
  const rotatorPassword = randomBytes(18).toString('base64url');
  passwords.push(rotatorPassword);
  demo.rotatorUrl = `postgres://${ROTATOR_ROLE}:${rotatorPassword}@127.0.0.1:${demo.cluster.port}/postgres`;
  writeFileSync(urlFile, `${demo.rotatorUrl}\n`, { mode: 0o600 });
  const configFile = join(demo.home, 'agent.json');
  const config = { server: demo.server, stateDir, heartbeatSeconds: 5, shutdownGraceSeconds: 5, adminConnections: [{ name: 'pg', urlFile }] };
  writeFileSync(configFile, `${JSON.stringify(config, null, 2)}\n`);
  say(`${configFile} (the admin login's URL is in ${urlFile}, mode 0600, not in the config):`);
  output(JSON.stringify(config, null, 2));
  await createRotatorRole(demo, rotatorPassword);

  echo(`sikker-agent run --config ${configFile} &`);
  launch('agent', AGENT_BIN, ['run', '--config', configFile], { HOME: demo.home });
  const online = await poll('the agent to come online', 15_000, async () => {
    const { agents } = await sikkerJson<{ agents: Array<{ agentId: string; online: boolean }> }>(demo, ['agent', 'list', '--project', PROJECT]);
    return agents.find((a) => a.online);
  });
  demo.agentId = online.agentId;
  await sikker(demo, ['agent', 'list', '--project', PROJECT]);
}

/** The agent's admin login on the private cluster: CREATEROLE, not superuser. */
async function createRotatorRole(demo: Demo, password: string): Promise<void> {
  const superuser = new pg.Client({ connectionString: demo.cluster.superuserUrl });
  superuser.on('error', () => undefined); // surfaced through the awaited query
  await superuser.connect();
  try {
    await superuser.query(`CREATE ROLE ${ROTATOR_ROLE} LOGIN CREATEROLE PASSWORD ${superuser.escapeLiteral(password)}`);
  } finally {
    await superuser.end();
  }
  say(`private cluster, as postgres: CREATE ROLE ${ROTATOR_ROLE} LOGIN CREATEROLE PASSWORD '…'   -- ${fingerprint(password)}`);
}

async function addTarget(demo: Demo): Promise<string> {
  section(`The managed role and its target`);
  const initial = randomBytes(12).toString('base64url');
  passwords.push(initial);
  const rotator = new pg.Client({ connectionString: demo.rotatorUrl });
  rotator.on('error', () => undefined); // surfaced through the awaited query
  await rotator.connect();
  try {
    // created by the rotation login, so PostgreSQL 16+ gives it ADMIN OPTION on the role too
    await rotator.query(`CREATE ROLE ${APP_ROLE} LOGIN PASSWORD ${rotator.escapeLiteral(initial)}`);
  } finally {
    await rotator.end();
  }
  say(`private cluster, as ${ROTATOR_ROLE}: CREATE ROLE ${APP_ROLE} LOGIN PASSWORD '…'   -- ${fingerprint(initial)}`);
  say(`passwords are shown only as fingerprints (first 8 hex digits of their SHA-256), never in full`);
  await sikker(demo, ['target', 'add', `${PROJECT}/${TARGET}`, '--engine', 'postgres', '--host', '127.0.0.1', '--port', String(demo.cluster.port), '--database', 'postgres',
    '--user', APP_ROLE, '--secret', SECRET, '--agent', demo.agentId, '--admin-connection', 'pg', '--adopt'], { stdin: initial, note: 'the password that logs in now, on stdin' });
  await sikker(demo, ['target', 'test', `${PROJECT}/${TARGET}`], { note: 'preflight, run by the agent' });
  return initial;
}

interface RunRow { runId: string; state: string; trigger: string; pendingVersion: number | null; errorCode: string | null; errorMessage: string | null }

async function rotate(demo: Demo, initial: string): Promise<void> {
  section(`Scheduled rotations (every ${EVERY}, strategy replace)`);
  await sikker(demo, ['policy', 'set', `${PROJECT}/${TARGET}`, '--every', EVERY, '--strategy', 'replace']);
  const seen = new Set<string>();
  let previous = { password: initial, label: 'initial' };
  for (let n = 1; n <= RUNS; n++) {
    const run = await nextFinishedRun(demo, seen);
    seen.add(run.runId);
    write(`\n  ${bold(`run ${n} of ${RUNS}`)} (${run.trigger}): ${run.state}\n`);
    await sikker(demo, ['runs', 'show', PROJECT, run.runId]);
    check(run.pendingVersion !== null, `run ${run.runId} is done but names no version`);
    const { value } = await sikkerJson<{ value: string }>(demo, ['secret', 'get', `${PROJECT}/${SECRET}`, '--version', String(run.pendingVersion)], { note: 'read (audited), not printed' });
    passwords.push(value);
    check(value !== previous.password, `run ${run.runId} committed the same password again`);
    const current = { password: value, label: `v${run.pendingVersion}` };
    say(`psql-equivalent logins (a fresh pg connection each: psql -h 127.0.0.1 -p ${demo.cluster.port} -U ${APP_ROLE} -d postgres):`);
    await expectLogin(demo, current, true);
    await expectLogin(demo, previous, false);
    previous = current;
  }
}

/** Waits for the oldest run not in `seen` to finish; a failed or parked run fails the demo. */
async function nextFinishedRun(demo: Demo, seen: Set<string>): Promise<RunRow> {
  return poll(`rotation run ${seen.size + 1} to finish`, RUN_TIMEOUT_MS, async () => {
    const { runs } = await sikkerJson<{ runs: RunRow[] }>(demo, ['runs', 'list', PROJECT, '--target', TARGET]);
    const next = runs.filter((r) => !seen.has(r.runId)).at(-1);
    if (next === undefined) return undefined;
    if (next.state === 'failed' || next.state === 'parked') {
      throw new DemoCheckFailed(`run ${next.runId} ended ${next.state}: ${next.errorCode ?? ''} ${next.errorMessage ?? ''}`);
    }
    return next.state === 'done' ? next : undefined;
  });
}

async function expectLogin(demo: Demo, credential: { password: string; label: string }, shouldWork: boolean): Promise<void> {
  const result = await tryLogin(demo.cluster.port, APP_ROLE, credential.password);
  const what = `${shouldWork ? 'new password' : 'previous password'} ${credential.label}`.padEnd(26) + fingerprint(credential.password);
  const outcome = result.accepted ? `accepted (current_user = ${result.currentUser})` : `refused (${result.reason})`;
  say(`  ${what} → ${result.accepted === shouldWork ? green(outcome) : red(outcome)}`);
  check(result.accepted === shouldWork, `the ${shouldWork ? 'new' : 'previous'} password (${credential.label}) was ${result.accepted ? 'accepted but should be refused' : 'refused but should log in'}`);
}

async function showAudit(demo: Demo, since: string): Promise<void> {
  section('Pause the policy; the audit trail');
  await sikker(demo, ['policy', 'pause', `${PROJECT}/${TARGET}`]);
  await sikker(demo, ['runs', 'list', PROJECT, '--target', TARGET]);
  // not --project: the agent's own reports (agent.command.result) carry no project yet
  const { records } = await sikkerJson<{ records: Array<{ action: string }> }>(demo, ['audit', 'list', '--from', since, '--limit', '1000']);
  const recordsText = JSON.stringify(records);
  check(!passwords.some((p) => recordsText.includes(p)), 'an audit record holds a password');
  for (const action of ['rotation.pending', 'rotation.dispatch', 'agent.command.result', 'rotation.commit']) {
    const count = records.filter((r) => r.action === action).length;
    check(count >= RUNS, `the audit log holds ${count} ${action} records, expected at least ${RUNS}`);
  }
  await sikker(demo, ['audit', 'list', '--from', since, '--limit', '1000'], { note: 'everything since the policy was set' });
  say('checked: no record holds any of the passwords; each secret.read names the version it read');
  const verify = await sikker(demo, ['audit', 'verify']);
  check(/intact/.test(verify), 'sikker audit verify did not report an intact chain');
}

async function stopEverything(demo: Demo): Promise<void> {
  section('Stop and clean up');
  const running = [...processes];
  const agentExit = await stopProcess('agent');
  say(`agent: SIGTERM → exit ${agentExit}`);
  check(agentExit === 0, `the agent exited ${agentExit} on SIGTERM, expected 0`);
  const controlPlaneExit = await stopProcess('control plane');
  say(`control plane: SIGTERM → exit ${controlPlaneExit}`);
  check(controlPlaneExit === 0, `the control plane exited ${controlPlaneExit} on SIGTERM, expected 0`);
  const logs = running.map(([name, p]) => ({ name, text: p.output() }));
  const leaked = logs.filter((l) => passwords.some((p) => l.text.includes(p)));
  check(leaked.length === 0, `a password appears in the log output of: ${leaked.map((l) => l.name).join(', ')}`);
  const lines = logs.reduce((n, l) => n + l.text.split('\n').length - 1, 0);
  say(`none of the ${passwords.length} passwords appears in the ${lines} log lines of the control plane and the agent`);
  for (const line of await cleanUp()) say(line);
}

async function main(): Promise<void> {
  const started = Date.now();
  const demo = await setUpServices();
  await startControlPlane(demo);
  await startAgent(demo);
  const initial = await addTarget(demo);
  const since = new Date().toISOString();
  await rotate(demo, initial);
  await showAudit(demo, since);
  await stopEverything(demo);
  write(`\n${bold(green('Demo passed'))} in ${Math.round((Date.now() - started) / 1000)} s: ${RUNS} rotations, each new password accepted and the previous one refused.\n`);
}

function onSignal(signal: NodeJS.Signals): void {
  if (interrupted) {
    // the private cluster is still stopped by its exit hook; a database left behind is swept by `npm test` after 6 h
    process.stderr.write(`${signal} again: exiting without finishing the cleanup\n`);
    process.exit(1);
  }
  interrupted = true;
  process.stderr.write(`\n${signal}: stopping the demo and removing what it created (again to skip)\n`);
  void cleanUp().then((lines) => {
    for (const line of lines) process.stderr.write(`  ${line}\n`);
    process.exit(130);
  });
}

process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

main().then(
  () => process.exit(0),
  async (err: unknown) => {
    if (interrupted) return; // the signal handler cleans up and exits
    const why = err instanceof DemoCheckFailed ? 'check failed' : 'error';
    process.stderr.write(`\n${red(bold(`Demo FAILED (${why}):`))} ${message(err)}\n`);
    for (const [name, p] of processes) process.stderr.write(`\nlast lines of the ${name}'s log:\n${indent(mask(p.output()).split('\n').slice(-15).join('\n'), '  ')}\n`);
    for (const line of await cleanUp()) process.stderr.write(`  ${line}\n`);
    process.exit(1);
  },
);
