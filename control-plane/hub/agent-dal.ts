import type { Queryable } from '../db/queryable.js';

export interface AgentRow {
  agent_id: string;
  name: string;
  project_id: string;
  project_name: string;
  agent_version: string | null;
  replica_id: string | null;
  remote_address: string | null;
  connected_at: Date | null;
  disconnected_at: Date | null;
  last_heartbeat_at: Date | null;
  disabled_at: Date | null;
  online: boolean;
}

const SELECT_AGENT = (staleSeconds: number): string => `
  SELECT a.agent_id, i.name, a.project_id, p.name AS project_name, a.agent_version, a.replica_id, a.remote_address,
         a.connected_at, a.disconnected_at, a.last_heartbeat_at, i.disabled_at,
         (a.replica_id IS NOT NULL AND a.last_heartbeat_at > now() - interval '${staleSeconds} seconds') AS online
    FROM agents a JOIN identities i ON i.identity_id = a.agent_id JOIN projects p ON p.project_id = a.project_id`;

/** Agents, newest connection first; `online` means a replica holds its socket and heard from it recently. */
export async function listAgents(db: Queryable, staleSeconds: number, projectId: string | null): Promise<AgentRow[]> {
  return (await db.query<AgentRow>(`${SELECT_AGENT(staleSeconds)} WHERE ($1::uuid IS NULL OR a.project_id = $1::uuid) ORDER BY i.name`, [projectId])).rows;
}

export async function findAgent(db: Queryable, staleSeconds: number, agentId: string): Promise<AgentRow | null> {
  return (await db.query<AgentRow>(`${SELECT_AGENT(staleSeconds)} WHERE a.agent_id = $1`, [agentId])).rows[0] ?? null;
}

export async function markConnected(db: Queryable, agentId: string, replicaId: string, remoteAddress: string): Promise<void> {
  await db.query(
    'UPDATE agents SET replica_id = $2, remote_address = $3, connected_at = now(), last_heartbeat_at = now() WHERE agent_id = $1',
    [agentId, replicaId, remoteAddress],
  );
}

export async function recordHello(db: Queryable, agentId: string, agentVersion: string): Promise<void> {
  await db.query('UPDATE agents SET agent_version = $2 WHERE agent_id = $1', [agentId, agentVersion]);
}

/** Clears the replica only if it is still ours (the agent may already be on another replica). */
export async function markDisconnected(db: Queryable, agentId: string, replicaId: string): Promise<void> {
  await db.query('UPDATE agents SET replica_id = NULL, disconnected_at = now() WHERE agent_id = $1 AND replica_id = $2', [agentId, replicaId]);
}

/** One statement for every agent this replica heard from in the last interval. */
export async function touchHeartbeats(db: Queryable, agentIds: string[], replicaId: string): Promise<void> {
  if (agentIds.length === 0) return;
  // Only agents this replica holds (or nobody does): a stale socket here must not take an agent back from another replica.
  await db.query('UPDATE agents SET last_heartbeat_at = now(), replica_id = $2 WHERE agent_id = ANY($1::uuid[]) AND (replica_id = $2 OR replica_id IS NULL)', [agentIds, replicaId]);
}

/** Which of `identityIds` (this replica's connected agents) are disabled now. */
export async function disabledAmong(db: Queryable, identityIds: string[]): Promise<string[]> {
  if (identityIds.length === 0) return [];
  return (await db.query<{ identity_id: string }>(
    'SELECT identity_id FROM identities WHERE identity_id = ANY($1::uuid[]) AND disabled_at IS NOT NULL', [identityIds],
  )).rows.map((r) => r.identity_id);
}

export async function isActiveAgent(db: Queryable, agentId: string): Promise<boolean> {
  const row = (await db.query('SELECT 1 FROM agents a JOIN identities i ON i.identity_id = a.agent_id WHERE a.agent_id = $1 AND i.disabled_at IS NULL', [agentId])).rows[0];
  return row !== undefined;
}
