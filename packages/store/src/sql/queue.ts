// Statements on the queue: the lock that serialises whoever queues a task or fills a slot, and
// the queue's reads, in FIFO order of each task's TaskQueued position.
import { and, asc, desc, eq, isNotNull, sql } from 'drizzle-orm';
import type { TaskRecord } from '@trainyard/domain';
import { rowsOf, type Conn } from '../database';
import { tasks } from '../schema';

/**
 * Until the transaction ends, serialise every transaction that queues a task or fills a slot
 * (one lock per schema). A TaskQueued position is drawn at insert but visible only at commit:
 * without this, a scheduler could give a slot to a task queued at p+1 while the one at p was
 * still committing.
 */
export async function lockQueue(tx: Conn): Promise<void> {
  await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtext('trainyard-queue:' || current_schema()))`);
}

/** The queue: higher priority first, then FIFO by each task's TaskQueued position. */
export async function listQueue(conn: Conn, limit?: number): Promise<TaskRecord[]> {
  const q = conn
    .select({ record: tasks.record })
    .from(tasks)
    .where(and(eq(tasks.status, 'QUEUED'), isNotNull(tasks.queuedPosition)))
    .orderBy(desc(tasks.priority), asc(tasks.queuedPosition));
  const rows = limit === undefined ? await q : await q.limit(limit);
  return rows.map((r) => r.record);
}

/** The highest priority among queued tasks (null: none queued): whether preempting could matter. */
export async function topQueuedPriority(conn: Conn): Promise<number | null> {
  const rows = rowsOf<{ p: number | string | null }>(
    await conn.execute(sql`SELECT max(priority) AS p FROM tasks WHERE status = 'QUEUED' AND queued_position IS NOT NULL`),
  );
  const p = rows[0]?.p;
  return p === null || p === undefined ? null : Number(p);
}

export async function countQueued(conn: Conn): Promise<number> {
  const rows = rowsOf<{ n: number | string }>(await conn.execute(sql`SELECT count(*) AS n FROM tasks WHERE status = 'QUEUED'`));
  return Number(rows[0]?.n ?? 0);
}
