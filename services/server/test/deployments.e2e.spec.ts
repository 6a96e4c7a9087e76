// Deployments over HTTP with the scripted vllm on PATH (the true edge: vLLM needs a GPU): a
// completed task (simulated trainer) is served as a LoRA module named after the task, the
// endpoint lists it and answers a chat completion; stop ends it STOPPED; a server that dies is
// started again, and FAILED once restarts run out; bad input names its field. A deployment with
// `merge` serves the adapter merged into its base for real (trainers/merge_adapter.py with Debian's
// python3-torch) under the task's name.
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backendAvailable, backends } from '@trainyard/store/testing';
import { eventually, simulated, startServer, type RunningServer } from './harness';
import { pathWithFakeVllm } from './fake-vllm';
import { cacheAsHubModel, writeMergeFixture, type MergeFixture } from './merge-fixture';
import { PYTHON, torchAvailable } from './python-torch';
import { readSafetensors } from './safetensors';

/** In the service's environment: none may reach a vLLM server or its run folder. */
/** The tiny base model's id (in the Hugging Face cache the specs' service reads). */
const TINY_BASE = 'trainyard-test/tiny-base';
const SECRETS = { PGPASSWORD: 'pg-dep-secret', HF_TOKEN: 'hf-dep-secret', AWS_SECRET_ACCESS_KEY: 'aws-dep-secret' };

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`deployments on ${backend.kind}`, () => {
    let s: RunningServer;
    const pids: number[] = [];
    let fixtures: string;
    let fx: MergeFixture;
    beforeAll(async () => {
      fixtures = mkdtempSync(join(tmpdir(), 'trainyard-merge-e2e-'));
      fx = writeMergeFixture(fixtures);
      // The tiny base is found by its id in the Hugging Face cache, as a downloaded model is.
      cacheAsHubModel(fx.base, join(fixtures, 'hf'), TINY_BASE);
      // Each scripted server listens only after 1 s (a model loading), so a request while STARTING is seen.
      s = await startServer({
        backend,
        env: {
          ...SECRETS,
          PATH: pathWithFakeVllm(),
          TRAINYARD_TRAINER_ENV: 'FAKE_VLLM_*',
          FAKE_VLLM_READY_MS: '1000',
          TRAINYARD_MERGE: JSON.stringify([PYTHON, 'trainers/merge_adapter.py']),
          HF_HOME: join(fixtures, 'hf'),
        },
      });
    });
    afterAll(async () => {
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      await s?.dispose();
      if (fixtures) rmSync(fixtures, { recursive: true, force: true });
    });

    const completedTask = async (model?: string) => {
      const t = await s.client.tasks.create.mutate({ ...simulated({ steps: 2, stepMs: 10 }), ...(model ? { model } : {}) });
      return eventually(async () => {
        const x = await s.client.tasks.get.query({ id: t.id });
        return x.status === 'COMPLETED' ? x : null;
      }, 'task to complete');
    };
    const serving = (id: string) =>
      eventually(async () => {
        const d = await s.client.deployments.get.query({ id });
        if (d.status === 'FAILED') throw new Error(`deployment failed: ${d.error}`);
        return d.status === 'SERVING' ? d : null;
      }, 'deployment to serve');

    it('serves a completed task’s adapter by the task’s name, answers a chat completion, and stops', async () => {
      const task = await completedTask();
      const seen: string[] = [];
      const sub = s.client.deployments.onUpdate.subscribe(undefined, { onData: (r) => seen.push(`${r.id} ${r.status}`) });
      const created = await s.client.deployments.create.mutate({ taskId: task.id });
      expect(created).toMatchObject({
        status: 'STARTING',
        spec: { model: task.spec.model, taskId: task.id, gpus: 1, gpuMemoryUtilization: 0.3 },
      });
      expect(created.spec.adapters).toEqual([{ name: task.id, path: task.artifacts.at(-1), taskId: task.id }]);

      const proxied = (model: string) =>
        fetch(`${s.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model, messages: [{ role: 'user', content: 'through the service' }] }),
        });
      const early = await proxied(task.id);
      expect(early.status).toBe(503);
      expect(((await early.json()) as { error: { code: string; message: string } }).error).toMatchObject({
        code: 'deployment_not_serving',
        message: expect.stringMatching(/is STARTING, not SERVING/),
      });

      const d = await serving(created.id);
      const through = await proxied(task.id);
      expect(through.status).toBe(200);
      expect(((await through.json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content).toBe(
        'echo: through the service',
      );
      pids.push(d.server!.pid);
      // The server process holds none of the service's secrets, nor do its run folder's files (0600 in 0700 folders).
      const environ = readFileSync(`/proc/${d.server!.pid}/environ`, 'utf8').split('\0');
      expect(environ.some((v) => v.startsWith('PATH='))).toBe(true);
      for (const [name, value] of Object.entries(SECRETS)) expect(environ.join('\n'), name).not.toContain(value);
      const runDir = d.server!.runDir;
      const deployments = join(s.dataDir, 'runs', 'deployments');
      expect(runDir.startsWith(`${deployments}/`)).toBe(true);
      for (let dir = runDir; dir.length >= deployments.length; dir = dirname(dir))
        expect((statSync(dir).mode & 0o777).toString(8), dir).toBe('700');
      const files = readdirSync(runDir);
      expect(files).toContain('launch.json');
      for (const f of files) {
        const path = join(runDir, f);
        if (statSync(path).isDirectory()) continue;
        expect((statSync(path).mode & 0o777).toString(8), path).toBe('600');
        for (const value of Object.values(SECRETS)) expect(readFileSync(path, 'utf8'), path).not.toContain(value);
      }
      expect(d.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1$/);
      expect(d.servedModels).toEqual([task.spec.model, task.id]);
      const models = (await (await fetch(`${d.endpoint}/models`)).json()) as { data: { id: string }[] };
      expect(models.data.map((m) => m.id)).toContain(task.id);
      const chat = await fetch(`${d.endpoint}/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: task.id, messages: [{ role: 'user', content: 'hello' }] }),
      });
      expect(chat.status).toBe(200);
      expect(((await chat.json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content).toBe('echo: hello');
      expect((await s.client.deployments.list.query()).map((x) => x.id)).toContain(d.id);

      const stopping = await s.client.deployments.stop.mutate({ id: d.id });
      expect(stopping.stopReason).toMatch(/stopped by/);
      const stopped = await eventually(async () => {
        const x = await s.client.deployments.get.query({ id: d.id });
        return x.status === 'STOPPED' ? x : null;
      }, 'deployment to stop');
      expect(stopped.endpoint).toBeNull();
      await expect(fetch(`${d.endpoint}/models`)).rejects.toThrow();
      // SERVING comes the scripted server’s 1 s start after the create: the subscription is open by then.
      await eventually(async () => (seen.includes(`${d.id} STOPPED`) ? true : null), 'deployments.onUpdate to tell STOPPED');
      expect(seen.filter((x) => x.startsWith(d.id))).toEqual(expect.arrayContaining([`${d.id} SERVING`, `${d.id} STOPPED`]));
      sub.unsubscribe();
      const after = await proxied(task.id);
      expect(after.status).toBe(404);
      await s.client.deployments.delete.mutate({ id: d.id });
      await expect(s.client.deployments.get.query({ id: d.id })).rejects.toThrow(/not found/);
    });

    it('a deployment whose server dies is started again, and marked FAILED, saying how it ended, once restarts run out', async () => {
      let d = await serving((await s.client.deployments.create.mutate({ model: 'Qwen/Qwen2.5-Coder-1.5B-Instruct' })).id);
      expect(d.spec.gpuMemoryUtilization).toBe(0.55);
      for (let restart = 1; restart <= 2; restart++) {
        const pid = d.server!.pid;
        process.kill(pid, 'SIGKILL');
        d = await eventually(async () => {
          const x = await s.client.deployments.get.query({ id: d.id });
          return x.status === 'SERVING' && x.server!.pid !== pid ? x : null;
        }, `deployment served again after restart ${restart}`);
        expect(d.restarts).toBe(restart);
        expect(d.error).toMatch(new RegExp(`ended on its own \\(signal SIGKILL\\); started again \\(${restart} of 2\\)`));
      }
      process.kill(d.server!.pid, 'SIGKILL');
      const failed = await eventually(async () => {
        const x = await s.client.deployments.get.query({ id: d.id });
        return x.status === 'FAILED' ? x : null;
      }, 'deployment to be marked FAILED');
      expect(failed.error).toMatch(/ended on its own \(signal SIGKILL\), after 2 restart\(s\)/);
      expect(failed.endpoint).toBeNull();
      expect(failed.holding).toBe(false);
    });

    it('a service SIGKILLed while SERVING re-attaches the server at its next start; task subscriptions see no deployment events', async () => {
      const updates: string[] = [];
      const sub = s.client.tasks.onUpdate.subscribe({}, { onData: (u) => updates.push(u.data.event.streamId) });
      // `wait`: the marker task below must not put it to sleep (it waits, HELD_BY_DEPLOYMENT).
      const d = await serving(
        (await s.client.deployments.create.mutate({ model: 'Qwen/Qwen2.5-Coder-0.5B-Instruct', onTrainingDemand: 'wait' })).id,
      );
      pids.push(d.server!.pid);
      // A task created after the deployment serves: once its change arrives, the deployment's came before it, if at all.
      const marker = await s.client.tasks.create.mutate(simulated({ steps: 1, stepMs: 1 }));
      await eventually(async () => (updates.includes(marker.id) ? true : null), 'the task change on the subscription');
      sub.unsubscribe();
      expect(updates.filter((id) => id.startsWith('dep-'))).toEqual([]);
      await s.stop('SIGKILL');
      s = await s.restart();
      const again = await s.client.deployments.get.query({ id: d.id });
      expect(again).toMatchObject({ status: 'SERVING', server: { pid: d.server!.pid } });
      const models = (await (await fetch(`${again.endpoint}/models`)).json()) as { data: { id: string }[] };
      expect(models.data.map((m) => m.id)).toEqual(['Qwen/Qwen2.5-Coder-0.5B-Instruct']);
      // Watched again: a stop ends it STOPPED.
      await s.client.deployments.stop.mutate({ id: d.id });
      await eventually(
        async () => ((await s.client.deployments.get.query({ id: d.id })).status === 'STOPPED' ? true : null),
        'stopped after re-attach',
      );
    });

    it.skipIf(!torchAvailable('the merged deployment case'))(
      'serves a task’s adapter merged into its base model under the task’s name; a merge that cannot be done fails it, saying why',
      async () => {
        // A task trained on the tiny base; its output folder holds the adapter as PEFT saves it.
        const task = await completedTask(TINY_BASE);
        const adapterDir = task.artifacts.at(-1)!;
        cpSync(fx.adapter, adapterDir, { recursive: true });
        const created = await s.client.deployments.create.mutate({ taskId: task.id, merge: true });
        expect(created.spec).toMatchObject({ model: TINY_BASE, taskId: task.id, merge: true });
        const d = await serving(created.id);
        pids.push(d.server!.pid);
        expect(d.servedModels).toEqual([task.id]);
        // vLLM was given the merged folder, named after the task, with no LoRA.
        const { argv } = JSON.parse(readFileSync(join(d.server!.runDir, 'launch.json'), 'utf8')) as { argv: string[] };
        const merged = join(s.dataDir, 'runs', 'deployments', d.id, 'merged');
        expect(argv.slice(0, 3)).toEqual(['vllm', 'serve', merged]);
        expect(argv[argv.indexOf('--served-model-name') + 1]).toBe(task.id);
        expect(argv).not.toContain('--enable-lora');
        // The weights are the base's with the adapter merged in, as PEFT computes them.
        expect({
          ...readSafetensors(join(merged, 'model-00001-of-00002.safetensors')),
          ...readSafetensors(join(merged, 'model-00002-of-00002.safetensors')),
        }).toEqual(fx.expected);
        const chat = await fetch(`${s.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: task.id, messages: [{ role: 'user', content: 'merged' }] }),
        });
        expect(chat.status).toBe(200);
        await expect(s.client.deployments.addAdapter.mutate({ id: d.id, taskId: task.id })).rejects.toThrow(
          /id: cannot addAdapter: .* merged into the model/,
        );
        await s.client.deployments.stop.mutate({ id: d.id });

        // A task whose output has no adapter weights: FAILED, with the merge's reason; nothing served, no folder left.
        const plain = await completedTask(TINY_BASE);
        const bad = await s.client.deployments.create.mutate({ taskId: plain.id, merge: true });
        const failed = await eventually(async () => {
          const x = await s.client.deployments.get.query({ id: bad.id });
          return x.status === 'FAILED' ? x : null;
        }, 'the deployment of a task with no adapter to fail');
        expect(failed.error).toMatch(
          /the adapter merge failed \(exit code 2\): cannot merge: .* has no adapter weights \(adapter_model\.safetensors or adapter_model\.bin\)/,
        );
        expect(failed.server).toBeNull();
        expect(existsSync(join(s.dataDir, 'runs', 'deployments', bad.id, 'merged'))).toBe(false);
      },
    );

    it('refuses what cannot be served, naming the field', async () => {
      const running = await s.client.tasks.create.mutate(simulated({ steps: 1000, stepMs: 1000 }));
      await expect(s.client.deployments.create.mutate({ taskId: running.id })).rejects.toThrow(/taskId: task .* only a COMPLETED task/);
      await expect(s.client.deployments.create.mutate({ model: 'm', taskId: running.id })).rejects.toThrow(/give either taskId or model/);
      await expect(s.client.deployments.create.mutate({ model: 'm', gpuMemoryUtilization: 1.5 })).rejects.toThrow(
        /gpuMemoryUtilization must be at most 1/,
      );
      await expect(s.client.deployments.get.query({ id: 'dep-nope' })).rejects.toThrow(/not found/);
      await expect(s.client.deployments.create.mutate({ model: 'm', merge: true })).rejects.toThrow(/merge: merge needs taskId/);
      await expect(s.client.deployments.create.mutate({ taskId: running.id, adapters: [running.id], merge: true })).rejects.toThrow(
        /adapters: a merged deployment serves one adapter/,
      );
      await s.client.tasks.cancel.mutate({ id: running.id });
    });
  });
}
