import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { zero } from '../../shared/crypto/aead.js';
import { SikkerError } from '../../shared/errors/sikker-error.js';
import type { Logger } from '../../shared/logging/logger.js';
import type { AddTargetRequest } from '../../shared/protocol/rotation-api.js';
import type { PreflightSecrets } from '../../shared/protocol/rotation-commands.js';
import type { AuditChainWriter } from '../audit/audit-appender.js';
import { canSeeProject, requireProjectAction } from '../auth/authorize.js';
import { withTransaction } from '../db/transaction.js';
import { findAgent } from '../hub/agent-dal.js';
import { findCommand } from '../hub/command-dal.js';
import type { CommandService } from '../hub/command-service.js';
import type { AuthIdentity } from '../identity/identity-types.js';
import type { ProjectService } from '../vault/project-service.js';
import type { VersionStore } from '../vault/version-store.js';
import { findPolicy, findTarget, findTargetAndPolicyInProject, findTargetInProject, listTargets, type PolicyRow, type TargetRow } from './rotation-dal.js';
import { RunCommands } from './run-commands.js';

/** How long `target test` waits for the agent's answer before saying it is still running. */
const PREFLIGHT_WAIT_MS = 12_000;
const PREFLIGHT_TTL_MS = 60_000;

export interface PreflightReport {
  ok: boolean;
  /** The strategy the agent checked (strategy-specific checks run only for it). */
  strategy: 'replace' | 'dual';
  problems: string;
  warnings: string;
  server: string | null;
  strategies: string[];
}

/** Targets: one database user managed by one agent. */
export class TargetService {
  constructor(
    private readonly pool: Pool,
    private readonly projects: ProjectService,
    private readonly versions: VersionStore,
    private readonly commands: CommandService,
    private readonly chain: AuditChainWriter,
    private readonly logger: Logger,
    private readonly staleSeconds: number,
  ) {}

  async resolve(caller: AuthIdentity, projectName: string, name: string, action: 'target.read' | 'target.write' | 'rotation.run'): Promise<TargetRow> {
    // One query on the way in; the project is looked up on its own only to word a refusal.
    return this.authorized(caller, projectName, name, action, await findTargetInProject(this.pool, projectName, name));
  }

  /** {@link resolve}, with the target's policy read in the same query (null: it has none). */
  async resolveWithPolicy(caller: AuthIdentity, projectName: string, name: string, action: 'target.read' | 'target.write' | 'rotation.run'): Promise<{ target: TargetRow; policy: PolicyRow | null }> {
    const found = await findTargetAndPolicyInProject(this.pool, projectName, name);
    return { target: await this.authorized(caller, projectName, name, action, found?.target ?? null), policy: found?.policy ?? null };
  }

  private async authorized(caller: AuthIdentity, projectName: string, name: string, action: 'target.read' | 'target.write' | 'rotation.run', target: TargetRow | null): Promise<TargetRow> {
    if (target === null || !canSeeProject(caller, target.project_id)) {
      const project = await this.projects.resolve(caller, projectName); // throws "no project … that you can see"
      requireProjectAction(caller, action, project.project_id);
      throw new SikkerError('ERR_NOT_FOUND', `no target "${name}" in project "${projectName}"`);
    }
    requireProjectAction(caller, action, target.project_id);
    return target;
  }

  async list(caller: AuthIdentity, projectName: string): Promise<TargetRow[]> {
    const project = await this.projects.resolve(caller, projectName);
    requireProjectAction(caller, 'target.read', project.project_id);
    return listTargets(this.pool, project.project_id);
  }

  /**
   * Registers a target. With `adoptPassword` the password that logs in now becomes the
   * secret's current version (no rotation). Self-rotation needs a current version
   * (adopted now or stored before): the agent logs in with it to change it.
   */
  async add(caller: AuthIdentity, sourceIp: string, projectName: string, request: AddTargetRequest): Promise<TargetRow> {
    const project = await this.projects.resolve(caller, projectName);
    requireProjectAction(caller, 'target.write', project.project_id);
    const agent = await findAgent(this.pool, this.staleSeconds, request.agentId);
    if (agent === null || agent.project_id !== project.project_id) throw new SikkerError('ERR_NOT_FOUND', `no agent ${request.agentId} in project "${projectName}"`);
    if (agent.disabled_at !== null) throw new SikkerError('ERR_CONFLICT', 'this agent is disabled');
    if (request.alternateUser !== undefined && request.alternateUser === request.connection.user) throw new SikkerError('ERR_VALIDATION', 'alternateUser must differ from connection.user');
    if (request.connection.redisPasswordMode === 'requirepass' && request.connection.user !== 'default') throw new SikkerError('ERR_VALIDATION', 'connection.user: requirepass manages the "default" user only');
    const targetId = randomUUID();
    const adopted = request.adoptPassword === undefined ? null : Buffer.from(request.adoptPassword, 'utf8');
    try {
      await withTransaction(this.pool, this.logger, async (client) => {
        const { secretId, dataKey } = await this.versions.lockOrCreateSecret(client, project.project_id, request.secret);
        try {
          const owner = await client.query<{ name: string }>('SELECT name FROM targets WHERE secret_id = $1', [secretId]);
          if (owner.rows[0] !== undefined) throw new SikkerError('ERR_CONFLICT', `secret "${request.secret}" already belongs to target "${owner.rows[0].name}"`);
          let version: number | null = null;
          if (adopted !== null) {
            version = await this.versions.addVersion(client, { projectId: project.project_id, secretId, dataKey, plaintext: adopted, label: 'current', dbUser: request.connection.user, createdBy: caller.identityId });
          } else if (request.connection.privilege.mode === 'self') {
            const current = await client.query("SELECT 1 FROM secret_versions WHERE secret_id = $1 AND label = 'current' AND state = 'active'", [secretId]);
            if (current.rowCount !== 1) throw new SikkerError('ERR_VALIDATION', 'a self-rotating target needs the password that logs in now: give it with --adopt (stdin)');
          }
          const inserted = await client.query(
            `INSERT INTO targets (target_id, project_id, name, secret_id, agent_id, spec, alternate_user, sinks, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (project_id, name) DO NOTHING`,
            [targetId, project.project_id, request.name, secretId, request.agentId, JSON.stringify(request.connection), request.alternateUser ?? null, request.sinks, caller.identityId],
          );
          if (inserted.rowCount !== 1) throw new SikkerError('ERR_CONFLICT', `target "${request.name}" already exists in project "${projectName}"`);
          await this.chain.append(client, [{
            identityId: caller.identityId, sourceIp, action: 'target.add', projectId: project.project_id, secretId, secretVersion: version, outcome: 'success',
            detail: { target: request.name, engine: request.connection.engine, user: request.connection.user, agent: request.agentId, adopted: version !== null },
          }]);
        } finally {
          zero(dataKey);
        }
      });
    } finally {
      zero(adopted);
    }
    const row = await findTarget(this.pool, project.project_id, request.name);
    if (row === null) throw new SikkerError('ERR_INTERNAL', 'the target vanished after it was stored');
    return row;
  }

  /**
   * Asks the managing agent to preflight the target (reachable, privilege, user
   * exists, strategy supported) and waits up to 12 s for the answer. The report is
   * recorded on the target whenever it arrives (see {@link recordPreflightResult}).
   */
  async test(caller: AuthIdentity, sourceIp: string, projectName: string, name: string, requested?: 'replace' | 'dual' | 'alternate'): Promise<{ target: TargetRow; report: PreflightReport | null }> {
    const target = await this.resolve(caller, projectName, name, 'target.write');
    const agent = await findAgent(this.pool, this.staleSeconds, target.agent_id);
    if (agent === null || !agent.online) throw new SikkerError('ERR_CONFLICT', `the agent managing "${name}" is offline (see \`sikker agent list\`); the preflight runs on it`, { retryable: true });
    const policy = await findPolicy(this.pool, target.target_id);
    const strategy = (requested ?? policy?.spec.strategy) === 'dual' ? 'dual' : 'replace';
    const users = target.alternate_user === null ? [target.spec.user] : [target.spec.user, target.alternate_user];
    const commandId = await withTransaction(this.pool, this.logger, async (client) => {
      let plaintext: Buffer | null = null;
      try {
        if (target.spec.privilege.mode === 'self' && target.current_version !== null) {
          const current = await this.versions.decrypt(client, target.project_id, target.secret_id, target.current_version);
          const secrets: PreflightSecrets = { currentPasswords: { [current.dbUser ?? target.spec.user]: current.plaintext.toString('utf8') } };
          zero(current.plaintext);
          plaintext = Buffer.from(JSON.stringify(secrets), 'utf8');
        }
        const issued = await this.commands.insertWithin(client, {
          agentId: target.agent_id, kind: 'target.preflight', payload: { target: RunCommands.spec(target, target.spec.user), strategy, users }, plaintext, issuedBy: caller.identityId, ttlMs: PREFLIGHT_TTL_MS,
        });
        await client.query('UPDATE targets SET preflight_command_id = $2 WHERE target_id = $1', [target.target_id, issued.commandId]);
        await this.chain.append(client, [{ identityId: caller.identityId, sourceIp, action: 'target.test', projectId: target.project_id, secretId: target.secret_id, outcome: 'issued', detail: { target: name, commandId: issued.commandId } }]);
        return issued.commandId;
      } finally {
        zero(plaintext);
      }
    });
    this.commands.announce(target.agent_id);
    const deadline = Date.now() + PREFLIGHT_WAIT_MS;
    while (Date.now() < deadline) {
      const command = await findCommand(this.pool, commandId);
      if (command !== null && !['pending', 'delivered', 'accepted'].includes(command.state)) {
        const report = await this.recordPreflightResult(commandId);
        const fresh = await findTarget(this.pool, target.project_id, name);
        return { target: fresh ?? target, report };
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return { target, report: null };
  }

  /** Stores a finished preflight's report on its target (idempotent; called by whichever replica sees the result first). */
  async recordPreflightResult(commandId: string): Promise<PreflightReport | null> {
    const command = await findCommand(this.pool, commandId);
    if (command === null || command.kind !== 'target.preflight' || ['pending', 'delivered', 'accepted'].includes(command.state)) return null;
    const r = command.result ?? {};
    const strategy = command.payload.strategy === 'dual' ? 'dual' : 'replace';
    const report: PreflightReport = command.state === 'succeeded'
      ? {
        ok: r.ok === true,
        strategy,
        problems: typeof r.problems === 'string' ? r.problems : '',
        warnings: typeof r.warnings === 'string' ? r.warnings : '',
        server: typeof r.flavour === 'string' ? `${r.flavour} ${typeof r.serverVersion === 'string' ? r.serverVersion : ''}`.trim() : null,
        strategies: typeof r.strategies === 'string' && r.strategies !== '' ? r.strategies.split(',') : [],
      }
      : { ok: false, strategy, problems: `the preflight ${command.state}: ${command.error?.code ?? ''} ${command.error?.message ?? ''}`.trim(), warnings: '', server: null, strategies: [] };
    await this.pool.query(
      'UPDATE targets SET preflight_ok = $2, preflight = $3, preflight_at = now(), preflight_command_id = NULL WHERE preflight_command_id = $1',
      [commandId, report.ok, JSON.stringify(report)],
    );
    return report;
  }
}
