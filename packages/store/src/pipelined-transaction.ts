// A transaction on postgres.js whose BEGIN travels with its first statement. postgres.js's own
// `begin()` (what drizzle's `transaction()` calls) waits for BEGIN's answer before it runs the
// callback: one round trip of the few a short transaction makes (a submission, a trainer's exit
// with the next task's start). Statements sent on one connection run in the order sent, so the
// first statement still runs inside the transaction; if BEGIN fails, so does every statement
// after it, and the callback sees that error. COMMIT likewise goes right behind the writes the
// callback left in flight (in-flight-writes.ts), in the same round trip as the last of them.
import type { PgDialect } from 'drizzle-orm/pg-core';
import { PostgresJsSession, PostgresJsTransaction } from 'drizzle-orm/postgres-js/session';
import type postgres from 'postgres';
import type { Db, Tx } from './database';
import { InFlightWrites } from './in-flight-writes';
import { preparingStatements } from './prepared-statements';

type SessionParts = ConstructorParameters<typeof PostgresJsSession>;

export function pipelinedTransactions(client: postgres.Sql, db: Db): <T>(fn: (tx: Tx, writes: InFlightWrites) => Promise<T>) => Promise<T> {
  // The drizzle database's own dialect, relational schema and options, for the per-transaction session.
  const { dialect, session } = db as unknown as {
    dialect: PgDialect;
    session: { schema: SessionParts[2]; options: SessionParts[3] };
  };
  return async <T>(fn: (tx: Tx, writes: InFlightWrites) => Promise<T>): Promise<T> => {
    const conn = preparingStatements(await client.reserve());
    const writes = new InFlightWrites();
    try {
      const begun = conn.unsafe('BEGIN').execute();
      // Its failure reaches the callback through the statements after it; awaited below as well.
      begun.catch(() => {});
      const txSession = new PostgresJsSession(conn as unknown as SessionParts[0], dialect, session.schema, session.options);
      const tx = new PostgresJsTransaction(dialect, txSession as never, session.schema) as unknown as Tx;
      let result: T;
      try {
        result = await fn(tx, writes);
        await begun;
      } catch (error) {
        await conn.unsafe('ROLLBACK').catch(() => {});
        // A write that failed first is the cause; what failed after it met an aborted transaction.
        return await writes.fail(error);
      }
      // Sent now, behind any write still in flight: if one of them failed, the server ends the
      // aborted transaction with ROLLBACK here, and that write's error is thrown.
      const [written, committed] = await Promise.allSettled([writes.settle(), conn.unsafe('COMMIT').execute()]);
      if (written.status === 'rejected') throw written.reason;
      if (committed.status === 'rejected') throw committed.reason;
      return result;
    } finally {
      conn.release();
    }
  };
}
