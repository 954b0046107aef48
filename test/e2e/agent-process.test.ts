import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { parseJournal } from '../../agent/journal/journal-file-format.js';
import { cleanupRedisPrefix, createTestDatabase, SHARED_REDIS_URL, uniqueRedisPrefix } from '../support/databases.js';
import { freePort } from '../support/free-port.js';
import { eventually } from '../support/agents.js';
import { CLI_BIN, CONTROL_PLANE_BIN, REPO_ROOT, runProgram, startProgram, waitForHealthy, type RunningProcess } from '../support/processes.js';

const AGENT_BIN = join(REPO_ROOT, 'dist', 'agent', 'sikker-agent.cjs');
const CANARY = 'canary-agent-e2e-77f1';

t.test('e2e – enroll → run → online; kill -9 and restart: the queued command is applied once; SIGTERM exits 0', async (t) => {
  const db = await createTestDatabase('e2e_agent');
  const prefix = uniqueRedisPrefix('e2e-agent');
  const home = mkdtempSync(join(tmpdir(), 'sikker-agent-e2e-'));
  chmodSync(home, 0o755);
  const port = await freePort();
  const server = `http://127.0.0.1:${port}`;
  const cliEnv = { SIKKER_SERVER: server, SIKKER_IDENTITY: join(home, 'operator.json'), HOME: home };
  const running: RunningProcess[] = [];
  t.teardown(async () => {
    for (const p of running) await p.kill();
    rmSync(home, { recursive: true, force: true });
    await db.drop();
    await cleanupRedisPrefix(SHARED_REDIS_URL, prefix);
  });
  const sikker = async (args: string[], stdin?: string): Promise<any> => {
    const r = await runProgram(CLI_BIN, [...args, '--json'], { env: cliEnv, ...(stdin === undefined ? {} : { stdin }) });
    if (r.code !== 0) throw new Error(`sikker ${args.join(' ')}: ${r.stdout} ${r.stderr}`);
    return JSON.parse(r.stdout);
  };

  running.push(startProgram(CONTROL_PLANE_BIN, [], { SIKKER_DATABASE_URL: db.url, SIKKER_REDIS_URL: SHARED_REDIS_URL, SIKKER_REDIS_PREFIX: prefix, SIKKER_LISTEN: `127.0.0.1:${port}`, SIKKER_AGENT_HEARTBEAT_SECONDS: '2' }));
  await waitForHealthy(`${server}/healthz`);
  await sikker(['operator', 'init', '--shares', '2', '--threshold', '2']);
  await sikker(['project', 'create', 'shop']);
  await sikker(['secret', 'put', 'shop/db'], CANARY);
  const { token } = await sikker(['identity', 'token', '--project', 'shop', '--role', 'agent']);

  const stateDir = join(home, 'agent-state');
  const enroll = await runProgram(AGENT_BIN, ['enroll', '--server', server, '--token', '-', '--state-dir', stateDir, '--name', 'shop-web-1'], { stdin: token, env: { HOME: home } });
  t.equal(enroll.code, 0, enroll.stderr);
  const sinkPath = join(home, 'db.env');
  const configPath = join(home, 'agent.json');
  writeFileSync(configPath, JSON.stringify({ server, stateDir, heartbeatSeconds: 5, shutdownGraceSeconds: 5, sinks: [{ name: 'app', path: sinkPath, format: 'env', envName: 'DB_PASSWORD' }] }));

  let agent = startProgram(AGENT_BIN, ['run', '--config', configPath], { HOME: home });
  running.push(agent);
  const online = await eventually(async () => {
    const list = await sikker(['agent', 'list', '--project', 'shop']);
    return list.agents[0]?.online === true && list.agents[0]?.agentVersion !== null ? list.agents[0] : undefined;
  }, 15_000, 'agent online');
  t.match(online, { name: 'shop-web-1', online: true });

  t.equal(await agent.kill('SIGKILL'), null, 'agent killed with SIGKILL');
  const queued = await sikker(['agent', 'deliver', online.agentId, '--secret', 'shop/db', '--sink', 'app']);
  t.equal(queued.state, 'pending', 'queued while the agent is down');

  agent = startProgram(AGENT_BIN, ['run', '--config', configPath], { HOME: home });
  running.push(agent);
  const done = await eventually(async () => {
    const show = await sikker(['agent', 'show', online.agentId]);
    const c = show.commands.find((x: { commandId: string }) => x.commandId === queued.commandId);
    return c?.state === 'succeeded' || c?.state === 'failed' ? c : undefined;
  }, 20_000, 'delivery finished');
  t.equal(done.state, 'succeeded', JSON.stringify(done.error));
  t.equal(readFileSync(sinkPath, 'utf8'), `DB_PASSWORD='${CANARY}'\n`);

  // Restart once more: the finished command is neither re-sent for execution nor re-applied.
  // Read, not opened: opening compacts the file, which must not happen under the running agent.
  const journalText = readFileSync(join(stateDir, 'journal.json'), 'utf8');
  const journal = parseJournal(journalText);
  const records = [...(journal?.snapshot.entries ?? []), ...(journal?.changes ?? []).flatMap((c) => (c.op === 'put' ? [c.entry] : []))]
    .filter((e) => e.commandId === queued.commandId);
  t.equal(records.at(-1)?.status, 'final', 'the journal\'s latest record of the command says finished');
  t.ok(records.length >= 1 && records.every((e) => e.generation === records[0]?.generation), 'one command, one generation');
  t.notOk(journalText.includes(CANARY), 'the journal holds no value');
  await agent.kill('SIGKILL');
  writeFileSync(sinkPath, 'changed-by-hand\n');
  agent = startProgram(AGENT_BIN, ['run', '--config', configPath], { HOME: home });
  running.push(agent);
  await eventually(async () => ((await sikker(['agent', 'list', '--project', 'shop'])).agents[0]?.online ? true : undefined), 15_000, 'back online');
  await new Promise((r) => setTimeout(r, 1500));
  t.equal(readFileSync(sinkPath, 'utf8'), 'changed-by-hand\n', 'applied once: not written again after a restart');
  const final = (await sikker(['agent', 'show', online.agentId])).commands.find((x: { commandId: string }) => x.commandId === queued.commandId);
  t.equal(final.state, 'succeeded');

  t.equal(await agent.kill('SIGTERM'), 0, 'SIGTERM: drained, exit 0');
  t.notOk(agent.output().includes(CANARY), 'the value is not in the agent log');
  t.ok(existsSync(join(stateDir, 'identity.json')));
});
