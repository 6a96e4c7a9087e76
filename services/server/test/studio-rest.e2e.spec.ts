// SAGE Studio's REST contract (issue 16) against the real server over HTTP, on both databases:
// every route with the shapes Studio's panel reads, every refusal as { detail } with its status,
// Studio's defaults, the streamed download unpacked and compared with the output folder, the
// current model across a restart, unknown /api paths as JSON 404s, and the HTTP guard's rules on
// these routes. One server per backend; the steps follow each other like a user's session.
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TRPCClientError } from '@trpc/client';
import { MODELS } from '@trainyard/catalogue';
import { backendAvailable, backends } from '@trainyard/store/testing';
import { DATASET, eventually, installFakeNvidiaSmi, startServer, type RunningServer } from './harness';
import { expectStudioTask, raw, rest, type RestAnswer } from './studio-support';

type Task = Record<string, unknown> & { task_id: string; status: string; output_dir: string; logs: string[] };
type Detail = { detail: string; field?: string };
const MODEL = 'Qwen/Qwen2.5-Coder-0.5B-Instruct';

/** A refusal as FastAPI writes it: this status, JSON, { detail } matching `detail`. */
function expectDetail(r: RestAnswer, status: number, detail: RegExp, field?: string): void {
  expect(r.status, r.text).toBe(status);
  expect(r.headers.get('content-type')).toMatch(/^application\/json/);
  const body = r.body as Detail;
  expect(typeof body.detail).toBe('string');
  expect(body.detail).toMatch(detail);
  if (field !== undefined) expect(body.field).toBe(field);
}

/** Every file under `dir`, as relative path → content. */
function filesUnder(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out[relative(dir, p)] = readFileSync(p, 'utf8');
    }
  };
  walk(dir);
  return out;
}

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`Studio's REST routes on ${backend.kind}`, () => {
    let s: RunningServer;
    let tmp: string;
    let root: string;
    let uploaded: string;
    let done: Task;
    const url = () => s.url;
    const tasks = async () => (await rest<Task[]>(url(), 'GET', '/api/finetune/tasks')).body;
    const task = async (id: string) => (await rest<Task>(url(), 'GET', `/api/finetune/tasks/${id}`)).body;
    const create = (json: unknown) =>
      rest<Task & { warnings: string[]; dataset: Record<string, unknown> }>(url(), 'POST', '/api/finetune/create', { json });

    beforeAll(async () => {
      tmp = mkdtempSync(join(tmpdir(), 'trainyard-studio-rest-'));
      root = join(tmp, 'datasets');
      mkdirSync(root);
      copyFileSync(DATASET, join(root, 'good.jsonl'));
      writeFileSync(join(root, 'bad-json.jsonl'), '{"text":"ok"}\nthis is not json\n{"text":"ok"}\n');
      writeFileSync(join(root, 'empty.jsonl'), '\n\n');
      writeFileSync(join(root, 'unknown.jsonl'), '{"prompt":"p","completion":"c"}\n');
      writeFileSync(join(root, 'some-unknown.jsonl'), '{"text":"a"}\n{"prompt":"p"}\n{"messages":[{"role":"user","content":"hi"}]}\n');
      mkdirSync(join(tmp, 'panel'));
      writeFileSync(join(tmp, 'panel', 'index.html'), '<!doctype html><title>panel</title>');
      s = await startServer({
        backend,
        env: {
          TRAINYARD_DATASETS_ROOT: root,
          TRAINYARD_NVIDIA_SMI: installFakeNvidiaSmi(join(tmp, 'bin'), 'one-gpu').path,
          TRAINYARD_UPLOAD_MAX_BYTES: '20000',
          TRAINYARD_PANEL_DIR: join(tmp, 'panel'),
        },
      });
    });

    afterAll(async () => {
      await s?.dispose();
      if (tmp) rmSync(tmp, { recursive: true, force: true });
    });

    it('GET /api/system/gpu-info: the GPU in Studio’s shape', async () => {
      const r = await rest<Record<string, unknown>>(url(), 'GET', '/api/system/gpu-info');
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ available: true, count: 1, devices: [{ id: 0, name: 'NVIDIA GeForce RTX 3060', memory_gb: 12 }] });
      expect(r.body.recommendation).toEqual(expect.stringContaining('RTX 3060'));
    });

    it('POST /api/finetune/upload-dataset: a multipart file in, { file_path, filename } out; refusals are { detail }', async () => {
      const form = new FormData();
      form.append('file', new Blob([readFileSync(DATASET)]), 'my data.jsonl');
      const r = await rest<{ file_path: string; filename: string }>(url(), 'POST', '/api/finetune/upload-dataset', { body: form });
      expect(r.status, r.text).toBe(201);
      expect(r.body.filename).toBe('my_data.jsonl');
      expect(r.body.file_path.startsWith(join(s.dataDir, 'datasets', 'uploads') + '/')).toBe(true);
      expect(readFileSync(r.body.file_path, 'utf8')).toBe(readFileSync(DATASET, 'utf8'));
      uploaded = r.body.file_path;

      const csv = new FormData();
      csv.append('file', new Blob(['a,b\n']), 'data.csv');
      expectDetail(await rest(url(), 'POST', '/api/finetune/upload-dataset', { body: csv }), 400, /not a \.json or \.jsonl file/, 'file');
      const notJson = new FormData();
      notJson.append('file', new Blob(['{"text":"a"}\nnope\n']), 'data.jsonl');
      expectDetail(await rest(url(), 'POST', '/api/finetune/upload-dataset', { body: notJson }), 400, /line 2 is not JSON/);
      const big = new FormData();
      big.append('file', new Blob([`${JSON.stringify({ text: 'x'.repeat(30_000) })}\n`]), 'big.jsonl');
      expectDetail(
        await rest(url(), 'POST', '/api/finetune/upload-dataset', { body: big }),
        413,
        /larger than the upload limit of 20000 bytes/,
      );
      expectDetail(await rest(url(), 'POST', '/api/finetune/upload-dataset', { json: { file: 'x' } }), 415, /multipart\/form-data/);
      const get = await rest(url(), 'GET', '/api/finetune/upload-dataset');
      expectDetail(get, 405, /takes POST/);
      expect(get.headers.get('allow')).toBe('POST');
    });

    it('POST /api/finetune/create with only model_name and dataset_file: Studio’s defaults, and the task runs to completed', async () => {
      const r = await create({ model_name: MODEL, dataset_file: uploaded });
      expect(r.status, r.text).toBe(200);
      expectStudioTask(r.body, ['warnings', 'dataset']);
      expect(r.body.config).toEqual({
        num_epochs: 3,
        batch_size: 1,
        gradient_accumulation_steps: 16,
        learning_rate: 5e-5,
        max_length: 1024,
        load_in_8bit: true,
        load_in_4bit: false,
        lora_rank: 8,
        lora_alpha: 16,
      });
      expect(r.body).toMatchObject({ model_name: MODEL, dataset_path: uploaded, loss: 0, total_epochs: 3, completed_at: null, logs: [] });
      expect(['queued', 'preparing', 'training']).toContain(r.body.status);
      expect(r.body.output_dir).toBe(join(s.dataDir, 'outputs', r.body.task_id));
      expect(r.body.warnings.every((w) => typeof w === 'string')).toBe(true);
      expect(r.body.dataset).toMatchObject({ kind: 'file', format: 'alpaca', records: 4, malformedCount: 0 });
      expect(r.body.dataset.estimatedTokens).toBeGreaterThan(0);

      // Studio polls the list only: the task gets there through it.
      done = await eventually(
        async () => (await tasks()).find((t) => t.task_id === r.body.task_id && t.status === 'completed'),
        'the task to complete',
      );
      expectStudioTask(done);
      expect(done).toMatchObject({ progress: 100, current_epoch: 3, total_epochs: 3, error_message: null });
      expect(done.loss).toBeGreaterThan(0);
      expect(done.completed_at).not.toBeNull();
      expect(done.started_at).not.toBeNull();
      expect(done.logs.at(-1)).toMatch(/^saved adapter to /);
      // Protocol lines are the service's business, not the person's.
      expect(done.logs.some((l) => l.startsWith('{"type"'))).toBe(false);
    });

    it('create refuses bad input with 400 naming Studio’s field, and a dataset that cannot be trained on before queueing it', async () => {
      const before = (await tasks()).length;
      expectDetail(await create({ model_name: MODEL }), 400, /^dataset_file is required/, 'dataset_file');
      expectDetail(await create({ dataset_file: uploaded }), 400, /^model_name is required/, 'model_name');
      expectDetail(
        await create({ model_name: MODEL, dataset_file: uploaded, num_epochs: 0 }),
        400,
        /^num_epochs must be at least 1/,
        'num_epochs',
      );
      expectDetail(
        await create({ model_name: MODEL, dataset_file: uploaded, num_epochs: 'three' }),
        400,
        /^num_epochs must be a number/,
        'num_epochs',
      );
      expectDetail(
        await create({ model_name: MODEL, dataset_file: uploaded, learning_rate: 2 }),
        400,
        /^learning_rate must be at most 1/,
        'learning_rate',
      );
      expectDetail(
        await create({ model_name: 'x; rm -rf /', dataset_file: uploaded }),
        400,
        /^model_name must be a model id/,
        'model_name',
      );
      expectDetail(await create([1]), 400, /JSON object with model_name and dataset_file/);
      expectDetail(
        await rest(url(), 'POST', '/api/finetune/create', { body: '{"model_name":', headers: { 'content-type': 'application/json' } }),
        400,
        /not JSON/,
      );
      expectDetail(await create({ model_name: 'x'.repeat(1_100_000), dataset_file: uploaded }), 413, /larger than 1000000 bytes/);
      expectDetail(
        await create({ model_name: MODEL, dataset_file: '/etc/passwd' }),
        400,
        /^dataset_file: dataset \/etc\/passwd not found or not allowed/,
        'dataset_file',
      );
      expectDetail(
        await create({ model_name: MODEL, dataset_file: join(root, 'bad-json.jsonl') }),
        400,
        /^dataset_file: .*it is not valid JSON lines: line 2: not JSON/,
        'dataset_file',
      );
      expectDetail(
        await create({ model_name: MODEL, dataset_file: join(root, 'empty.jsonl') }),
        400,
        /^dataset_file: .*it is empty/,
        'dataset_file',
      );
      expectDetail(
        await create({ model_name: MODEL, dataset_file: join(root, 'unknown.jsonl') }),
        400,
        /none of its 1 records is in a known format/,
        'dataset_file',
      );
      expect((await tasks()).length).toBe(before);

      // The typed API refuses the same dataset, naming its own field.
      const typed = await s.client.tasks.create
        .mutate({ model: MODEL, datasetPath: join(root, 'bad-json.jsonl') })
        .catch((e: unknown) => e);
      expect(typed).toBeInstanceOf(TRPCClientError);
      const fieldErrors = (typed as TRPCClientError<never>).data as unknown as { fieldErrors: Record<string, string[]> };
      expect(fieldErrors.fieldErrors.datasetPath?.[0]).toMatch(/line 2: not JSON/);

      // Records in no known format are skipped by the trainer: a warning with their lines.
      const some = await create({ model_name: MODEL, dataset_file: join(root, 'some-unknown.jsonl'), num_epochs: 1 });
      expect(some.status, some.text).toBe(200);
      expect(some.body.warnings).toContainEqual(
        expect.stringMatching(/^1 of the dataset's 3 records is in no known format and will be skipped: line 2: /),
      );
      expect(some.body.dataset).toMatchObject({ format: 'mixed', records: 2, formats: { text: 1, messages: 1 } });
      await eventually(async () => (await task(some.body.task_id)).status === 'completed', 'the second task to complete');
    });

    it('GET /api/finetune/tasks lists newest first; GET one; an unknown id is 404', async () => {
      const list = await tasks();
      expect(list.length).toBeGreaterThanOrEqual(2);
      for (const t of list) expectStudioTask(t);
      const times = list.map((t) => Date.parse(t.created_at as string));
      expect([...times].sort((a, b) => b - a)).toEqual(times);
      expect(list.at(-1)!.task_id).toBe(done.task_id);
      const one = await rest<Task>(url(), 'GET', `/api/finetune/tasks/${done.task_id}`);
      expect(one.status).toBe(200);
      expectStudioTask(one.body);
      expect(one.body).toEqual(done);
      expectDetail(await rest(url(), 'GET', '/api/finetune/tasks/tnosuchtask'), 404, /^Task not found: tnosuchtask/);
      expectDetail(await rest(url(), 'GET', '/api/finetune/tasks/..%2F..%2Fetc'), 404, /^Task not found/);
    });

    it('cancel and delete answer { status, message }, and 400 when the task’s state does not allow it', async () => {
      // A task that holds the only GPU, so that the next one waits.
      const blocker = await s.client.tasks.create.mutate({
        model: MODEL,
        datasetPath: join(root, 'good.jsonl'),
        config: { epochs: 1, simulate: { steps: 10_000, stepMs: 200 } },
      });
      await eventually(async () => (await task(blocker.id)).status === 'training', 'the blocker to train');
      const waiting = await create({ model_name: MODEL, dataset_file: uploaded });
      expect(waiting.body.status).toBe('queued');

      const cancelled = await rest(url(), 'POST', `/api/finetune/tasks/${waiting.body.task_id}/cancel`);
      expect(cancelled.status, cancelled.text).toBe(200);
      expect(cancelled.body).toEqual({ status: 'success', message: `task ${waiting.body.task_id} cancelled` });
      expect(await task(waiting.body.task_id)).toMatchObject({ status: 'cancelled', completed_at: expect.any(String) });
      expectDetail(await rest(url(), 'POST', `/api/finetune/tasks/${waiting.body.task_id}/cancel`), 400, /cannot cancel/);
      expectDetail(await rest(url(), 'POST', '/api/finetune/tasks/tnosuchtask/cancel'), 404, /^Task not found/);

      expectDetail(await rest(url(), 'DELETE', `/api/finetune/tasks/${blocker.id}`), 400, /only finished tasks .* can be deleted/);
      const stop = await rest<{ status: string; message: string }>(url(), 'POST', `/api/finetune/tasks/${blocker.id}/cancel`);
      expect(stop.status, stop.text).toBe(200);
      expect(stop.body.status).toBe('success');
      expect(stop.body.message).toMatch(new RegExp(`^task ${blocker.id} (cancelled|is stopping)`));
      await eventually(async () => (await task(blocker.id)).status === 'cancelled', 'the blocker to be cancelled');
      expectDetail(
        await rest(url(), 'GET', `/api/finetune/tasks/${blocker.id}/download`),
        400,
        /^Task is not completed yet \(it is cancelled\)/,
      );

      const deleted = await rest(url(), 'DELETE', `/api/finetune/tasks/${waiting.body.task_id}`);
      expect(deleted.status, deleted.text).toBe(200);
      expect(deleted.body).toEqual({ status: 'success', message: `task ${waiting.body.task_id} deleted` });
      expectDetail(await rest(url(), 'GET', `/api/finetune/tasks/${waiting.body.task_id}`), 404, /^Task not found/);
      expectDetail(await rest(url(), 'DELETE', `/api/finetune/tasks/${waiting.body.task_id}`), 404, /^Task not found/);
      expect((await tasks()).some((t) => t.task_id === waiting.body.task_id)).toBe(false);
    });

    it('GET /api/finetune/tasks/{id}/download streams a .tar.gz that unpacks to the output folder', async () => {
      const res = await fetch(`${url()}/api/finetune/tasks/${done.task_id}/download`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/gzip');
      expect(res.headers.get('content-disposition')).toBe(`attachment; filename="${done.task_id}_finetuned_model.tar.gz"`);
      // Streamed as it is packed: no length known up front.
      expect(res.headers.get('transfer-encoding')).toBe('chunked');
      expect(res.headers.get('content-length')).toBeNull();
      const into = join(tmp, 'unpacked');
      mkdirSync(into);
      await pipeline(Readable.fromWeb(res.body as never), tar.x({ cwd: into, strict: true }));
      expect(readdirSync(into)).toEqual([done.task_id]);
      const files = filesUnder(join(into, done.task_id));
      expect(Object.keys(files)).toContain('adapter_config.json');
      expect(files).toEqual(filesUnder(done.output_dir));
      expectDetail(await rest(url(), 'GET', '/api/finetune/tasks/tnosuchtask/download'), 404, /^Task not found/);
    });

    it('models, current model and switch-model: base models and completed outputs; the choice is checked', async () => {
      const models = await rest<Record<string, unknown>[]>(url(), 'GET', '/api/finetune/models');
      expect(models.status).toBe(200);
      expect(models.body.filter((m) => m.type === 'base').map((m) => m.name)).toEqual([...MODELS]);
      const mine = models.body.find((m) => m.task_id === done.task_id);
      expect(mine).toMatchObject({ name: done.output_dir, type: 'finetuned', created_at: done.completed_at });
      for (const m of models.body) {
        expect(typeof m.description).toBe('string');
        expect(['base', 'finetuned']).toContain(m.type);
      }
      expect((await rest(url(), 'GET', '/api/finetune/current-model')).body).toEqual({ current_model: null });

      expectDetail(await rest(url(), 'POST', '/api/finetune/switch-model'), 400, /^model_path is required/, 'model_path');
      expectDetail(
        await rest(url(), 'POST', `/api/finetune/switch-model?model_path=${encodeURIComponent('/etc')}`),
        404,
        /not the output folder of a completed task/,
        'model_path',
      );
      expectDetail(
        await rest(url(), 'POST', `/api/finetune/switch-model?model_path=${encodeURIComponent('a b')}`),
        400,
        /^model_path must be a model id/,
        'model_path',
      );
      const base = await rest(url(), 'POST', `/api/finetune/switch-model?model_path=${encodeURIComponent(MODELS[0]!)}`);
      expect(base.status, base.text).toBe(200);
      const switched = await rest<Record<string, unknown>>(
        url(),
        'POST',
        `/api/finetune/switch-model?model_path=${encodeURIComponent(done.output_dir)}`,
      );
      expect(switched.status, switched.text).toBe(200);
      expect(switched.body).toMatchObject({ current_model: done.output_dir, llm_service_restarted: false });
      expect(switched.body.message).toMatch(/no LLM service was restarted/);
      expect((await rest(url(), 'GET', '/api/finetune/current-model')).body).toEqual({ current_model: done.output_dir });
    });

    it('use-as-backend starts a deployment of a completed task (after the task is checked); prepare-sage-docs a clear 501', async () => {
      const use = (json: unknown) => rest(url(), 'POST', '/api/finetune/use-as-backend', { json });
      expectDetail(await use({}), 400, /^task_id is required/, 'task_id');
      expectDetail(await use({ task_id: 'tnosuchtask' }), 404, /^Task not found/);
      const cancelled = (await tasks()).find((t) => t.status === 'cancelled')!;
      expectDetail(await use({ task_id: cancelled.task_id }), 400, /^Task is not completed yet/);
      const started = await use({ task_id: done.task_id });
      expect(started.status, started.text).toBe(200);
      expect(started.body).toMatchObject({ status: 'success', deployment_id: expect.stringMatching(/^dep-/) });
      expect((started.body as { message: string }).message).toContain(`served as the model "${done.task_id}"`);
      expectDetail(await rest(url(), 'POST', '/api/finetune/prepare-sage-docs', { json: {} }), 501, /works offline.*upload-dataset/);
    });

    it('an unknown /api path is a JSON 404 (never the panel’s page), a known one with the wrong method a 405', async () => {
      const page = await rest(url(), 'GET', '/some/page');
      expect(page.headers.get('content-type')).toMatch(/^text\/html/);
      for (const [method, path] of [
        ['GET', '/api'],
        ['GET', '/api/'],
        ['GET', '/api/finetune/models/base'],
        ['GET', '/api/finetune/tasks/x/y/z'],
        ['POST', '/api/finetune/nothing'],
        ['DELETE', '/api/system'],
      ] as const)
        expectDetail(await rest(url(), method, path), 404, new RegExp(`^Not Found: no route ${method} ${path.replace(/\//g, '\\/')} `));
      const wrong = await rest(url(), 'PUT', `/api/finetune/tasks/${done.task_id}`);
      expectDetail(wrong, 405, /takes GET, DELETE/);
      expect(wrong.headers.get('allow')).toBe('GET, DELETE');
      expectDetail(await rest(url(), 'POST', '/api/finetune/tasks'), 405, /takes GET/);
    });

    it('the HTTP guard holds on these routes: Host, Origin, cross-site and form bodies are refused as JSON { detail }, nothing is created', async () => {
      const before = (await tasks()).length;
      const self = `127.0.0.1:${s.port}`;
      const body = JSON.stringify({ model_name: MODEL, dataset_file: uploaded });
      const json = { host: self, 'content-type': 'application/json' };
      const check = (r: { status: number; headers: Record<string, unknown>; body: string }, status: number, detail: RegExp) => {
        expect(r.status, r.body).toBe(status);
        expect(r.headers['content-type']).toMatch(/^application\/json/);
        expect((JSON.parse(r.body) as Detail).detail).toMatch(detail);
      };
      check(
        await raw(s.port, { path: '/api/finetune/tasks', headers: { host: `attacker.example:${s.port}` } }),
        421,
        /does not answer to the host name/,
      );
      check(
        await raw(s.port, { method: 'POST', path: '/api/finetune/create', headers: { ...json, origin: 'http://attacker.example' }, body }),
        403,
        /Forbidden/,
      );
      check(
        await raw(s.port, { path: '/api/finetune/tasks', headers: { host: self, origin: 'http://attacker.example' } }),
        403,
        /Forbidden/,
      );
      check(await raw(s.port, { path: '/api/finetune/tasks', headers: { host: self, 'sec-fetch-site': 'cross-site' } }), 403, /cross-site/);
      for (const type of ['application/x-www-form-urlencoded', 'text/plain', 'multipart/form-data; boundary=x'])
        check(
          await raw(s.port, { method: 'POST', path: '/api/finetune/create', headers: { host: self, 'content-type': type }, body }),
          415,
          /JSON bodies only/,
        );
      check(
        await raw(s.port, {
          method: 'POST',
          path: `/api/finetune/tasks/${done.task_id}/cancel`,
          headers: { host: self, 'content-type': 'text/plain' },
          body: 'x',
        }),
        415,
        /JSON bodies only/,
      );
      // A page of this service (its own origin) may call them; so may a request without a body.
      const own = await raw(s.port, {
        method: 'POST',
        path: '/api/finetune/tasks/tnosuchtask/cancel',
        headers: { host: self, origin: `http://${self}` },
      });
      check(own, 404, /^Task not found/);
      expect((await tasks()).length).toBe(before);
    });

    it('the current model survives a restart', async () => {
      s = await s.restart();
      expect((await rest(url(), 'GET', '/api/finetune/current-model')).body).toEqual({ current_model: done.output_dir });
      expectStudioTask(await task(done.task_id));
    });
  });
}
