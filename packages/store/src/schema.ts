// The database schema, the one source drizzle-kit generates migrations from (see migrations/).
// The event log is the truth; every other table is a projection of it, except task_logs, which
// holds trainer output lines (data, not state transitions).
import { sql } from 'drizzle-orm';
import {
  bigint,
  bigserial,
  boolean,
  customType,
  doublePrecision,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  uniqueIndex,
} from 'drizzle-orm/pg-core';
import type { DeploymentRecord, EventMetadata, TaskRecord } from '@trainyard/domain';

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

/**
 * A time of the task record (ISO 8601 in UTC, as toISOString writes it: every time the fold
 * records) as epoch milliseconds, for a generated column. Built from its parts with
 * make_timestamp: a cast from text is not immutable (it reads the session's settings), and a
 * generated column must be. Null for no time, and for text of any other form rather than an
 * error that would refuse the task's row (recent-runs.int.spec.ts holds real records' times to it).
 */
function recordMillis(field: 'startedAt' | 'finishedAt') {
  const v = `(record->>'${field}')`;
  const part = (from: number, length: number, type: string) => `substr(${v}, ${from}, ${length})::${type}`;
  return sql.raw(
    `CASE WHEN ${v} ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[.][0-9]{3}Z$' THEN ` +
      `(extract(epoch FROM make_timestamp(${part(1, 4, 'integer')}, ${part(6, 2, 'integer')}, ${part(9, 2, 'integer')}, ` +
      `${part(12, 2, 'integer')}, ${part(15, 2, 'integer')}, ${part(18, 6, 'double precision')})) * 1000)::double precision END`,
  );
}

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
    /** Priority value (higher first): the queue's first key. */
    priority: integer('priority').notNull().default(0),
    deleted: boolean('deleted').notNull().default(false),
    lastPosition: position('last_position').notNull(),
    record: jsonb('record').$type<TaskRecord>().notNull(),
    // A run's GPUs, start and end, copied out of the record by Postgres as the row is written:
    // the accounts' read of every recent run (sql/quotas.ts) takes these instead of digging them
    // out of each record and parsing its times (125,000 of them at start-up in the 1M-event
    // benchmark). The times as epoch milliseconds (recordMillis).
    runGpus: integer('run_gpus').generatedAlwaysAs(sql`(record->'spec'->'resources'->>'gpus')::integer`),
    runStartedMs: doublePrecision('run_started_ms').generatedAlwaysAs(recordMillis('startedAt')),
    runFinishedMs: doublePrecision('run_finished_ms').generatedAlwaysAs(recordMillis('finishedAt')),
  },
  (t) => [
    uniqueIndex('tasks_idempotency_uq').on(t.owner, t.idempotencyKey),
    index('tasks_queue_idx')
      .on(t.queuedPosition)
      .where(sql`${t.status} = 'QUEUED'`),
    index('tasks_priority_queue_idx')
      .on(t.priority.desc(), t.queuedPosition)
      .where(sql`${t.status} = 'QUEUED'`),
    index('tasks_status_created_idx').on(t.status, t.createdAt, t.id),
    index('tasks_created_idx').on(t.createdAt, t.id),
    // One user's tasks, newest first (tokens mode lists only the caller's own).
    index('tasks_owner_created_idx').on(t.owner, t.createdAt, t.id),
  ],
);

/**
 * The schedulable devices (whole GPUs and MIG instances) as configured at start-up. A device
 * that is no longer seen stays, marked absent, while a task holds it (so the holder is noticed).
 */
export const devices = pgTable('devices', {
  deviceId: text('device_id').primaryKey(),
  gpuIndex: integer('gpu_index').notNull(),
  uuid: text('uuid'),
  name: text('name').notNull(),
  memoryMb: integer('memory_mb').notNull(),
  migProfile: text('mig_profile'),
  present: boolean('present').notNull().default(true),
});

/**
 * Which task holds which device, with the memory it was granted. The primary key stops one task
 * holding a device twice; the partial unique index makes two exclusive holders of one device
 * impossible, so a scheduling race ends in a constraint error (and a retry). Exclusive beside
 * shared and memory over a device's size are the policy's to prevent (it runs under the queue
 * lock); the simulation and the torture suite check both.
 */
export const deviceHolders = pgTable(
  'device_holders',
  {
    deviceId: text('device_id').notNull(),
    taskId: text('task_id').notNull(),
    memoryMb: integer('memory_mb').notNull(),
    exclusive: boolean('exclusive').notNull(),
    since: position('since_position').notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.deviceId, t.taskId] }),
    uniqueIndex('device_holders_exclusive_uq')
      .on(t.deviceId)
      .where(sql`${t.exclusive}`),
    index('device_holders_task_idx').on(t.taskId),
  ],
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

/**
 * Who may call the service in tokens mode (TRAINYARD_AUTH=tokens); a task's owner is its user's
 * name. Managed from the server's machine (`trainyard admin user …`), never through the API.
 * What the scheduler will weigh per user (a priority class, quotas) belongs on this row.
 */
export const users = pgTable('users', {
  name: text('name').primaryKey(),
  admin: boolean('admin').notNull().default(false),
  /** Quota: devices at once, and GPU-hours per rolling window (null: no cap). */
  maxGpus: integer('max_gpus'),
  gpuHours: doublePrecision('gpu_hours'),
  gpuHoursWindowHours: integer('gpu_hours_window_hours'),
  /** The highest priority class the user may submit with (null: any). */
  maxPriority: text('max_priority'),
  /** Fair-share weight. */
  weight: doublePrecision('weight').notNull().default(1),
  createdAt: isoTimestamp('created_at')
    .notNull()
    .default(sql`now()`),
});

/**
 * Bearer tokens. Only a SHA-256 of each token is kept (tokens.ts says why that is enough), with
 * the first characters to recognise it by; a revoked or expired one stays, for the audit.
 */
export const apiTokens = pgTable(
  'api_tokens',
  {
    id: text('id').primaryKey(),
    // Not a foreign key: drizzle-kit writes one as "public"."users", and the tables live in
    // the configured schema. Users are never deleted; a token is created for an existing one.
    userName: text('user_name').notNull(),
    hash: text('hash').notNull(),
    prefix: text('prefix').notNull(),
    createdAt: isoTimestamp('created_at')
      .notNull()
      .default(sql`now()`),
    expiresAt: isoTimestamp('expires_at'),
    revokedAt: isoTimestamp('revoked_at'),
  },
  (t) => [uniqueIndex('api_tokens_hash_uq').on(t.hash), index('api_tokens_user_idx').on(t.userName)],
);

/**
 * Files uploaded through the OpenAI-compatible API (`/v1/files`): what OpenAI's file object says
 * of each, who uploaded it, where its bytes are (the uploads folder) and what the dataset check
 * found. Request data, not task state: a task names the file's path in its own spec.
 */
export const openaiFiles = pgTable(
  'openai_files',
  {
    id: text('id').primaryKey(),
    owner: text('owner').notNull(),
    filename: text('filename').notNull(),
    purpose: text('purpose').notNull(),
    bytes: bigint('bytes', { mode: 'number' }).notNull(),
    path: text('path').notNull(),
    records: integer('records').notNull(),
    estimatedTokens: bigint('estimated_tokens', { mode: 'number' }).notNull(),
    createdAt: isoTimestamp('created_at')
      .notNull()
      .default(sql`now()`),
  },
  (t) => [index('openai_files_created_idx').on(t.createdAt, t.id), index('openai_files_owner_created_idx').on(t.owner, t.createdAt, t.id)],
);

/**
 * Fine-tuning jobs made through the OpenAI-compatible API (`/v1/fine_tuning/jobs`): the task each
 * one is, and what the request said that a task does not keep (the file ids, suffix, seed,
 * metadata). The job's state is its task's, read from the task.
 */
export const openaiJobs = pgTable(
  'openai_jobs',
  {
    taskId: text('task_id').primaryKey(),
    owner: text('owner').notNull(),
    model: text('model').notNull(),
    trainingFile: text('training_file').notNull(),
    validationFile: text('validation_file'),
    suffix: text('suffix'),
    seed: integer('seed').notNull(),
    metadata: jsonb('metadata').$type<Record<string, string>>(),
    method: text('method').notNull(),
    createdAt: isoTimestamp('created_at')
      .notNull()
      .default(sql`now()`),
  },
  (t) => [
    index('openai_jobs_created_idx').on(t.createdAt, t.taskId),
    index('openai_jobs_owner_created_idx').on(t.owner, t.createdAt, t.taskId),
    index('openai_jobs_training_file_idx').on(t.trainingFile),
  ],
);

/**
 * Each service instance's lease (see packages/domain/src/leases.ts): renewed by its heartbeat,
 * judged by the database's clock. `renewed_since`: when its heartbeats began without a break;
 * `taken_by`: the instance that took it over after it expired (its tasks went back to the queue).
 */
export const instanceLeases = pgTable('instance_leases', {
  runnerId: text('runner_id').primaryKey(),
  heartbeatAt: isoTimestamp('heartbeat_at').notNull(),
  renewedSince: isoTimestamp('renewed_since').notNull(),
  startedAt: isoTimestamp('started_at').notNull(),
  takenBy: text('taken_by'),
  takenAt: isoTimestamp('taken_at'),
});

/**
 * Deployments (vLLM servers, packages/domain/src/deployment.ts): a projection of their dep-
 * streams in the event log, one row each, written in the transaction that appends.
 */
export const deployments = pgTable(
  'deployments',
  {
    id: text('id').primaryKey(),
    status: text('status').notNull(),
    version: integer('version').notNull(),
    owner: text('owner').notNull(),
    /** The completed task whose adapter it serves, if any. */
    taskId: text('task_id'),
    createdAt: isoTimestamp('created_at').notNull(),
    deleted: boolean('deleted').notNull().default(false),
    lastPosition: position('last_position').notNull(),
    record: jsonb('record').$type<DeploymentRecord>().notNull(),
  },
  (t) => [index('deployments_created_idx').on(t.createdAt, t.id), index('deployments_task_idx').on(t.taskId)],
);

/**
 * Webhooks (packages/domain/src/webhooks.ts): where a task's ending is sent. `owner` null: every
 * user's tasks (an admin's global webhook). The secret signs deliveries (HMAC-SHA256), so it is
 * kept as given; it is shown once, when the webhook is made, and never read back by the API.
 */
export const webhooks = pgTable('webhooks', {
  id: text('id').primaryKey(),
  owner: text('owner'),
  url: text('url').notNull(),
  secret: text('secret').notNull(),
  /** The endings it wants (WebhookEventType); empty: all. */
  events: jsonb('events').$type<string[]>().notNull(),
  createdBy: text('created_by').notNull(),
  createdAt: isoTimestamp('created_at')
    .notNull()
    .default(sql`now()`),
  deletedAt: isoTimestamp('deleted_at'),
});

/**
 * One ending for one webhook: its body (the same bytes every attempt), where it stands
 * (pending, delivered, failed) and when it is tried next. Unique per webhook and log position,
 * so instances reading the same log plan it once. `claimed_until`: an instance is sending it.
 */
export const webhookDeliveries = pgTable(
  'webhook_deliveries',
  {
    id: text('id').primaryKey(),
    webhookId: text('webhook_id').notNull(),
    taskId: text('task_id').notNull(),
    owner: text('owner'),
    eventPosition: position('event_position').notNull(),
    type: text('type').notNull(),
    body: text('body').notNull(),
    state: text('state').notNull(),
    attempts: integer('attempts').notNull().default(0),
    nextAttemptAt: isoTimestamp('next_attempt_at'),
    claimedUntil: isoTimestamp('claimed_until'),
    lastError: text('last_error'),
    createdAt: isoTimestamp('created_at')
      .notNull()
      .default(sql`now()`),
    finishedAt: isoTimestamp('finished_at'),
  },
  (t) => [
    uniqueIndex('webhook_deliveries_once').on(t.webhookId, t.eventPosition),
    index('webhook_deliveries_due').on(t.state, t.nextAttemptAt),
    index('webhook_deliveries_task').on(t.taskId),
  ],
);

/** Each attempt at a delivery, as it went: the answer's status or the error, and what was decided. */
export const webhookAttempts = pgTable(
  'webhook_attempts',
  {
    deliveryId: text('delivery_id').notNull(),
    attempt: integer('attempt').notNull(),
    at: isoTimestamp('at')
      .notNull()
      .default(sql`now()`),
    status: integer('status'),
    error: text('error'),
    durationMs: integer('duration_ms').notNull(),
    /** delivered, retry or failed (the domain's decision after it). */
    outcome: text('outcome').notNull(),
    why: text('why'),
    retryInMs: integer('retry_in_ms'),
  },
  (t) => [primaryKey({ columns: [t.deliveryId, t.attempt] })],
);

/** How far into the log webhooks have been planned (one row): endings after it are still to plan. */
export const webhookCursor = pgTable('webhook_cursor', {
  id: text('id').primaryKey(),
  transactionId: text('transaction_id').notNull(),
  position: text('position').notNull(),
});
