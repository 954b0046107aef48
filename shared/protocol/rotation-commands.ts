import * as z from 'zod';

/**
 * The rotation commands the control plane sends an agent (kinds `target.preflight`,
 * `rotation.apply`, `rotation.check`, `rotation.revoke`). The signed, non-secret part
 * is the payload; every password travels in the command's `sealed` box as the JSON of
 * the matching `*Secrets` schema, sealed to the agent's own key and bound to the
 * command id. Results are the flat facts the generic protocol allows (≤ 32 keys).
 */

export const TARGET_ENGINES = ['postgres', 'mysql', 'redis', 'mongodb', 'mssql'] as const;
export type TargetEngine = (typeof TARGET_ENGINES)[number];

/** What the agent must know to reach one database user. Holds no secret. */
export const TargetSpec = z.object({
  engine: z.enum(TARGET_ENGINES),
  host: z.string().min(1).max(253).regex(/^[A-Za-z0-9.:_\-[\]]+$/, 'a host name or address'),
  port: z.number().int().min(1).max(65535),
  database: z.string().min(1).max(128).optional(),
  user: z.string().min(1).max(128),
  tls: z.object({
    mode: z.enum(['disable', 'require', 'verify-full']),
    serverName: z.string().min(1).max(253).optional(),
  }).strict(),
  privilege: z.discriminatedUnion('mode', [
    z.object({ mode: z.literal('admin'), adminConnection: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/) }).strict(),
    z.object({ mode: z.literal('self') }).strict(),
  ]),
  mysqlAccountHost: z.string().min(1).max(255).optional(),
  redisPasswordMode: z.enum(['acl', 'requirepass']).optional(),
  /** MongoDB: the database the user is defined in (default `admin`). */
  authDatabase: z.string().min(1).max(64).regex(/^[^/\\. "$*<>:|?\0]+$/, 'a MongoDB database name').optional(),
  /** MongoDB: a rotation command template configured on the agent (`mongodbCommands`), used instead of `updateUser`. */
  mongodbCommand: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/).optional(),
  /** SQL Server: a server `login` (default) or a contained database `user` (needs `database`). */
  mssqlPrincipal: z.enum(['login', 'contained-user']).optional(),
}).strict();
export type TargetSpec = z.infer<typeof TargetSpec>;

/** How the database holds passwords during a rotation (the agent's view: `alternate` is two `replace`s on two users). */
export const ApplyStrategy = z.enum(['replace', 'dual']);
export type ApplyStrategy = z.infer<typeof ApplyStrategy>;

const Password = z.string().min(1).max(1024);
const RunId = z.string().uuid();
const DbUser = z.string().min(1).max(128);

/** `target.preflight`: can a rotation with `strategy` work for each of `users`? Changes nothing. */
export const PreflightPayload = z.object({
  target: TargetSpec,
  strategy: ApplyStrategy,
  users: z.array(DbUser).min(1).max(2),
}).strict();
export type PreflightPayload = z.infer<typeof PreflightPayload>;
/** Sealed with a preflight of a self-rotation target: the password that logs in now, per user. */
export const PreflightSecrets = z.object({ currentPasswords: z.record(DbUser, Password) }).strict();
export type PreflightSecrets = z.infer<typeof PreflightSecrets>;

/**
 * `rotation.apply`: set `newPassword` for `user`, then prove it with a fresh login.
 * When the proof fails, the agent puts `restorePassword` back (if it has one) and
 * reports ERR_ROTATION_VERIFY_FAILED. Idempotent: applying the same password again
 * succeeds, so an apply interrupted by an agent crash is simply run again at start.
 */
export const ApplyPayload = z.object({
  runId: RunId,
  attempt: z.number().int().min(1).max(1000),
  target: TargetSpec,
  user: DbUser,
  strategy: ApplyStrategy,
}).strict();
export type ApplyPayload = z.infer<typeof ApplyPayload>;
export const ApplySecrets = z.object({
  newPassword: Password,
  /** Self-rotation: the password that logs in now. */
  currentPassword: Password.optional(),
  /** The password to put back if the new one does not log in (admin mode, `replace`). */
  restorePassword: Password.optional(),
}).strict();
export type ApplySecrets = z.infer<typeof ApplySecrets>;

/**
 * `rotation.check` (reconciliation): which of these credentials log in right now?
 * Each candidate is a label (e.g. `v12`) and a user; the passwords are sealed.
 * The result has one fact per label: `ok` or `refused`.
 */
export const CheckPayload = z.object({
  runId: RunId,
  target: TargetSpec,
  candidates: z.array(z.object({ label: z.string().regex(/^[a-z0-9]{1,16}$/), user: DbUser }).strict()).min(1).max(8),
}).strict();
export type CheckPayload = z.infer<typeof CheckPayload>;
export const CheckSecrets = z.object({ passwords: z.record(z.string(), Password) }).strict();
export type CheckSecrets = z.infer<typeof CheckSecrets>;

/**
 * `rotation.revoke`: stop `password` of `user` from logging in.
 * - `dual`: the engine holds two passwords; drop the old one, keep the current.
 * - `scramble`: `alternate`'s resting user gets a random password nobody holds
 *   (generated on the agent, never reported), so its old one is refused.
 * Revoking what already does not log in succeeds (`absent`).
 */
export const RevokePayload = z.object({
  runId: RunId,
  target: TargetSpec,
  user: DbUser,
  method: z.enum(['dual', 'scramble']),
}).strict();
export type RevokePayload = z.infer<typeof RevokePayload>;
export const RevokeSecrets = z.object({
  password: Password,
  /** Self-rotation (`dual` only): the password that logs in and stays. */
  currentPassword: Password.optional(),
}).strict();
export type RevokeSecrets = z.infer<typeof RevokeSecrets>;

/**
 * `sessions.terminate` (leak response): end every live session of `user`, except the
 * agent's own. Facts: `{terminated: n}`. Self-rotation targets send the password that
 * logs in now sealed (`TerminateSecrets`).
 */
export const TerminatePayload = z.object({
  runId: RunId,
  target: TargetSpec,
  user: DbUser,
}).strict();
export type TerminatePayload = z.infer<typeof TerminatePayload>;
export const TerminateSecrets = z.object({ currentPassword: Password.optional() }).strict();
export type TerminateSecrets = z.infer<typeof TerminateSecrets>;

/** Result facts of `rotation.apply` (all flat). */
export interface ApplyFacts {
  verified: true;
  unchanged: boolean;
  oldPasswordRetained: boolean;
  persisted: boolean;
}
