// What a database error means for the caller, decided by its code (SQLSTATE, or the driver's
// code for a connection that failed before Postgres could answer), never by its message text.
// One home for this: the runner, the API and the store all ask here. Also the conflict the store
// raises itself when another writer got there first.

/** The stream moved on since the caller read it: re-read and decide again. */
export class ConcurrencyError extends Error {
  readonly code = 'CONCURRENCY_CONFLICT' as const;
  constructor(
    readonly streamId: string,
    readonly expectedVersion: number,
    readonly actualVersion: number | null,
  ) {
    super(`stream ${streamId}: expected version ${expectedVersion} but it is ${actualVersion ?? 'ahead (concurrent append)'}`);
    this.name = 'ConcurrencyError';
  }
}

/**
 * Driver codes (postgres.js, Node's net) of a connection that is gone or never came, or of a
 * statement the database did not answer within the statement limit (TRAINYARD_DB_QUERY_TIMEOUT_MS):
 * either way the database is not there for the caller now, and the work may be run again (a
 * cancelled statement rolled its transaction back; one whose cancel went unanswered is as lost).
 */
const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENOTFOUND',
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  'CONNECT_TIMEOUT',
  'QUERY_TIMEOUT',
  'CANCEL_UNANSWERED',
]);
/**
 * SQLSTATEs of a database that is away: class 08 (connection exception), 57P01-57P03 (shut
 * down by an administrator, crash, cannot connect now: starting up or shutting down), 53300
 * (too many connections), and 57014 (a statement cancelled: by the statement limit, whose cancel
 * may also reach the server late and cancel the next statement on the connection instead, or by
 * an administrator's pg_cancel_backend; its transaction rolled back, and it may be run again).
 */
const OUTAGE_STATES = /^(08...|57P0[123]|53300|57014)$/;
/** Worth running again as it was: a unique-key race lost, a serialization failure, a deadlock. */
const TRANSIENT_STATES = new Set(['23505', '40001', '40P01']);
/**
 * The data itself was refused (class 22 data exception, 23 integrity constraint, 54 program
 * limit exceeded): the fault of whoever sent it, not of the database or the service.
 */
const REFUSED_DATA_STATES = /^(22|23|54)...$/;

/** Every code along an error's cause chain (drizzle wraps the driver's error). */
function codesOf(err: unknown): string[] {
  const codes: string[] = [];
  let e: unknown = err;
  for (let i = 0; i < 5 && e && typeof e === 'object'; i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') codes.push(code);
    e = (e as { cause?: unknown }).cause;
  }
  return codes;
}

/** The Postgres SQLSTATE behind a driver or drizzle error, if any. */
export function pgErrorCode(err: unknown): string | undefined {
  return codesOf(err).find((c) => /^[0-9A-Z]{5}$/.test(c));
}

/** The database is unreachable or going away: wait and retry, and tell callers to try later. */
export function isConnectionError(err: unknown): boolean {
  return codesOf(err).some((c) => CONNECTION_CODES.has(c) || OUTAGE_STATES.test(c));
}

/**
 * A statement was cancelled (query_timeout) and the cancel got no answer either: the connection
 * was closed, since the host it reached has gone silent.
 */
export function isUnansweredCancel(err: unknown): boolean {
  return codesOf(err).includes('CANCEL_UNANSWERED');
}

/**
 * A statement was cancelled and the server said so: at the statement limit, or by that limit's
 * cancel reaching the server late and cancelling the next statement on the connection instead (a
 * bare 57014). The server is up, and the statement was waiting (for a lock, most likely) or slow.
 */
export function isStatementLimit(err: unknown): boolean {
  return codesOf(err).includes('57014');
}

/**
 * A statement sent into a transaction that had already failed (25P02): never the cause itself,
 * which is the statement that failed before it.
 */
export function isAbortedTransaction(err: unknown): boolean {
  return codesOf(err).includes('25P02');
}

/** A conflict with a concurrent writer or a transient failure: the same work may be run again. */
export function isRetryable(err: unknown): boolean {
  if (err instanceof ConcurrencyError) return true;
  const code = pgErrorCode(err);
  return code !== undefined && TRANSIENT_STATES.has(code);
}

/** The database refused the data it was given (bad value, constraint, too large). */
export function isRefusedData(err: unknown): boolean {
  return REFUSED_DATA_STATES.test(pgErrorCode(err) ?? '');
}
