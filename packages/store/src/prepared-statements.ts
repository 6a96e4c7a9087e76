// drizzle runs every query through postgres.js's `unsafe`, unprepared. For a statement with
// parameters postgres.js then asks the server for their types first, a round trip of its own,
// and holds every statement sent after it on that connection until the answer: statements
// meant to travel together (a transaction's reads, sent at once) went one after another, two
// round trips each. Prepared, a statement is named and kept per connection, and pays that first
// round trip once per connection; postgres.js re-prepares one the server no longer has.
import type postgres from 'postgres';

export function preparingStatements<S extends Pick<postgres.Sql, 'unsafe'>>(sql: S): S {
  const unsafe = sql.unsafe;
  const prepared = (query: string, args?: unknown[], options?: postgres.UnsafeQueryOptions) =>
    unsafe(query, args as postgres.ParameterOrJSON<never>[], { ...options, prepare: true });
  sql.unsafe = prepared as S['unsafe'];
  return sql;
}
