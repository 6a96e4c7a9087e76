// SAGE Studio's REST contract under /api, beside /trpc on the same port and over the same
// service (its operations, never the store): Studio's fine-tune panel, and any HTTP client, use
// it unchanged. Errors answer { detail } as FastAPI writes them. http.ts has checked Host,
// Origin and the body's type before a request gets here (http-guard.ts).
import { randomUUID } from 'node:crypto';
import { stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { relative, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar';
import type { z } from 'zod';
import { estimateMemoryGb, MODELS } from '@trainyard/catalogue';
import { IllegalCommandError, isTerminal, isWaiting, TaskNotFoundError, type TaskRecord, type TaskStatus } from '@trainyard/domain';
import { ConcurrencyError, databaseErrorMessage, isConnectionError } from '@trainyard/store';
import { resolveOutputDir } from '../runner/launcher';
import { createTaskInput } from '../schemas';
import { FieldError, type Actor, type TrainyardService } from '../service';
import { parseTrainerLine } from '../trainer/protocol';
import { handleDatasetUpload, UPLOAD_DATASET_PATH } from '../upload';
import { CurrentModel } from './current-model';
import {
  createdTask,
  currentModelAnswer,
  gpuInfoAnswer,
  modelEntry,
  parseStudioCreate,
  STUDIO_DEFAULTS,
  STUDIO_LOG_LINES,
  studioCreateBody,
  studioField,
  studioStatus,
  statusAnswer,
  studioTask,
  switchModelAnswer,
  toStudioTask,
  uploadAnswer,
  useAsBackendBody,
  type StudioTask,
} from './shape';
import { errorText } from '../log';

export const OPENAPI_PATH = '/openapi.json';
/** A JSON body larger than this is refused (413), as tRPC's are. */
const MAX_JSON_BODY = 1_000_000;
/** GET /api/finetune/tasks and /models answer at most this many tasks, newest first. */
const STUDIO_TASKS_MAX = 1000;
/** Stored lines read to find the last STUDIO_LOG_LINES people read (protocol lines are left out). */
const LOG_WINDOW = 500;
/** Log reads at once while building a task list. */
const LOG_READS_AT_ONCE = 8;
/** Ended tasks whose last lines are kept (their log no longer changes). */
const ENDED_LOGS_KEPT = 2000;

/** A refusal with its HTTP status and, where one field is at fault, that field. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

type Method = 'GET' | 'POST' | 'DELETE';

interface Call {
  req: IncomingMessage;
  res: ServerResponse;
  params: Record<string, string>;
  query: URLSearchParams;
  actor: Actor;
}

/** What /openapi.json says of a route (openapi.ts builds the document from it). */
interface RouteDoc {
  summary: string;
  description?: string;
  query?: { name: string; required: boolean; description: string }[];
  /** A JSON body's schema, or the multipart upload. */
  body?: z.ZodType | 'multipart';
  /** The success answer: a JSON schema (an array of it when `list`), or the gzip stream. */
  answer: { status: number; schema: z.ZodType; list?: boolean; description: string } | { status: 200; gzip: true; description: string };
  /** The refusals this route gives besides 500 and 503. */
  errors: number[];
}

export interface Route {
  method: Method;
  /** As OpenAPI writes it: `{task_id}` for a path parameter. */
  path: string;
  doc: RouteDoc;
  handle(call: Call): Promise<void> | void;
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) return;
  res
    .writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...headers })
    .end(JSON.stringify(body));
}

/** `{ detail }` as FastAPI writes an error, with the field when one is at fault. */
export function sendDetail(
  res: ServerResponse,
  status: number,
  detail: string,
  field?: string,
  headers: Record<string, string> = {},
): void {
  send(res, status, field ? { detail, field } : { detail }, headers);
}

/** The request's JSON body; undefined when it has none. */
async function readJson(req: IncomingMessage): Promise<unknown> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > MAX_JSON_BODY) throw new HttpError(413, `the body is larger than ${MAX_JSON_BODY} bytes`);
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_JSON_BODY) throw new HttpError(413, `the body is larger than ${MAX_JSON_BODY} bytes`);
    parts.push(chunk);
  }
  const text = Buffer.concat(parts).toString('utf8');
  if (!text.trim()) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new HttpError(400, `the body is not JSON: ${(err as Error).message}`);
  }
}

async function drain(req: IncomingMessage): Promise<void> {
  await readJson(req);
}

function taskIdOf(call: Call): string {
  return call.params.task_id!;
}

/** The last lines a person reads of each task's log; an ended task's are read once. */
class LogTails {
  private ended = new Map<string, { version: number; lines: string[] }>();

  constructor(private readonly service: TrainyardService) {}

  async of(task: TaskRecord): Promise<string[]> {
    // Nothing has run yet: nothing to read.
    if (isWaiting(task.status) && task.attempt === 0) return [];
    const kept = this.ended.get(task.id);
    if (kept && kept.version === task.version) return kept.lines;
    const raw = await this.service.lastLogLines(task.id, LOG_WINDOW);
    const lines = raw
      .filter((l) => l.stream === 'stderr' || parseTrainerLine(l.line).kind === 'log')
      .map((l) => l.line)
      .slice(-STUDIO_LOG_LINES);
    // The trainer's last line is stored no later than the task's final event: an ended task's
    // lines stay as they are.
    if (isTerminal(task.status)) {
      this.ended.delete(task.id);
      this.ended.set(task.id, { version: task.version, lines });
      if (this.ended.size > ENDED_LOGS_KEPT) this.ended.delete(this.ended.keys().next().value!);
    }
    return lines;
  }
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** The newest tasks (at most STUDIO_TASKS_MAX), deleted ones left out. */
async function newestTasks(service: TrainyardService, actor: Actor, statuses?: TaskStatus[]): Promise<TaskRecord[]> {
  const out: TaskRecord[] = [];
  let cursor: string | null = null;
  do {
    const page = await service.listTasks({ statuses, cursor, limit: Math.min(200, STUDIO_TASKS_MAX - out.length) }, actor);
    out.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor && out.length < STUDIO_TASKS_MAX);
  return out;
}

function describeBase(model: string): string {
  const { estimateGb } = estimateMemoryGb({
    model,
    maxLength: STUDIO_DEFAULTS.max_length,
    batchSize: STUDIO_DEFAULTS.batch_size,
    load8bit: STUDIO_DEFAULTS.load_in_8bit,
    load4bit: false,
    loraRank: createTaskInput.shape.config.parse(undefined).loraRank,
  });
  const name = model.split('/').pop()!;
  return estimateGb === null
    ? `${name}: base model`
    : `${name}: base model, about ${Math.ceil(estimateGb)} GB of GPU memory to fine-tune with Studio's defaults (8-bit, batch 1, 1024 tokens)`;
}

/** The REST routes over one service; `routes` is what openapi.ts documents. */
export function createStudioApi(service: TrainyardService) {
  const logs = new LogTails(service);
  const currentModel = new CurrentModel(resolve(service.config.storage.dataRoot, 'studio', 'current-model.json'));
  const outputDirOf = (task: TaskRecord) => resolveOutputDir(service.config, task);
  const studio = async (task: TaskRecord): Promise<StudioTask> => toStudioTask(task, outputDirOf(task), await logs.of(task));

  const routes: Route[] = [
    {
      method: 'GET',
      path: '/api/system/gpu-info',
      doc: {
        summary: 'The GPUs this service trains on, and which model to pick',
        answer: { status: 200, schema: gpuInfoAnswer, description: 'What nvidia-smi reports (available false, count 0 without one)' },
        errors: [],
      },
      async handle({ res }) {
        const g = await service.gpuInfo();
        send(res, 200, {
          available: g.available,
          count: g.devices.length,
          devices: g.devices.map((d) => ({
            id: d.id,
            name: d.name,
            memory_gb: d.memoryGb,
            memory_used_gb: d.memoryUsedGb,
            utilization: d.utilization,
          })),
          recommendation: g.recommendation,
        });
      },
    },
    {
      method: 'POST',
      path: UPLOAD_DATASET_PATH,
      doc: {
        summary: 'Upload a dataset (.json or .jsonl) for create',
        description:
          'A multipart form with one file field `file`. The file is checked to be JSON (or JSON lines) as it arrives and stored under ' +
          'a unique name in the uploads folder; `file_path` is what create takes as `dataset_file`. Larger than TRAINYARD_UPLOAD_MAX_BYTES: 413.',
        body: 'multipart',
        answer: { status: 201, schema: uploadAnswer, description: 'Stored' },
        errors: [400, 405, 413, 415],
      },
      handle({ req, res }) {
        handleDatasetUpload(req, res, { uploadsDir: service.config.uploadsDir, maxBytes: service.config.uploadMaxBytes });
      },
    },
    {
      method: 'POST',
      path: '/api/finetune/create',
      doc: {
        summary: 'Create a fine-tuning task; it starts at once or waits in the queue',
        description:
          `Absent fields take Studio's defaults: ${Object.entries(STUDIO_DEFAULTS)
            .map(([k, v]) => `${k} ${v}`)
            .join(', ')}. ` +
          'The dataset is checked first (format, records, malformed lines): an empty, unreadable or malformed one is refused with 400 naming dataset_file.',
        body: studioCreateBody,
        answer: { status: 200, schema: createdTask, description: 'The task, with warnings as sentences and what the dataset check found' },
        errors: [400, 409, 413],
      },
      async handle({ req, res, actor }) {
        const body = await readJson(req);
        if (typeof body !== 'object' || body === null || Array.isArray(body))
          throw new HttpError(400, 'send a JSON object with model_name and dataset_file (and optionally the training settings)');
        const input = parseStudioCreate(body);
        if (!input.ok) throw new HttpError(400, input.message, input.field);
        const { task, warnings, dataset } = await service.createTask(input.value, actor);
        send(res, 200, { ...(await studio(task)), warnings: warnings.map((w) => w.message), dataset });
      },
    },
    {
      method: 'GET',
      path: '/api/finetune/tasks',
      doc: {
        summary: `The tasks, newest first (at most ${STUDIO_TASKS_MAX})`,
        answer: { status: 200, schema: studioTask, list: true, description: 'Tasks in Studio’s shape' },
        errors: [],
      },
      async handle({ res, actor }) {
        const tasks = await newestTasks(service, actor);
        send(res, 200, await mapLimit(tasks, LOG_READS_AT_ONCE, studio));
      },
    },
    {
      method: 'GET',
      path: '/api/finetune/tasks/{task_id}',
      doc: { summary: 'One task', answer: { status: 200, schema: studioTask, description: 'The task' }, errors: [404] },
      async handle(call) {
        send(call.res, 200, await studio(await service.getTask(taskIdOf(call), call.actor)));
      },
    },
    {
      method: 'DELETE',
      path: '/api/finetune/tasks/{task_id}',
      doc: {
        summary: 'Delete an ended task (completed, failed or cancelled)',
        description: 'Its history stays in the event log; its output folder stays on disk.',
        answer: { status: 200, schema: statusAnswer, description: 'Deleted' },
        errors: [400, 404],
      },
      async handle(call) {
        await drain(call.req);
        const id = taskIdOf(call);
        await service.deleteTask(id, call.actor);
        send(call.res, 200, { status: 'success', message: `task ${id} deleted` });
      },
    },
    {
      method: 'POST',
      path: '/api/finetune/tasks/{task_id}/cancel',
      doc: {
        summary: 'Cancel a waiting or running task',
        description: 'A waiting task is cancelled at once; a running one is asked to stop and is cancelled when its trainer has exited.',
        answer: { status: 200, schema: statusAnswer, description: 'Cancelled, or stopping' },
        errors: [400, 404],
      },
      async handle(call) {
        await drain(call.req);
        const id = taskIdOf(call);
        const task = await service.cancelTask(id, 'cancelled from Studio', call.actor);
        send(call.res, 200, {
          status: 'success',
          message:
            task.status === 'CANCELLED'
              ? `task ${id} cancelled`
              : `task ${id} is stopping: it is cancelled once its trainer has exited (status ${studioStatus(task.status)} until then)`,
        });
      },
    },
    {
      method: 'GET',
      path: '/api/finetune/tasks/{task_id}/download',
      doc: {
        summary: "A completed task's output folder as a .tar.gz",
        description: 'Streamed as it is packed; entries sit under a folder named by the task id. Symbolic links are stored as links.',
        answer: { status: 200, gzip: true, description: 'application/gzip' },
        errors: [400, 404],
      },
      async handle(call) {
        const id = taskIdOf(call);
        const task = await service.getTask(id, call.actor);
        if (task.status !== 'COMPLETED') throw new HttpError(400, `Task is not completed yet (it is ${studioStatus(task.status)})`);
        const dir = outputDirOf(task);
        const st = await stat(dir).catch(() => null);
        if (!st?.isDirectory()) throw new HttpError(404, `the output folder of task ${id} is not there (${dir})`);
        call.res.writeHead(200, {
          'content-type': 'application/gzip',
          'content-disposition': `attachment; filename="${id}_finetuned_model.tar.gz"`,
          'cache-control': 'no-store',
        });
        const pack = tar.c({ gzip: true, cwd: dir, portable: true, prefix: id }, ['.']);
        // A client that goes away ends the packing (pipeline destroys both sides).
        await pipeline(Readable.from(pack), call.res).catch((err: Error) => {
          if (!call.res.destroyed) service.log.warn(`download of task ${id} ended early: ${errorText(err)}`);
          call.res.destroy();
        });
      },
    },
    {
      method: 'GET',
      path: '/api/finetune/models',
      doc: {
        summary: 'Base models offered, and the output folder of every completed task',
        answer: { status: 200, schema: modelEntry, list: true, description: 'Base models first, then fine-tuned ones, newest first' },
        errors: [],
      },
      async handle({ res, actor }) {
        const done = await newestTasks(service, actor, ['COMPLETED']);
        send(res, 200, [
          ...MODELS.map((name) => ({ name, type: 'base', description: describeBase(name) })),
          ...done.map((t) => ({
            name: outputDirOf(t),
            type: 'finetuned',
            description: `${t.spec.name}: ${t.spec.model} fine-tuned (task ${t.id})`,
            task_id: t.id,
            created_at: t.finishedAt ?? t.createdAt,
          })),
        ]);
      },
    },
    {
      method: 'GET',
      path: '/api/finetune/current-model',
      doc: {
        summary: 'The model last chosen with switch-model (null before any)',
        description: 'Kept in the data folder: it survives restarts.',
        answer: { status: 200, schema: currentModelAnswer, description: 'The current model' },
        errors: [],
      },
      async handle({ res }) {
        send(res, 200, { current_model: await currentModel.read() });
      },
    },
    {
      method: 'POST',
      path: '/api/finetune/switch-model',
      doc: {
        summary: 'Choose the current model: a base model id, or a completed task’s output folder',
        description:
          'Recorded (it survives restarts). Trainyard runs no chat model, so llm_service_restarted is always false: Studio then says a restart is needed.',
        query: [
          {
            name: 'model_path',
            required: true,
            description: 'A model id, or the `name` of a fine-tuned entry of GET /api/finetune/models',
          },
        ],
        answer: { status: 200, schema: switchModelAnswer, description: 'Recorded' },
        errors: [400, 404],
      },
      async handle({ req, res, query, actor }) {
        await drain(req);
        const model = query.get('model_path')?.trim();
        if (!model) throw new HttpError(400, 'model_path is required (a query parameter: ?model_path=…)', 'model_path');
        await checkModel(model, actor);
        await currentModel.write(model);
        send(res, 200, {
          message: `current model is now ${model}. Trainyard serves no chat model, so no LLM service was restarted: restart Studio's own LLM service with this model for chat to use it`,
          current_model: model,
          llm_service_restarted: false,
        });
      },
    },
    {
      method: 'POST',
      path: '/api/finetune/use-as-backend',
      doc: {
        summary: 'Serve a completed task’s model as Studio’s chat backend',
        description:
          'Starts a deployment (a vLLM server) of the task’s base model with its adapter, served under the task’s id; ' +
          'the answer names the deployment (`deployment_id`), whose state, endpoint and model names deployments.get tells. ' +
          'The task is checked first (404, 400 unless completed).',
        body: useAsBackendBody,
        answer: { status: 200, schema: statusAnswer, description: 'The deployment was created (STARTING); also `deployment_id`' },
        errors: [400, 404],
      },
      async handle({ req, res, actor }) {
        const body = useAsBackendBody.safeParse(await readJson(req));
        if (!body.success) throw new HttpError(400, body.error.issues[0]!.message, 'task_id');
        const task = await service.getTask(body.data.task_id, actor);
        if (task.status !== 'COMPLETED') throw new HttpError(400, `Task is not completed yet (it is ${studioStatus(task.status)})`);
        const deployment = await service.deployments.create({ taskId: task.id }, actor);
        send(res, 200, {
          status: 'success',
          message:
            `deployment ${deployment.id} is starting: ${deployment.spec.model} with the adapter of ${task.id}, served as the model "${task.id}". ` +
            `Its endpoint appears in deployments.get once it is SERVING.`,
          deployment_id: deployment.id,
        });
      },
    },
    {
      method: 'POST',
      path: '/api/finetune/prepare-sage-docs',
      doc: {
        summary: "Build a dataset from SAGE's documentation (not available: 501)",
        description: 'It downloads the documentation, and this service works offline.',
        answer: { status: 200, schema: statusAnswer, description: 'Never answered' },
        errors: [501],
      },
      async handle({ req }) {
        await drain(req);
        throw new HttpError(
          501,
          "Trainyard does not download SAGE's documentation (it works offline). Build the dataset where the documentation can be " +
            "downloaded (SAGE's docs processor writes a JSON file), then upload that file (POST /api/finetune/upload-dataset) and pick it.",
        );
      },
    },
  ];

  /** A model id, or the output folder of a completed task (what GET /api/finetune/models lists). */
  async function checkModel(model: string, actor: Actor): Promise<void> {
    if (!model.startsWith(sep)) {
      const asModel = createTaskInput.shape.model.safeParse(model);
      if (!asModel.success) throw new HttpError(400, asModel.error.issues[0]!.message.replace(/^model/, 'model_path'), 'model_path');
      return;
    }
    const outputs = resolve(service.config.storage.dataRoot, 'outputs');
    const id = relative(outputs, resolve(model)).split(sep)[0] ?? '';
    const task = /^[A-Za-z0-9_-]{1,64}$/.test(id) ? await service.getTask(id, actor).catch(() => null) : null;
    if (!task || task.status !== 'COMPLETED' || outputDirOf(task) !== resolve(model))
      throw new HttpError(
        404,
        `model_path ${model} is not the output folder of a completed task (see GET /api/finetune/models)`,
        'model_path',
      );
  }

  const matchers = routes.map((r) => ({
    route: r,
    re: new RegExp(`^${r.path.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\\?\{([a-z_]+)\\?\}/g, '(?<$1>[^/]+)')}$`),
  }));

  /** Answers a request under /api (or a JSON 404 when no route has its path). */
  async function handle(req: IncomingMessage, res: ServerResponse, actor: Actor): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://service');
    const method = (req.method ?? 'GET').toUpperCase();
    let pathname: string;
    try {
      pathname = decodeURIComponent(url.pathname);
    } catch {
      return sendDetail(res, 400, 'the path is not valid percent-encoding');
    }
    const hits = matchers.map((m) => ({ ...m, match: m.re.exec(url.pathname) })).filter((m) => m.match);
    if (!hits.length) return sendDetail(res, 404, `Not Found: no route ${method} ${pathname} (the routes are listed at ${OPENAPI_PATH})`);
    const hit = hits.find((h) => h.route.method === method);
    if (!hit) {
      const allow = hits.map((h) => h.route.method).join(', ');
      return sendDetail(res, 405, `Method Not Allowed: ${pathname} takes ${allow}`, undefined, { allow });
    }
    const params: Record<string, string> = {};
    for (const [k, v] of Object.entries(hit.match!.groups ?? {})) {
      let value: string;
      try {
        value = decodeURIComponent(v);
      } catch {
        return sendDetail(res, 400, `${k} is not valid percent-encoding`);
      }
      // Not a task id: no such task (the domain's ids are letters, digits, - and _).
      if (k === 'task_id' && !/^[A-Za-z0-9_-]{1,64}$/.test(value)) return sendDetail(res, 404, `Task not found: ${value.slice(0, 100)}`);
      params[k] = value;
    }
    try {
      await hit.route.handle({ req, res, params, query: url.searchParams, actor });
    } catch (err) {
      answerError(res, err, service, actor);
    }
  }

  return { routes, handle };
}

/** The answer for an error a route threw: the domain's and the store's errors as Studio expects them. */
function answerError(res: ServerResponse, err: unknown, service: TrainyardService, actor: Actor): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (err instanceof HttpError) return sendDetail(res, err.status, err.message, err.field);
  if (err instanceof FieldError) {
    const field = studioField(err.field);
    return sendDetail(res, 400, `${field}: ${err.message}`, field);
  }
  if (err instanceof TaskNotFoundError) return sendDetail(res, 404, `Task not found: ${err.taskId}`);
  if (err instanceof IllegalCommandError) return sendDetail(res, 400, err.message);
  if (err instanceof ConcurrencyError) return sendDetail(res, 409, `${err.message}; please retry`);
  if (isConnectionError(err))
    return sendDetail(
      res,
      503,
      `the database is unreachable right now (${databaseErrorMessage(err)}); the service keeps retrying, try again shortly`,
    );
  const correlationId = actor.correlationId ?? randomUUID();
  service.log.error(`internal error (correlation id ${correlationId}) in the REST API: ${(err as Error)?.stack ?? String(err)}`);
  sendDetail(res, 500, `internal error (correlation id ${correlationId}); the server log has the details`);
}

/** Paths this API answers (all of /api, so that an unknown one is a JSON 404). */
export const isStudioPath = (url: string): boolean =>
  url === '/api' || url.startsWith('/api/') || url.startsWith('/api?') || url === OPENAPI_PATH || url.startsWith(`${OPENAPI_PATH}?`);
