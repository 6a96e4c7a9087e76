// Statements on the event log: append with optimistic concurrency, read a stream, read
// everything in position order (rebuild), query for audits, and tail what is safely committed
// (subscriptions, other instances).
import { and, asc, desc, eq, gt, gte, inArray, lt, sql } from 'drizzle-orm';
import {
  CURRENT_SCHEMA_VERSION,
  safeJson,
  safeJsonOf,
  upcast,
  type EventMetadata,
  type NewTaskEvent,
  type StoredTaskEvent,
} from '@trainyard/domain';
import { rowsOf, type Conn } from '../database';
import { queryRows } from '../driver-query';
import { ConcurrencyError, pgErrorCode } from '../errors';
import { events, tasks } from '../schema';

export type AppendMetadata = Omit<EventMetadata, 'schemaVersion'>;

type EventRow = typeof events.$inferSelect;

function toStored(row: EventRow): StoredTaskEvent {
  return upcast({
    type: row.type,
    data: row.data,
    streamId: row.streamId,
    version: row.streamVersion,
    position: String(row.position),
    recordedAt: row.recordedAt,
    metadata: row.metadata,
  } as StoredTaskEvent);
}

/** A row of a raw `RETURNING`/`SELECT` on events (jsonb may come back as text, times as text or Date). */
function rawToStored(r: Record<string, unknown>): StoredTaskEvent {
  return upcast({
    type: r.type,
    data: typeof r.data === 'string' ? JSON.parse(r.data) : r.data,
    streamId: String(r.stream_id),
    version: Number(r.stream_version),
    position: String(r.position),
    recordedAt: new Date(r.recorded_at as string).toISOString(),
    metadata: typeof r.metadata === 'string' ? JSON.parse(r.metadata) : r.metadata,
  } as StoredTaskEvent);
}

/**
 * The time this transaction's events are recorded at: the column's default, now() (the time the
 * transaction began), at the column's precision (rounded to the millisecond, as stored).
 */
const RECORDING_TIME = `SELECT now()::timestamp (3) with time zone AS at`;

export async function recordingTime(tx: Conn): Promise<string> {
  const [row] = await queryRows<{ at: string | Date }>(tx, RECORDING_TIME);
  return new Date(row!.at).toISOString();
}

/**
 * The rows ($4, a JSON array, in version order) go in only if the stream is at version $5. A
 * stream already past it fails on the unique (stream_id, stream_version) index rather than
 * inserting nothing: an error aborts the transaction, so an append sent without waiting for its
 * answer (with COMMIT behind it) can never commit what was written on the strength of it.
 */
const APPEND_TO_STREAM = `INSERT INTO events (stream_id, stream_version, type, data, metadata, schema_version)
  SELECT $1::text, v.stream_version, v.type, v.data, $2::jsonb, $3::integer
  FROM jsonb_to_recordset($4::jsonb) AS v(stream_version integer, type text, data jsonb)
  WHERE (SELECT coalesce(max(h.stream_version), 0) FROM events h WHERE h.stream_id = $1::text) >= $5::integer
  RETURNING position::text AS position, stream_id, stream_version, type, data, metadata, recorded_at`;

/**
 * Append events to a stream that must be at `expectedVersion` (0 = new stream). Runs inside
 * the caller's transaction, so read-model updates commit or roll back with the events.
 * A stale expectation, or a writer that got there first, raises ConcurrencyError; the unique
 * (stream_id, stream_version) index is the last word, so no interleaving can overwrite.
 * One statement: the version check is the INSERT's own condition (it reads the stream's head
 * through that unique index), so an append costs one round trip, not two.
 */
export async function appendToStream(
  tx: Conn,
  streamId: string,
  expectedVersion: number,
  newEvents: readonly NewTaskEvent[],
  metadata: AppendMetadata,
): Promise<StoredTaskEvent[]> {
  if (newEvents.length === 0) return [];
  const meta: EventMetadata = { ...metadata, schemaVersion: CURRENT_SCHEMA_VERSION };
  // Event data carries text from trainers and clients (error messages, artifact paths, reasons):
  // safeJson stores NUL and lone surrogates, which jsonb refuses, as U+FFFD.
  const rowsJson = `[${newEvents.map((e, i) => `{"stream_version":${expectedVersion + i + 1},"type":${JSON.stringify(e.type)},"data":${safeJson(e.data)}}`).join(',')}]`;
  let rows: Record<string, unknown>[];
  try {
    rows = await queryRows<Record<string, unknown>>(tx, APPEND_TO_STREAM, [
      streamId,
      safeJson(meta),
      CURRENT_SCHEMA_VERSION,
      rowsJson,
      expectedVersion,
    ]);
  } catch (err) {
    if (pgErrorCode(err) === '23505') throw new ConcurrencyError(streamId, expectedVersion, null);
    throw err;
  }
  if (rows.length === 0) {
    // The condition failed: the stream is behind the expected version. Say where it is.
    const [head] = await tx
      .select({ version: events.streamVersion })
      .from(events)
      .where(eq(events.streamId, streamId))
      .orderBy(desc(events.streamVersion))
      .limit(1);
    throw new ConcurrencyError(streamId, expectedVersion, head?.version ?? 0);
  }
  return rows.map(rawToStored).sort((a, b) => a.version - b.version);
}

const APPEND_NEW_STREAMS = `INSERT INTO events (stream_id, stream_version, type, data, metadata, schema_version)
  SELECT v.stream_id, v.stream_version, v.type, v.data, v.metadata, $2::integer
  FROM jsonb_to_recordset($1::jsonb) AS v(ord integer, stream_id text, stream_version integer, type text, data jsonb, metadata jsonb)
  ORDER BY v.ord
  RETURNING position::text AS position, recorded_at`;

/**
 * Append the first events of several new streams in one statement, in the order given: rows
 * are inserted (and draw their positions) in that order. A stream id that already exists hits
 * the unique (stream_id, stream_version) index: ConcurrencyError, and nothing is written.
 * The rows travel as one JSON parameter (a sweep appends thousands: a parameter per value cost
 * more to build than to run), parsed once as jsonb (json_to_recordset would keep the text and
 * parse each value bound for a jsonb column again: docs/BENCHMARKS.md, "A sixth look"), and only
 * what the database adds (position, time) comes back.
 */
export async function appendNewStreams(
  tx: Conn,
  streams: readonly { streamId: string; events: readonly NewTaskEvent[]; meta: AppendMetadata }[],
): Promise<StoredTaskEvent[][]> {
  const written: Omit<StoredTaskEvent, 'position' | 'recordedAt'>[] = [];
  const rows: string[] = [];
  for (const s of streams) {
    const meta = safeJsonOf({ ...s.meta, schemaVersion: CURRENT_SCHEMA_VERSION });
    const id = JSON.stringify(s.streamId);
    s.events.forEach((e, i) => {
      const data = safeJsonOf(e.data);
      rows.push(
        `{"ord":${rows.length},"stream_id":${id},"stream_version":${i + 1},"type":${JSON.stringify(e.type)},"data":${data.json},"metadata":${meta.json}}`,
      );
      written.push({ ...e, data: data.value, streamId: s.streamId, version: i + 1, metadata: meta.value } as Omit<
        StoredTaskEvent,
        'position' | 'recordedAt'
      >);
    });
  }
  if (rows.length === 0) return streams.map(() => []);
  let returned: { position: string; recorded_at: string | Date }[];
  try {
    // Sent as it is called (SQL text to the driver): the new tasks' rows go right behind it.
    returned = await queryRows(tx, APPEND_NEW_STREAMS, [`[${rows.join(',')}]`, CURRENT_SCHEMA_VERSION]);
  } catch (err) {
    if (pgErrorCode(err) === '23505') throw new ConcurrencyError(streams.map((s) => s.streamId).join(', '), 0, null);
    throw err;
  }
  if (returned.length !== written.length) throw new Error(`appendNewStreams: ${written.length} events sent, ${returned.length} written`);
  // RETURNING gives no order; positions are drawn in insert order, which is the order sent.
  const positions = returned.map((r) => ({ position: r.position, recordedAt: new Date(r.recorded_at).toISOString() }));
  positions.sort((a, b) => comparePositions(a.position, b.position));
  const byStream = new Map<string, StoredTaskEvent[]>(streams.map((s) => [s.streamId, []]));
  written.forEach((w, k) => byStream.get(w.streamId)!.push({ ...w, ...positions[k]! } as StoredTaskEvent));
  return streams.map((s) => byStream.get(s.streamId)!);
}

/** Order of two positions (decimal bigint text). */
function comparePositions(a: string, b: string): number {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}

export async function readStream(conn: Conn, streamId: string, upToPosition?: string): Promise<StoredTaskEvent[]> {
  const rows = await conn
    .select()
    .from(events)
    .where(
      upToPosition ? and(eq(events.streamId, streamId), sql`${events.position} <= ${upToPosition}::bigint`) : eq(events.streamId, streamId),
    )
    .orderBy(asc(events.streamVersion));
  return rows.map(toStored);
}

/** Everything after a position, in position order: for rebuilds and audits, paged. */
export async function readAllAfter(conn: Conn, afterPosition: string, limit: number): Promise<StoredTaskEvent[]> {
  const rows = await conn
    .select()
    .from(events)
    .where(gt(events.position, BigInt(afterPosition)))
    .orderBy(asc(events.position))
    .limit(limit);
  return rows.map(toStored);
}

export async function* readAll(conn: Conn, pageSize = 5000): AsyncGenerator<StoredTaskEvent> {
  let after = '0';
  for (;;) {
    const page = await readAllAfter(conn, after, pageSize);
    for (const e of page) yield e;
    if (page.length < pageSize) return;
    after = page[page.length - 1]!.position;
  }
}

/**
 * Every event stream by stream (stream id, then version), keyset-paged: a reader can fold one
 * stream at a time and hold only it (the rebuild's comparison, issue 19).
 */
export async function* readAllByStream(conn: Conn, pageSize = 5000): AsyncGenerator<StoredTaskEvent> {
  let after: { stream: string; version: number } | null = null;
  for (;;) {
    const page: EventRow[] = await conn
      .select()
      .from(events)
      .where(after ? sql`(${events.streamId}, ${events.streamVersion}) > (${after.stream}, ${after.version})` : undefined)
      .orderBy(asc(events.streamId), asc(events.streamVersion))
      .limit(pageSize);
    for (const row of page) yield toStored(row);
    if (page.length < pageSize) return;
    const last = page[page.length - 1]!;
    after = { stream: last.streamId, version: last.streamVersion };
  }
}

/**
 * Where a tailing reader stands: the (transaction id, position) of the last event it saw.
 * Positions are drawn from a sequence before commit, so a slow transaction can commit position
 * 5 after a fast one committed 6. A reader that moved on past 6 would never see 5. Instead the
 * tail is read in (transaction id, position) order and only from transactions older than the
 * oldest one still running (pg_snapshot_xmin): nothing can later appear before what was read.
 */
export interface TailCursor {
  transactionId: string;
  position: string;
}

export const TAIL_START: TailCursor = { transactionId: '0', position: '0' };

/** The tail's order: by transaction id, then position (negative: a comes first). */
export function compareTailCursors(a: TailCursor, b: TailCursor): number {
  const tx = BigInt(a.transactionId) - BigInt(b.transactionId);
  if (tx !== 0n) return tx < 0n ? -1 : 1;
  const pos = BigInt(a.position) - BigInt(b.position);
  return pos === 0n ? 0 : pos < 0n ? -1 : 1;
}

// In the raw queries below, ORDER BY names the table's columns (events.x): a bare name would
// resolve to the `::text` output column of the same name and sort positions as text ('10' before
// '9'), which both breaks the tail's order and forbids the (transaction_id, position) index.
export async function readCommittedAfter(
  conn: Conn,
  cursor: TailCursor,
  limit: number,
): Promise<{ events: StoredTaskEvent[]; cursor: TailCursor; cursors: TailCursor[] }> {
  const rows = rowsOf<Record<string, unknown>>(
    await conn.execute(sql`
      SELECT position::text AS position, transaction_id::text AS transaction_id, stream_id, stream_version,
             type, data, metadata, recorded_at
      FROM events
      WHERE (transaction_id, position) > (${cursor.transactionId}::xid8, ${cursor.position}::bigint)
        AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
      ORDER BY events.transaction_id, events.position
      LIMIT ${limit}`),
  );
  const out = rows.map(rawToStored);
  // Where a reader stands after each event: a consumer that joins a tail part-way (a resumed
  // subscription) compares these with its own cursor to skip what it has already seen.
  const cursors = rows.map((r) => ({ transactionId: String(r.transaction_id), position: String(r.position) }));
  return { events: out, cursor: cursors[cursors.length - 1] ?? cursor, cursors };
}

/** The tail cursor of a known position (to resume a subscription from an event id). */
export async function cursorAt(conn: Conn, position: string): Promise<TailCursor | null> {
  const rows = rowsOf<{ transaction_id: string }>(
    await conn.execute(sql`SELECT transaction_id::text AS transaction_id FROM events WHERE position = ${position}::bigint`),
  );
  return rows[0] ? { transactionId: rows[0].transaction_id, position } : null;
}

/** The cursor after everything committed now: where a reader that wants only new events starts. */
export async function tailHead(conn: Conn): Promise<TailCursor> {
  const rows = rowsOf<{ transaction_id: string | null; position: string | null }>(
    await conn.execute(sql`
      SELECT transaction_id::text AS transaction_id, position::text AS position FROM events
      WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
      ORDER BY events.transaction_id DESC, events.position DESC LIMIT 1`),
  );
  const r = rows[0];
  return r?.transaction_id && r.position ? { transactionId: r.transaction_id, position: r.position } : TAIL_START;
}

export interface EventQuery {
  streamId?: string | undefined;
  types?: string[] | undefined;
  actor?: string | undefined;
  /** Only events of this user's tasks (tokens mode: a user who is not an admin reads their own). */
  owner?: string | undefined;
  /** ISO times, inclusive from, exclusive to. */
  from?: string | undefined;
  to?: string | undefined;
  /** Only events after this position (paging). */
  afterPosition?: string | undefined;
  limit: number;
}

/**
 * One stream's events newest first, `limit` of them before `beforePosition` (all when absent),
 * of the given types when named: a task's history read from its end, a page at a time.
 */
export async function readStreamNewestFirst(
  conn: Conn,
  streamId: string,
  q: { beforePosition?: string | undefined; types?: string[] | undefined; limit: number },
): Promise<StoredTaskEvent[]> {
  const conds = [eq(events.streamId, streamId)];
  if (q.types?.length) conds.push(inArray(events.type, q.types));
  if (q.beforePosition) conds.push(lt(events.position, BigInt(q.beforePosition)));
  const rows = await conn
    .select()
    .from(events)
    .where(and(...conds))
    .orderBy(desc(events.position))
    .limit(q.limit);
  return rows.map(toStored);
}

/** Audit queries over the log, oldest first, paged by position. */
export async function queryEvents(conn: Conn, q: EventQuery): Promise<StoredTaskEvent[]> {
  const conds = [];
  if (q.streamId) conds.push(eq(events.streamId, q.streamId));
  if (q.types?.length) conds.push(inArray(events.type, q.types));
  if (q.actor) conds.push(sql`${events.metadata}->>'actor' = ${q.actor}`);
  if (q.owner !== undefined)
    conds.push(inArray(events.streamId, conn.select({ id: tasks.id }).from(tasks).where(eq(tasks.owner, q.owner))));
  if (q.from) conds.push(gte(events.recordedAt, q.from));
  if (q.to) conds.push(lt(events.recordedAt, q.to));
  if (q.afterPosition) conds.push(gt(events.position, BigInt(q.afterPosition)));
  const rows = await conn
    .select()
    .from(events)
    .where(conds.length ? and(...conds) : undefined)
    .orderBy(asc(events.position))
    .limit(q.limit);
  return rows.map(toStored);
}
