import * as z from 'zod';
import { ProjectName, SecretName, SecretValue, Uuid } from './api.js';
import { TargetSpec } from './rotation-commands.js';

/** HTTP bodies and answers for targets, policies and rotation runs (CLI ↔ control plane). */

export const TargetName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'letters, digits, "_", "." and "-", 1–64 characters');
const SinkName = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/);

export const AddTargetRequest = z.object({
  name: TargetName,
  /** The secret that holds the user's password (created if it does not exist). */
  secret: SecretName,
  agentId: Uuid,
  connection: TargetSpec,
  /** The partner account for the `alternate` strategy (same server, same privilege). */
  alternateUser: z.string().min(1).max(128).optional(),
  /** Sinks on the managing agent that receive each committed password. */
  sinks: z.array(SinkName).max(16).default([]),
  /** The password that logs in now, stored as the current version without rotating. */
  adoptPassword: SecretValue.optional(),
}).strict();
export type AddTargetRequest = z.infer<typeof AddTargetRequest>;

export const TestTargetRequest = z.object({
  /** Which strategy to check (default: the policy's, else replace). */
  strategy: z.enum(['replace', 'dual', 'alternate']).optional(),
}).strict();

export const Preflight = z.object({
  ok: z.boolean(),
  at: z.string(),
  /** The strategy the preflight checked. */
  strategy: z.string(),
  problems: z.string(),
  warnings: z.string(),
  server: z.string().nullable(),
  strategies: z.array(z.string()),
});

export const Target = z.object({
  targetId: Uuid,
  project: z.string(),
  name: z.string(),
  secret: z.string(),
  agentId: Uuid,
  connection: TargetSpec,
  alternateUser: z.string().nullable(),
  sinks: z.array(z.string()),
  preflight: Preflight.nullable(),
  currentVersion: z.number().int().nullable(),
  activeUser: z.string().nullable(),
  createdAt: z.string(),
});
export type Target = z.infer<typeof Target>;
export const TargetList = z.object({ targets: z.array(Target) });

const Hhmm = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'HH:MM (24-hour)');

export const PasswordRulesSchema = z.object({
  length: z.number().int().min(12).max(256).default(32),
  lower: z.number().int().min(-1).max(256).default(1),
  upper: z.number().int().min(-1).max(256).default(1),
  digits: z.number().int().min(-1).max(256).default(1),
  symbols: z.number().int().min(-1).max(256).default(1),
  avoid: z.string().max(128).default(''),
}).strict();

export const PolicySpec = z.object({
  schedule: z.discriminatedUnion('kind', [
    z.object({ kind: z.literal('every'), seconds: z.number().int().min(1).max(315_360_000) }).strict(),
    z.object({ kind: z.literal('cron'), expression: z.string().min(9).max(128) }).strict(),
  ]),
  timeZone: z.string().min(1).max(64).default('UTC'),
  window: z.object({ start: Hhmm, end: Hhmm }).strict().optional(),
  jitterSeconds: z.number().int().min(0).max(86_400).default(0),
  strategy: z.enum(['replace', 'dual', 'alternate']).default('replace'),
  /** How long the previous credential keeps working after a dual/alternate rotation. */
  graceSeconds: z.number().int().min(0).max(30 * 86_400).default(300),
  passwordRules: PasswordRulesSchema.default({ length: 32, lower: 1, upper: 1, digits: 1, symbols: 1, avoid: '' }),
  /** Tries with a fresh password before the run is parked. */
  maxAttempts: z.number().int().min(1).max(20).default(5),
  /** First retry delay; doubles per failure, with full jitter, capped at one hour. */
  retryBaseSeconds: z.number().int().min(1).max(3600).default(30),
}).strict();
export type PolicySpec = z.infer<typeof PolicySpec>;

export const SetPolicyRequest = z.object({
  policy: PolicySpec,
  /** Start paused (default: active, which needs a passing preflight). */
  paused: z.boolean().default(false),
  /** Overrides the computed first rotation time (ISO 8601). */
  nextRunAt: z.string().datetime({ offset: true }).optional(),
}).strict();

export const Policy = z.object({
  target: z.string(),
  policy: PolicySpec,
  state: z.enum(['active', 'paused']),
  nextRunAt: z.string().nullable(),
  lastRunAt: z.string().nullable(),
  updatedAt: z.string(),
});

export const SetNextRunRequest = z.object({ nextRunAt: z.string().datetime({ offset: true }) }).strict();

export const RotateRequest = z.object({}).strict();

export const RunStep = z.object({ seq: z.number().int(), step: z.string(), at: z.string(), detail: z.record(z.string(), z.unknown()) });
export const Run = z.object({
  runId: Uuid,
  project: z.string(),
  target: z.string(),
  trigger: z.string(),
  state: z.string(),
  strategy: z.string(),
  user: z.string(),
  attempt: z.number().int(),
  pendingVersion: z.number().int().nullable(),
  previousVersion: z.number().int().nullable(),
  errorCode: z.string().nullable(),
  errorMessage: z.string().nullable(),
  scheduledFor: z.string().nullable(),
  createdAt: z.string(),
  committedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
  nextActionAt: z.string().nullable(),
});
export type Run = z.infer<typeof Run>;
export const RunDetail = Run.extend({ steps: z.array(RunStep) });
export const RunList = z.object({ runs: z.array(Run) });
export const RunsQuery = z.object({
  project: ProjectName,
  target: TargetName.optional(),
  limit: z.coerce.number().int().min(1).max(500).default(20),
});
