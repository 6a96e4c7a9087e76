// SAGE Studio's fine-tune contract, as data: its task shape built from a task record, its create
// body mapped to tasks.create's input (with Studio's defaults), and the zod schemas that both
// validate requests and describe every answer in /openapi.json. Pure: no IO.
import { z } from 'zod';
import { TASK_STATUSES, TERMINAL_STATUSES, type TaskRecord, type TaskStatus } from '@trainyard/domain';
import { createTaskInput, type CreateTaskInput } from '../schemas';

/** Studio's status words: the domain's statuses, lower case (nothing here decides state). */
export const STUDIO_STATUSES = TASK_STATUSES.map((s) => s.toLowerCase() as Lowercase<TaskStatus>);
export type StudioStatus = (typeof STUDIO_STATUSES)[number];

export function studioStatus(status: TaskStatus): StudioStatus {
  return status.toLowerCase() as StudioStatus;
}

/** How many log lines a Studio task carries (its panel shows the tail). */
export const STUDIO_LOG_LINES = 50;

/** What Studio's form sends when its advanced section stays closed: these apply. */
export const STUDIO_DEFAULTS = {
  num_epochs: 3,
  batch_size: 1,
  gradient_accumulation_steps: 16,
  learning_rate: 5e-5,
  max_length: 1024,
  load_in_8bit: true,
} as const;

/** Studio's field names for tasks.create's, for error messages that name what Studio sent. */
const STUDIO_FIELDS: Readonly<Record<string, string>> = {
  model: 'model_name',
  datasetPath: 'dataset_file',
  'config.epochs': 'num_epochs',
  'config.batchSize': 'batch_size',
  'config.gradientAccumulation': 'gradient_accumulation_steps',
  'config.learningRate': 'learning_rate',
  'config.maxLength': 'max_length',
  'config.load8bit': 'load_in_8bit',
};

export const studioField = (field: string): string => STUDIO_FIELDS[field] ?? field;

const num = (field: string) => z.number({ error: `${field} must be a number` });
const int = (field: string) => num(field).int(`${field} must be a whole number`);

/**
 * POST /api/finetune/create. Types only here (ranges and text rules are tasks.create's, applied
 * after mapping); fields Studio may add in later versions are ignored, as FastAPI does.
 */
export const studioCreateBody = z
  .object({
    model_name: z.string({ error: 'model_name is required (a model id such as Qwen/Qwen2.5-Coder-1.5B-Instruct)' }),
    dataset_file: z.string({ error: 'dataset_file is required (the file_path POST /api/finetune/upload-dataset answered)' }),
    num_epochs: int('num_epochs').default(STUDIO_DEFAULTS.num_epochs),
    batch_size: int('batch_size').default(STUDIO_DEFAULTS.batch_size),
    gradient_accumulation_steps: int('gradient_accumulation_steps').default(STUDIO_DEFAULTS.gradient_accumulation_steps),
    learning_rate: num('learning_rate').default(STUDIO_DEFAULTS.learning_rate),
    max_length: int('max_length').default(STUDIO_DEFAULTS.max_length),
    load_in_8bit: z.boolean({ error: 'load_in_8bit must be true or false' }).default(STUDIO_DEFAULTS.load_in_8bit),
  })
  .describe("Studio's create form; absent fields take Studio's defaults.");

export type Parsed<T> = { ok: true; value: T } | { ok: false; field: string; message: string };

/** The first problem of a failed parse, with Studio's name for its field. */
function firstIssue(error: z.ZodError): { field: string; message: string } {
  const issue = error.issues[0]!;
  const field = studioField(issue.path.join('.') || '(body)');
  const message = issue.code === 'invalid_type' && /received undefined/.test(issue.message) ? `${field} is required` : issue.message;
  // tasks.create's messages start with its own name for the field: Studio's name instead.
  const own = String(issue.path[issue.path.length - 1] ?? '');
  return { field, message: own && message.startsWith(`${own} `) ? `${field}${message.slice(own.length)}` : message };
}

/** Studio's create body as tasks.create's input, checked by both schemas; field names Studio's. */
export function parseStudioCreate(body: unknown): Parsed<CreateTaskInput> {
  const studio = studioCreateBody.safeParse(body);
  if (!studio.success) return { ok: false, ...firstIssue(studio.error) };
  const b = studio.data;
  const input = createTaskInput.safeParse({
    model: b.model_name,
    datasetPath: b.dataset_file,
    config: {
      epochs: b.num_epochs,
      batchSize: b.batch_size,
      gradientAccumulation: b.gradient_accumulation_steps,
      learningRate: b.learning_rate,
      maxLength: b.max_length,
      load8bit: b.load_in_8bit,
    },
  });
  if (!input.success) return { ok: false, ...firstIssue(input.error) };
  return { ok: true, value: input.data };
}

const isoTime = z.string().meta({ format: 'date-time' });

export const studioTask = z.object({
  task_id: z.string(),
  model_name: z.string(),
  dataset_path: z.string(),
  output_dir: z.string().describe('Absolute path of the output folder (what switch-model takes as model_path).'),
  status: z.enum(STUDIO_STATUSES),
  progress: z.number().min(0).max(100),
  current_epoch: z.number().int().min(0),
  total_epochs: z.number().int().min(0),
  loss: z.number().describe('0 before the first report.'),
  created_at: isoTime,
  started_at: isoTime.nullable(),
  completed_at: isoTime.nullable().describe('When the task ended (completed, failed or cancelled).'),
  error_message: z.string().nullable(),
  logs: z.array(z.string()).max(STUDIO_LOG_LINES).describe(`The last ${STUDIO_LOG_LINES} lines of output.`),
  config: z.object({
    num_epochs: z.number().int(),
    batch_size: z.number().int(),
    gradient_accumulation_steps: z.number().int(),
    learning_rate: z.number(),
    max_length: z.number().int(),
    load_in_8bit: z.boolean(),
    load_in_4bit: z.boolean(),
    lora_rank: z.number().int(),
    lora_alpha: z.number().int(),
  }),
});
export type StudioTask = z.infer<typeof studioTask>;

const finite = (n: number | null | undefined, fallback: number) => (typeof n === 'number' && Number.isFinite(n) ? n : fallback);

/** A task in Studio's shape. `outputDir` is the absolute output folder; `logs` its last lines. */
export function toStudioTask(task: TaskRecord, outputDir: string, logs: readonly string[]): StudioTask {
  const c = task.spec.config;
  return {
    task_id: task.id,
    model_name: task.spec.model,
    dataset_path: task.spec.datasetPath,
    output_dir: outputDir,
    status: studioStatus(task.status),
    progress: Math.min(100, Math.max(0, finite(task.progress.percent, 0))),
    current_epoch: Math.max(0, finite(task.progress.epoch, 0)),
    total_epochs: Math.max(0, finite(task.progress.totalEpochs, c.epochs)),
    loss: finite(task.progress.loss, 0),
    created_at: task.createdAt,
    started_at: task.startedAt,
    completed_at: (TERMINAL_STATUSES as readonly string[]).includes(task.status) ? task.finishedAt : null,
    error_message: task.error?.message ?? null,
    logs: logs.slice(-STUDIO_LOG_LINES),
    config: {
      num_epochs: c.epochs,
      batch_size: c.batchSize,
      gradient_accumulation_steps: c.gradientAccumulation,
      learning_rate: c.learningRate,
      max_length: c.maxLength,
      load_in_8bit: c.load8bit,
      load_in_4bit: c.load4bit,
      lora_rank: c.loraRank,
      lora_alpha: c.loraAlpha,
    },
  };
}

// The other answers, for /openapi.json and the specs that hold the routes to them.

export const detailError = z.object({
  detail: z.string().describe('What went wrong, in words a person can act on.'),
  field: z.string().optional(),
});

export const createdTask = studioTask.extend({
  warnings: z.array(z.string()).describe('Out-of-memory risk, no GPU, a long queue, skipped dataset records: as sentences.'),
  dataset: z.record(z.string(), z.unknown()).describe('What the dataset check found (format, records, estimated tokens).'),
});

export const gpuInfoAnswer = z.object({
  available: z.boolean(),
  count: z.number().int(),
  devices: z.array(
    z.object({
      id: z.number().int(),
      name: z.string(),
      memory_gb: z.number(),
      memory_used_gb: z.number(),
      utilization: z.number().nullable(),
    }),
  ),
  recommendation: z.string(),
});

export const uploadAnswer = z.object({ file_path: z.string(), filename: z.string() });

export const statusAnswer = z.object({ status: z.literal('success'), message: z.string() });

export const modelEntry = z.object({
  name: z.string().describe('A model id, or (fine-tuned) the absolute output folder.'),
  type: z.enum(['base', 'finetuned']),
  description: z.string(),
  task_id: z.string().optional(),
  created_at: isoTime.optional(),
});

export const currentModelAnswer = z.object({ current_model: z.string().nullable() });

export const switchModelAnswer = z.object({ message: z.string(), current_model: z.string(), llm_service_restarted: z.boolean() });

export const useAsBackendBody = z.object({ task_id: z.string({ error: 'task_id is required' }).min(1, 'task_id must not be empty') });
