import type { ZodType } from 'zod';
import { ERROR_CODES, SikkerError, type ErrorCode } from '../errors/sikker-error.js';
import { ErrorBody } from '../protocol/api.js';

/** A received HTTP response, body fully read (and already size-capped). */
export interface RawResponse {
  status: number;
  body: Buffer;
}

function isErrorCode(code: string): code is ErrorCode {
  return Object.prototype.hasOwnProperty.call(ERROR_CODES, code);
}

function parseJson(body: Buffer): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(body.toString('utf8')) };
  } catch {
    // Caller decides what a non-JSON body means for its status.
    return { ok: false };
  }
}

/**
 * Turns a non-2xx response into a SikkerError. The server's `{error:{code,message}}`
 * is kept as is (an unknown code becomes ERR_INTERNAL, message kept); `details.status`
 * holds the HTTP status. A body that is not the error shape (a proxy's HTML page)
 * becomes ERR_INTERNAL naming only the status. 429 and 503 are marked retryable.
 */
export function errorFromResponse(response: RawResponse): SikkerError {
  const { status } = response;
  const retryable = status === 429 || status === 503;
  const json = parseJson(response.body);
  const parsed = json.ok ? ErrorBody.safeParse(json.value) : undefined;
  if (parsed === undefined || !parsed.success) {
    return new SikkerError('ERR_INTERNAL', `server answered HTTP ${status} without an error description`, {
      retryable,
      details: { status },
    });
  }
  const { code, message, details } = parsed.data.error;
  const knownCode: ErrorCode = isErrorCode(code) ? code : 'ERR_INTERNAL';
  const extra = knownCode === code ? {} : { serverCode: code.slice(0, 64) };
  return new SikkerError(knownCode, message, { retryable, details: { ...details, ...extra, status } });
}

/**
 * Validates a 2xx response against `schema`. 204 and empty bodies are validated as
 * `undefined` (so a caller expecting content gets the same refusal as for a wrong
 * shape). Throws ERR_VALIDATION "unexpected response from server" on non-JSON or a
 * shape mismatch; the schema's issues go in `details` (paths only, never values).
 */
export function parseSuccess<T>(response: RawResponse, schema: ZodType<T>): T {
  let value: unknown = undefined;
  if (response.status !== 204 && response.body.length > 0) {
    const json = parseJson(response.body);
    if (!json.ok) {
      throw new SikkerError('ERR_VALIDATION', 'unexpected response from server: body is not JSON', {
        details: { status: response.status },
      });
    }
    value = json.value;
  }
  const result = schema.safeParse(value);
  if (!result.success) {
    const paths = result.error.issues.map((issue) => issue.path.join('.') || '(root)');
    throw new SikkerError('ERR_VALIDATION', 'unexpected response from server', {
      details: { status: response.status, paths },
    });
  }
  return result.data;
}
