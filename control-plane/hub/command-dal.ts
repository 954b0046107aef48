import pg, { type PoolClient } from 'pg';
import type { Queryable, StatementWrite } from '../db/queryable.js';

const parseBytea = pg.types.getTypeParser(pg.types.builtins.BYTEA, 'text');

export const OPEN_STATES = ['pending', 'delivered', 'accepted'] as const;

/**
 * "The command is open", written out as agent_commands_open_idx's predicate (migration 002):
 * a parameter (`state = ANY($n)`) would keep a prepared statement's generic plan from that
 * partial index, and it would scan every command the agent ever had.
 */
const IS_OPEN = `state IN (${OPEN_STATES.map((s) => `'${s}'`).join(', ')})`;

export interface CommandRow {
  command_id: string;
  agent_id: string;
  generation: string;
  kind: string;
  payload: Record<string, unknown>;
  sealed: Buffer | null;
  state: string;
  issued_by: string | null;
  issued_at: Date;
  expires_at: Date;
  delivered_at: Date | null;
  deliveries: number;
  completed_at: Date | null;
  result: Record<string, unknown> | null;
  error: { code: string; message: string } | null;
}

/** Takes the agent's next generation number (row lock: generations are gap-free per agent). */
export async function nextGeneration(client: PoolClient, agentId: string): Promise<{ generation: number; boxPublicKey: string } | null> {
  const row = (await client.query<{ generation: string; box_public_key: string }>({ name: 'agent-next-generation', text: 'UPDATE agents SET next_generation = next_generation + 1 WHERE agent_id = $1 RETURNING next_generation - 1 AS generation, box_public_key', values: [agentId] })).rows[0];
  return row === undefined ? null : { generation: Number(row.generation), boxPublicKey: row.box_public_key };
}

export async function insertCommand(client: PoolClient, c: { commandId: string; agentId: string; generation: number; kind: string; payload: Record<string, unknown>; sealed: Buffer | null; issuedBy: string | null; expiresAt: Date }): Promise<void> {
  await client.query({ name: 'command-insert', text: `INSERT INTO agent_commands (command_id, agent_id, generation, kind, payload, sealed, state, issued_by, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8)`, values: [c.commandId, c.agentId, c.generation, c.kind, JSON.stringify(c.payload), c.sealed, c.issuedBy, c.expiresAt] });
}

/** The statement's `g`: the agent's next generation, taken only while its box key is still `key` (parameter placeholders given). */
const takeGeneration = (agent: string, key: string): string =>
  `UPDATE agents SET next_generation = next_generation + 1 WHERE agent_id = ${agent} AND box_public_key = ${key} RETURNING next_generation - 1 AS generation`;

/**
 * Counts the agent's open, unexpired commands other than the listed ones as delivered and
 * returns them; rows another transaction has locked are skipped (placeholders given; `also`:
 * a further condition).
 */
const claimOpen = (agent: string, except: string, also = 'true'): string =>
  `UPDATE agent_commands c SET deliveries = c.deliveries + 1, delivered_at = clock_timestamp(), state = CASE WHEN c.state = 'pending' THEN 'delivered' ELSE c.state END
    WHERE ${also} AND c.command_id IN (SELECT command_id FROM agent_commands
                                        WHERE agent_id = ${agent} AND ${IS_OPEN} AND expires_at > now() AND command_id <> ALL(${except}::uuid[])
                                          FOR UPDATE SKIP LOCKED)
   RETURNING c.*`;

/**
 * Takes the agent's next generation and stores the command in one statement, provided the
 * agent's box key is still `boxPublicKey` (the one `sealed` was sealed to). Returns the
 * generation, or null when nothing was stored (the key changed, or no such agent): the caller
 * then takes the generation and the current key with {@link nextGeneration} and seals again.
 */
export async function insertCommandWithGeneration(client: PoolClient, boxPublicKey: string, c: { commandId: string; agentId: string; kind: string; payload: Record<string, unknown>; sealed: Buffer | null; issuedBy: string | null; expiresAt: Date }): Promise<number | null> {
  const row = (await client.query<{ generation: string }>({
    name: 'command-insert-with-generation',
    text: `WITH g AS (${takeGeneration('$2', '$8')})
           INSERT INTO agent_commands (command_id, agent_id, generation, kind, payload, sealed, state, issued_by, expires_at)
           SELECT $1, $2, g.generation, $3, $4, $5, 'pending', $6, $7 FROM g
           RETURNING generation`,
    values: [c.commandId, c.agentId, c.kind, JSON.stringify(c.payload), c.sealed, c.issuedBy, c.expiresAt, boxPublicKey],
  })).rows[0];
  return row === undefined ? null : Number(row.generation);
}

/** A command to store, sealed already. */
export interface NewCommand {
  commandId: string;
  agentId: string;
  kind: string;
  payload: Record<string, unknown>;
  sealed: Buffer | null;
  issuedBy: string | null;
  expiresAt: Date;
}

/**
 * {@link insertCommandWithGeneration} and {@link claimOpenCommands} in one statement, for an
 * agent whose socket this replica holds, as a write that returns the rows it claimed: the new
 * command is stored as delivered, and every other open command not in `except` is counted as
 * delivered too (rows another transaction holds are skipped). When the agent's box key is no
 * longer `boxPublicKey` (or there is no such agent) nothing is stored and nothing claimed:
 * {@link claimedWith} tells. Sent with others, the rows come as JSON ({@link commandRowFromJson}).
 */
export function insertCommandAndClaimWrite(boxPublicKey: string, c: NewCommand, except: string[]): StatementWrite {
  return {
    name: 'command-insert-and-claim',
    before: [
      ['generation_taken', takeGeneration('$2', '$8')],
      ['command_stored', `INSERT INTO agent_commands (command_id, agent_id, generation, kind, payload, sealed, state, issued_by, expires_at, deliveries, delivered_at)
                          SELECT $1, $2, generation_taken.generation, $3, $4, $5, 'delivered', $6, $7, 1, clock_timestamp() FROM generation_taken
                          RETURNING *`],
      ['commands_claimed', claimOpen('$2', '$9', 'EXISTS (SELECT 1 FROM generation_taken)')],
    ],
    sql: 'SELECT * FROM command_stored UNION ALL SELECT * FROM commands_claimed',
    values: [c.commandId, c.agentId, c.kind, JSON.stringify(c.payload), c.sealed, c.issuedBy, c.expiresAt, boxPublicKey, except],
    rows: true,
  };
}

/** The claimed rows, oldest generation first, when they include `commandId` (it was stored); else null. */
export function claimedWith(commandId: string, rows: CommandRow[]): CommandRow[] | null {
  if (!rows.some((r) => r.command_id === commandId)) return null;
  return [...rows].sort((a, b) => Number(a.generation) - Number(b.generation));
}

/**
 * A command row as `json_agg` gives it (a statement that returns rows from among others):
 * bytea and timestamps as text. Checked field by field; throws on anything else.
 */
export function commandRowFromJson(json: Record<string, unknown>): CommandRow {
  const text = (key: string): string => {
    const v = json[key];
    if (typeof v !== 'string') throw new Error(`command row: ${key} is not text`);
    return v;
  };
  const nullable = <T>(key: string, read: (key: string) => T): T | null => (json[key] === null ? null : read(key));
  const date = (key: string): Date => {
    const d = new Date(text(key));
    if (Number.isNaN(d.getTime())) throw new Error(`command row: ${key} is not a timestamp`);
    return d;
  };
  const object = <T>(key: string): T => {
    const v = json[key];
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`command row: ${key} is not an object`);
    return v as T;
  };
  const bytes = (key: string): Buffer => {
    // the driver's own bytea parser: hex or escape format, whichever bytea_output gave
    const value: unknown = parseBytea(text(key));
    if (!Buffer.isBuffer(value)) throw new Error(`command row: ${key} is not bytea`);
    return value;
  };
  const generation = json['generation'];
  const deliveries = json['deliveries'];
  if (!Number.isSafeInteger(generation) || !Number.isSafeInteger(deliveries)) throw new Error('command row: generation or deliveries is not an integer');
  return {
    command_id: text('command_id'), agent_id: text('agent_id'), generation: String(generation), kind: text('kind'),
    payload: object('payload'), sealed: nullable('sealed', bytes), state: text('state'), issued_by: nullable('issued_by', text),
    issued_at: date('issued_at'), expires_at: date('expires_at'), delivered_at: nullable('delivered_at', date), deliveries: deliveries as number,
    completed_at: nullable('completed_at', date), result: nullable('result', object<Record<string, unknown>>), error: nullable('error', object<{ code: string; message: string }>),
  };
}

/** Commands still to deliver or finish, oldest generation first, unexpired. */
export async function openCommands(db: Queryable, agentId: string): Promise<CommandRow[]> {
  return (await db.query<CommandRow>({ name: 'commands-open', text: `SELECT * FROM agent_commands WHERE agent_id = $1 AND ${IS_OPEN} AND expires_at > now() ORDER BY generation`, values: [agentId] })).rows;
}

/**
 * In the caller's transaction: marks the agent's open, unexpired commands other than
 * `except` (those already sent on its socket, or held by it) as delivered and returns
 * them, oldest generation first, to be sent once the transaction commits. Rows another
 * transaction has locked are skipped, never waited for: they are being finished,
 * cancelled or claimed there, and the hub's sweep sends anything left open.
 */
export async function claimOpenCommands(client: PoolClient, agentId: string, except: string[]): Promise<CommandRow[]> {
  return (await client.query<CommandRow>({
    name: 'commands-claim',
    text: `WITH claimed AS (${claimOpen('$1', '$2')}) SELECT * FROM claimed ORDER BY generation`,
    values: [agentId, except],
  })).rows;
}

/**
 * Counts those of `commandIds` still open and unexpired as delivered once more, and returns
 * their ids: the ones to send. A command finished or cancelled since it was read (the engine
 * cancels an apply it gave up on, as never delivered) is left as it is and must not be sent.
 */
export async function markDelivered(db: Queryable, commandIds: string[]): Promise<Set<string>> {
  if (commandIds.length === 0) return new Set();
  const { rows } = await db.query<{ command_id: string }>({ name: 'commands-delivered-if-open', text: `UPDATE agent_commands SET deliveries = deliveries + 1, delivered_at = now(),
            state = CASE WHEN state = 'pending' THEN 'delivered' ELSE state END
      WHERE command_id = ANY($1::uuid[]) AND ${IS_OPEN} AND expires_at > now()
      RETURNING command_id`, values: [commandIds] });
  return new Set(rows.map((r) => r.command_id));
}

export async function markAccepted(db: Queryable, agentId: string, commandId: string): Promise<void> {
  await db.query({ name: 'command-accepted', text: `UPDATE agent_commands SET state = 'accepted' WHERE command_id = $1 AND agent_id = $2 AND state IN ('pending', 'delivered')`, values: [commandId, agentId] });
}

/**
 * Records a final outcome once: later duplicates (a re-sent result after a reconnect)
 * change nothing. Returns true when this call made the change.
 */
export async function completeCommand(db: Queryable, agentId: string, commandId: string, state: 'succeeded' | 'failed' | 'rejected' | 'expired', result: Record<string, unknown> | null, error: { code: string; message: string } | null, options: { evenIfExpired?: boolean } = {}): Promise<boolean> {
  const write = completeCommandWrite(agentId, commandId, state, result, error, options);
  return (await db.query(write.sql, write.values)).rowCount === 1;
}

/** {@link completeCommand} as a statement to send with others (it changes one row, or none). */
export function completeCommandWrite(agentId: string, commandId: string, state: 'succeeded' | 'failed' | 'rejected' | 'expired', result: Record<string, unknown> | null, error: { code: string; message: string } | null, options: { evenIfExpired?: boolean } = {}): StatementWrite {
  // A result from the agent wins over our own expiry: the agent may have accepted it just before (what it did is what happened).
  const from = options.evenIfExpired === true ? [...OPEN_STATES, 'expired'] : [...OPEN_STATES];
  return {
    name: 'command-complete',
    sql: `UPDATE agent_commands SET state = $3, result = $4, error = $5, completed_at = now(), sealed = NULL
           WHERE command_id = $1 AND agent_id = $2 AND state = ANY($6::text[]) RETURNING 1`,
    values: [commandId, agentId, state, result === null ? null : JSON.stringify(result), error === null ? null : JSON.stringify(error), from],
  };
}

export async function findCommand(db: Queryable, commandId: string): Promise<CommandRow | null> {
  return (await db.query<CommandRow>({ name: 'command-by-id', text: 'SELECT * FROM agent_commands WHERE command_id = $1', values: [commandId] })).rows[0] ?? null;
}

export async function recentCommands(db: Queryable, agentId: string, limit: number): Promise<CommandRow[]> {
  return (await db.query<CommandRow>('SELECT * FROM agent_commands WHERE agent_id = $1 ORDER BY generation DESC LIMIT $2', [agentId, limit])).rows;
}

/** Agents with commands not yet finished (the periodic safety sweep sends what their socket has not had). */
export async function agentsWithOpenCommands(db: Queryable): Promise<string[]> {
  return (await db.query<{ agent_id: string }>(`SELECT DISTINCT agent_id FROM agent_commands WHERE state IN ('pending', 'delivered') AND expires_at > now()`)).rows.map((r) => r.agent_id);
}

/** Undelivered or unanswered commands past their expiry become `expired` (accepted ones are the agent's to finish). */
export async function expireCommands(db: Queryable): Promise<number> {
  // The sealed secret goes with it: nothing undeliverable stays in the database.
  return (await db.query(`UPDATE agent_commands SET state = 'expired', completed_at = now(), sealed = NULL WHERE state IN ('pending', 'delivered') AND expires_at <= now()`)).rowCount ?? 0;
}
