import { SikkerError } from '../../shared/errors/sikker-error.js';
import { PreflightPayload, PreflightSecrets } from '../../shared/protocol/rotation-commands.js';
import type { PreflightFinding, PreflightResponse, RotationStrategy } from '../appliers/applier.js';
import type { CommandContext, CommandExecutor, ResultFacts } from './command-executor.js';
import { openSecrets, parsePayload, withApplier, type RotationExecutorDeps } from './rotation-context.js';

/** The protocol caps a fact string at 1024 characters. */
const MAX_FACT_CHARS = 1024;

/**
 * `target.preflight`: asks the applier, per user, whether a rotation with the given
 * strategy can work, and changes nothing. Idempotent.
 *
 * A preflight that finds problems succeeds as a command; its facts say so:
 * `ok` (every user ok), `problems` and `warnings` (`user: CODE message; …`, at most
 * 1024 characters), `flavour` and `serverVersion` (null when the server was not
 * reached), `strategies` (comma-joined, supported for every reached user).
 * Fails only for malformed input: ERR_VALIDATION (payload, sealed secrets, a
 * self-rotation target without the current password of each user),
 * ERR_CRYPTO_* (not sealed for this command), ERR_APPLIER_CONFIG (unknown admin
 * connection, invalid target), ERR_APPLIER_UNSUPPORTED (driver not loadable).
 */
export function createPreflightExecutor(deps: RotationExecutorDeps): CommandExecutor {
  return {
    kind: 'target.preflight',
    idempotent: true,
    checkPayload(payload) {
      parsePayload('target.preflight', PreflightPayload, payload);
    },
    async execute({ envelope, logger }: CommandContext): Promise<ResultFacts> {
      const payload = parsePayload('target.preflight', PreflightPayload, envelope.payload);
      const passwords = openSecrets(deps, envelope, PreflightSecrets, false)?.currentPasswords ?? {};
      const self = payload.target.privilege.mode === 'self';
      if (self) {
        const missing = payload.users.filter((user) => passwords[user] === undefined);
        if (missing.length > 0) throw new SikkerError('ERR_VALIDATION', `a self-rotation preflight needs the current password of ${missing.join(', ')}`);
      }
      const log = logger.child({ engine: payload.target.engine, host: payload.target.host, port: payload.target.port, strategy: payload.strategy });
      const reports = await withApplier(deps, payload.target, log, async (applier) => {
        const out: [string, PreflightResponse][] = [];
        for (const user of payload.users) {
          out.push([user, await applier.preflight({ user, strategy: payload.strategy, currentPassword: self ? passwords[user] : undefined })]);
        }
        return out;
      });
      const facts = preflightFacts(reports);
      log.info({ users: payload.users, ok: facts.ok, problems: facts.problems }, 'target preflight finished');
      return facts;
    },
  };
}

/** Folds per-user reports into the flat facts of the result. */
export function preflightFacts(reports: readonly [string, PreflightResponse][]): ResultFacts {
  const reached = reports.filter(([, r]) => r.server !== undefined);
  const server = reached[0]?.[1].server;
  let strategies: RotationStrategy[] | undefined;
  for (const [, report] of reached) strategies = (strategies ?? report.strategies).filter((s) => report.strategies.includes(s));
  return {
    ok: reports.every(([, r]) => r.ok),
    problems: findings(reports.map(([user, r]) => [user, r.problems])),
    warnings: findings(reports.map(([user, r]) => [user, r.warnings])),
    flavour: server === undefined ? null : clip(server.flavour),
    serverVersion: server === undefined ? null : clip(server.version),
    strategies: (strategies ?? []).join(','),
  };
}

function findings(perUser: [string, PreflightFinding<string>[]][]): string {
  return clip(perUser.flatMap(([user, list]) => list.map((f) => `${user}: ${f.code} ${f.message}`)).join('; '));
}

function clip(text: string): string {
  return text.length <= MAX_FACT_CHARS ? text : `${text.slice(0, MAX_FACT_CHARS - 1)}…`;
}
