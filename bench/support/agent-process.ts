/**
 * The real agent program (`node dist/agent/sikker-agent.cjs`) as a child process for benchmarks:
 * enrolled with a join token through `sikker-agent enroll`, then `sikker-agent run
 * --config <file>`, waited for until the control plane lists it online with its
 * version (its hello was processed).
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestClient } from '../../test/support/test-client.js';
import { withTimeout } from './bench-vault.js';
import { benchAbortSignal } from './cleanup.js';
import { startProgram } from './node-program.js';

/** The compiled agent program, next to dist/bench/. */
export const AGENT_MAIN = fileURLToPath(new URL('../../agent/sikker-agent.cjs', import.meta.url));

const STOP_GRACE_MS = 5000;

export interface AgentProcess {
  pid: number;
  /** The agent's identity id (its agentId). */
  agentId: string;
  exited(): boolean;
  /** The last lines it printed (for error messages). */
  tail(): string;
  /** SIGTERM (the agent drains), SIGKILL after 5 s. Idempotent. */
  stop(): Promise<void>;
}

export interface StartAgentOptions {
  /** The control plane's http://127.0.0.1:<port>. */
  baseUrl: string;
  /** An admin client of the control plane (creates the join token, watches the agent list). */
  admin: TestClient;
  project: string;
  /** A private directory: state/ and agent.json go here. */
  home: string;
  name: string;
  /** Extra keys of the config file (e.g. adminConnections, logLevel). */
  config?: Record<string, unknown>;
  connectTimeoutMs?: number;
  /** Node flags for `sikker-agent run` (e.g. --cpu-prof), for experiments. */
  nodeArgs?: string[];
}

/**
 * Enrolls and starts a real agent; resolves once GET /v1/agents shows it online with
 * its version. The child is SIGKILLed if this process exits without stopping it.
 * Rejects (after stopping it) when enroll fails or it does not come online in time.
 */
export async function startAgentProcess(o: StartAgentOptions): Promise<AgentProcess> {
  const { token } = (await withTimeout(o.admin.ok('POST', '/v1/tokens', { project: o.project, role: 'agent' }), 'create join token')) as { token: string };
  const stateDir = join(o.home, 'state');
  const enroll = await runNode([AGENT_MAIN, 'enroll', '--server', o.baseUrl, '--token', token, '--state-dir', stateDir, '--name', o.name], 30_000);
  if (enroll.code !== 0) throw new Error(`sikker-agent enroll exited ${String(enroll.code)}: ${enroll.stderr.trim() || enroll.stdout.trim()}`);
  const configPath = join(o.home, 'agent.json');
  writeFileSync(configPath, JSON.stringify({ server: o.baseUrl, stateDir, ...o.config }, null, 2), { mode: 0o600 });

  const lines: string[] = [];
  const program = startProgram([...(o.nodeArgs ?? []), AGENT_MAIN, 'run', '--config', configPath], (line) => {
    lines.push(line);
    if (lines.length > 30) lines.shift();
  }, { stopGraceMs: STOP_GRACE_MS });
  const { exited, stop } = program;
  const agent = { pid: program.pid, agentId: '', exited, tail: () => lines.join('\n'), stop };

  try {
    const deadline = Date.now() + (o.connectTimeoutMs ?? 30_000);
    for (;;) {
      if (exited()) throw new Error(`the agent exited before it came online:\n${agent.tail()}`);
      if (Date.now() > deadline) throw new Error(`the agent did not come online within ${(o.connectTimeoutMs ?? 30_000) / 1000} s:\n${agent.tail()}`);
      benchAbortSignal.throwIfAborted();
      const list = (await o.admin.ok('GET', `/v1/agents?project=${o.project}`)) as { agents: Array<{ agentId: string; name: string; online: boolean; agentVersion: string | null }> };
      const me = list.agents.find((a) => a.name === o.name && a.online && a.agentVersion !== null);
      if (me !== undefined) return { ...agent, agentId: me.agentId };
      await sleep(100);
    }
  } catch (err) {
    await stop();
    throw err;
  }
}

function runNode(args: string[], ms: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, args, { timeout: ms, maxBuffer: 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null;
      resolve({ code, stdout, stderr });
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
