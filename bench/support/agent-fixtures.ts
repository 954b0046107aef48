/**
 * Bulk set-up of agent identities for benchmarks: the rows an enrollment would write
 * (identities, grants with role 'agent', agents), inserted straight into the
 * benchmark's own database in a few statements instead of one enrollment each.
 * Nothing else (audit records, join tokens) is written: the hub does not read them.
 */
import pg from 'pg';
import type { PreparedAgent } from './agent-swarm-control.js';

const CHUNK = 5000;

/** Inserts `agents` as enrolled agents of project `projectName`, named `<namePrefix>-<n>`. */
export async function insertAgents(databaseUrl: string, projectName: string, agents: readonly PreparedAgent[], namePrefix: string): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined); // surfaced through the awaited queries
  await client.connect();
  try {
    const project = (await client.query<{ project_id: string }>('SELECT project_id FROM projects WHERE name = $1', [projectName])).rows[0];
    if (project === undefined) throw new Error(`no project named ${projectName}`);
    await client.query('BEGIN');
    for (let start = 0; start < agents.length; start += CHUNK) {
      const chunk = agents.slice(start, start + CHUNK);
      const ids = chunk.map((a) => a.identityId);
      await client.query(
        'INSERT INTO identities (identity_id, name, public_key) SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[])',
        [ids, chunk.map((_, i) => `${namePrefix}-${start + i}`), chunk.map((a) => a.publicKey)],
      );
      await client.query("INSERT INTO grants (identity_id, project_id, role) SELECT id, $2::uuid, 'agent' FROM unnest($1::uuid[]) AS id", [ids, project.project_id]);
      await client.query(
        'INSERT INTO agents (agent_id, project_id, box_public_key) SELECT id, $2::uuid, box FROM unnest($1::uuid[], $3::text[]) AS t(id, box)',
        [ids, project.project_id, chunk.map((a) => a.boxPublicKey)],
      );
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** How many agents with this version have a replica (connected) — i.e. whose hello the hub has processed. */
export async function countHelloed(databaseUrl: string, agentVersion: string): Promise<number> {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const row = (await client.query<{ n: string }>('SELECT count(*) AS n FROM agents WHERE agent_version = $1 AND replica_id IS NOT NULL', [agentVersion])).rows[0];
    return Number(row?.n ?? 0);
  } finally {
    await client.end().catch(() => undefined);
  }
}
