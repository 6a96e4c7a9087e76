// OpenAI's fine-tuning API (issue 17) driven by the official `openai` npm package, unchanged but
// for its base URL, against the real server over HTTP on both databases: upload a chat JSONL,
// create a job, follow it to succeeded, read its metrics events, checkpoint and results file,
// cancel a queued and a running job, bad files refused with their line numbers, pages with
// `after`, errors in OpenAI's shape with OpenAI's statuses, and files and jobs still there after
// the service restarts (they live in the database). The default trainer is the simulated one.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI, { APIError, AuthenticationError, toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODELS } from '@trainyard/catalogue';
import { connect as connectTyped } from '@trainyard/client';
import { addUser, createToken, openDatabase, storageFromEnv } from '@trainyard/store';
import { backendAvailable, backends } from '@trainyard/store/testing';
import { eventually, installFakeNvidiaSmi, newServiceData, startServer, type RunningServer } from './harness';

const MODEL = 'Qwen/Qwen2.5-Coder-0.5B-Instruct';
const chat = (q: string, a: string) =>
  JSON.stringify({
    messages: [
      { role: 'system', content: 'You answer briefly.' },
      { role: 'user', content: q },
      { role: 'assistant', content: a },
    ],
  });
const TRAINING = `${[chat('What is 2+2?', '4'), chat('Capital of France?', 'Paris'), chat('Colour of the sky?', 'Blue')].join('\n')}\n`;

type ErrorShape = { error: { message: string; type: string; param: string | null; code: string | null } };

/** The SDK's error for a call: its status and OpenAI's error fields. */
async function refusal(call: Promise<unknown>): Promise<APIError> {
  const err = await call.then(
    (v) => {
      throw new Error(`expected a refusal, got ${JSON.stringify(v).slice(0, 300)}`);
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(APIError);
  return err as APIError;
}

function expectShape(body: unknown): asserts body is ErrorShape {
  expect(Object.keys(body as object)).toEqual(['error']);
  const e = (body as ErrorShape).error;
  expect(Object.keys(e).sort()).toEqual(['code', 'message', 'param', 'type']);
  expect(typeof e.message).toBe('string');
  expect(typeof e.type).toBe('string');
}

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`the OpenAI fine-tuning API through the official SDK on ${backend.kind}`, () => {
    let s: RunningServer;
    let tmp: string;
    let client: OpenAI;
    let fileId: string;
    let done: OpenAI.FineTuning.FineTuningJob;
    const connect = () => new OpenAI({ apiKey: 'any key works in local mode', baseURL: `${s.url}/v1` });
    const raw = async (method: string, path: string, init: { body?: string; headers?: Record<string, string> } = {}) => {
      const res = await fetch(`${s.url}${path}`, { method, ...init });
      return { status: res.status, headers: res.headers, body: (await res.json()) as unknown };
    };
    const upload = async (text: string, name: string, purpose = 'fine-tune') =>
      client.files.create({ file: await toFile(Buffer.from(text), name), purpose: purpose as 'fine-tune' });

    beforeAll(async () => {
      tmp = mkdtempSync(join(tmpdir(), 'trainyard-openai-'));
      // One GPU: a second job waits in the queue while the first runs.
      s = await startServer({ backend, env: { TRAINYARD_NVIDIA_SMI: installFakeNvidiaSmi(join(tmp, 'bin'), 'one-gpu').path } });
      client = connect();
    });

    afterAll(async () => {
      await s?.dispose();
      if (tmp) rmSync(tmp, { recursive: true, force: true });
    });

    it('files.create uploads a chat JSONL (purpose fine-tune); retrieve, list and content give it back', async () => {
      const file = await client.files.create({ file: await toFile(Buffer.from(TRAINING), 'train.jsonl'), purpose: 'fine-tune' });
      expect(file).toMatchObject({ object: 'file', bytes: Buffer.byteLength(TRAINING), filename: 'train.jsonl', purpose: 'fine-tune' });
      expect(file.id).toMatch(/^file-[0-9a-f]{24}$/);
      expect(Math.abs(file.created_at - Date.now() / 1000)).toBeLessThan(60);
      fileId = file.id;
      expect(await client.files.retrieve(file.id)).toEqual(file);
      const listed = await client.files.list();
      expect(listed.data.map((f) => f.id)).toContain(file.id);
      expect(await (await client.files.content(file.id)).text()).toBe(TRAINING);
    });

    it('bad files are refused at upload naming the lines; so is any purpose but fine-tune', async () => {
      const notJson = await refusal(upload(`${chat('a', 'b')}\nnot json at all\n`, 'bad.jsonl'));
      expect(notJson.status).toBe(400);
      expect(notJson.param).toBe('file');
      expect(notJson.message).toMatch(/line 2 is not JSON/);
      const unknown = await refusal(upload(`${chat('a', 'b')}\n${chat('c', 'd')}\n{"prompt":"p","completion":"c"}\n`, 'odd.jsonl'));
      expect(unknown.status).toBe(400);
      expect(unknown.message).toMatch(/1 of its 3 records is in no known format.*line 3: the record has none of the known fields/);
      const empty = await refusal(upload('\n\n', 'empty.jsonl'));
      expect(empty.status).toBe(400);
      expect(empty.message).toMatch(/no records/);
      const batch = await refusal(upload(TRAINING, 'batch.jsonl', 'batch'));
      expect(batch.status).toBe(400);
      expect(batch.param).toBe('purpose');
      const csv = await refusal(upload('a,b\n', 'data.csv'));
      expect(csv.status).toBe(400);
      expect(csv.message).toMatch(/not a \.json or \.jsonl file/);
      // Nothing refused was kept.
      expect((await client.files.list()).data.map((f) => f.id)).toEqual([fileId]);
    });

    it('a job runs to succeeded: retrieve follows it, its model is named ft:<base>:<suffix>:<id>, its events, checkpoint and results are there', async () => {
      const created = await client.fineTuning.jobs.create({
        model: MODEL,
        training_file: fileId,
        suffix: 'e2e',
        seed: 42,
        metadata: { team: 'search' },
        method: { type: 'supervised', supervised: { hyperparameters: { n_epochs: 2, batch_size: 2, learning_rate_multiplier: 2 } } },
      });
      expect(created).toMatchObject({
        object: 'fine_tuning.job',
        model: MODEL,
        training_file: fileId,
        validation_file: null,
        seed: 42,
        metadata: { team: 'search' },
        fine_tuned_model: null,
        hyperparameters: { n_epochs: 2, batch_size: 2, learning_rate_multiplier: 2 },
        method: { type: 'supervised' },
      });
      expect(['validating_files', 'queued', 'running']).toContain(created.status);
      expect(created.id).toMatch(/^ftjob-/);
      const taskId = created.id.slice('ftjob-'.length);
      // The same job is the task the other APIs see.
      expect((await s.client.tasks.get.query({ id: taskId })).spec.config).toMatchObject({ epochs: 2, batchSize: 2, learningRate: 4e-4 });

      done = await eventually(async () => {
        const j = await client.fineTuning.jobs.retrieve(created.id);
        expect(['validating_files', 'queued', 'running', 'succeeded']).toContain(j.status);
        return j.status === 'succeeded' ? j : null;
      }, 'the job to succeed');
      expect(done.fine_tuned_model).toBe(`ft:${MODEL}:e2e:${taskId}`);
      expect(done.finished_at).toBeGreaterThanOrEqual(done.created_at);
      expect(done.trained_tokens).toBeGreaterThan(0);
      expect(done.error).toBeNull();
      expect(done.result_files).toEqual([`file-ftresult-${taskId}`]);

      // Events: newest first, metrics events from progress, lifecycle messages.
      const events = (await client.fineTuning.jobs.listEvents(done.id, { limit: 100 })).data;
      const positions = events.map((e) => Number(e.id.slice('ftevent-'.length)));
      expect(positions).toEqual([...positions].sort((a, b) => b - a));
      const metrics = events.filter((e) => e.type === 'metrics');
      expect(metrics.length).toBeGreaterThan(0);
      const last = metrics[0]!.data as { step: number; total_steps: number; train_loss: number };
      expect(last).toMatchObject({ step: 10, total_steps: 10 });
      expect(typeof last.train_loss).toBe('number');
      const messages = events.filter((e) => e.type === 'message').map((e) => e.message);
      expect(messages[0]).toBe(`New fine-tuned model created: ${done.fine_tuned_model}. The job has successfully completed`);
      expect(messages.at(-1)).toBe(`Created fine-tuning job: ${done.id}`);
      // A page at a time with `after`, the SDK following the cursor.
      const paged: string[] = [];
      for await (const e of client.fineTuning.jobs.listEvents(done.id, { limit: 3 })) paged.push(e.id);
      expect(paged).toEqual(events.map((e) => e.id));

      const checkpoints = (await client.fineTuning.jobs.checkpoints.list(done.id)).data;
      expect(checkpoints).toHaveLength(1);
      expect(checkpoints[0]).toMatchObject({
        object: 'fine_tuning.job.checkpoint',
        fine_tuning_job_id: done.id,
        step_number: 10,
        fine_tuned_model_checkpoint: `${done.fine_tuned_model}:ckpt-step-10`,
        metrics: { step: 10, train_loss: last.train_loss },
      });

      const results = await client.files.retrieve(done.result_files[0]!);
      expect(results).toMatchObject({ purpose: 'fine-tune-results', filename: 'step_metrics.csv' });
      const csv = await (await client.files.content(results.id)).text();
      expect(csv.split('\n')[0]).toBe('step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy');
      expect(csv).toContain(`\n10,${last.train_loss},,,\n`);
      expect(Buffer.byteLength(csv)).toBe(results.bytes);

      // The fine-tuned model is listed with the base models; chatting with it needs a deployment.
      const models = (await client.models.list()).data.map((m) => m.id);
      expect(models).toEqual(expect.arrayContaining([...MODELS, done.fine_tuned_model!]));
      expect(await client.models.retrieve(done.fine_tuned_model!)).toMatchObject({ id: done.fine_tuned_model, object: 'model' });
      const chatRefusal = await refusal(
        client.chat.completions.create({ model: done.fine_tuned_model!, messages: [{ role: 'user', content: 'hi' }] }),
      );
      expect(chatRefusal.status).toBe(503);
      expect(chatRefusal.code).toBe('model_not_deployed');
      expect((await refusal(client.models.retrieve('ft:nothing::t0'))).status).toBe(404);
    });

    it('cancel: a queued job is cancelled at once, a running one once its trainer has stopped', async () => {
      const running = await client.fineTuning.jobs.create({ model: MODEL, training_file: fileId, hyperparameters: { n_epochs: 100 } });
      await eventually(async () => (await client.fineTuning.jobs.retrieve(running.id)).status === 'running', 'the long job to run');
      const queued = await client.fineTuning.jobs.create({ model: MODEL, training_file: fileId });
      expect(queued.status).toBe('queued');
      expect((await client.fineTuning.jobs.cancel(queued.id)).status).toBe('cancelled');

      // The file is in use by a job that has not ended: it cannot be deleted yet.
      const inUse = await refusal(client.files.delete(fileId));
      expect(inUse.status).toBe(409);
      expect(inUse.message).toContain(running.id);

      const stopping = await client.fineTuning.jobs.cancel(running.id);
      expect(['running', 'cancelled']).toContain(stopping.status);
      const cancelled = await eventually(async () => {
        const j = await client.fineTuning.jobs.retrieve(running.id);
        return j.status === 'cancelled' ? j : null;
      }, 'the running job to be cancelled');
      expect(cancelled.fine_tuned_model).toBeNull();
      const messages = (await client.fineTuning.jobs.listEvents(running.id, { limit: 100 })).data.map((e) => e.message);
      expect(messages).toContain('Cancellation requested: cancelled through the OpenAI API');
      // An ended job cannot be cancelled: 409, which the SDK is told not to retry.
      const again = await refusal(client.fineTuning.jobs.cancel(done.id));
      expect(again.status).toBe(409);
      expect(again.headers?.get('x-should-retry')).toBe('false');
    });

    it('pause: a running job checkpoints, stops and waits in the queue; resume runs it again from its checkpoint', async () => {
      const job = await client.fineTuning.jobs.create({ model: MODEL, training_file: fileId, hyperparameters: { n_epochs: 100 } });
      const taskId = job.id.replace(/^ftjob-/, '');
      await eventually(async () => {
        const t = await s.client.tasks.get.query({ id: taskId });
        return t.status === 'TRAINING' && (t.progress.step ?? 0) > 0;
      }, 'the long job to train');
      expect((await client.fineTuning.jobs.pause(job.id)).status).toBe('paused');
      const held = await eventually(async () => {
        const t = await s.client.tasks.get.query({ id: taskId });
        return t.status === 'QUEUED' && t.held ? t : null;
      }, 'the paused job to wait in the queue');
      expect(held.checkpoint).not.toBeNull();
      expect((await client.fineTuning.jobs.retrieve(job.id)).status).toBe('paused');
      // Paused, it is not started again, though the device is free.
      await new Promise((r) => setTimeout(r, 600));
      expect((await s.client.tasks.get.query({ id: taskId })).status).toBe('QUEUED');
      expect((await client.fineTuning.jobs.resume(job.id)).status).not.toBe('paused');
      await eventually(async () => (await s.client.tasks.get.query({ id: taskId })).attempt === 2, 'the resumed job to run again');
      await client.fineTuning.jobs.cancel(job.id);
      await eventually(async () => (await client.fineTuning.jobs.retrieve(job.id)).status === 'cancelled', 'the job to be cancelled');
    });

    it('bad requests are refused in OpenAI’s shape, naming the parameter, with OpenAI’s status', async () => {
      const cases: [() => Promise<unknown>, number, string | null, RegExp][] = [
        [
          () => client.fineTuning.jobs.create({ model: MODEL, training_file: 'file-000000000000000000000000' }),
          400,
          'training_file',
          /no file/,
        ],
        [
          () => client.fineTuning.jobs.create({ model: MODEL, training_file: fileId, hyperparameters: { n_epochs: 0 } }),
          400,
          'hyperparameters.n_epochs',
          /"auto" or a whole number from 1 to 100/,
        ],
        [
          () =>
            client.fineTuning.jobs.create({
              model: MODEL,
              training_file: fileId,
              method: { type: 'supervised', supervised: { hyperparameters: { learning_rate_multiplier: -1 } } },
            }),
          400,
          'method.supervised.hyperparameters.learning_rate_multiplier',
          /above 0/,
        ],
        [
          () => client.fineTuning.jobs.create({ model: MODEL, training_file: fileId, method: { type: 'dpo' } }),
          400,
          'method.type',
          /only "supervised"/,
        ],
        [
          () =>
            client.fineTuning.jobs.create({
              model: MODEL,
              training_file: fileId,
              integrations: [{ type: 'wandb', wandb: { project: 'p' } }],
            }),
          400,
          'integrations',
          /not supported/,
        ],
        [() => client.fineTuning.jobs.create({ model: 'bad model!', training_file: fileId }), 400, 'model', /model must be a model id/],
        [() => client.fineTuning.jobs.create({ model: MODEL, training_file: fileId, suffix: 'x'.repeat(65) }), 400, 'suffix', /up to 64/],
        [
          () => client.fineTuning.jobs.create({ model: MODEL, training_file: fileId, n_epochs: 3 } as never),
          400,
          'n_epochs',
          /Unrecognized/,
        ],
        [() => client.fineTuning.jobs.create({ training_file: fileId } as never), 400, 'model', /Missing required parameter/],
        [() => client.fineTuning.jobs.retrieve('ftjob-nothere'), 404, 'fine_tuning_job_id', /No fine-tuning job/],
        [() => client.fineTuning.jobs.retrieve('nothing'), 404, 'fine_tuning_job_id', /No fine-tuning job/],
        [() => client.fineTuning.jobs.pause(done.id), 409, null, /cannot hold task/],
        [() => client.fineTuning.jobs.listEvents(done.id, { after: 'nope' }), 400, 'after', /event id/],
        [() => client.fineTuning.jobs.list({ limit: 1000 }), 400, 'limit', /1 to 100/],
        [() => client.files.retrieve('file-nothere'), 404, 'id', /No such File object/],
      ];
      for (const [call, status, param, message] of cases) {
        const err = await refusal(call());
        expect(err.status, err.message).toBe(status);
        expect(err.param, err.message).toBe(param);
        expect(err.message).toMatch(message);
        expect(err.type).toBe('invalid_request_error');
      }
      // The body itself, as any client reads it.
      const unknownPath = await raw('GET', '/v1/fine_tunes');
      expect(unknownPath.status).toBe(404);
      expectShape(unknownPath.body);
      expect(unknownPath.body.error.message).toBe('Invalid URL (GET /v1/fine_tunes)');
      const notJson = await raw('POST', '/v1/fine_tuning/jobs', { body: '{', headers: { 'content-type': 'application/json' } });
      expect(notJson.status).toBe(400);
      expectShape(notJson.body);
      const form = await raw('POST', '/v1/fine_tuning/jobs', {
        body: 'model=x',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
      });
      expect(form.status).toBe(415);
      expectShape(form.body);
      const foreign = await raw('GET', '/v1/files', { headers: { origin: 'https://attacker.example' } });
      expect(foreign.status).toBe(403);
      expectShape(foreign.body);
    });

    it('jobs.list pages newest first with `after` and `has_more`; metadata filters', async () => {
      const all = (await client.fineTuning.jobs.list({ limit: 100 })).data;
      expect(all).toHaveLength(4); // done, the two cancelled, the paused one
      expect(all.map((j) => j.created_at)).toEqual([...all.map((j) => j.created_at)].sort((a, b) => b - a));
      let page = await client.fineTuning.jobs.list({ limit: 1 });
      const ids = [page.data[0]!.id];
      expect(page.has_more).toBe(true);
      while (page.hasNextPage()) {
        page = await page.getNextPage();
        ids.push(...page.data.map((j) => j.id));
      }
      expect(page.has_more).toBe(false);
      expect(ids).toEqual(all.map((j) => j.id));
      const second = await client.fineTuning.jobs.list({ limit: 1, after: all[0]!.id });
      expect(second.data.map((j) => j.id)).toEqual([all[1]!.id]);
      const tagged = await client.fineTuning.jobs.list({ metadata: { team: 'search' } });
      expect(tagged.data.map((j) => j.id)).toEqual([done.id]);
    });

    it('files and jobs live in the database: after a restart they read the same; a file no job needs is deleted', async () => {
      const before = { file: await client.files.retrieve(fileId), jobs: (await client.fineTuning.jobs.list()).data };
      s = await s.restart();
      client = connect();
      expect(await client.files.retrieve(fileId)).toEqual(before.file);
      const after = (await client.fineTuning.jobs.list()).data;
      expect(after.map(({ estimated_finish: _, ...j }) => j)).toEqual(before.jobs.map(({ estimated_finish: _, ...j }) => j));

      expect(await client.files.delete(fileId)).toEqual({ object: 'file', id: fileId, deleted: true });
      expect((await refusal(client.files.retrieve(fileId))).status).toBe(404);
      // The job keeps naming the file it trained on.
      expect((await client.fineTuning.jobs.retrieve(done.id)).training_file).toBe(fileId);
    });
  });

  describe.skipIf(!backendAvailable(backend))(`the OpenAI API in tokens mode on ${backend.kind}`, () => {
    let s: RunningServer;
    let dataDir: string;
    const tokens: Record<string, string> = {};
    const as = (user: string) => new OpenAI({ apiKey: tokens[user]!, baseURL: `${s.url}/v1` });

    beforeAll(async () => {
      const data = await newServiceData(backend, 'trainyard-openai-tokens-');
      dataDir = data.dataDir;
      const schema = data.schema;
      const database = await openDatabase(storageFromEnv(data.env));
      for (const [name, admin] of [
        ['root', true],
        ['alice', false],
        ['bob', false],
      ] as const) {
        await addUser(database.db, { name, admin });
        tokens[name] = (await createToken(database.db, { userName: name, expiresAt: null })).token;
      }
      await database.close();
      s = await startServer({ backend, dataDir, schema, env: { TRAINYARD_AUTH: 'tokens' } });
    });

    afterAll(async () => {
      await s?.dispose();
    });

    it('the API key is the bearer token: none or a wrong one is a 401 in OpenAI’s shape; each user sees their own files and jobs; events name who acted', async () => {
      const anonymous = await fetch(`${s.url}/v1/fine_tuning/jobs`);
      expect(anonymous.status).toBe(401);
      const body = (await anonymous.json()) as unknown;
      expectShape(body);
      expect(body.error.code).toBe('invalid_api_key');
      const wrong = await refusal(new OpenAI({ apiKey: 'ty_not_a_token', baseURL: `${s.url}/v1` }).files.list());
      expect(wrong).toBeInstanceOf(AuthenticationError);
      expect(wrong.status).toBe(401);

      const alice = as('alice');
      const file = await alice.files.create({ file: await toFile(Buffer.from(TRAINING), 'alice.jsonl'), purpose: 'fine-tune' });
      const job = await alice.fineTuning.jobs.create({
        model: MODEL,
        training_file: file.id,
        suffix: 'alice',
        hyperparameters: { n_epochs: 1 },
      });
      const done = await eventually(async () => {
        const j = await alice.fineTuning.jobs.retrieve(job.id);
        return j.status === 'succeeded' ? j : null;
      }, 'alice’s job to succeed');
      expect(done.organization_id).toBe('org-alice');

      // Bob sees none of it: another user's file, job and model read as not there.
      const bob = as('bob');
      expect((await refusal(bob.files.retrieve(file.id))).status).toBe(404);
      expect((await refusal(bob.fineTuning.jobs.retrieve(job.id))).status).toBe(404);
      expect((await refusal(bob.fineTuning.jobs.cancel(job.id))).status).toBe(404);
      expect((await refusal(bob.fineTuning.jobs.create({ model: MODEL, training_file: file.id }))).param).toBe('training_file');
      expect((await bob.files.list()).data).toEqual([]);
      expect((await bob.fineTuning.jobs.list()).data).toEqual([]);
      expect((await bob.models.list()).data.map((m) => m.id)).not.toContain(done.fine_tuned_model);
      // An admin sees everyone's.
      expect((await as('root').fineTuning.jobs.list()).data.map((j) => j.id)).toEqual([job.id]);

      // The audit log names the token's user as the actor of the job's submission.
      const typed = await connectTyped({ url: s.url, token: tokens.root! });
      const audit = await typed.events.list.query({ taskId: job.id.slice('ftjob-'.length), type: 'TaskSubmitted' });
      expect(audit.events.map((e) => e.metadata.actor)).toEqual(['alice']);
    });
  });
}
