import * as z from 'zod';
import { ProjectName, SecretName, SecretValue, Uuid, VersionNumber } from './api.js';

/** HTTP bodies and answers for leak response and fingerprint matching. */

export const LeakByNameRequest = z.object({
  /** The leaked secret; or `all` for every target of the project. */
  secret: SecretName.optional(),
  all: z.boolean().default(false),
  version: VersionNumber.optional(),
  killSessions: z.boolean().default(false),
}).strict().refine((r) => (r.secret === undefined) === r.all, 'give either secret or all: true');

export const LeakByValueRequest = z.object({
  value: SecretValue,
  project: ProjectName.optional(),
  killSessions: z.boolean().default(false),
}).strict();

export const LeakStarted = z.object({
  matched: z.boolean(),
  leaks: z.array(z.object({
    leakId: Uuid, project: z.string(), secret: z.string(), version: z.number().int(), target: z.string().nullable(), runId: Uuid.nullable(), joined: z.boolean(),
  })),
});

export const LeakReport = z.object({
  leakId: Uuid,
  project: z.string(),
  secret: z.string(),
  target: z.string().nullable(),
  leakedVersion: z.number().int(),
  foundBy: z.string(),
  state: z.enum(['open', 'neutralised', 'exposed']),
  reason: z.string().nullable(),
  reportedAt: z.string(),
  neutralisedAt: z.string().nullable(),
  secondsToNeutralise: z.number().nullable(),
  run: z.object({ runId: Uuid, state: z.string(), errorCode: z.string().nullable(), errorMessage: z.string().nullable() }).nullable(),
  readers: z.array(z.object({ identityId: z.string().nullable(), identity: z.string().nullable(), version: z.number().int(), at: z.string(), sourceIp: z.string().nullable() })),
  deliveries: z.array(z.object({ agentId: z.string().nullable(), sink: z.string().nullable(), version: z.number().int(), at: z.string() })),
});
export type LeakReport = z.infer<typeof LeakReport>;

export const MatchRequest = z.object({
  candidates: z.array(z.string().min(1).max(1024)).min(1).max(1000),
  project: ProjectName.optional(),
}).strict();

export const MatchResponse = z.object({
  matches: z.array(z.object({
    index: z.number().int(), project: z.string(), secret: z.string(), version: z.number().int(), label: z.string().nullable(), state: z.string(), leaked: z.boolean(),
  })),
});
