// OpenAI's fine-tuning API under /v1, beside /trpc and /api on the same port and over the same
// service: files (/v1/files), fine-tuning jobs (/v1/fine_tuning/jobs, each one a task), their
// events and checkpoints, and the models. The official SDKs work against it by changing their
// base URL. Jobs are created, read and cancelled through the service's operations; the files and
// the part of a job's request a task does not keep are rows of their own (@trainyard/store/openai).
// http.ts has checked Host, Origin, the body's type and the caller before a request gets here.
import { randomBytes, randomInt } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { MODELS } from '@trainyard/catalogue';
import { readStreamNewestFirst } from '@trainyard/store';
import {
  deleteOpenAiFile,
  getOpenAiFile,
  getOpenAiJob,
  insertOpenAiFile,
  insertOpenAiJob,
  listOpenAiFiles,
  listOpenAiJobs,
  openJobsUsingFile,
  type OpenAiFileRow,
  type OpenAiJobRow,
} from '@trainyard/store/openai';
import type { TaskRecord } from '@trainyard/domain';
import { inspectDataset } from '../dataset-inspect';
import type { Actor, TrainyardService } from '../service';
import { receiveDatasetUpload, type StoredUpload } from '../upload';
import { answerError, OpenAiError, sendError, sendJson } from './errors';
import {
  CHECKPOINT_PREFIX,
  createBodyProblem,
  createJobBody,
  createTaskInputOf,
  EVENT_PREFIX,
  fineTunedModelName,
  OPENAI_FILES_PATH,
  positionOf,
  resultCsv,
  taskIdOfJob,
  taskIdOfResultFile,
  toCheckpoint,
  toEvent,
  toFile,
  toJob,
  toModel,
  toResultFile,
  unsupportedProblem,
  type ParamProblem,
} from './objects';

/** A JSON body larger than this is refused (413), as the other APIs' are. */
const MAX_JSON_BODY = 1_000_000;
/** Fine-tuned models GET /v1/models lists at most. */
const MODELS_LISTED = 10_000;
/** Progress reports a results file is made of at most. */
const RESULT_ROWS = 100_000;
const FINE_TUNE = 'fine-tune';
/** The events a checkpoint is made from. */
const SAVED = ['CheckpointRecorded', 'ArtifactRecorded'];

type Method = 'GET' | 'POST' | 'DELETE';

interface Call {
  req: IncomingMessage;
  res: ServerResponse;
  params: Record<string, string>;
  query: URLSearchParams;
  actor: Actor;
}

interface Route {
  method: Method;
  /** `{name}` for a path parameter. */
  path: string;
  handle(call: Call): Promise<void>;
}

const bad = (p: ParamProblem) => new OpenAiError(400, p.message, { param: p.param, code: p.code });

async function readJson(req: IncomingMessage): Promise<unknown> {
  const tooLarge = () => new OpenAiError(413, `the body is larger than ${MAX_JSON_BODY} bytes`);
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > MAX_JSON_BODY) throw tooLarge();
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_JSON_BODY) throw tooLarge();
    parts.push(chunk);
  }
  const text = Buffer.concat(parts).toString('utf8');
  if (!text.trim()) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new OpenAiError(400, `We could not parse the JSON body of your request: ${(err as Error).message}`, { code: 'invalid_json' });
  }
}

/** `limit` from the query: `dflt` when absent, else a whole number from 1 to `max`. */
function limitOf(query: URLSearchParams, dflt: number, max: number): number {
  const raw = query.get('limit');
  if (raw === null) return dflt;
  const n = Number(raw);
  if (!/^[0-9]+$/.test(raw) || n < 1 || n > max)
    throw new OpenAiError(400, `Invalid value for 'limit': it must be a whole number from 1 to ${max}.`, {
      param: 'limit',
      code: 'invalid_value',
    });
  return n;
}

const maySee = (actor: Actor, owner: string) => actor.admin || owner === actor.user;
const ownerScope = (actor: Actor) => (actor.admin ? undefined : actor.user);

const noSuchFile = (id: string) =>
  new OpenAiError(404, `No such File object: ${id.slice(0, 200)}`, { param: 'id', code: 'file_not_found' });
const noSuchJob = (id: string) =>
  new OpenAiError(404, `No fine-tuning job found with id ${id.slice(0, 200)}`, { param: 'fine_tuning_job_id', code: 'not_found' });

/**
 * What a training or validation file holds, or why it cannot be trained on. Stricter than a task's
 * own check (which skips records in no known format with a warning): OpenAI refuses such a file,
 * and so does this API, naming the lines.
 */
async function checkDataset(path: string, name: string): Promise<{ records: number; estimatedTokens: number } | string> {
  const inspection = await inspectDataset(path);
  if (!inspection.ok) return `${name}: ${inspection.problem}`;
  const s = inspection.summary;
  if (s.kind !== 'file') return `${name} is not a file`;
  if (s.malformedCount) {
    const shown = s.malformed.slice(0, 5).map((m) => `${m.line !== null ? `line ${m.line}` : `record ${m.record}`}: ${m.reason}`);
    return (
      `${name}: ${s.malformedCount} of its ${s.records + s.malformedCount} records ${s.malformedCount === 1 ? 'is' : 'are'} in no known format ` +
      `(OpenAI chat {"messages": [{"role", "content"}, …]}, Alpaca {"instruction", "output"}, {"text"}): ${shown.join('; ')}` +
      (s.malformedCount > shown.length ? `; and ${s.malformedCount - shown.length} more` : '')
    );
  }
  return { records: s.records, estimatedTokens: s.estimatedTokens };
}

export function createOpenAiRoutes(service: TrainyardService) {
  const db = service.database.db;

  /** A file the caller may see (an upload, or a succeeded job's results file). */
  async function uploadOf(id: string, actor: Actor): Promise<OpenAiFileRow> {
    const file = /^file-[A-Za-z0-9]{1,64}$/.test(id) ? await getOpenAiFile(db, id) : null;
    if (!file || !maySee(actor, file.owner)) throw noSuchFile(id);
    return file;
  }

  /** A job the caller may see, with its task. */
  async function jobOf(id: string, actor: Actor): Promise<{ task: TaskRecord; job: OpenAiJobRow }> {
    const taskId = taskIdOfJob(id);
    if (!taskId) throw noSuchJob(id);
    const task = await service.getTask(taskId, actor).catch(() => null);
    const job = task ? await getOpenAiJob(db, taskId) : null;
    if (!task || !job) throw noSuchJob(id);
    return { task, job };
  }

  async function jobObject(task: TaskRecord, job: OpenAiJobRow) {
    const training = await getOpenAiFile(db, job.trainingFile);
    return toJob(task, job, training, Date.now());
  }

  /** A succeeded job's metrics, as the CSV its results file holds. */
  async function resultsOf(id: string, actor: Actor): Promise<{ task: TaskRecord; csv: string }> {
    const taskId = taskIdOfResultFile(id);
    const found = taskId ? await jobOf(`ftjob-${taskId}`, actor).catch(() => null) : null;
    if (!found || found.task.status !== 'COMPLETED') throw noSuchFile(id);
    const progress = await readStreamNewestFirst(db, found.task.id, { types: ['ProgressRecorded'], limit: RESULT_ROWS });
    return { task: found.task, csv: resultCsv(progress.reverse()) };
  }

  /** A training or validation file named in a create body: one of the caller's fine-tune uploads, checked again. */
  async function datasetFor(param: 'training_file' | 'validation_file', id: string, actor: Actor) {
    const file = await uploadOf(id, actor).catch(() => null);
    if (!file)
      throw new OpenAiError(400, `invalid ${param}: no file ${id.slice(0, 200)} (upload one with POST /v1/files, purpose fine-tune)`, {
        param,
        code: `invalid_${param}`,
      });
    if (file.purpose !== FINE_TUNE)
      throw new OpenAiError(400, `invalid ${param}: ${id} was uploaded with purpose ${file.purpose}, not fine-tune`, {
        param,
        code: `invalid_${param}`,
      });
    const checked = await checkDataset(file.path, file.filename);
    if (typeof checked === 'string') throw new OpenAiError(400, `invalid ${param} ${id}: ${checked}`, { param, code: `invalid_${param}` });
    return file;
  }

  /** Stores an upload's row once its form was read whole; the stored bytes go when it is refused. */
  async function finishUpload(file: StoredUpload, fields: Record<string, string>, actor: Actor) {
    const purpose = fields.purpose;
    if (purpose === undefined)
      throw new OpenAiError(400, "Missing required parameter: 'purpose'.", { param: 'purpose', code: 'missing_required_parameter' });
    if (purpose !== FINE_TUNE)
      throw new OpenAiError(
        400,
        `purpose ${JSON.stringify(purpose.slice(0, 100))} is not supported by Trainyard: only fine-tune files are`,
        {
          param: 'purpose',
          code: 'unsupported_value',
        },
      );
    if (Object.keys(fields).some((k) => k.startsWith('expires_after')))
      throw new OpenAiError(
        400,
        'files do not expire in Trainyard: leave expires_after out, and delete a file with DELETE /v1/files/{file_id}',
        {
          param: 'expires_after',
          code: 'unsupported_parameter',
        },
      );
    const checked = await checkDataset(file.path, file.filename);
    if (typeof checked === 'string') throw new OpenAiError(400, checked, { param: 'file', code: 'invalid_file' });
    const row = await insertOpenAiFile(db, {
      id: `file-${randomBytes(12).toString('hex')}`,
      owner: actor.user,
      filename: file.filename,
      purpose,
      bytes: file.bytes,
      path: file.path,
      records: checked.records,
      estimatedTokens: checked.estimatedTokens,
    });
    return toFile(row);
  }

  const routes: Route[] = [
    {
      method: 'POST',
      path: OPENAI_FILES_PATH,
      handle: ({ req, res, actor }) =>
        new Promise<void>((resolve) => {
          receiveDatasetUpload(
            req,
            res,
            {
              uploadsDir: service.config.uploadsDir,
              maxBytes: service.config.uploadMaxBytes,
              fields: ['purpose', 'expires_after[anchor]', 'expires_after[seconds]'],
            },
            {
              refuse(e) {
                sendError(res, e.status, e.message, { param: 'file', code: e.status === 413 ? 'file_too_large' : 'invalid_file' });
                resolve();
              },
              stored(file, fields) {
                finishUpload(file, fields, actor).then(
                  (object) => {
                    sendJson(res, 200, object);
                    resolve();
                  },
                  async (err: unknown) => {
                    await rm(file.path, { force: true });
                    answerError(res, err, service, actor);
                    resolve();
                  },
                );
              },
            },
          );
        }),
    },
    {
      method: 'GET',
      path: OPENAI_FILES_PATH,
      async handle({ res, query, actor }) {
        const order = query.get('order') ?? 'desc';
        if (order !== 'asc' && order !== 'desc')
          throw new OpenAiError(400, "Invalid value for 'order': it must be asc or desc.", { param: 'order', code: 'invalid_value' });
        const after = query.get('after') ?? undefined;
        const page = await listOpenAiFiles(db, {
          owner: ownerScope(actor),
          purpose: query.get('purpose') ?? undefined,
          after,
          limit: limitOf(query, 10_000, 10_000),
          order,
        });
        if (page === 'missing')
          throw new OpenAiError(400, `Invalid value for 'after': no file ${after}.`, { param: 'after', code: 'invalid_value' });
        const data = page.rows.filter((f) => maySee(actor, f.owner)).map(toFile);
        sendJson(res, 200, {
          object: 'list',
          data,
          first_id: data[0]?.id ?? null,
          last_id: data.at(-1)?.id ?? null,
          has_more: page.hasMore,
        });
      },
    },
    {
      method: 'GET',
      path: '/v1/files/{file_id}',
      async handle({ res, params, actor }) {
        const id = params.file_id!;
        if (taskIdOfResultFile(id)) {
          const { task, csv } = await resultsOf(id, actor);
          return sendJson(res, 200, toResultFile(task, Buffer.byteLength(csv)));
        }
        sendJson(res, 200, toFile(await uploadOf(id, actor)));
      },
    },
    {
      method: 'GET',
      path: '/v1/files/{file_id}/content',
      async handle({ res, params, actor }) {
        const id = params.file_id!;
        if (taskIdOfResultFile(id)) {
          const { csv } = await resultsOf(id, actor);
          res.writeHead(200, { 'content-type': 'text/csv; charset=utf-8', 'cache-control': 'no-store' }).end(csv);
          return;
        }
        const file = await uploadOf(id, actor);
        const stream = createReadStream(file.path);
        await new Promise<void>((resolve, reject) => {
          stream.once('open', () => resolve());
          stream.once('error', reject);
        }).catch((err: NodeJS.ErrnoException) => {
          throw new OpenAiError(404, `the bytes of ${id} are gone from the uploads folder (${err.code ?? err.message})`, {
            code: 'file_not_found',
          });
        });
        res.writeHead(200, {
          'content-type': 'application/octet-stream',
          'content-disposition': `attachment; filename="${file.filename}"`,
          'cache-control': 'no-store',
        });
        await pipeline(stream, res).catch(() => res.destroy());
      },
    },
    {
      method: 'DELETE',
      path: '/v1/files/{file_id}',
      async handle({ res, params, actor }) {
        const file = await uploadOf(params.file_id!, actor);
        const using = await openJobsUsingFile(db, file.id);
        if (using.length)
          throw new OpenAiError(
            409,
            `${file.id} is in use by ${using.map((t) => `ftjob-${t}`).join(', ')}, which ${using.length === 1 ? 'has' : 'have'} not ended: ` +
              'cancel the job or wait for it to end, then delete the file',
            { code: 'file_in_use' },
          );
        if (await deleteOpenAiFile(db, file.id)) await rm(file.path, { force: true });
        sendJson(res, 200, { object: 'file', id: file.id, deleted: true });
      },
    },
    {
      method: 'POST',
      path: '/v1/fine_tuning/jobs',
      async handle({ req, res, actor }) {
        const raw = await readJson(req);
        const problem = createBodyProblem(raw);
        if (problem) throw bad(problem);
        const body = createJobBody.parse(raw);
        const unsupported = unsupportedProblem(body);
        if (unsupported) throw bad(unsupported);
        const training = await datasetFor('training_file', body.training_file, actor);
        if (body.validation_file) await datasetFor('validation_file', body.validation_file, actor);
        const key = req.headers['idempotency-key'];
        const input = createTaskInputOf(body, training.path, typeof key === 'string' && key ? key.slice(0, 200) : undefined);
        if (!input.ok) throw bad(input.problem);
        const { task } = await service.createTask(input.value, actor);
        let job: OpenAiJobRow;
        try {
          job = await insertOpenAiJob(db, {
            taskId: task.id,
            owner: task.spec.owner,
            model: body.model,
            trainingFile: training.id,
            validationFile: body.validation_file ?? null,
            suffix: body.suffix ?? null,
            seed: body.seed ?? randomInt(0, 2_147_483_647),
            metadata: body.metadata ?? null,
            method: 'supervised',
          });
        } catch (err) {
          // A task no job names would train unseen by this API: it is called off.
          await service.cancelTask(task.id, 'its fine-tuning job could not be recorded', actor).catch(() => undefined);
          throw err;
        }
        sendJson(res, 200, toJob(task, job, training, Date.now()));
      },
    },
    {
      method: 'GET',
      path: '/v1/fine_tuning/jobs',
      async handle({ res, query, actor }) {
        const after = query.get('after');
        const afterTask = after === null ? undefined : taskIdOfJob(after);
        if (afterTask === null)
          throw new OpenAiError(400, `Invalid value for 'after': ${after} is not a job id.`, { param: 'after', code: 'invalid_value' });
        const wanted = metadataFilter(query);
        const limit = limitOf(query, 20, 100);
        const data = [];
        let cursor = afterTask;
        let hasMore = false;
        // A metadata filter is applied to pages read in order, until a page of matches is full.
        pages: for (;;) {
          const page = await listOpenAiJobs(db, { owner: ownerScope(actor), after: cursor, limit });
          if (page === 'missing')
            throw new OpenAiError(400, `Invalid value for 'after': no job ${after}.`, { param: 'after', code: 'invalid_value' });
          for (const { job, task } of page.rows) {
            if (!matches(job, wanted)) continue;
            if (data.length === limit) {
              hasMore = true;
              break pages;
            }
            data.push(await jobObject(task, job));
          }
          if (!page.hasMore) break;
          if (data.length === limit && !wanted.length) {
            hasMore = true;
            break;
          }
          cursor = page.rows.at(-1)!.job.taskId;
        }
        sendJson(res, 200, { object: 'list', data, has_more: hasMore });
      },
    },
    {
      method: 'GET',
      path: '/v1/fine_tuning/jobs/{job_id}',
      async handle({ res, params, actor }) {
        const { task, job } = await jobOf(params.job_id!, actor);
        sendJson(res, 200, await jobObject(task, job));
      },
    },
    {
      method: 'POST',
      path: '/v1/fine_tuning/jobs/{job_id}/cancel',
      async handle({ req, res, params, actor }) {
        await readJson(req);
        const { task, job } = await jobOf(params.job_id!, actor);
        const after = await service.cancelTask(task.id, 'cancelled through the OpenAI API', actor);
        sendJson(res, 200, await jobObject(after, job));
      },
    },
    ...(['pause', 'resume'] as const).map((verb): Route => ({
      method: 'POST',
      path: `/v1/fine_tuning/jobs/{job_id}/${verb}`,
      // Pause: a running job checkpoints and stops (preemption), then waits in its place in the
      // queue; resume lets it start again, from its checkpoint.
      async handle({ req, res, params, actor }) {
        await readJson(req);
        const { task, job } = await jobOf(params.job_id!, actor);
        const after =
          verb === 'pause'
            ? await service.pauseTask(task.id, 'paused through the OpenAI API', actor)
            : await service.resumeTask(task.id, actor);
        sendJson(res, 200, await jobObject(after, job));
      },
    })),
    {
      method: 'GET',
      path: '/v1/fine_tuning/jobs/{job_id}/events',
      async handle({ res, params, query, actor }) {
        const { task, job } = await jobOf(params.job_id!, actor);
        const before = afterPosition(query, EVENT_PREFIX, 'an event id');
        const limit = limitOf(query, 20, 100);
        const events = await readStreamNewestFirst(db, task.id, { beforePosition: before, limit: limit + 1 });
        const data = events
          .slice(0, limit)
          .map((e) => toEvent(e, job))
          .filter((e) => e !== null);
        sendJson(res, 200, { object: 'list', data, has_more: events.length > limit });
      },
    },
    {
      method: 'GET',
      path: '/v1/fine_tuning/jobs/{job_id}/checkpoints',
      async handle({ res, params, query, actor }) {
        const { task, job } = await jobOf(params.job_id!, actor);
        const before = afterPosition(query, CHECKPOINT_PREFIX, 'a checkpoint id');
        const limit = limitOf(query, 10, 100);
        // A trainer's checkpoints where it reports them, and its results (the adapter it saved) either way.
        const artifacts = await readStreamNewestFirst(db, task.id, {
          types: SAVED,
          beforePosition: before,
          limit: limit + 1,
        });
        const data = [];
        for (const a of artifacts.slice(0, limit)) {
          const [progress] = await readStreamNewestFirst(db, task.id, {
            types: ['ProgressRecorded'],
            beforePosition: a.position,
            limit: 1,
          });
          data.push(toCheckpoint(a, progress ?? null, job));
        }
        sendJson(res, 200, {
          object: 'list',
          data,
          first_id: data[0]?.id ?? null,
          last_id: data.at(-1)?.id ?? null,
          has_more: artifacts.length > limit,
        });
      },
    },
    {
      method: 'GET',
      path: '/v1/models',
      async handle({ res, actor }) {
        const base = MODELS.map((id) => toModel(id, 0, 'trainyard'));
        const tuned = [];
        let after: string | undefined;
        for (;;) {
          const page = await listOpenAiJobs(db, { owner: ownerScope(actor), statuses: ['COMPLETED'], after, limit: 500 });
          if (page === 'missing') break;
          for (const { job, task } of page.rows) tuned.push(toModel(fineTunedModelName(job), modelCreated(task), task.spec.owner));
          if (!page.hasMore || tuned.length >= MODELS_LISTED) break;
          after = page.rows.at(-1)!.job.taskId;
        }
        sendJson(res, 200, { object: 'list', data: [...base, ...tuned] });
      },
    },
    {
      method: 'GET',
      path: '/v1/models/{model}',
      async handle({ res, params, actor }) {
        const id = params.model!;
        if (MODELS.includes(id)) return sendJson(res, 200, toModel(id, 0, 'trainyard'));
        const tuned = await fineTunedModel(id, actor);
        if (!tuned) throw noSuchModel(id);
        sendJson(res, 200, toModel(id, modelCreated(tuned.task), tuned.task.spec.owner));
      },
    },
    {
      method: 'POST',
      path: '/v1/chat/completions',
      async handle({ req, res, actor }) {
        const body = await readJson(req);
        const model = typeof body === 'object' && body !== null && 'model' in body && typeof body.model === 'string' ? body.model : null;
        if (model === null)
          throw new OpenAiError(400, "Missing required parameter: 'model'.", { param: 'model', code: 'missing_required_parameter' });
        // A fine-tuned model is served as its task's adapter, named after the task.
        const tuned = MODELS.includes(model) ? null : await fineTunedModel(model, actor);
        const served = tuned ? tuned.task.id : model;
        // Asleep or starting: held up to TRAINYARD_DEPLOYMENT_HOLD_MS for it to serve (0: answered at once).
        const gone = new AbortController();
        res.once('close', () => gone.abort());
        const holdMs = service.config.deployments.holdMs;
        const { deployment, held } = await service.deployments.servingWithin(served, actor, holdMs, gone.signal);
        if (!deployment) {
          if (!MODELS.includes(model) && !tuned) throw noSuchModel(model);
          throw new OpenAiError(
            503,
            `No deployment serves ${model}. Start one (deployments.create, or POST /api/finetune/use-as-backend for a fine-tuned model) and ask again once it is SERVING.`,
            { param: 'model', code: 'model_not_deployed', retry: false },
          );
        }
        if (deployment.status !== 'SERVING' || !deployment.endpoint) {
          // Asleep it waits for a training task's end; starting, for its model to load.
          const retryAfterS = deployment.status === 'SLEEPING' ? 30 : 10;
          const why =
            deployment.status === 'SLEEPING' && deployment.yielding
              ? ` (asleep while task ${deployment.yielding.forTaskId} trains; it is woken when the task ends)`
              : '';
          const waited = held ? ` and did not serve within the ${holdMs} ms this request was held` : '';
          throw new OpenAiError(
            503,
            `Deployment ${deployment.id} serving ${model} is ${deployment.status}, not SERVING${why}${waited}; retry after ${retryAfterS} s, or once deployments.get shows it SERVING.`,
            { param: 'model', code: 'deployment_not_serving', headers: { 'retry-after': String(retryAfterS) } },
          );
        }
        let upstream: Response;
        try {
          upstream = await fetch(`${deployment.endpoint}/chat/completions`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ ...(body as object), model: served }),
          });
        } catch (err) {
          throw new OpenAiError(503, `Deployment ${deployment.id} did not answer: ${(err as Error).message}`, {
            code: 'deployment_unreachable',
          });
        }
        res.writeHead(upstream.status, {
          'content-type': upstream.headers.get('content-type') ?? 'application/json',
          // Held while it slept or started: says so, naming the deployment.
          ...(held ? { 'x-trainyard-held-for': deployment.id } : {}),
        });
        if (upstream.body) await pipeline(Readable.fromWeb(upstream.body as import('node:stream/web').ReadableStream), res);
        else res.end();
      },
    },
  ];

  /** A succeeded job whose fine-tuned model has this name, if the caller may see it. */
  async function fineTunedModel(name: string, actor: Actor): Promise<{ task: TaskRecord; job: OpenAiJobRow } | null> {
    const taskId = /^ft:.*:([A-Za-z0-9_-]{1,64})$/.exec(name)?.[1];
    const found = taskId ? await jobOf(`ftjob-${taskId}`, actor).catch(() => null) : null;
    return found && found.task.status === 'COMPLETED' && fineTunedModelName(found.job) === name ? found : null;
  }

  return routes;
}

const modelCreated = (task: TaskRecord) => Math.floor(Date.parse(task.finishedAt ?? task.createdAt) / 1000);

const noSuchModel = (id: string) =>
  new OpenAiError(404, `The model \`${id.slice(0, 200)}\` does not exist or you do not have access to it.`, {
    param: 'model',
    code: 'model_not_found',
  });

/** `after` as a log position (the list goes on before it, newest first), or undefined. */
function afterPosition(query: URLSearchParams, prefix: typeof EVENT_PREFIX | typeof CHECKPOINT_PREFIX, what: string): string | undefined {
  const after = query.get('after');
  if (after === null) return undefined;
  const position = positionOf(after, prefix);
  if (position === null)
    throw new OpenAiError(400, `Invalid value for 'after': it must be ${what}.`, { param: 'after', code: 'invalid_value' });
  return position;
}

/** `metadata[key]=value` query parameters: the pairs a listed job's metadata must have. */
function metadataFilter(query: URLSearchParams): [string, string][] {
  const out: [string, string][] = [];
  for (const [k, v] of query) {
    const m = /^metadata\[(.+)\]$/.exec(k);
    if (m) out.push([m[1]!, v]);
  }
  return out;
}

const matches = (job: OpenAiJobRow, wanted: [string, string][]) => wanted.every(([k, v]) => job.metadata?.[k] === v);
