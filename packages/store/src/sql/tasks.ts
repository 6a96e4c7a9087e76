// Statements on the read models' task rows: the projection that writes a task's row and the
// slot it takes or frees (in the transaction that appends the events it folds), and the reads
// of single tasks, pages, counts and the whole table.
import { and, desc, eq, inArray, sql } from 'drizzle-orm';
import { ACTIVE_STATUSES, deviceChange, RECORD_POSITION_FIELDS, safeJson, type TaskRecord, type TaskStatus } from '@trainyard/domain';
import { rowsOf, type Conn } from '../database';
import { jsonValue, queryRows } from '../driver-query';
import { ConcurrencyError } from '../errors';
import { deviceHolders, tasks } from '../schema';

const TASK_BY_ID = `SELECT record FROM tasks WHERE id = $1`;
const TASKS_BY_IDS = `SELECT record FROM tasks WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb))`;

export async function loadTask(conn: Conn, id: string): Promise<TaskRecord | null> {
  const [row] = await queryRows<{ record: unknown }>(conn, TASK_BY_ID, [id]);
  return row ? jsonValue<TaskRecord>(row.record) : null;
}

export async function loadTasks(conn: Conn, ids: readonly string[]): Promise<Map<string, TaskRecord>> {
  if (ids.length === 0) return new Map();
  const rows = await queryRows<{ record: unknown }>(conn, TASKS_BY_IDS, [JSON.stringify(ids)]);
  return new Map(rows.map((r) => jsonValue<TaskRecord>(r.record)).map((t) => [t.id, t]));
}

export async function findByIdempotencyKey(conn: Conn, owner: string, key: string): Promise<TaskRecord | null> {
  const [row] = await conn
    .select({ record: tasks.record })
    .from(tasks)
    .where(and(eq(tasks.owner, owner), eq(tasks.idempotencyKey, key)));
  return row?.record ?? null;
}

const TASK_COLUMNS = `id, status, version, owner, name, idempotency_key, created_at, queued_position, priority, deleted, last_position, record`;
/**
 * The position of the event this connection appended last (this statement follows that append):
 * where a row is written before the append's answer came back.
 */
const LAST_APPENDED = `currval(pg_get_serial_sequence('events', 'position'))`;
/** A task row's values as parameters $1..$12, in TASK_COLUMNS' order (a null $11: LAST_APPENDED). */
const TASK_VALUES = `$1, $2, $3, $4, $5, $6, $7::timestamptz, $8::bigint, $9, $10, coalesce($11::bigint, ${LAST_APPENDED}), $12::jsonb`;
const INSERT_TASK = `INSERT INTO tasks (${TASK_COLUMNS}) VALUES (${TASK_VALUES}) RETURNING id`;
/** The row written only if the task is still at the version the command was decided on ($13). */
const UPDATE_TASK = `UPDATE tasks SET (${TASK_COLUMNS}) = ROW(${TASK_VALUES}) WHERE id = $1 AND version = $13 RETURNING id`;
const RELEASE_DEVICES = `DELETE FROM device_holders WHERE task_id = $1 AND device_id IN (SELECT jsonb_array_elements_text($2::jsonb))`;
const ACQUIRE_DEVICES = `INSERT INTO device_holders (device_id, task_id, memory_mb, exclusive, since_position)
  SELECT d.device_id, $1, d.memory_mb, d.exclusive, coalesce($3::bigint, ${LAST_APPENDED})
  FROM jsonb_to_recordset($2::jsonb) AS d(device_id text, memory_mb integer, exclusive boolean)`;

/**
 * Write a task's new state and the devices it takes or frees. `before` is the record the command
 * was decided on. The device_holders keys refuse a second exclusive holder of one device, so a
 * scheduling race ends in a constraint error (and a retry), never in two tasks on one GPU.
 * `lastPosition` null: the position of the event this connection appended last, for a row sent
 * right behind its append, before that append answered.
 */
export async function projectTask(tx: Conn, before: TaskRecord | null, after: TaskRecord, lastPosition: string | null): Promise<void> {
  const r = taskRow(after, lastPosition);
  const values = [
    r.id,
    r.status,
    r.version,
    r.owner,
    r.name,
    r.idempotencyKey,
    r.createdAt,
    r.queuedPosition,
    r.priority,
    r.deleted,
    r.lastPosition,
    JSON.stringify(r.record),
  ];
  const change = deviceChange(before, after);
  // The task row and its device changes are sent together (one round trip); they run in order,
  // and a failed version check below rolls the transaction back with the changes in it.
  const [updated] = await Promise.all([
    before === null ? queryRows(tx, INSERT_TASK, values) : queryRows(tx, UPDATE_TASK, [...values, before.version]),
    change.release.length ? queryRows(tx, RELEASE_DEVICES, [after.id, JSON.stringify(change.release.map((g) => g.deviceId))]) : null,
    change.acquire.length
      ? queryRows(tx, ACQUIRE_DEVICES, [
          after.id,
          JSON.stringify(change.acquire.map((g) => ({ device_id: g.deviceId, memory_mb: g.memoryMb, exclusive: g.exclusive }))),
          lastPosition,
        ])
      : null,
  ]);
  if (updated.length !== 1) throw new ConcurrencyError(after.id, before?.version ?? 0, null);
}

/**
 * The rows of new tasks that hold no device (just submitted and queued), in one INSERT sent right
 * behind their append (appendNewStreams), before it answered: each record was folded at
 * provisional positions, and the positions it holds (RECORD_POSITION_FIELDS) and the row's are
 * taken from its stream's events. A new stream holds only the events just appended.
 */
const PROJECT_NEW_TASKS = `INSERT INTO tasks (${TASK_COLUMNS})
  SELECT v.id, v.status, v.version, v.owner, v.name, v.idempotency_key, v.created_at,
    CASE WHEN v.in_queue THEN (r.record->>'queuedPosition')::bigint END, v.priority, v.deleted, p.last_position, r.record
  FROM jsonb_to_recordset($1::jsonb) AS v(id text, status text, version integer, owner text, name text,
    idempotency_key text, created_at timestamptz, in_queue boolean, priority integer, deleted boolean, record jsonb)
  CROSS JOIN LATERAL (
    SELECT max(e.position) AS last_position, ${Object.entries(RECORD_POSITION_FIELDS)
      .map(([type, field]) => `max(e.position) FILTER (WHERE e.type = '${type}') AS "${field}"`)
      .join(', ')}
    FROM events e WHERE e.stream_id = v.id) AS p
  CROSS JOIN LATERAL (
    SELECT v.record || jsonb_build_object(${Object.values(RECORD_POSITION_FIELDS)
      .map((field) => `'${field}', p."${field}"::text`)
      .join(', ')}) AS record) AS r`;

export async function projectNewTasks(tx: Conn, records: readonly TaskRecord[]): Promise<void> {
  if (records.length === 0) return;
  const rows = records.map((after) => {
    if (after.devices.length) throw new Error(`projectNewTasks: task ${after.id} takes devices; use projectTask`);
    const r = taskRow(after, null);
    return {
      id: r.id,
      status: r.status,
      version: r.version,
      owner: r.owner,
      name: r.name,
      idempotency_key: r.idempotencyKey,
      created_at: r.createdAt,
      in_queue: r.queuedPosition !== null,
      priority: r.priority,
      deleted: r.deleted,
      record: r.record,
    };
  });
  await queryRows(tx, PROJECT_NEW_TASKS, [safeJson(rows)]);
}

function taskRow<P extends string | null>(after: TaskRecord, lastPosition: P) {
  return {
    id: after.id,
    status: after.status,
    version: after.version,
    owner: after.spec.owner,
    name: after.spec.name,
    idempotencyKey: after.spec.idempotencyKey ?? null,
    createdAt: after.createdAt,
    // A paused (held) task keeps its place in the record, but is out of the queue's index until released.
    queuedPosition: after.status === 'QUEUED' && !after.held ? after.queuedPosition : null,
    priority: after.spec.priority?.value ?? 0,
    deleted: after.deleted,
    lastPosition,
    record: after,
  };
}

export async function listActive(conn: Conn): Promise<TaskRecord[]> {
  const rows = await conn
    .select({ record: tasks.record })
    .from(tasks)
    .where(inArray(tasks.status, [...ACTIVE_STATUSES]));
  return rows.map((r) => r.record);
}

export interface ListTasksQuery {
  statuses?: TaskStatus[] | undefined;
  includeDeleted?: boolean | undefined;
  /** Only this user's tasks (tokens mode: a user who is not an admin lists their own). */
  owner?: string | undefined;
  /** Opaque cursor from a previous page. */
  cursor?: string | null | undefined;
  limit: number;
  /** Only tasks whose name, model or id holds this text (any case). */
  search?: string | undefined;
  /** Only tasks whose id starts with this (a short id, as git takes a commit's). */
  idPrefix?: string | undefined;
}

/** A LIKE pattern that matches `text` literally (its %, _ and backslash escaped). */
function likeLiteral(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`);
}

/** Newest first, keyset-paginated on (created_at, id). */
export async function listTasks(conn: Conn, q: ListTasksQuery): Promise<{ items: TaskRecord[]; nextCursor: string | null }> {
  const conds = [];
  if (q.statuses?.length) conds.push(inArray(tasks.status, q.statuses));
  if (!q.includeDeleted) conds.push(eq(tasks.deleted, false));
  if (q.owner !== undefined) conds.push(eq(tasks.owner, q.owner));
  if (q.idPrefix) conds.push(sql`${tasks.id} LIKE ${`${likeLiteral(q.idPrefix)}%`}`);
  if (q.search) {
    const pattern = `%${likeLiteral(q.search)}%`;
    conds.push(sql`(${tasks.name} ILIKE ${pattern} OR ${tasks.id} ILIKE ${pattern} OR ${tasks.record}->'spec'->>'model' ILIKE ${pattern})`);
  }
  if (q.cursor) {
    const c = decodeCursor(q.cursor);
    // A row comparison, not `a < x OR (a = x AND b < y)`: the same order, but Postgres uses it
    // as an index condition, so a page deep in the history costs what the first page costs.
    conds.push(sql`(${tasks.createdAt}, ${tasks.id}) < (${c.createdAt}::timestamptz, ${c.id}::text)`);
  }
  const rows = await conn
    .select({ record: tasks.record })
    .from(tasks)
    .where(conds.length ? and(...conds) : undefined)
    .orderBy(desc(tasks.createdAt), desc(tasks.id))
    .limit(q.limit + 1);
  const items = rows.slice(0, q.limit).map((r) => r.record);
  const last = items[items.length - 1];
  return {
    items,
    nextCursor: rows.length > q.limit && last ? encodeCursor({ createdAt: last.createdAt, id: last.id }) : null,
  };
}

function encodeCursor(c: { createdAt: string; id: string }): string {
  return Buffer.from(JSON.stringify([c.createdAt, c.id])).toString('base64url');
}

export class InvalidCursorError extends Error {
  constructor() {
    super('cursor is not one this service returned');
    this.name = 'InvalidCursorError';
  }
}

const CURSOR_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const CURSOR_ID = /^[A-Za-z0-9_-]{1,64}$/;

function decodeCursor(s: string): { createdAt: string; id: string } {
  try {
    const [createdAt, id] = JSON.parse(Buffer.from(s, 'base64url').toString('utf8')) as unknown[];
    // Only what encodeCursor writes: a forged one reached SQL and failed there (year 0000 is
    // out of Postgres' range, a NUL is not text), a 500 instead of a BAD_REQUEST.
    if (typeof createdAt !== 'string' || typeof id !== 'string') throw new Error();
    if (!CURSOR_TIME.test(createdAt) || createdAt.startsWith('0000') || new Date(createdAt).toISOString() !== createdAt) throw new Error();
    if (!CURSOR_ID.test(id)) throw new Error();
    return { createdAt, id };
  } catch {
    throw new InvalidCursorError();
  }
}

/** Live task records whose stream has no event in the log (the rebuild's comparison). */
export async function liveTasksNotInLog(conn: Conn): Promise<TaskRecord[]> {
  const rows = await conn
    .select({ record: tasks.record })
    .from(tasks)
    .where(sql`NOT EXISTS (SELECT 1 FROM events e WHERE e.stream_id = ${tasks.id})`);
  return rows.map((r) => r.record);
}

export async function countByStatus(conn: Conn): Promise<Record<string, number>> {
  const rows = rowsOf<{ status: string; n: number | string }>(
    await conn.execute(sql`SELECT status, count(*) AS n FROM tasks GROUP BY status`),
  );
  return Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]));
}

/** Empty the read models (before they are folded again from the log). */
export async function clearReadModels(tx: Conn): Promise<void> {
  await tx.delete(deviceHolders);
  await tx.delete(tasks);
}
