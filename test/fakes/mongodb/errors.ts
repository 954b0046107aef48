/**
 * Command failures of the fake MongoDB server, with the real server's numeric
 * codes and code names, so the driver builds the same MongoServerError it would
 * for a real mongod (`{ ok: 0, errmsg, code, codeName }`).
 */

/** The real codes the fake replies with (src/mongo/base/error_codes.yml). */
export const CODES = {
  InternalError: 1,
  BadValue: 2,
  UserNotFound: 11,
  Unauthorized: 13,
  TypeMismatch: 14,
  AuthenticationFailed: 18,
  RoleNotFound: 31,
  CursorNotFound: 43,
  CommandNotFound: 59,
  MechanismUnavailable: 334,
  Location40324: 40324,
  Location50693: 50693,
  Location51002: 51002,
  Location51003: 51003,
} as const;

export type CodeName = keyof typeof CODES;

/** Thrown by a command handler; the dispatcher turns it into an error reply. */
export class CommandError extends Error {
  readonly code: number;
  readonly codeName: CodeName;

  constructor(codeName: CodeName, errmsg: string) {
    super(errmsg);
    this.name = 'CommandError';
    this.codeName = codeName;
    this.code = CODES[codeName];
  }

  reply(): { ok: 0; errmsg: string; code: number; codeName: string } {
    return { ok: 0, errmsg: this.message, code: this.code, codeName: this.codeName };
  }
}

/** mongod says no more than this about a failed login, whatever the reason. */
export function authenticationFailed(): CommandError {
  return new CommandError('AuthenticationFailed', 'Authentication failed.');
}
