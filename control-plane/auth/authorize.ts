import { SikkerError } from '../../shared/errors/sikker-error.js';
import type { Role } from '../../shared/protocol/api.js';
import type { AuthIdentity } from '../identity/identity-types.js';

/**
 * What each role may do in a project. A global admin (grant without a project) may do
 * everything. Readers and agents additionally need a per-secret grant to read
 * (checked by the secret service, which knows the secret).
 */
export type Action =
  | 'secret.read' | 'secret.write' | 'secret.list' | 'secret.grant'
  | 'token.create' | 'project.rotate-key' | 'audit.read' | 'agent.read' | 'agent.command'
  | 'target.read' | 'target.write' | 'rotation.run' | 'secret.match' | 'leak.respond';

const ROLE_ACTIONS: Record<Role, ReadonlySet<Action>> = {
  admin: new Set<Action>(['secret.read', 'secret.write', 'secret.list', 'secret.grant', 'token.create', 'project.rotate-key', 'audit.read', 'agent.read', 'agent.command', 'target.read', 'target.write', 'rotation.run', 'secret.match', 'leak.respond']),
  dba: new Set<Action>(['secret.read', 'secret.write', 'secret.list', 'audit.read', 'agent.read', 'agent.command', 'target.read', 'target.write', 'rotation.run', 'secret.match', 'leak.respond']),
  oncall: new Set<Action>(['secret.read', 'secret.list', 'audit.read', 'agent.read', 'agent.command', 'target.read', 'rotation.run', 'secret.match', 'leak.respond']),
  reader: new Set<Action>(['secret.read', 'secret.list']),
  agent: new Set<Action>(['secret.read', 'secret.list']),
};

/** Roles whose reads are limited to secrets granted one by one. */
export const GRANT_LIMITED_ROLES: ReadonlySet<Role> = new Set<Role>(['reader', 'agent']);

export function isGlobalAdmin(identity: AuthIdentity): boolean {
  return identity.grants.some((g) => g.projectId === null && g.role === 'admin');
}

/** Whether `identity` may know that the project exists (a global admin, or any grant in it). */
export function canSeeProject(identity: AuthIdentity, projectId: string): boolean {
  return isGlobalAdmin(identity) || identity.grants.some((g) => g.projectId === projectId);
}

/** The roles `identity` holds in `projectId` that allow `action` (empty when none). */
export function rolesAllowing(identity: AuthIdentity, action: Action, projectId: string): Role[] {
  if (isGlobalAdmin(identity)) return ['admin'];
  return identity.grants.filter((g) => g.projectId === projectId && ROLE_ACTIONS[g.role].has(action)).map((g) => g.role);
}

/** Throws ERR_AUTH_FORBIDDEN unless some role allows the action; returns those roles. */
export function requireProjectAction(identity: AuthIdentity, action: Action, projectId: string): Role[] {
  const roles = rolesAllowing(identity, action, projectId);
  if (roles.length === 0) throw new SikkerError('ERR_AUTH_FORBIDDEN', `your grants do not allow ${action} in this project`);
  return roles;
}

export function requireGlobalAdmin(identity: AuthIdentity, what: string): void {
  if (!isGlobalAdmin(identity)) throw new SikkerError('ERR_AUTH_FORBIDDEN', `only a control-plane admin may ${what}`);
}

/** True when every allowing role is limited to per-secret grants. */
export function needsSecretGrant(roles: Role[]): boolean {
  return roles.every((r) => GRANT_LIMITED_ROLES.has(r));
}
