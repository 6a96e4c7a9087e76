// The database schema, the one source drizzle-kit generates migrations from (see migrations/).
// The event log is the truth; every other table is a projection of it, except task_logs, which
// holds trainer output lines (data, not state transitions).
import { sql } from 'drizzle-orm';
import { bigserial, boolean, customType, index, integer, jsonb, pgTable, primaryKey, text, uniqueIndex } from 'drizzle-orm/pg-core';
import type { EventMetadata, TaskRecord } from '@trainyard/domain';

/** bigint positions travel as decimal strings: JS numbers lose precision past 2^53. */
const position = customType<{ data: string; driverData: string | number | bigint }>({
  dataType: () => 'bigint',
  fromDriver: (v) => String(v),
});
/** Transaction id of the appending transaction: orders the log in a way tailers can trust. */
const xid8 = customType<{ data: string; driverData: string | number | bigint }>({
  dataType: () => 'xid8',
  fromDriver: (v) => String(v),
});
/** timestamptz read back as an ISO string with milliseconds, the same on PGlite and Postgres. */
export const isoTimestamp = customType<{ data: string; driverData: string | Date }>({
  dataType: () => 'timestamp (3) with time zone',
  fromDriver: (v) => new Date(v).toISOString(),
});

export const events = pgTable(
  'events',
  {
    position: bigserial('position', { mode: 'bigint' }).primaryKey(),
    transactionId: xid8('transaction_id')
      .notNull()
      .default(sql`pg_current_xact_id()`),
    streamId: text('stream_id').notNull(),
    streamVersion: integer('stream_version').notNull(),
    type: text('type').notNull(),
    data: jsonb('data').notNull(),
    metadata: jsonb('metadata').$type<EventMetadata>().notNull(),
    schemaVersion: integer('schema_version').notNull().default(1),
    recordedAt: isoTimestamp('recorded_at')
      .notNull()
      .default(sql`now()`),
  },
  (t) => [
    uniqueIndex('events_stream_version_uq').on(t.streamId, t.streamVersion),
    index('events_tx_position_idx').on(t.transactionId, t.position),
    index('events_type_idx').on(t.type, t.position),
    index('events_recorded_at_idx').on(t.recordedAt),
  ],
);

export const tasks = pgTable(
  'tasks',
  {
    id: text('id').primaryKey(),
    status: text('status').notNull(),
    version: integer('version').notNull(),
    owner: text('owner').notNull(),
    name: text('name').notNull(),
    idempotencyKey: text('idempotency_key'),
    createdAt: isoTimestamp('created_at').notNull(),
    /** FIFO key of the queue: position of the TaskQueued event, set while QUEUED. */
    queuedPosition: position('queued_position'),
    deleted: boolean('deleted').notNull().default(false),
    lastPosition: position('last_position').notNull(),
    record: jsonb('record').$type<TaskRecord>().notNull(),
  },
  (t) => [
    uniqueIndex('tasks_idempotency_uq').on(t.owner, t.idempotencyKey),
    index('tasks_queue_idx')
      .on(t.queuedPosition)
      .where(sql`${t.status} = 'QUEUED'`),
    index('tasks_status_created_idx').on(t.status, t.createdAt, t.id),
    index('tasks_created_idx').on(t.createdAt, t.id),
  ],
);

export const gpuSlots = pgTable('gpu_slots', {
  slotId: integer('slot_id').primaryKey(),
  gpuIndex: integer('gpu_index').notNull(),
});

/**
 * Which task holds which slot. The primary key on slot_id is what makes two holders of one
 * slot impossible; the unique task_id stops one task from holding two slots.
 */
export const slotHolders = pgTable(
  'slot_holders',
  {
    slotId: integer('slot_id').primaryKey(),
    taskId: text('task_id').notNull(),
    since: position('since_position').notNull(),
  },
  (t) => [uniqueIndex('slot_holders_task_uq').on(t.taskId)],
);

export const taskLogs = pgTable(
  'task_logs',
  {
    taskId: text('task_id').notNull(),
    seq: integer('seq').notNull(),
    stream: text('stream').notNull(),
    line: text('line').notNull(),
    at: isoTimestamp('at').notNull(),
  },
  (t) => [primaryKey({ columns: [t.taskId, t.seq] })],
);

/**
 * The version of the fold each read model was written with. A read model written by an older
 * fold lacks what the new one adds; start-up refolds it from the log (see projection-version.ts).
 */
export const projectionVersions = pgTable('projection_versions', {
  name: text('name').primaryKey(),
  version: integer('version').notNull(),
  recordedAt: isoTimestamp('recorded_at')
    .notNull()
    .default(sql`now()`),
});
