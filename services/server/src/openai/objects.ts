// OpenAI's fine-tuning objects, as data: the job built from a task and what its request recorded,
// the file, event, checkpoint and model objects, the create body mapped to tasks.create's input,
// and the one mapping of the domain's statuses to OpenAI's. Pure: no IO, no clock (callers pass
// `now`). Nothing here decides state: a job is its task, seen through OpenAI's words.
import { z } from 'zod';
import { isTerminal, type FailureReason, type StoredTaskEvent, type TaskRecord, type TaskStatus } from '@trainyard/domain';
import type { OpenAiFileRow, OpenAiJobRow } from '@trainyard/store/openai';
import { createTaskInput, type CreateTaskInput } from '../schemas';

/** The upload route: its body is a multipart form (http-guard.ts lets it through as one). */
export const OPENAI_FILES_PATH = '/v1/files';
const JOB_PREFIX = 'ftjob-';
export const EVENT_PREFIX = 'ftevent-';
export const CHECKPOINT_PREFIX = 'ftckpt-';
/** A finished job's metrics file (one per succeeded job; not an upload). */
const RESULT_FILE_PREFIX = 'file-ftresult-';

export type JobStatus = 'validating_files' | 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'paused';

/** The one mapping of the domain's statuses to OpenAI's (a new domain status fails to compile here). */
export const JOB_STATUS = {
  PENDING: 'validating_files',
  QUEUED: 'queued',
  PREPARING: 'running',
  TRAINING: 'running',
  COMPLETED: 'succeeded',
  FAILED: 'failed',
  CANCELLED: 'cancelled',
} as const satisfies Record<TaskStatus, JobStatus>;

/** `error.code` of a failed job, by why its task failed. */
const FAILURE_CODE: Readonly<Record<FailureReason, string>> = {
  exit: 'trainer_failed',
  signal: 'trainer_killed',
  timeout: 'timeout',
  spawn: 'trainer_not_started',
  lost: 'device_lost',
};

/** Unix seconds, as OpenAI's objects give times. */
const unixSeconds = (iso: string): number => Math.floor(Date.parse(iso) / 1000);

export const jobId = (taskId: string): string => `${JOB_PREFIX}${taskId}`;

/** The task id in a job id, or null when it is not one this service gives. */
export function taskIdOfJob(id: string): string | null {
  const m = /^ftjob-([A-Za-z0-9_-]{1,64})$/.exec(id);
  return m ? m[1]! : null;
}

const resultFileId = (taskId: string): string => `${RESULT_FILE_PREFIX}${taskId}`;

/** The task whose metrics file this id names, or null. */
export function taskIdOfResultFile(id: string): string | null {
  const m = /^file-ftresult-([A-Za-z0-9_-]{1,64})$/.exec(id);
  return m ? m[1]! : null;
}

/** An event or checkpoint id's log position, or null when the id is not of that kind. */
export function positionOf(id: string, prefix: typeof EVENT_PREFIX | typeof CHECKPOINT_PREFIX): string | null {
  const rest = id.startsWith(prefix) ? id.slice(prefix.length) : '';
  return /^[0-9]{1,19}$/.test(rest) ? rest : null;
}

/** The fine-tuned model's name, as OpenAI writes it: `ft:<base>:<suffix>:<job's task id>`. */
export function fineTunedModelName(job: Pick<OpenAiJobRow, 'model' | 'suffix' | 'taskId'>): string {
  return `ft:${job.model}:${job.suffix ?? ''}:${job.taskId}`;
}

/** tasks.create's learning rate when none is given: a multiplier of 1. */
export const BASE_LEARNING_RATE = createTaskInput.shape.config.parse(undefined).learningRate;

export interface Hyperparameters {
  n_epochs: number;
  batch_size: number;
  learning_rate_multiplier: number;
}

/** The hyperparameters a task trains with, in OpenAI's terms ("auto" resolved). */
function hyperparametersOf(task: TaskRecord): Hyperparameters {
  const c = task.spec.config;
  return {
    n_epochs: c.epochs,
    batch_size: c.batchSize,
    learning_rate_multiplier: Number((c.learningRate / BASE_LEARNING_RATE).toPrecision(6)),
  };
}

/**
 * When a running job should finish, from the share of its steps done since training started;
 * null before the first progress report, or when it is not training.
 */
export function estimatedFinish(task: TaskRecord, now: number): number | null {
  const { step, totalSteps } = task.progress;
  if (task.status !== 'TRAINING' || !task.trainingAt || !step || !totalSteps || step > totalSteps) return null;
  const started = Date.parse(task.trainingAt);
  const elapsed = Math.max(0, now - started);
  return Math.ceil((started + (elapsed * totalSteps) / step) / 1000);
}

/** The `fine_tuning.job` object of a task made through /v1/fine_tuning/jobs. */
export function toJob(task: TaskRecord, job: OpenAiJobRow, training: Pick<OpenAiFileRow, 'estimatedTokens'> | null, now: number) {
  // Paused: held in the queue (or stopping to be), until resumed.
  const status: JobStatus = task.held && !isTerminal(task.status) ? 'paused' : JOB_STATUS[task.status];
  const hyperparameters = hyperparametersOf(task);
  const succeeded = status === 'succeeded';
  return {
    object: 'fine_tuning.job' as const,
    id: jobId(task.id),
    model: job.model,
    created_at: unixSeconds(job.createdAt),
    finished_at: isTerminal(task.status) && task.finishedAt ? unixSeconds(task.finishedAt) : null,
    fine_tuned_model: succeeded ? fineTunedModelName(job) : null,
    organization_id: `org-${task.spec.owner}`,
    result_files: succeeded ? [resultFileId(task.id)] : [],
    status,
    training_file: job.trainingFile,
    validation_file: job.validationFile,
    hyperparameters,
    method: { type: 'supervised' as const, supervised: { hyperparameters } },
    // An estimate (about four characters a token, dataset-check.ts) times the epochs trained: no
    // tokenizer runs in the service.
    trained_tokens: succeeded && training ? training.estimatedTokens * hyperparameters.n_epochs : null,
    error:
      status === 'failed' && task.error
        ? { code: FAILURE_CODE[task.error.reason], message: task.error.message, param: null }
        : status === 'failed'
          ? { code: 'failed', message: 'the job failed', param: null }
          : null,
    seed: job.seed,
    estimated_finish: estimatedFinish(task, now),
    integrations: [],
    metadata: job.metadata ?? null,
    user_provided_suffix: job.suffix,
  };
}

/** The `file` object of an upload. */
export function toFile(f: OpenAiFileRow) {
  return {
    object: 'file' as const,
    id: f.id,
    bytes: f.bytes,
    created_at: unixSeconds(f.createdAt),
    filename: f.filename,
    purpose: f.purpose,
    status: 'processed' as const,
    status_details: null,
  };
}

/** The `file` object of a succeeded job's metrics file. */
export function toResultFile(task: TaskRecord, bytes: number) {
  return {
    object: 'file' as const,
    id: resultFileId(task.id),
    bytes,
    created_at: unixSeconds(task.finishedAt ?? task.createdAt),
    filename: 'step_metrics.csv',
    purpose: 'fine-tune-results' as const,
    status: 'processed' as const,
    status_details: null,
  };
}

/** A succeeded job's metrics as OpenAI's results file has them: one row per recorded step. */
export function resultCsv(progress: readonly StoredTaskEvent[]): string {
  const rows = ['step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy'];
  for (const e of progress) {
    if (e.type !== 'ProgressRecorded' || e.data.step === null) continue;
    rows.push(`${e.data.step},${e.data.loss ?? ''},,,`);
  }
  return `${rows.join('\n')}\n`;
}

const numberOrNull = (v: number | null | undefined): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

/** A `fine_tuning.job.event` for one event of the task's log; null for those a job does not show. */
export function toEvent(e: StoredTaskEvent, job: OpenAiJobRow) {
  const base = { object: 'fine_tuning.job.event' as const, id: `${EVENT_PREFIX}${e.position}`, created_at: unixSeconds(e.recordedAt) };
  const message = (level: 'info' | 'warn' | 'error', text: string, data: Record<string, unknown> = {}) => ({
    ...base,
    level,
    message: text,
    type: 'message' as const,
    data,
  });
  switch (e.type) {
    case 'TaskSubmitted':
      return message('info', `Created fine-tuning job: ${jobId(e.streamId)}`);
    case 'TaskQueued':
      return message('info', 'Job queued: it starts when a device is free');
    case 'TaskAssigned':
      return message(
        'info',
        `Job assigned to ${e.data.devices.map((d) => d.deviceId).join(', ') || 'a device'} (attempt ${e.data.attempt})`,
      );
    case 'TrainerSpawned':
      return message('info', 'Trainer started: loading the model and the data');
    case 'TrainingStarted':
      return message('info', 'Fine-tuning job started');
    case 'ProgressRecorded': {
      const d = e.data;
      const step = numberOrNull(d.step);
      const loss = numberOrNull(d.loss);
      return {
        ...base,
        level: 'info' as const,
        message:
          `Step ${step ?? '?'}${d.totalSteps ? `/${d.totalSteps}` : ''}` +
          (loss !== null ? `: training loss=${loss}` : ': no loss reported'),
        type: 'metrics' as const,
        data: {
          step,
          total_steps: numberOrNull(d.totalSteps),
          epoch: numberOrNull(d.epoch),
          total_epochs: numberOrNull(d.totalEpochs),
          train_loss: loss,
          learning_rate: numberOrNull(d.learningRate),
        },
      };
    }
    case 'ArtifactRecorded':
      return message('info', 'Checkpoint saved');
    case 'StopRequested':
      return message(
        'warn',
        e.data.reason === 'cancel' ? `Cancellation requested: ${e.data.message}` : `Stopping the job: ${e.data.message}`,
        { reason: e.data.reason },
      );
    case 'TaskCompleted':
      return message('info', `New fine-tuned model created: ${fineTunedModelName(job)}. The job has successfully completed`);
    case 'TaskFailed':
      return message('error', `The job failed: ${e.data.message}`, {
        code: FAILURE_CODE[e.data.reason],
        exit_code: e.data.exitCode,
        signal: e.data.signal,
      });
    case 'TaskCancelled':
      return message('info', e.data.reason ? `The job was cancelled: ${e.data.reason}` : 'The job was cancelled');
    case 'TaskDeleted':
      return null;
    default:
      // An event this API has no words for yet: shown under its own name, never dropped.
      return message('info', `Job event: ${(e as { type: string }).type}`);
  }
}

/**
 * A `fine_tuning.job.checkpoint`: a checkpoint or a result the trainer saved, at the step it
 * names (else that of the last progress before it), with the last training loss before it.
 */
export function toCheckpoint(saved: StoredTaskEvent, lastProgress: StoredTaskEvent | null, job: OpenAiJobRow) {
  const p = lastProgress?.type === 'ProgressRecorded' ? lastProgress.data : null;
  const step = numberOrNull((saved.data as { step?: number }).step) ?? numberOrNull(p?.step) ?? 0;
  const loss = numberOrNull(p?.loss);
  return {
    object: 'fine_tuning.job.checkpoint' as const,
    id: `${CHECKPOINT_PREFIX}${saved.position}`,
    created_at: unixSeconds(saved.recordedAt),
    fine_tuned_model_checkpoint: `${fineTunedModelName(job)}:ckpt-step-${step}`,
    fine_tuning_job_id: jobId(job.taskId),
    metrics: loss === null ? { step } : { step, train_loss: loss },
    step_number: step,
  };
}

/** A `model` object. */
export function toModel(id: string, created: number, ownedBy: string) {
  return { id, object: 'model' as const, created, owned_by: ownedBy };
}

// ------------------------------------------------------------------------------------------
// The create body

/** A refusal naming the parameter at fault, as OpenAI's 400s do. */
export interface ParamProblem {
  param: string | null;
  message: string;
  code: string;
}

const auto = (inner: z.ZodNumber, wanted: string) => z.union([z.literal('auto'), inner]).describe(`"auto" or ${wanted}`);
const hyperparametersBody = z.strictObject({
  n_epochs: auto(z.number().int().min(1).max(100), 'a whole number from 1 to 100').optional(),
  batch_size: auto(z.number().int().min(1).max(256), 'a whole number from 1 to 256').optional(),
  learning_rate_multiplier: auto(z.number().gt(0).max(10), 'a number above 0, at most 10').optional(),
});

const METHOD_TYPES = ['supervised', 'dpo', 'reinforcement'] as const;

/** POST /v1/fine_tuning/jobs, as OpenAI documents it. */
export const createJobBody = z.strictObject({
  model: z.string().min(1).describe('a model id, such as Qwen/Qwen2.5-Coder-0.5B-Instruct (GET /v1/models lists those known)'),
  training_file: z.string().min(1).describe('the id of a file uploaded with purpose fine-tune'),
  validation_file: z.string().min(1).nullish().describe('the id of a file uploaded with purpose fine-tune, or null'),
  hyperparameters: hyperparametersBody.optional(),
  method: z
    .strictObject({
      type: z.enum(METHOD_TYPES).describe('"supervised"'),
      supervised: z.strictObject({ hyperparameters: hyperparametersBody.optional() }).optional(),
      dpo: z.unknown().optional(),
      reinforcement: z.unknown().optional(),
    })
    .optional(),
  suffix: z
    .string()
    .min(1)
    .max(64)
    .regex(/^[A-Za-z0-9._-]+$/)
    .nullish()
    .describe('up to 64 letters, digits, . _ -, or null'),
  seed: z.number().int().min(0).max(2_147_483_647).nullish().describe('a whole number from 0 to 2147483647, or null'),
  metadata: z
    .record(z.string().max(64), z.string().max(512))
    .refine((m) => Object.keys(m).length <= 16)
    .nullish()
    .describe('at most 16 pairs of text, keys up to 64 characters and values up to 512'),
  integrations: z.array(z.unknown()).nullish(),
});
export type CreateJobBody = z.infer<typeof createJobBody>;

/** What is wrong with a create body, naming the parameter (the first problem). */
export function createBodyProblem(body: unknown): ParamProblem | null {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    return { param: null, code: 'invalid_request', message: 'send a JSON object with model and training_file' };
  const r = createJobBody.safeParse(body);
  if (r.success) return null;
  const issue = r.error.issues[0]!;
  if (issue.code === 'unrecognized_keys') {
    const param = [...issue.path, issue.keys[0]].join('.');
    return { param, code: 'unknown_parameter', message: `Unrecognized request argument supplied: ${param}` };
  }
  const param = issue.path.map(String).join('.') || null;
  const described = describedAt(issue.path.map(String));
  const given = valueAt(body, issue.path.map(String));
  if (given === undefined) return { param, code: 'missing_required_parameter', message: `Missing required parameter: '${param}'.` };
  return {
    param,
    code: 'invalid_value',
    message: `Invalid value for '${param}': ${described ? `it must be ${described}` : issue.message}.`,
  };
}

function valueAt(body: unknown, path: string[]): unknown {
  let v: unknown = body;
  for (const k of path) v = typeof v === 'object' && v !== null ? (v as Record<string, unknown>)[k] : undefined;
  return v;
}

/** The description of the schema at a path of the body (for messages that say what is wanted). */
function describedAt(path: string[]): string | undefined {
  let schema: z.ZodType = createJobBody;
  for (const key of path) {
    const inner = unwrap(schema);
    if (inner instanceof z.ZodObject) schema = (inner.shape as Record<string, z.ZodType>)[key] ?? schema;
    else break;
  }
  return schema.description ?? unwrap(schema).description;
}

function unwrap(schema: z.ZodType): z.ZodType {
  let s = schema;
  while (s instanceof z.ZodOptional || s instanceof z.ZodNullable || s instanceof z.ZodDefault) s = s.unwrap() as z.ZodType;
  return s;
}

/** What this service does not do of a valid body: the parameter and why, or null. */
export function unsupportedProblem(body: CreateJobBody): ParamProblem | null {
  if (body.integrations?.length)
    return {
      param: 'integrations',
      code: 'unsupported_parameter',
      message:
        'integrations (Weights & Biases) are not supported by Trainyard: leave them out (GET /v1/fine_tuning/jobs/{id}/events has the metrics)',
    };
  if (body.method && body.method.type !== 'supervised')
    return {
      param: 'method.type',
      code: 'unsupported_value',
      message: `method.type "${body.method.type}" is not supported by Trainyard: only "supervised" fine-tuning (LoRA) is`,
    };
  if (body.method?.supervised?.hyperparameters && body.hyperparameters)
    return {
      param: 'hyperparameters',
      code: 'invalid_value',
      message: 'give the hyperparameters in method.supervised.hyperparameters or at the top level, not both',
    };
  return null;
}

/** tasks.create's input for a valid body whose training file is stored at `datasetPath`, or what is wrong. */
export function createTaskInputOf(
  body: CreateJobBody,
  datasetPath: string,
  idempotencyKey: string | undefined,
): { ok: true; value: CreateTaskInput } | { ok: false; problem: ParamProblem } {
  const h = body.method?.supervised?.hyperparameters ?? body.hyperparameters ?? {};
  const value = <T>(v: T | 'auto' | undefined): T | undefined => (v === 'auto' ? undefined : v);
  const epochs = value(h.n_epochs);
  const batchSize = value(h.batch_size);
  const multiplier = value(h.learning_rate_multiplier);
  const r = createTaskInput.safeParse({
    model: body.model,
    datasetPath,
    ...(body.suffix ? { name: `${body.model.split('/').pop()} ${body.suffix}`.slice(-120) } : {}),
    config: {
      ...(epochs !== undefined ? { epochs } : {}),
      ...(batchSize !== undefined ? { batchSize } : {}),
      ...(multiplier !== undefined ? { learningRate: Number((BASE_LEARNING_RATE * multiplier).toPrecision(6)) } : {}),
    },
    ...(idempotencyKey ? { idempotencyKey } : {}),
  });
  if (r.success) return { ok: true, value: r.data };
  const issue = r.error.issues[0]!;
  return { ok: false, problem: { param: paramOf(issue.path.map(String).join('.')), code: 'invalid_value', message: issue.message } };
}

/** OpenAI's parameter for a tasks.create field (a FieldError's or a schema issue's). */
export function paramOf(field: string): string | null {
  const map: Record<string, string> = {
    model: 'model',
    datasetPath: 'training_file',
    name: 'suffix',
    'config.epochs': 'hyperparameters.n_epochs',
    'config.batchSize': 'hyperparameters.batch_size',
    'config.learningRate': 'hyperparameters.learning_rate_multiplier',
    idempotencyKey: 'Idempotency-Key',
  };
  return map[field] ?? null;
}
