// Statements on the queue: the lock that serialises whoever queues a task or fills a slot, and
// the queue's reads, in FIFO order of each task's TaskQueued position.
import type { TaskRecord } from '@trainyard/domain';
import type { Conn } from '../database';
import { jsonValue, queryRows } from '../driver-query';

/**
 * Until the transaction ends, serialise every transaction that queues a task or fills a slot
 * (one lock per schema). A TaskQueued position is drawn at insert but visible only at commit:
 * without this, a scheduler could give a slot to a task queued at p+1 while the one at p was
 * still committing.
 */
export async function lockQueue(tx: Conn): Promise<void> {
  await queryRows(tx, `SELECT pg_advisory_xact_lock(hashtext('trainyard-queue:' || current_schema()))`);
}

/** Queued and not held, higher priority first, then FIFO (tasks_priority_queue_idx). LIMIT NULL: all of them. */
const QUEUE = `SELECT record FROM tasks WHERE status = 'QUEUED' AND queued_position IS NOT NULL
  ORDER BY priority DESC, queued_position ASC LIMIT $1`;

/** The queue: higher priority first, then FIFO by each task's TaskQueued position. */
export async function listQueue(conn: Conn, limit?: number): Promise<TaskRecord[]> {
  const rows = await queryRows<{ record: unknown }>(conn, QUEUE, [limit ?? null]);
  return rows.map((r) => jsonValue<TaskRecord>(r.record));
}

/** The highest priority among queued tasks (null: none queued): whether preempting could matter. */
export async function topQueuedPriority(conn: Conn): Promise<number | null> {
  const [row] = await queryRows<{ p: number | string | null }>(
    conn,
    `SELECT max(priority) AS p FROM tasks WHERE status = 'QUEUED' AND queued_position IS NOT NULL`,
  );
  const p = row?.p;
  return p === null || p === undefined ? null : Number(p);
}

export async function countQueued(conn: Conn): Promise<number> {
  const [row] = await queryRows<{ n: number | string }>(conn, `SELECT count(*) AS n FROM tasks WHERE status = 'QUEUED'`);
  return Number(row?.n ?? 0);
}
