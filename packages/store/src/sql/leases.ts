// Statements on instances' leases (instance_leases; the rule is packages/domain/src/leases.ts).
// Every time is the database's clock, `now()`: instances' clocks may disagree, the database's is
// the one they share. Taking a lease over is one conditional UPDATE, so two peers cannot both
// take it, and it re-checks the rule in the database: the lease is still expired and the taker's
// own lease fresh and unbroken for a whole term.
import { sql } from 'drizzle-orm';
import type { LeaseView } from '@trainyard/domain';
import { rowsOf, type Conn } from '../database';

type Row = { runner_id: string; age_ms: number | string; unbroken_ms: number | string; taken_by: string | null };

const view = (r: Row): LeaseView => ({
  runnerId: r.runner_id,
  ageMs: Math.max(0, Number(r.age_ms)),
  unbrokenMs: Math.max(0, Number(r.unbroken_ms)),
  takenBy: r.taken_by,
});

const columns = sql`runner_id, taken_by,
  extract(epoch from (now() - heartbeat_at)) * 1000 AS age_ms,
  extract(epoch from (now() - renewed_since)) * 1000 AS unbroken_ms`;

const ms = (n: number) => sql`(${n}::double precision * interval '1 millisecond')`;

async function rows(conn: Conn, query: ReturnType<typeof sql>): Promise<Row[]> {
  return rowsOf<Row>(await conn.execute(query));
}

/**
 * Start holding the lease of `runnerId` (at start-up): fresh, unbroken from now, not taken.
 * Returns who had taken it over while this instance was away (null: nobody).
 */
export async function claimLease(conn: Conn, runnerId: string): Promise<{ takenBy: string | null }> {
  return conn.transaction(async (tx) => {
    const [before] = await rows(tx, sql`SELECT ${columns} FROM instance_leases WHERE runner_id = ${runnerId} FOR UPDATE`);
    await tx.execute(sql`INSERT INTO instance_leases (runner_id, heartbeat_at, renewed_since, started_at) VALUES (${runnerId}, now(), now(), now())
      ON CONFLICT (runner_id) DO UPDATE SET heartbeat_at = now(), renewed_since = now(), started_at = now(), taken_by = NULL, taken_at = NULL`);
    return { takenBy: before?.taken_by ?? null };
  });
}

/**
 * The heartbeat: renew the lease of `runnerId` unless it was taken over. A beat more than `gapMs`
 * after the last one starts the unbroken stretch again. `taken`: a peer took it (its tasks are
 * no longer this instance's); `missing`: there is no lease to renew (claim one).
 */
export async function renewLease(
  conn: Conn,
  runnerId: string,
  gapMs: number,
): Promise<{ state: 'renewed'; lease: LeaseView } | { state: 'taken'; takenBy: string } | { state: 'missing' }> {
  const [row] = await rows(
    conn,
    sql`UPDATE instance_leases SET
        renewed_since = CASE WHEN heartbeat_at < now() - ${ms(gapMs)} THEN now() ELSE renewed_since END,
        heartbeat_at = now()
      WHERE runner_id = ${runnerId} AND taken_by IS NULL
      RETURNING ${columns}`,
  );
  if (row) return { state: 'renewed', lease: view(row) };
  const [taken] = await rows(conn, sql`SELECT ${columns} FROM instance_leases WHERE runner_id = ${runnerId}`);
  return taken?.taken_by ? { state: 'taken', takenBy: taken.taken_by } : { state: 'missing' };
}

/** Every lease, with its age by the database's clock. */
export async function listLeases(conn: Conn): Promise<LeaseView[]> {
  return (await rows(conn, sql`SELECT ${columns} FROM instance_leases ORDER BY runner_id`)).map(view);
}

/**
 * Mark the lease of `runnerId` taken over by `by`, only if it is still not renewed for `leaseMs`
 * and not taken, and `by`'s own lease is renewed within `gapMs` and unbroken for `leaseMs`.
 * True when this call took it.
 */
export async function takeOverLease(conn: Conn, runnerId: string, by: string, leaseMs: number, gapMs: number): Promise<boolean> {
  const taken = await rows(
    conn,
    sql`UPDATE instance_leases SET taken_by = ${by}, taken_at = now()
      WHERE runner_id = ${runnerId} AND runner_id <> ${by} AND taken_by IS NULL AND heartbeat_at < now() - ${ms(leaseMs)}
        AND EXISTS (SELECT 1 FROM instance_leases me WHERE me.runner_id = ${by} AND me.taken_by IS NULL
          AND me.heartbeat_at >= now() - ${ms(gapMs)} AND me.renewed_since <= now() - ${ms(leaseMs)})
      RETURNING ${columns}`,
  );
  return taken.length === 1;
}
