/**
 * The one base error of the project. Every refusal carries a stable string code
 * (`ERR_<AREA>_<WHAT>`), a readable message that never contains a secret value, and
 * whether retrying the same call may succeed. Boundaries (HTTP, WebSocket, CLI)
 * translate it; nothing else inspects messages.
 */
export class SikkerError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  /** Extra structured, non-secret facts for the caller (e.g. which audit record broke). */
  readonly details: Record<string, unknown> | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options: { cause?: unknown; retryable?: boolean; details?: Record<string, unknown> } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: sanitiseCause(options.cause) });
    this.name = 'SikkerError';
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.details = options.details;
  }
}

/**
 * Keeps a cause's class name, code and message but drops anything else it carries
 * (driver errors can hold query parameters, connection strings or config objects).
 * Callers must still never pass a cause whose *message* contains a secret.
 */
function sanitiseCause(cause: unknown): unknown {
  if (cause instanceof SikkerError) return cause;
  if (cause instanceof Error) {
    const safe = new Error(cause.message);
    safe.name = cause.name;
    const code = (cause as { code?: unknown }).code;
    if (typeof code === 'string' || typeof code === 'number') (safe as { code?: unknown }).code = code;
    return safe;
  }
  return new Error(typeof cause === 'string' ? cause : 'non-error cause');
}

export const ERROR_CODES = {
  ERR_CONFIG_INVALID: 'configuration is invalid',
  ERR_VALIDATION: 'request failed validation',
  ERR_NOT_FOUND: 'not found',
  ERR_CONFLICT: 'conflict with current state',
  ERR_VAULT_SEALED: 'vault is sealed',
  ERR_VAULT_NOT_INITIALISED: 'vault is not initialised',
  ERR_VAULT_ALREADY_INITIALISED: 'vault is already initialised',
  ERR_VAULT_UNSEAL_FAILED: 'shares do not reconstruct the root key',
  ERR_VAULT_SHARE_INVALID: 'share is malformed',
  ERR_CRYPTO_DECRYPT: 'ciphertext failed authentication',
  ERR_CRYPTO_FORMAT: 'ciphertext is malformed',
  ERR_AUTH_MISSING: 'request is not signed',
  ERR_AUTH_MALFORMED: 'signature headers are malformed',
  ERR_AUTH_CLOCK_SKEW: 'clock skew too large',
  ERR_AUTH_REPLAY: 'nonce already used',
  ERR_AUTH_BAD_SIGNATURE: 'signature does not verify',
  ERR_AUTH_UNKNOWN_IDENTITY: 'unknown identity',
  ERR_AUTH_IDENTITY_DISABLED: 'identity is disabled',
  ERR_AUTH_SOURCE_DENIED: 'source address not allowed for this identity',
  ERR_AUTH_NONCE_STORE_UNAVAILABLE: 'nonce store unavailable',
  ERR_AUTH_FORBIDDEN: 'role does not grant this action',
  ERR_TOKEN_INVALID: 'join token is invalid, used or expired',
  ERR_AUDIT_WRITE_FAILED: 'audit record could not be written',
  ERR_AUDIT_CHAIN_BROKEN: 'audit chain is broken',
  ERR_IDENTITY_KEY_FILE: 'identity key file is unusable',
  ERR_TRANSPORT_INSECURE: 'refusing plain HTTP to a non-loopback address',
  ERR_TRANSPORT_PIN_MISMATCH: 'server certificate does not match the pinned fingerprint',
  ERR_SERVER_UNREACHABLE: 'server unreachable',
  ERR_INTERNAL: 'internal error',
  ERR_COMMAND_SIGNATURE: 'command signature does not verify with the pinned server key',
  ERR_COMMAND_EXPIRED: 'command expired before it was accepted',
  ERR_COMMAND_STALE: 'command generation is not newer than the highest accepted',
  ERR_COMMAND_WRONG_AGENT: 'command is addressed to another agent',
  ERR_AGENT_STATE: 'agent state directory or journal is unusable',
  ERR_HUB_PROTOCOL: 'hub connection broke the agent protocol',
  ERR_SINK_WRITE: 'secret could not be written to the sink',
  ERR_SINK_RELOAD: 'sink reload command failed',
  ERR_APPLIER_CONFIG: 'database target settings are invalid',
  ERR_APPLIER_UNREACHABLE: 'database server unreachable',
  ERR_APPLIER_TLS: 'TLS to the database server failed',
  ERR_APPLIER_AUTH_FAILED: 'the login the applier uses was refused',
  ERR_APPLIER_PRIVILEGE: 'login lacks the privilege to change this password',
  ERR_APPLIER_UNKNOWN_USER: 'database user does not exist',
  ERR_APPLIER_AMBIGUOUS_USER: 'user name matches several accounts',
  ERR_APPLIER_LOGIN_DISABLED: 'database user cannot log in',
  ERR_APPLIER_UNSUPPORTED: 'not supported by this database server',
  ERR_APPLIER_REJECTED_PASSWORD: 'database refused the new password',
  ERR_APPLIER_REVOKE_CURRENT: 'refusing to revoke the password that is current',
  ERR_APPLIER_CLOSED: 'applier is closed',
  ERR_APPLIER_FAILED: 'database operation failed',
  ERR_ROTATION_VERIFY_FAILED: 'the new password did not log in; the previous one was kept',
  ERR_ROTATION_IN_FLIGHT: 'a rotation of this target is already in flight',
  ERR_PREFLIGHT_FAILED: 'the target failed its preflight',
  ERR_POLICY_INVALID: 'the rotation policy is invalid',
  ERR_ROTATION_TIMEOUT: 'the agent did not report a rotation step in time',
  ERR_ROTATION_UNCERTAIN: 'cannot tell whether the new password took effect',
  ERR_ROTATION_NO_CREDENTIAL: 'neither the pending nor the current password logs in',
  ERR_ROTATION_REVOKE: 'the previous password could not be revoked',
  ERR_ROTATION_FAILED: 'the rotation did not take effect',
  ERR_AGENT_UNREACHABLE: 'the agent did not take the command in time',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isSikkerError(err: unknown): err is SikkerError {
  return err instanceof SikkerError;
}
