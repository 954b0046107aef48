import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { sealTo, importBoxPublicKey } from '../../shared/crypto/sealed-box.js';
import { zero } from '../../shared/crypto/aead.js';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import type { Logger } from '../../shared/logging/logger.js';
import { MAX_MESSAGE_BYTES, signCommand, type CommandEnvelope, type CommandKind } from '../../shared/protocol/agent-messages.js';
import type { AuditChainWriter } from '../audit/audit-appender.js';
import { requireProjectAction } from '../auth/authorize.js';
import { withTransaction } from '../db/transaction.js';
import type { AuthIdentity } from '../identity/identity-types.js';
import type { RootKeyHolder } from '../vault/root-key-holder.js';
import type { SecretService } from '../vault/secret-service.js';
import { findAgent } from './agent-dal.js';
import { insertCommand, nextGeneration, type CommandRow } from './command-dal.js';

export type IssueRequest =
  | { kind: 'agent.probe' }
  | { kind: 'secret.deliver'; sink: string; secret: string; version?: number | undefined; project?: string | undefined };

/** Room left in a frame for everything but the sealed secret (ids, payload, signature, JSON). */
const ENVELOPE_OVERHEAD_BYTES = 2048;

export interface IssuedCommand {
  commandId: string;
  generation: number;
  expiresAt: Date;
}

const DEFAULT_TTL_MS = 15 * 60 * 1000;

/**
 * Creates commands for agents. A command is stored (PostgreSQL is the record) before
 * anyone is told about it; secrets inside are sealed to the agent's X25519 key at
 * once, so neither the database nor Redis nor a socket log ever holds them in clear.
 * Delivering a secret is audited in the transaction that stores the command.
 */
export class CommandService {
  private readonly issuedListeners: Array<(agentId: string) => void> = [];

  constructor(
    private readonly pool: Pool,
    private readonly secrets: SecretService,
    private readonly chain: AuditChainWriter,
    private readonly root: RootKeyHolder,
    private readonly logger: Logger,
    private readonly staleSeconds: number,
  ) {}

  /** Called after a command is committed (the bus tells the replica holding the agent). */
  onIssued(listener: (agentId: string) => void): void {
    this.issuedListeners.push(listener);
  }

  async issue(caller: AuthIdentity, sourceIp: string, agentId: string, request: IssueRequest, ttlMs: number = DEFAULT_TTL_MS): Promise<IssuedCommand> {
    const agent = await findAgent(this.pool, this.staleSeconds, agentId);
    if (agent === null) throw new SikkerError('ERR_NOT_FOUND', 'no such agent');
    requireProjectAction(caller, request.kind === 'secret.deliver' ? 'secret.grant' : 'agent.command', agent.project_id);
    if (agent.disabled_at !== null) throw new SikkerError('ERR_CONFLICT', 'this agent is disabled');
    const commandId = randomUUID();
    const expiresAt = new Date(Date.now() + ttlMs);
    let plaintext: Buffer | null = null;
    let payload: Record<string, unknown> = {};
    let audit: { secretId: string | null; secretVersion: number | null } = { secretId: null, secretVersion: null };
    if (request.kind === 'secret.deliver') {
      if (request.project !== undefined && request.project !== agent.project_name) {
        throw new SikkerError('ERR_VALIDATION', `this agent belongs to project "${agent.project_name}", not "${request.project}"`);
      }
      const secret = await this.secrets.decryptForDelivery(agent.project_name, request.secret, request.version);
      plaintext = secret.plaintext;
      // sealed box = value + 60 bytes, then base64: it must fit one agent frame or it could never be delivered.
      if (Math.ceil((plaintext.length + 60) / 3) * 4 + ENVELOPE_OVERHEAD_BYTES > MAX_MESSAGE_BYTES) {
        zero(plaintext);
        throw new SikkerError('ERR_VALIDATION', `this secret is too large to deliver to an agent (at most about ${Math.floor(((MAX_MESSAGE_BYTES - ENVELOPE_OVERHEAD_BYTES) / 4) * 3) - 60} bytes)`);
      }
      payload = { sink: request.sink, project: agent.project_name, secret: request.secret, version: secret.version };
      audit = { secretId: secret.secretId, secretVersion: secret.version };
    }
    try {
      const issued = await withTransaction(this.pool, this.logger, async (client) => {
        const next = await nextGeneration(client, agentId);
        if (next === null) throw new SikkerError('ERR_NOT_FOUND', 'no such agent');
        const sealed = plaintext === null ? null : sealTo(importBoxPublicKey(next.boxPublicKey), plaintext, { commandId, agentId });
        await insertCommand(client, { commandId, agentId, generation: next.generation, kind: request.kind, payload, sealed, issuedBy: caller.identityId, expiresAt });
        await this.chain.append(client, [{
          identityId: caller.identityId, sourceIp, action: request.kind === 'secret.deliver' ? 'secret.deliver' : 'agent.command',
          projectId: agent.project_id, secretId: audit.secretId, secretVersion: audit.secretVersion, outcome: 'issued',
          detail: { agent: agentId, commandId, kind: request.kind },
        }]);
        return { commandId, generation: next.generation, expiresAt };
      });
      for (const listener of this.issuedListeners) listener(agentId);
      return issued;
    } finally {
      zero(plaintext);
    }
  }

  /** The signed envelope for a stored command. Throws ERR_VAULT_SEALED while the signing key is not in memory. */
  envelopeFor(row: CommandRow): { envelope: CommandEnvelope; signature: string } {
    const signer = this.root.signer();
    if (signer === null) throw new SikkerError('ERR_VAULT_SEALED', 'commands cannot be signed while the vault is sealed', { retryable: true });
    const envelope: CommandEnvelope = {
      commandId: row.command_id, agentId: row.agent_id, kind: row.kind as CommandKind, generation: Number(row.generation),
      issuedAt: row.issued_at.getTime(), expiresAt: row.expires_at.getTime(), payload: row.payload,
      sealed: row.sealed === null ? null : row.sealed.toString('base64'),
    };
    return { envelope, signature: signCommand(signer.key, envelope) };
  }
}
