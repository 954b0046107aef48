import { hostname } from 'node:os';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import { ProbePayload } from '../../shared/protocol/agent-messages.js';
import type { CommandExecutor, ResultFacts } from './command-executor.js';

/** `agent.probe`: proves the agent is alive and reports what it runs. Idempotent, no side effect. */
export function createProbeExecutor(agentVersion: string): CommandExecutor {
  return {
    kind: 'agent.probe',
    idempotent: true,
    checkPayload(payload) {
      if (!ProbePayload.safeParse(payload).success) throw new SikkerError('ERR_VALIDATION', 'agent.probe takes no parameters');
    },
    async execute(): Promise<ResultFacts> {
      return { agentVersion, hostname: hostname().slice(0, 255), uptimeSeconds: Math.round(process.uptime()) };
    },
  };
}
