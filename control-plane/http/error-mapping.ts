import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { SikkerError, type ErrorCode } from '../../shared/errors/sikker-error.js';
import type { Logger } from '../../shared/logging/logger.js';

const STATUS: Partial<Record<ErrorCode, number>> = {
  ERR_VALIDATION: 400,
  ERR_POLICY_INVALID: 400,
  ERR_VAULT_SHARE_INVALID: 400,
  ERR_VAULT_UNSEAL_FAILED: 400,
  ERR_AUTH_MISSING: 401,
  ERR_AUTH_MALFORMED: 401,
  ERR_AUTH_CLOCK_SKEW: 401,
  ERR_AUTH_REPLAY: 401,
  ERR_AUTH_BAD_SIGNATURE: 401,
  ERR_AUTH_UNKNOWN_IDENTITY: 401,
  ERR_AUTH_IDENTITY_DISABLED: 401,
  ERR_TOKEN_INVALID: 401,
  ERR_AUTH_SOURCE_DENIED: 403,
  ERR_AUTH_FORBIDDEN: 403,
  ERR_NOT_FOUND: 404,
  ERR_CONFLICT: 409,
  ERR_PREFLIGHT_FAILED: 409,
  ERR_ROTATION_IN_FLIGHT: 409,
  ERR_VAULT_ALREADY_INITIALISED: 409,
  ERR_VAULT_NOT_INITIALISED: 503,
  ERR_VAULT_SEALED: 503,
  ERR_AUTH_NONCE_STORE_UNAVAILABLE: 503,
  ERR_AUDIT_WRITE_FAILED: 503,
};

export function statusFor(code: ErrorCode): number {
  return STATUS[code] ?? 500;
}

/** Turns framework errors (body too large, bad content type) into our codes. */
function fromFastify(err: FastifyError): SikkerError {
  // PostgreSQL unique or exclusion violation (e.g. two versions claiming one label): two requests raced to create the same thing.
  const code = (err as { code?: unknown }).code;
  if (code === '23505' || code === '23P01') return new SikkerError('ERR_CONFLICT', 'a concurrent request created the same thing; retry', { retryable: true });
  if (err.statusCode === 413) return new SikkerError('ERR_VALIDATION', 'request body too large');
  if (err.statusCode === 415) return new SikkerError('ERR_VALIDATION', 'request body must be application/json');
  if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) return new SikkerError('ERR_VALIDATION', 'malformed request');
  return new SikkerError('ERR_INTERNAL', 'internal error', { cause: err });
}

/**
 * The single translation point from errors to HTTP: stable code, readable message,
 * no stack and no cause on the wire. Internal errors are logged with their cause.
 */
export function makeErrorHandler(logger: Logger) {
  return (err: unknown, request: FastifyRequest, reply: FastifyReply): void => {
    const e = err instanceof SikkerError ? err : fromFastify(err as FastifyError);
    const status = statusFor(e.code);
    if (status >= 500 && status !== 503) logger.error({ err, reqId: request.id, route: request.routeOptions.url }, 'internal error');
    else logger.info({ code: e.code, status, reqId: request.id, route: request.routeOptions.url }, 'request refused');
    void reply.status(status).send({ error: { code: e.code, message: e.message, ...(e.details === undefined ? {} : { details: e.details }) } });
  };
}
