import type { PoolClient } from 'pg';
import { zero } from '../../shared/crypto/aead.js';
import type { ApplySecrets, CheckSecrets, RevokeSecrets, TargetSpec } from '../../shared/protocol/rotation-commands.js';
import type { CommandService, IssuedCommand } from '../hub/command-service.js';
import type { VersionStore } from '../vault/version-store.js';
import type { RunRow, TargetRow } from './rotation-dal.js';

/** A command to be stored by a write sent with the step's others (CommandService.insertAndClaimWrite). */
export type ClaimingCommand = NonNullable<ReturnType<CommandService['insertAndClaimWrite']>>;

/** A sink delivery waits this long for an offline agent. */
const DELIVERY_TTL_MS = 24 * 3600 * 1000;

/**
 * Builds the agent commands of a run. Passwords are decrypted here, serialised into
 * the sealed JSON and zeroed before returning; only the sealed box is stored.
 */
export class RunCommands {
  constructor(private readonly versions: VersionStore, private readonly commands: CommandService, private readonly ttlMs: number) {}

  /** The target as the agent sees it, aimed at `user`. */
  static spec(target: TargetRow, user: string): TargetSpec {
    return { ...target.spec, user };
  }

  /**
   * `held`: the pending value and the previous version (decrypted), when the caller has them
   * in hand (they stay the caller's to zero); else they are decrypted here.
   * `claimExcept` (the agent's socket is held here): the command comes back as a write to send
   * with the step's others that stores it and claims the agent's open commands
   * (CommandService.insertAndClaimWrite), when it can; otherwise it is stored now.
   */
  async apply(client: PoolClient, run: RunRow, target: TargetRow, held?: { pendingPassword: Buffer; previous: { plaintext: Buffer; dbUser: string | null } | null }, claimExcept?: string[]): Promise<IssuedCommand | ClaimingCommand> {
    const newPassword = held === undefined ? await this.password(client, target, run.pending_version) : Buffer.from(held.pendingPassword);
    const previous = held !== undefined ? (held.previous === null ? null : { ...held.previous, plaintext: Buffer.from(held.previous.plaintext) })
      : run.previous_version === null ? null : await this.versions.decrypt(client, target.project_id, target.secret_id, run.previous_version);
    try {
      const sameUser = previous !== null && (previous.dbUser ?? target.spec.user) === run.db_user;
      const secrets: ApplySecrets = { newPassword: newPassword.toString('utf8') };
      if (previous !== null && sameUser) {
        if (target.spec.privilege.mode === 'self') secrets.currentPassword = previous.plaintext.toString('utf8');
        else if (run.strategy === 'replace') secrets.restorePassword = previous.plaintext.toString('utf8');
      }
      const payload = {
        runId: run.run_id, attempt: run.attempt, target: RunCommands.spec(target, run.db_user), user: run.db_user,
        strategy: run.strategy === 'dual' ? 'dual' : 'replace',
      };
      if (claimExcept !== undefined) {
        const plaintext = Buffer.from(JSON.stringify(secrets), 'utf8');
        try {
          // sealed here: the plaintext is not needed once this returns
          const claiming = this.commands.insertAndClaimWrite({ agentId: target.agent_id, kind: 'rotation.apply', payload, plaintext, issuedBy: null, ttlMs: this.ttlMs, claimExcept });
          if (claiming !== null) return claiming;
        } finally {
          zero(plaintext);
        }
      }
      return await this.issue(client, target, 'rotation.apply', payload, secrets);
    } finally {
      zero(newPassword);
      zero(previous?.plaintext ?? null);
    }
  }

  /** Which of the pending (`p`) and previous current (`c`) credentials log in now? */
  async check(client: PoolClient, run: RunRow, target: TargetRow): Promise<IssuedCommand> {
    const candidates: Array<{ label: string; user: string }> = [];
    const passwords: CheckSecrets['passwords'] = {};
    const buffers: Buffer[] = [];
    try {
      if (run.pending_version !== null) {
        const pending = await this.password(client, target, run.pending_version);
        buffers.push(pending);
        candidates.push({ label: 'p', user: run.db_user });
        passwords.p = pending.toString('utf8');
      }
      if (run.previous_version !== null) {
        const previous = await this.versions.decrypt(client, target.project_id, target.secret_id, run.previous_version);
        buffers.push(previous.plaintext);
        candidates.push({ label: 'c', user: previous.dbUser ?? target.spec.user });
        passwords.c = previous.plaintext.toString('utf8');
      }
      return await this.issue(client, target, 'rotation.check', { runId: run.run_id, target: RunCommands.spec(target, run.db_user), candidates }, { passwords });
    } finally {
      for (const b of buffers) zero(b);
    }
  }

  /** Stops the previous version logging in: `dual` drops it beside the new one; `alternate` scrambles the resting user. */
  async revoke(client: PoolClient, run: RunRow, target: TargetRow): Promise<IssuedCommand> {
    if (run.previous_version === null || run.pending_version === null) throw new Error('revoke without a previous version');
    const previous = await this.versions.decrypt(client, target.project_id, target.secret_id, run.previous_version);
    const current = run.strategy === 'dual' && target.spec.privilege.mode === 'self' ? await this.password(client, target, run.pending_version) : null;
    try {
      const user = previous.dbUser ?? target.spec.user;
      const secrets: RevokeSecrets = { password: previous.plaintext.toString('utf8') };
      if (current !== null) secrets.currentPassword = current.toString('utf8');
      return await this.issue(client, target, 'rotation.revoke', {
        runId: run.run_id, target: RunCommands.spec(target, user), user, method: run.strategy === 'dual' ? 'dual' : 'scramble',
      }, secrets);
    } finally {
      zero(previous.plaintext);
      zero(current);
    }
  }

  /** Ends `user`'s live sessions (leak response). Self-rotation sends the password that logs in now. */
  async terminate(client: PoolClient, run: RunRow, target: TargetRow, user: string): Promise<IssuedCommand> {
    const current = target.spec.privilege.mode === 'self' ? await this.password(client, target, run.pending_version) : null;
    try {
      const secrets = current === null ? {} : { currentPassword: current.toString('utf8') };
      return await this.issue(client, target, 'sessions.terminate', { runId: run.run_id, target: RunCommands.spec(target, user), user }, secrets);
    } finally {
      zero(current);
    }
  }

  /** The committed password to one of the agent's sinks (a `secret.deliver`, as an operator would send). */
  async deliver(client: PoolClient, target: TargetRow, sink: string, version: number, plaintext: Buffer): Promise<IssuedCommand> {
    const payload = { sink, project: target.project_name, secret: target.secret_name, version };
    return this.commands.insertWithin(client, { agentId: target.agent_id, kind: 'secret.deliver', payload, plaintext, issuedBy: null, ttlMs: DELIVERY_TTL_MS });
  }

  private async password(client: PoolClient, target: TargetRow, version: number | null): Promise<Buffer> {
    if (version === null) throw new Error('no pending version');
    return (await this.versions.decrypt(client, target.project_id, target.secret_id, version)).plaintext;
  }

  private async issue(client: PoolClient, target: TargetRow, kind: 'rotation.apply' | 'rotation.check' | 'rotation.revoke' | 'sessions.terminate', payload: Record<string, unknown>, secrets: object): Promise<IssuedCommand> {
    const plaintext = Buffer.from(JSON.stringify(secrets), 'utf8');
    try {
      return await this.commands.insertWithin(client, { agentId: target.agent_id, kind, payload, plaintext, issuedBy: null, ttlMs: this.ttlMs });
    } finally {
      zero(plaintext);
    }
  }
}
