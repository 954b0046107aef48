/**
 * What the MongoDB applier makes of the `mongodb` driver's errors. A
 * MongoServerError carries the server's `errmsg` — which can quote the whole
 * command, `pwd` included (mongod's "not authorized on admin to execute
 * command { updateUser: … }") — and `errorResponse`, the raw reply; driver
 * errors wrap Node errors in `cause` chains. Only the server's numeric code
 * (as its code name), the driver class and a Node errno are ever used.
 */
import { classifyCommon, type ApplierOperation, type Classification } from './applier-errors.js';

type Verdict = Omit<Classification, 'driverCode'>;

const UNREACHABLE = (reason: string): Verdict => ({ code: 'ERR_APPLIER_UNREACHABLE', reason });

/** mongod error codes (src/mongo/base/error_codes.yml) → our verdict. */
const SERVER_CODES: Record<number, Verdict> = {
  2: { code: 'ERR_APPLIER_FAILED', reason: 'the server refused the command as malformed' },
  6: UNREACHABLE('the server cannot reach a host it needs'),
  11: { code: 'ERR_APPLIER_UNKNOWN_USER', reason: 'the user does not exist in the authentication database' },
  13: { code: 'ERR_APPLIER_PRIVILEGE', reason: 'the login lacks a needed privilege (changePassword / changeOwnPassword on the user\'s database; listSessions and killAnySession to end sessions)' },
  18: { code: 'ERR_APPLIER_AUTH_FAILED', reason: 'the login was refused' },
  50: UNREACHABLE('the server did not finish the command in time'),
  59: { code: 'ERR_APPLIER_UNSUPPORTED', reason: 'the server does not know a command this needs' },
  64: { code: 'ERR_APPLIER_FAILED', reason: 'the change was not confirmed by a majority of the replica set; verify to learn the outcome', retryable: true },
  89: UNREACHABLE('the server timed out talking to another member'),
  91: UNREACHABLE('the server is shutting down'),
  100: { code: 'ERR_APPLIER_FAILED', reason: 'the replica set cannot satisfy write concern majority; verify to learn the outcome', retryable: true },
  189: UNREACHABLE('the primary stepped down'),
  334: { code: 'ERR_APPLIER_UNSUPPORTED', reason: 'SCRAM-SHA-256 is not available for this login (disabled in authenticationMechanisms, or the user has SCRAM-SHA-1 credentials only)' },
  8000: { code: 'ERR_APPLIER_UNSUPPORTED', reason: 'the server refused user management (MongoDB Atlas manages database users through its Admin API)' },
  9001: UNREACHABLE('the server reported a socket error'),
  10107: { code: 'ERR_APPLIER_CONFIG', reason: 'the server is not the primary; point the target at the primary' },
  11600: UNREACHABLE('the server is shutting down'),
  11602: UNREACHABLE('the replica set is changing its primary'),
  13435: { code: 'ERR_APPLIER_CONFIG', reason: 'the server is not the primary; point the target at the primary' },
  13436: { code: 'ERR_APPLIER_CONFIG', reason: 'the server is neither primary nor secondary' },
  50693: { code: 'ERR_APPLIER_REJECTED_PASSWORD', reason: 'the server could not SASLprep the password' },
};

/** Driver error classes that mean "could not talk to the server". */
const NETWORK_CLASSES = new Set([
  'MongoServerSelectionError', 'MongoNetworkError', 'MongoNetworkTimeoutError', 'MongoPoolClearedError',
  'MongoTopologyClosedError', 'MongoServerClosedError', 'MongoOperationTimeoutError', 'MongoWaitQueueTimeoutError',
]);

/** Driver error classes that mean "the settings the applier built are wrong". */
const CONFIG_CLASSES = new Set(['MongoParseError', 'MongoInvalidArgumentError', 'MongoMissingCredentialsError', 'MongoAPIError']);

function className(err: unknown): string {
  return err instanceof Error ? (err.constructor?.name || err.name) : '';
}

/** The server's code as a short token: its code name when it has one, else the number. */
function serverCode(err: object): { code: number; token: string } | undefined {
  const { code, codeName } = err as { code?: unknown; codeName?: unknown };
  if (typeof code !== 'number') return undefined;
  const token = typeof codeName === 'string' && /^[A-Za-z][A-Za-z0-9_]{0,63}$/.test(codeName) ? codeName : String(code);
  return { code, token };
}

/** The error and its `cause`s (a few levels: selection error → network error → Node errno). */
function causes(err: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let current = err; current !== undefined && current !== null && chain.length < 5; current = (current as { cause?: unknown }).cause) {
    chain.push(current);
  }
  return chain;
}

/**
 * True when the driver could not even start SCRAM because SASLprep refused
 * the password (prohibited characters, or code points Unicode 3.2 does not
 * assign, such as emoji): no MongoDB driver can log in with such a password.
 */
export function isSaslprepRefusal(err: unknown): boolean {
  return className(err) === 'Error' && /rfc4013|rfc3454/i.test((err as Error).message);
}

/** True for failures that leave a MongoClient unusable (the connection cache then drops it). */
export function breaksClient(err: unknown): boolean {
  return !(typeof err === 'object' && err !== null && serverCode(err) !== undefined && className(err).startsWith('MongoServer'));
}

/** Classifies one error from the driver (or from the server through it). */
export function classifyMongodbError(err: unknown, operation: ApplierOperation, selfMode: boolean): Classification | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const name = className(err);
  const server = name === 'MongoServerError' || name === 'MongoWriteConcernError' || name === 'MongoBulkWriteError' ? serverCode(err) : undefined;
  if (server !== undefined) {
    const known = SERVER_CODES[server.code];
    if (known === undefined) return { code: 'ERR_APPLIER_FAILED', reason: `the server refused the ${operation} (${server.token})`, driverCode: server.token };
    const reason = server.code === 18 ? `the ${selfMode ? 'current password' : 'admin login'} was refused` : known.reason;
    return { ...known, reason: `${reason} (${server.token})`, driverCode: server.token };
  }
  if (isSaslprepRefusal(err)) {
    return { code: 'ERR_APPLIER_AUTH_FAILED', reason: 'the password contains characters SASLprep refuses, so it cannot log in', driverCode: 'SASLprep' };
  }
  if (NETWORK_CLASSES.has(name)) {
    // the deepest cause holds the Node errno or TLS code
    for (const cause of causes(err).slice(1).reverse()) {
      const common = classifyCommon(cause);
      if (common !== undefined) return common;
    }
    return { code: 'ERR_APPLIER_UNREACHABLE', reason: `cannot reach the server (${name})` };
  }
  if (CONFIG_CLASSES.has(name)) return { code: 'ERR_APPLIER_CONFIG', reason: `the driver refused the connection settings (${name})` };
  if (name === 'MongoCompatibilityError') return { code: 'ERR_APPLIER_UNSUPPORTED', reason: 'the server is older than the driver supports (MongoDB 4.4)' };
  return classifyCommon(err);
}
