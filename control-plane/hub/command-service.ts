import { randomUUID, type KeyObject } from 'node:crypto';
import type { Pool, PoolClient } from 'pg';
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
import { claimedWith, commandRowFromJson, insertCommand, insertCommandAndClaimWrite, insertCommandWithGeneration, nextGeneration, type CommandRow, type NewCommand } from './command-dal.js';
import type { StatementWrite, WriteOutcome } from '../db/queryable.js';

export type IssueRequest =
  | { kind: 'agent.probe' }
  | { kind: 'secret.deliver'; sink: string; secret: string; version?: number | undefined; project?: string | undefined };

/** Room left in a frame for everything but the sealed secret (ids, payload, signature, JSON). */
const ENVELOPE_OVERHEAD_BYTES = 2048;

export interface IssuedCommand {
  commandId: string;
  generation: number;
  expiresAt: Date;
  /** When the insert was asked to claim (`claimExcept`) and did: the rows counted as delivered, to send after the commit. */
  claimed?: CommandRow[];
}

const DEFAULT_TTL_MS = 15 * 60 * 1000;

/** A command to store for an agent; `plaintext` (the secret to seal, if any) stays the caller's to zero. */
export interface CommandToIssue {
  agentId: string;
  kind: CommandKind;
  payload: Record<string, unknown>;
  plaintext: Buffer | null;
  issuedBy: string | null;
  ttlMs: number;
  commandId?: string;
}

const pick = (c: NewCommand): { commandId: string; expiresAt: Date } => ({ commandId: c.commandId, expiresAt: c.expiresAt });

/**
 * Creates commands for agents. A command is stored (PostgreSQL is the record) before
 * anyone is told about it; secrets inside are sealed to the agent's X25519 key at
 * once, so neither the database nor Redis nor a socket log ever holds them in clear.
 * Delivering a secret is audited in the transaction that stores the command.
 */
export class CommandService {
  private readonly issuedListeners: Array<(agentId: string) => void> = [];
  /** Each agent's X25519 box key as last read here, as stored and imported (public keys; a stale one is detected by the insert). */
  private readonly boxKeys = new Map<string, { raw: string; key: KeyObject }>();

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
    let plaintext: Buffer | null = null;
    let payload: Record<string, unknown> = {};
    let audit: { secretId: string | null; secretVersion: number | null } = { secretId: null, secretVersion: null };
    if (request.kind === 'secret.deliver') {
      if (request.project !== undefined && request.project !== agent.project_name) {
        throw new SikkerError('ERR_VALIDATION', `this agent belongs to project "${agent.project_name}", not "${request.project}"`);
      }
      const secret = await this.secrets.decryptForDelivery(agent.project_name, request.secret, request.version);
      plaintext = secret.plaintext;
      try {
        assertDeliverable(plaintext.length);
      } catch (err) {
        zero(plaintext);
        throw err;
      }
      payload = { sink: request.sink, project: agent.project_name, secret: request.secret, version: secret.version };
      audit = { secretId: secret.secretId, secretVersion: secret.version };
    }
    try {
      const issued = await withTransaction(this.pool, this.logger, async (client) => {
        const command = await this.insertWithin(client, { agentId, kind: request.kind, payload, plaintext, issuedBy: caller.identityId, ttlMs, commandId });
        await this.chain.append(client, [{
          identityId: caller.identityId, sourceIp, action: request.kind === 'secret.deliver' ? 'secret.deliver' : 'agent.command',
          projectId: agent.project_id, secretId: audit.secretId, secretVersion: audit.secretVersion, outcome: 'issued',
          detail: { agent: agentId, commandId, kind: request.kind },
        }]);
        return command;
      });
      this.announce(agentId);
      return issued;
    } finally {
      zero(plaintext);
    }
  }

  /**
   * Stores a command inside the caller's transaction (the caller audits it there) and
   * seals `plaintext` to the agent's key. Call {@link announce} after the commit. The
   * caller owns and zeroes `plaintext`. Throws ERR_NOT_FOUND for an unknown agent and
   * ERR_VALIDATION when the sealed value could never fit one agent frame.
   */
  async insertWithin(client: PoolClient, c: CommandToIssue): Promise<IssuedCommand> {
    const { command, seal } = this.sealable(c);
    // Usually one round trip: sealed to the agent's key as last seen, stored only if that is still its key.
    const known = this.boxKeys.get(c.agentId);
    if (known !== undefined) {
      const generation = await insertCommandWithGeneration(client, known.raw, { ...command, sealed: seal(known.key) });
      if (generation !== null) return { ...pick(command), generation };
      this.boxKeys.delete(c.agentId); // re-keyed (or gone): take the key with the generation
    }
    const next = await nextGeneration(client, c.agentId);
    if (next === null) throw new SikkerError('ERR_NOT_FOUND', 'no such agent');
    const key = importBoxPublicKey(next.boxPublicKey);
    await insertCommand(client, { ...command, generation: next.generation, sealed: seal(key) });
    this.boxKeys.set(c.agentId, { raw: next.boxPublicKey, key });
    if (this.boxKeys.size > 100_000) this.boxKeys.delete(this.boxKeys.keys().next().value as string);
    return { ...pick(command), generation: next.generation };
  }

  /**
   * {@link insertWithin} as a write, for a caller that sends its writes in one statement, to
   * an agent whose socket its replica holds: the command is stored and, with the agent's
   * other open commands not in `claimExcept`, counted as delivered (insertCommandAndClaimWrite).
   * `settle` with the write's outcome gives the issued command and the claimed rows to send
   * after the commit. Null when the agent's box key is not known here: call insertWithin.
   * When the agent's key is no longer that one (or the agent is gone), nothing is stored and the
   * statement fails with a retryable ERR_CONFLICT (the write's expectation): the caller's
   * transaction must fail (the run it names the command in would point at nothing); the next
   * try takes the new key. `settle` would throw the same, should the write go out without it.
   */
  insertAndClaimWrite(c: CommandToIssue & { claimExcept: string[] }): { commandId: string; expiresAt: Date; write: StatementWrite; settle: (outcome: WriteOutcome) => IssuedCommand } | null {
    const known = this.boxKeys.get(c.agentId);
    if (known === undefined) return null;
    const { command, seal } = this.sealable(c);
    const boxKeyGone = (): SikkerError => {
      if (this.boxKeys.get(c.agentId) === known) this.boxKeys.delete(c.agentId);
      return new SikkerError('ERR_CONFLICT', 'the agent\'s box key is no longer the one the command was sealed to (or the agent is gone); try again', { retryable: true });
    };
    return {
      commandId: command.commandId,
      expiresAt: command.expiresAt,
      // stored only for the box key it was sealed to (command-dal.ts); the statement fails when it was not
      write: { ...insertCommandAndClaimWrite(known.raw, { ...command, sealed: seal(known.key) }, c.claimExcept), expect: { sql: 'EXISTS (SELECT 1 FROM command_stored)', values: [], error: boxKeyGone } },
      settle: (outcome) => {
        const claimed = claimedWith(command.commandId, (outcome.rows ?? []).map(commandRowFromJson));
        const own = claimed?.find((r) => r.command_id === command.commandId);
        if (own === undefined) throw boxKeyGone(); // the statement's expectation makes this unreachable there
        return { ...pick(command), generation: Number(own.generation), claimed: claimed ?? [] };
      },
    };
  }

  /** The command's row fields and a sealer for its secret (checked to fit one agent frame). */
  private sealable(c: CommandToIssue): { command: NewCommand; seal: (boxKey: KeyObject) => Buffer | null } {
    if (c.plaintext !== null) assertDeliverable(c.plaintext.length);
    const commandId = c.commandId ?? randomUUID();
    const expiresAt = new Date(Date.now() + c.ttlMs);
    return {
      command: { commandId, agentId: c.agentId, kind: c.kind, payload: c.payload, sealed: null, issuedBy: c.issuedBy, expiresAt },
      seal: (boxKey) => (c.plaintext === null ? null : sealTo(boxKey, c.plaintext, { commandId, agentId: c.agentId })),
    };
  }

  /** Tells the replica holding the agent's socket that it has a command (after the commit). */
  announce(agentId: string): void {
    for (const listener of this.issuedListeners) listener(agentId);
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

/** Sealed box = value + 60 bytes, then base64: it must fit one agent frame or it could never be delivered. */
function assertDeliverable(valueBytes: number): void {
  if (Math.ceil((valueBytes + 60) / 3) * 4 + ENVELOPE_OVERHEAD_BYTES > MAX_MESSAGE_BYTES) {
    throw new SikkerError('ERR_VALIDATION', `this secret is too large to deliver to an agent (at most about ${Math.floor(((MAX_MESSAGE_BYTES - ENVELOPE_OVERHEAD_BYTES) / 4) * 3) - 60} bytes)`);
  }
}
