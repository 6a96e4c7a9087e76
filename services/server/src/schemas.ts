// Input validation for every procedure. Each field says what is wrong with it in words a user
// can act on; the error formatter turns these into { fieldErrors: { "config.batchSize": [...] } }.
import { z } from 'zod';
import { TRAINING_LIMITS, type LimitedField } from '@trainyard/catalogue';
import { TASK_EVENT_TYPES, TASK_STATUSES } from '@trainyard/domain';

const HOUR = 3_600_000;
// Printable text only: no control characters (NUL, escape sequences, newlines).
const printable = /^[^\p{Cc}]*$/u;
const UNPAIRED_SURROGATE = /\p{Cs}/u;
const noDotDot = (s: string) => !s.split(/[\\/]+/).includes('..');

const text = (field: string, max: number) =>
  z
    .string({ error: `${field} must be text` })
    .trim()
    .min(1, `${field} must not be empty`)
    .max(max, `${field} must be at most ${max} characters`)
    .regex(printable, `${field} must not contain control characters`)
    // A lone UTF-16 surrogate is not text: the task record is stored as jsonb, which refuses
    // it, so it reached SQL and failed there (a 500 instead of naming the field).
    .refine((s) => !UNPAIRED_SURROGATE.test(s), `${field} must be valid Unicode text (it has an unpaired surrogate)`);

/** An id of ours (a task's, a webhook's), checked before it reaches SQL: a NUL there is a 500. */
export const recordId = (field: string, what = 'a task id') =>
  z
    .string({ error: `${field} must be text` })
    .min(1, `${field} must not be empty`)
    .max(64, `${field} must be at most 64 characters`)
    .regex(/^[A-Za-z0-9_-]+$/, `${field} is not ${what} (letters, digits, - and _ only)`);

const taskId = recordId('id');

const int = (field: string, min: number, max: number) =>
  z
    .number({ error: `${field} must be a number` })
    .int(`${field} must be a whole number`)
    .min(min, `${field} must be at least ${min}`)
    .max(max, `${field} must be at most ${max}`);

/** A training setting within the limits the panel checks too (@trainyard/catalogue). */
const limited = (field: LimitedField) => int(field, TRAINING_LIMITS[field].min, TRAINING_LIMITS[field].max);

const simulateConfig = z
  .strictObject({
    steps: int('steps', 1, 100_000).optional(),
    stepMs: int('stepMs', 0, 600_000).optional(),
    failAtStep: int('failAtStep', 1, 100_000).optional(),
    exitCode: int('exitCode', 1, 255).optional(),
    crashSignal: z.enum(['SIGKILL', 'SIGSEGV', 'SIGABRT', 'SIGTERM']).optional(),
    ignoreSigterm: z.boolean().optional(),
    logLinesPerStep: int('logLinesPerStep', 0, 10_000).optional(),
    startupMs: int('startupMs', 0, 600_000).optional(),
    hostileOutput: z.boolean({ error: 'hostileOutput must be true or false' }).optional(),
    checkpointEvery: int('checkpointEvery', 1, 100_000).optional(),
  })
  .describe('knobs of the simulated trainer');

const trainingConfig = z
  .strictObject({
    epochs: limited('epochs').default(3),
    batchSize: limited('batchSize').default(1),
    gradientAccumulation: limited('gradientAccumulation').default(16),
    learningRate: z
      .number({ error: 'learningRate must be a number' })
      .gt(0, 'learningRate must be greater than 0')
      .max(1, 'learningRate must be at most 1')
      .default(2e-4),
    maxLength: limited('maxLength').default(512),
    load8bit: z.boolean({ error: 'load8bit must be true or false' }).default(false),
    load4bit: z.boolean({ error: 'load4bit must be true or false' }).default(false),
    loraRank: limited('loraRank').default(8),
    loraAlpha: limited('loraAlpha').default(16),
    /** The trainer saves a checkpoint every this many steps (it also does when preempted). */
    checkpointEverySteps: int('checkpointEverySteps', 1, 10_000_000).optional(),
    simulate: simulateConfig.optional(),
  })
  .superRefine((c, ctx) => {
    if (c.load8bit && c.load4bit) ctx.addIssue({ code: 'custom', path: ['load4bit'], message: 'choose 8-bit or 4-bit loading, not both' });
  });

/** What a task asks of the GPUs; checked against the inventory by the service. */
const resourcesInput = z.strictObject({
  gpus: int('resources.gpus', 1, 64).default(1),
  gpuMemoryGb: z
    .number({ error: 'resources.gpuMemoryGb must be a number' })
    .positive('resources.gpuMemoryGb must be more than 0')
    .max(4096, 'resources.gpuMemoryGb must be at most 4096')
    .optional(),
  shared: z.boolean({ error: 'resources.shared must be true or false' }).default(false),
});
export type ResourcesInput = z.infer<typeof resourcesInput>;

export const createTaskInput = z.strictObject({
  model: text('model', 200)
    .regex(
      /^[A-Za-z0-9][A-Za-z0-9._\-/:@]*$/,
      'model must be a model id like Qwen/Qwen2.5-Coder-1.5B-Instruct (letters, digits, . _ - / : @, starting with a letter or digit; a local folder such as /srv/models/x is not accepted)',
    )
    .refine(noDotDot, 'model must not contain .. segments'),
  datasetPath: text('datasetPath', 4096).refine(noDotDot, 'datasetPath must not contain .. segments'),
  name: text('name', 120).optional(),
  outputDir: text('outputDir', 255)
    .regex(
      /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/,
      'outputDir must be a relative path of letters, digits, . _ - (it lives under the outputs folder)',
    )
    .refine(noDotDot, 'outputDir must not contain .. segments')
    .optional(),
  config: trainingConfig.default(() => trainingConfig.parse({})),
  timeoutMs: int('timeoutMs', 1000, 30 * 24 * HOUR).optional(),
  idempotencyKey: text('idempotencyKey', 200).optional(),
  resources: resourcesInput.optional(),
  /** A priority class name (TRAINYARD_PRIORITY_CLASSES; default normal); checked by the service. */
  priority: z
    .string({ error: 'priority must be a class name such as normal or high' })
    .regex(/^[a-z][a-z0-9-]{0,31}$/, 'priority must be a class name such as normal or high')
    .optional(),
});
export type CreateTaskInput = z.infer<typeof createTaskInput>;

/** The most tasks.createMany's schema takes; the service's own maximum is TRAINYARD_CREATE_MANY_MAX (at most this). */
export const CREATE_MANY_LIMIT = 10_000;

/** A sweep: several tasks in one call, one transaction, all or nothing; the key makes a retry safe. */
export const createManyInput = z.strictObject({
  tasks: z
    .array(createTaskInput.omit({ idempotencyKey: true }), { error: 'tasks must be a list of tasks' })
    .min(1, 'tasks must hold at least one task')
    .max(CREATE_MANY_LIMIT, `tasks must hold at most ${CREATE_MANY_LIMIT} tasks`),
  idempotencyKey: text('idempotencyKey', 200).optional(),
});
export type CreateManyInput = z.infer<typeof createManyInput>;

const status = z.enum(TASK_STATUSES, { error: `status must be one of ${TASK_STATUSES.join(', ')}` });

export const listTasksInput = z
  .strictObject({
    status: z.union([status, z.array(status).max(7)]).optional(),
    cursor: z.string().max(500).nullish(),
    limit: int('limit', 1, 200).default(50),
    /** Only tasks whose name, model or id holds this text (any case). */
    search: text('search', 200).optional(),
    /** Only tasks whose id starts with this (the CLI takes a unique start of an id). */
    idPrefix: z
      .string({ error: 'idPrefix must be text' })
      .regex(/^[A-Za-z0-9_-]{1,64}$/, 'idPrefix is not the start of a task id (letters, digits, - and _ only)')
      .optional(),
    /** Only this user's tasks (a user who is not an admin sees only their own whatever this says). */
    owner: text('owner', 100).optional(),
  })
  .default({ limit: 50 });

export const cancelInput = z.strictObject({ id: taskId, reason: text('reason', 500).optional() });

/** Progress reports per page of tasks.metrics: by default, and at most. */
const METRICS_PAGE_DEFAULT = 2000;
const METRICS_PAGE_MAX = 5000;
export const idInput = z.strictObject({ id: taskId });

/** How many queued tasks queue.get returns, first to start first (queuedCount says how many in all). */
export const QUEUE_PAGE_DEFAULT = 50;
export const queueGetInput = z.strictObject({ limit: z.number().int().min(1).max(500).optional() }).optional();

export const logsInput = z.strictObject({
  id: taskId,
  afterSeq: int('afterSeq', 0, 2 ** 31 - 1).default(0),
  limit: int('limit', 1, 5000).default(500),
  includeProtocol: z.boolean().default(false),
});

const position = z
  .string({ error: 'position must be text' })
  .regex(/^[0-9]{1,19}$/, 'position must be a log position (digits)')
  // 19 digits go past bigint: such a cursor reached SQL and failed there (a 500).
  // (zod runs refinements even after the regex failed: only digits reach BigInt.)
  .refine((s) => !/^[0-9]+$/.test(s) || BigInt(s) <= 9_223_372_036_854_775_807n, 'position is beyond any log position');

const isoTime = (field: string) =>
  z.iso
    .datetime({ offset: true, error: `${field} must be an ISO 8601 time, e.g. 2026-01-31T12:00:00Z` })
    // As UTC: Postgres refuses offsets past ±15:59 (ISO allows ±23:59), ISO's year 0000 (1 BC)
    // and years past 9999 in this form; each reached SQL and failed there (a 500).
    .transform((s) => new Date(s).toISOString())
    .refine((s) => /^\d{4}-/.test(s) && !s.startsWith('0000'), `${field} must be a time between the years 0001 and 9999 (UTC)`);

/** A task's progress series (tasks.metrics), a page at a time after `after` (the previous page's nextCursor). */
export const metricsInput = z.strictObject({
  id: taskId,
  after: position.nullish(),
  limit: int('limit', 1, METRICS_PAGE_MAX).default(METRICS_PAGE_DEFAULT),
});

export const onUpdateInput = z.strictObject({ taskId: taskId.optional(), lastEventId: position.nullish() }).default({});

export const onLogsInput = z.strictObject({
  id: taskId,
  lastEventId: z
    .string()
    .regex(/^[0-9]{1,10}$/, 'lastEventId must be a log line number')
    // Past the integer column's range the query failed and the subscription polled forever.
    .refine((s) => !/^[0-9]+$/.test(s) || Number(s) <= 2 ** 31 - 1, 'lastEventId is beyond any log line number')
    .nullish(),
  includeProtocol: z.boolean().default(false),
});

export const eventsListInput = z
  .strictObject({
    taskId: taskId.optional(),
    type: z.union([z.enum(TASK_EVENT_TYPES), z.array(z.enum(TASK_EVENT_TYPES)).max(20)]).optional(),
    actor: text('actor', 200).optional(),
    from: isoTime('from').optional(),
    to: isoTime('to').optional(),
    cursor: position.nullish(),
    limit: int('limit', 1, 1000).default(100),
  })
  .default({ limit: 100 });

/** Steps of events.replay per page: by default, at most, and the page's size as JSON at most. */
const REPLAY_PAGE_DEFAULT = 100;
const REPLAY_PAGE_MAX = 500;
export const REPLAY_PAGE_MAX_BYTES = 1_000_000;

export const replayInput = z
  .strictObject({
    taskId,
    atPosition: position.optional(),
    atTime: isoTime('atTime').optional(),
    /** Paging: the steps after this log position (the previous page's nextCursor). */
    afterPosition: position.nullish(),
    limit: int('limit', 1, REPLAY_PAGE_MAX).default(REPLAY_PAGE_DEFAULT),
  })
  .refine((v) => !(v.atPosition && v.atTime), { message: 'give atPosition or atTime, not both', path: ['atTime'] })
  .refine((v) => !(v.afterPosition && (v.atPosition || v.atTime)), {
    message: 'afterPosition pages the full replay; it does not go with atPosition or atTime',
    path: ['afterPosition'],
  });

/** An admin sets some of a user's limits; null removes a cap, an absent field stays as it is. */
export const quotaSetInput = z.strictObject({
  user: text('user', 64),
  maxGpus: int('maxGpus', 0, 4096).nullable().optional(),
  gpuHours: z.number({ error: 'gpuHours must be a number' }).min(0, 'gpuHours must be at least 0').max(1e9).nullable().optional(),
  gpuHoursWindowHours: int('gpuHoursWindowHours', 1, 24 * 366)
    .nullable()
    .optional(),
  maxPriority: z
    .string({ error: 'maxPriority must be a class name' })
    .regex(/^[a-z][a-z0-9-]{0,31}$/, 'maxPriority must be a class name')
    .nullable()
    .optional(),
  weight: z.number({ error: 'weight must be a number' }).positive('weight must be more than 0').max(1000).optional(),
});
export type QuotaSetInput = z.infer<typeof quotaSetInput>;

const deploymentId = z
  .string({ error: 'id must be text' })
  .regex(/^dep-[A-Za-z0-9_-]{1,60}$/, 'id is not a deployment id (dep- then letters, digits, - and _)');
/** deployments.create: a completed task's adapter (`taskId`) or a base model (`model`), not both. */
export const createDeploymentInput = z
  .strictObject({
    taskId: taskId.optional(),
    model: text('model', 200).min(1, 'model must not be empty').optional(),
    adapters: z.array(taskId).max(16, 'adapters: at most 16').optional(),
    gpus: int('gpus', 1, 64).optional(),
    gpuMemoryUtilization: z
      .number({ error: 'gpuMemoryUtilization must be a number' })
      .gt(0, 'gpuMemoryUtilization must be more than 0')
      .max(1, 'gpuMemoryUtilization must be at most 1')
      .optional(),
    maxModelLen: int('maxModelLen', 16, 10_000_000).optional(),
    port: int('port', 1024, 65535).optional(),
    onTrainingDemand: z.enum(['wait', 'sleep', 'stop'], { error: 'onTrainingDemand must be wait, sleep or stop' }).optional(),
    /** A priority class name: a training task of a lower priority never puts it to sleep. */
    priority: text('priority', 40).optional(),
    /** Serve the task's adapter merged into its base model's weights (TRAINYARD_MERGE) rather than as a LoRA module. */
    merge: z.boolean({ error: 'merge must be true or false' }).optional(),
  })
  .refine((v) => (v.taskId === undefined) !== (v.model === undefined), {
    message: 'give either taskId or model, not both',
    path: ['taskId'],
  })
  .refine((v) => !v.merge || v.taskId !== undefined, { message: 'merge needs taskId: the task whose adapter is merged', path: ['merge'] })
  .refine((v) => !v.merge || !v.adapters?.length, {
    message: 'a merged deployment serves one adapter, its task’s: serve more adapters from a deployment without merge',
    path: ['adapters'],
  });
export const deploymentIdInput = z.strictObject({ id: deploymentId });
/** deployments.addAdapter / removeAdapter: a completed task's adapter on a SERVING deployment. */
export const deploymentAdapterInput = z.strictObject({ id: deploymentId, taskId });
export const deploymentUpdatesInput = z.strictObject({ id: deploymentId.optional() }).optional();
export const listDeploymentsInput = z.strictObject({ limit: int('limit', 1, 500).optional() }).optional();
