// A statement as SQL text with numbered parameters, handed to the connection's driver as it is.
// For the statements of every submission, exit and scheduling pass: drizzle's query builder spent
// more CPU building them (its type checks on every chunk and value) than Postgres spent running
// them (docs/BENCHMARKS.md, "A seventh look"). Either driver: postgres.js (`unsafe`, prepared
// on the store's connections, see prepared-statements.ts) or PGlite (`query`). Parameters go as
// text or numbers with casts in the SQL; what comes back is the driver's rows: jsonb parsed,
// timestamps as the driver gives them (cast to text where the caller needs one form).
import type { Conn } from './database';

interface DriverClient {
  unsafe?: (text: string, params: unknown[]) => Promise<unknown>;
  query?: (text: string, params: unknown[]) => Promise<{ rows: unknown[] }>;
}

function driverOf(conn: Conn): DriverClient {
  // drizzle keeps the driver's client (the pool, a reserved connection, a PGlite transaction) on
  // the database's or transaction's session.
  return (conn as unknown as { session: { client: DriverClient } }).session.client;
}

export async function queryRows<T>(conn: Conn, text: string, params: readonly unknown[] = []): Promise<T[]> {
  const client = driverOf(conn);
  if (client.unsafe) return (await client.unsafe(text, params as unknown[])) as T[];
  return (await client.query!(text, params as unknown[])).rows as T[];
}

/** A jsonb value as the driver returns it: parsed (both drivers' default), or its text. */
export function jsonValue<T>(v: unknown): T {
  return (typeof v === 'string' ? JSON.parse(v) : v) as T;
}
