import { sign, verify, type KeyObject } from 'node:crypto';
import * as z from 'zod';

/**
 * The agent ↔ hub WebSocket protocol. Every frame is one JSON message validated
 * against these schemas on both sides; anything else closes the socket (1008).
 * Commands are signed by the control plane's Ed25519 key; secrets inside are sealed
 * to the agent's X25519 key (shared/crypto/sealed-box.ts).
 */
export const AGENT_CONNECT_PATH = '/v1/agent/connect';
export const PROTOCOL_VERSION = 1;
/** Largest frame either side accepts. Commands are small; this leaves room for sealed payloads. */
export const MAX_MESSAGE_BYTES = 64 * 1024;
/** Largest number of frames one message may arrive in (ws's own default is 16,384). */
export const MAX_FRAGMENTS = 256;

const Uuid = z.string().uuid();
const Base64 = z.string().max(90_000).regex(/^[A-Za-z0-9+/]*={0,2}$/);

export const COMMAND_KINDS = ['agent.probe', 'secret.deliver', 'target.preflight', 'rotation.apply', 'rotation.check', 'rotation.revoke', 'sessions.terminate'] as const;
export const CommandKind = z.enum(COMMAND_KINDS);
export type CommandKind = z.infer<typeof CommandKind>;

/** Non-secret parameters per kind. Secrets never go here: they travel in `sealed`. */
export const ProbePayload = z.object({}).strict();
export const DeliverPayload = z.object({
  sink: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/),
  project: z.string().max(63),
  secret: z.string().max(128),
  version: z.number().int().min(1),
}).strict();

/** What the control plane signs. Field order is fixed by `canonicalCommand`. */
export const CommandEnvelope = z.object({
  commandId: Uuid,
  agentId: Uuid,
  kind: CommandKind,
  generation: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  issuedAt: z.number().int(),
  expiresAt: z.number().int(),
  payload: z.record(z.string(), z.unknown()),
  /** base64 sealed box, or null when the command carries no secret. */
  sealed: Base64.nullable(),
}).strict();
export type CommandEnvelope = z.infer<typeof CommandEnvelope>;

const CommandResult = z.object({
  commandId: Uuid,
  outcome: z.enum(['succeeded', 'failed']),
  /** Small, non-secret facts (e.g. the file written, its bytes). */
  result: z.record(z.string(), z.union([z.string().max(1024), z.number(), z.boolean(), z.null()])).refine((r) => Object.keys(r).length <= 32),
  error: z.object({ code: z.string().max(64), message: z.string().max(1024) }).strict().nullable(),
}).strict();
export type CommandResult = z.infer<typeof CommandResult>;

export const AgentToHub = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('hello'),
    protocol: z.literal(PROTOCOL_VERSION),
    agentVersion: z.string().max(64),
    /** Highest generation the agent has accepted (0: none). */
    highestGeneration: z.number().int().min(0),
    /** Commands the agent holds a final result for and that the hub has not acknowledged. */
    results: z.array(CommandResult).max(1000),
    /** Commands the agent has accepted and is still working on. */
    inProgress: z.array(Uuid).max(1000),
  }).strict(),
  z.object({ type: z.literal('accepted'), commandId: Uuid }).strict(),
  z.object({ type: z.literal('rejected'), commandId: z.string().max(64), code: z.string().max(64), message: z.string().max(1024) }).strict(),
  z.object({ type: z.literal('result') }).extend(CommandResult.shape).strict(),
]);
export type AgentToHub = z.infer<typeof AgentToHub>;

export const HubToAgent = z.discriminatedUnion('type', [
  z.object({ type: z.literal('welcome'), replicaId: z.string().max(64), serverTime: z.number().int(), heartbeatMs: z.number().int().min(1000).max(600_000) }).strict(),
  z.object({ type: z.literal('command'), envelope: CommandEnvelope, signature: Base64 }).strict(),
  z.object({ type: z.literal('result-ack'), commandId: Uuid }).strict(),
]);
export type HubToAgent = z.infer<typeof HubToAgent>;

/** The exact bytes the control plane signs for a command. */
export function canonicalCommand(e: CommandEnvelope): Buffer {
  return Buffer.from(JSON.stringify([
    'sikker-command-v1', e.commandId, e.agentId, e.kind, e.generation, e.issuedAt, e.expiresAt,
    Object.keys(e.payload).sort().map((k) => [k, e.payload[k]]), e.sealed,
  ]), 'utf8');
}

export function signCommand(key: KeyObject, envelope: CommandEnvelope): string {
  return sign(null, canonicalCommand(envelope), key).toString('base64');
}

export function verifyCommand(serverPublicKey: KeyObject, envelope: CommandEnvelope, signature: string): boolean {
  try {
    const bytes = Buffer.from(signature, 'base64');
    return bytes.length === 64 && verify(null, canonicalCommand(envelope), serverPublicKey, bytes);
  } catch {
    // malformed input is a failed verification
    return false;
  }
}
