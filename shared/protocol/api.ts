import * as z from 'zod';
import { isNetworkCidr } from './cidr.js';

/**
 * The control plane's HTTP API: every request body and response body, with bounds.
 * Both the server (validation) and the CLI (typed client) use these, and the OpenAPI
 * description is generated from them. Field additions must stay optional.
 */
export const ROLES = ['admin', 'dba', 'oncall', 'reader', 'agent'] as const;
export const Role = z.enum(ROLES);
export type Role = z.infer<typeof Role>;

export const ProjectName = z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'lower-case letters, digits and "-", 1–63 characters');
export const SecretName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, 'letters, digits, "_", "." and "-", 1–128 characters');
export const IdentityName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$/, 'letters, digits, "_", ".", "@" and "-", 1–100 characters');
export const PublicKey = z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'an Ed25519 public key, 32 bytes base64url');
export const Uuid = z.string().uuid();
/** A network in CIDR form whose host bits are zero, e.g. 10.0.0.0/8 or fd00::/8. */
export const Cidr = z.string().max(49).refine(isNetworkCidr, 'a network such as 10.0.0.0/8 (host bits zero)');
/** Secret values are UTF-8 text, at most 64 KiB. */
export const SecretValue = z.string().min(1).max(65536);
export const VersionLabel = z.enum(['current', 'previous', 'pending']);

export const InitRequest = z.object({
  shares: z.number().int().min(2).max(16),
  threshold: z.number().int().min(2).max(16),
  publicKey: PublicKey,
  name: IdentityName,
}).refine((v) => v.threshold <= v.shares, { message: 'threshold must not exceed shares', path: ['threshold'] });
export const InitResponse = z.object({ shares: z.array(z.string()), identityId: Uuid, serverPublicKey: z.string() });

export const UnsealRequest = z.object({ share: z.string().min(1).max(200) });
export const StatusResponse = z.object({
  initialised: z.boolean(),
  sealed: z.boolean(),
  threshold: z.number().int().nullable(),
  shares: z.number().int().nullable(),
  progress: z.number().int(),
  serverPublicKey: z.string().nullable(),
});

export const CreateProjectRequest = z.object({ name: ProjectName });
export const Project = z.object({ projectId: Uuid, name: z.string(), keyVersion: z.number().int(), createdAt: z.string() });
export const ProjectList = z.object({ projects: z.array(Project) });
export const RotateProjectKeyResponse = z.object({ projectId: Uuid, keyVersion: z.number().int(), rewrapped: z.number().int() });

export const PutSecretRequest = z.object({ value: SecretValue, label: z.enum(['current', 'pending']).default('current') });
export const SecretVersionInfo = z.object({
  version: z.number().int(),
  label: VersionLabel.nullable(),
  state: z.enum(['active', 'revoked']),
  createdAt: z.string(),
});
export const PutSecretResponse = z.object({ secretId: Uuid, version: z.number().int(), label: VersionLabel });
export const SecretSummary = z.object({ secretId: Uuid, name: z.string(), currentVersion: z.number().int().nullable(), createdAt: z.string() });
export const SecretList = z.object({ secrets: z.array(SecretSummary) });
export const SecretVersions = z.object({ secretId: Uuid, versions: z.array(SecretVersionInfo) });
/** A secret version number as it comes in (PostgreSQL int: 1 … 2^31-1). */
export const VersionNumber = z.number().int().min(1).max(2147483647);

export const ReadSecretQuery = z.object({
  version: z.coerce.number().pipe(VersionNumber).optional(),
  label: VersionLabel.optional(),
});
export const ReadSecretResponse = z.object({
  project: z.string(), name: z.string(), version: z.number().int(), label: VersionLabel.nullable(), value: z.string(),
});
export const GrantSecretRequest = z.object({ identityId: Uuid });

export const CreateTokenRequest = z.object({
  project: ProjectName,
  role: Role,
  ttlSeconds: z.number().int().min(30).max(7 * 24 * 3600).default(900),
  cidrs: z.array(Cidr).max(32).default([]),
  name: IdentityName.optional(),
});
export const CreateTokenResponse = z.object({ token: z.string(), expiresAt: z.string() });
export const EnrollRequest = z.object({
  token: z.string().min(20).max(200),
  publicKey: PublicKey,
  name: IdentityName,
  /** Required for the agent role: the X25519 key commands' secrets are sealed to. */
  boxPublicKey: PublicKey.optional(),
});
export const EnrollResponse = z.object({ identityId: Uuid, project: z.string(), role: Role, serverPublicKey: z.string() });

export const Identity = z.object({
  identityId: Uuid,
  name: z.string(),
  publicKey: z.string(),
  disabled: z.boolean(),
  cidrs: z.array(z.string()),
  grants: z.array(z.object({ project: z.string().nullable(), role: Role })),
  createdAt: z.string(),
});
export const IdentityList = z.object({ identities: z.array(Identity) });
export const RekeyRequest = z.object({ publicKey: PublicKey, proof: z.string().min(80).max(100) });

export const AuditQuery = z.object({
  identity: Uuid.optional(),
  project: ProjectName.optional(),
  secret: SecretName.optional(),
  version: z.coerce.number().pipe(VersionNumber).optional(),
  action: z.string().max(64).optional(),
  from: z.iso.datetime({ offset: true }).optional(),
  to: z.iso.datetime({ offset: true }).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});
export const AuditRecord = z.object({
  seq: z.number().int(),
  occurredAt: z.string(),
  identityId: z.string().nullable(),
  sourceIp: z.string().nullable(),
  action: z.string(),
  projectId: z.string().nullable(),
  secretId: z.string().nullable(),
  secretVersion: z.number().int().nullable(),
  outcome: z.string(),
  detail: z.record(z.string(), z.unknown()),
  /** Current names, joined for display (not part of the hashed record). */
  identityName: z.string().nullable().optional(),
  projectName: z.string().nullable().optional(),
  secretName: z.string().nullable().optional(),
});
export const AuditList = z.object({ records: z.array(AuditRecord) });
export const AuditVerifyResponse = z.object({
  ok: z.boolean(),
  checked: z.number().int(),
  checkpoints: z.number().int(),
  firstBadSeq: z.number().int().nullable(),
  problem: z.string().nullable(),
  /** The newest signed checkpoint: the CLI checks it against its pinned server key and remembers it. */
  latestCheckpoint: z.object({
    seq: z.number().int(),
    recordHash: z.string().regex(/^[0-9a-f]{64}$/),
    prevSeq: z.number().int(),
    prevHash: z.string().regex(/^[0-9a-f]{64}$/),
    keyVersion: z.number().int(),
    signature: z.string().max(100),
  }).nullable(),
});

export const ErrorBody = z.object({ error: z.object({ code: z.string(), message: z.string(), details: z.record(z.string(), z.unknown()).optional() }) });
export const WhoAmI = Identity;

/** The rekey proof: the new key signs this text, binding it to the identity and the request's nonce. */
export function rekeyProofText(identityId: string, newPublicKey: string, nonce: string): Buffer {
  return Buffer.from(`sikker-rekey-v1\n${identityId}\n${newPublicKey}\n${nonce}`, 'utf8');
}

export const Agent = z.object({
  agentId: Uuid,
  name: z.string(),
  project: z.string(),
  online: z.boolean(),
  disabled: z.boolean(),
  agentVersion: z.string().nullable(),
  replica: z.string().nullable(),
  address: z.string().nullable(),
  connectedAt: z.string().nullable(),
  lastHeartbeatAt: z.string().nullable(),
});
export const AgentList = z.object({ agents: z.array(Agent) });
export const AgentCommand = z.object({
  commandId: Uuid,
  generation: z.number().int(),
  kind: z.string(),
  state: z.string(),
  payload: z.record(z.string(), z.unknown()),
  issuedAt: z.string(),
  expiresAt: z.string(),
  deliveries: z.number().int(),
  completedAt: z.string().nullable(),
  result: z.record(z.string(), z.unknown()).nullable(),
  error: z.object({ code: z.string(), message: z.string() }).nullable(),
});
export const AgentDetail = Agent.extend({ commands: z.array(AgentCommand) });
export const IssueCommandRequest = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('agent.probe'), ttlSeconds: z.number().int().min(10).max(86400).optional() }).strict(),
  z.object({
    kind: z.literal('secret.deliver'),
    /** The secret's project; must be the agent's (checked by the server). */
    project: ProjectName.optional(),
    secret: SecretName,
    sink: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/),
    version: VersionNumber.optional(),
    ttlSeconds: z.number().int().min(10).max(86400).optional(),
  }).strict(),
]);
