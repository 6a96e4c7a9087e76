// Database errors classified by code along the cause chain, never by message text.
import { describe, expect, it } from 'vitest';
import {
  ConcurrencyError,
  isConnectionError,
  isRefusedData,
  isRetryable,
  isAbortedTransaction,
  isStatementLimit,
  isUnansweredCancel,
  pgErrorCode,
} from './errors';

/** An error as drizzle throws it: "Failed query: …" wrapping the driver's error. */
const wrapped = (code: string, message = 'some text') =>
  Object.assign(new Error('Failed query: select 1'), { cause: Object.assign(new Error(message), { code }) });

describe('database error classification', () => {
  it('an outage: connection exceptions, shutdowns and driver codes, however deep in the causes', () => {
    for (const code of ['08006', '08001', '57P01', '57P02', '57P03', '53300', 'ECONNREFUSED', 'CONNECTION_CLOSED', 'CONNECT_TIMEOUT']) {
      expect(isConnectionError(wrapped(code)), code).toBe(true);
    }
    expect(isConnectionError(Object.assign(new Error('x'), { code: 'ECONNRESET' }))).toBe(true);
  });

  it('a statement past query_timeout is a connection error (retried), and one whose cancel got no answer closed its connection', () => {
    const timedOut = (cause: string) =>
      Object.assign(new Error('The query did not finish within query_timeout'), {
        code: 'QUERY_TIMEOUT',
        cause: Object.assign(new Error('x'), { code: cause }),
      });
    expect(isConnectionError(timedOut('CANCEL_UNANSWERED'))).toBe(true);
    expect(isUnansweredCancel(timedOut('CANCEL_UNANSWERED'))).toBe(true);
    expect(isConnectionError(wrapped('CONNECTION_DESTROYED'))).toBe(true);
    // The server answered the cancel (a lock held, a stalled disk): the database is not there for
    // the caller in time either, and the statement's transaction was rolled back: run it again.
    expect(isConnectionError(timedOut('57014'))).toBe(true);
    expect(isUnansweredCancel(timedOut('57014'))).toBe(false);
    expect(isStatementLimit(timedOut('57014'))).toBe(true);
    expect(isStatementLimit(timedOut('CANCEL_UNANSWERED'))).toBe(false);
    // A late cancel of a timed-out statement, applied by the server to the next one on its connection.
    expect(isStatementLimit(wrapped('57014'))).toBe(true);
    // Bare, or from an administrator's cancel or a statement_timeout: its transaction rolled back,
    // so the caller runs it again (a trainer's exit is retried, not dropped).
    expect(isConnectionError(wrapped('57014'))).toBe(true);
  });

  it('a statement sent into a transaction that had failed is never the cause', () => {
    expect(isAbortedTransaction(wrapped('25P02'))).toBe(true);
    expect(isAbortedTransaction(wrapped('57014'))).toBe(false);
    expect(isConnectionError(wrapped('25P02'))).toBe(false);
  });

  it('message text decides nothing: a refused row whose message says "connection" is no outage', () => {
    expect(isConnectionError(wrapped('23505', 'duplicate key value violates unique constraint "connection_uq"'))).toBe(false);
    expect(isConnectionError(new Error('terminating connection due to administrator command'))).toBe(false);
  });

  it('retryable: a lost unique-key race, a serialization failure, a deadlock, a stale stream version', () => {
    for (const code of ['23505', '40001', '40P01']) expect(isRetryable(wrapped(code)), code).toBe(true);
    expect(isRetryable(new ConcurrencyError('t1', 3, 4))).toBe(true);
    expect(isRetryable(wrapped('22P02'))).toBe(false);
    expect(isRetryable(wrapped('08006'))).toBe(false);
  });

  it("refused data: classes 22, 23 and 54 are the sender's fault, an outage or a bug is not", () => {
    for (const code of ['22P05', '22021', '23502', '23505', '54000']) expect(isRefusedData(wrapped(code)), code).toBe(true);
    for (const code of ['08006', '42P01', 'ECONNREFUSED']) expect(isRefusedData(wrapped(code)), code).toBe(false);
    expect(isRefusedData(new Error('no code'))).toBe(false);
  });

  it('pgErrorCode finds the SQLSTATE under a driver code-less wrapper', () => {
    expect(pgErrorCode(wrapped('42P01'))).toBe('42P01');
    expect(pgErrorCode(wrapped('ECONNREFUSED'))).toBeUndefined();
  });
});
