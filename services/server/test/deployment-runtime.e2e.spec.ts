// Deployments over time, over HTTP, on both databases, with a fake nvidia-smi (one 80 GB GPU) and
// the scripted vllm: a deployment that served stably (TRAINYARD_DEPLOYMENT_STABLE_MS) between
// deaths gets its restart budget back and survives a third death; a request that arrives while it
// sleeps for training is held (TRAINYARD_DEPLOYMENT_HOLD_MS) and forwarded once it serves again,
// or answered 503 with Retry-After once the hold runs out.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backendAvailable, backends } from '@trainyard/store/testing';
import { eventually, installFakeNvidiaSmi, simulated, startServer, type RunningServer } from './harness';
import { pathWithFakeVllm } from './fake-vllm';

const UUID = 'GPU-5d1f7a02-6b3c-4e8d-9a10-2c4b6e8f0a13';
const STABLE_MS = 1000;
const HOLD_MS = 15_000;
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`deployments over time on ${backend.kind}`, () => {
    let s: RunningServer;
    let dir: string;
    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'ty-deprt-'));
      const smi = installFakeNvidiaSmi(dir, { 'gpus.csv': `0, ${UUID}, NVIDIA A100-SXM4-80GB, 81920, 0, 0, Disabled\n`, 'apps.csv': '' });
      s = await startServer({
        backend,
        env: {
          PATH: pathWithFakeVllm(),
          TRAINYARD_NVIDIA_SMI: smi.path,
          TRAINYARD_GPU_REFRESH_MS: '200',
          TRAINYARD_KILL_GRACE_MS: '1000',
          TRAINYARD_TRAINER_ENV: 'FAKE_*',
          FAKE_NVIDIA_SMI_ANSWERS: join(dir, 'answers'),
          TRAINYARD_DEPLOYMENT_STABLE_MS: String(STABLE_MS),
          TRAINYARD_DEPLOYMENT_HOLD_MS: String(HOLD_MS),
        },
      });
    });
    afterAll(async () => {
      for (const d of (await s?.client.deployments.list.query().catch(() => [])) ?? [])
        if (d.status !== 'STOPPED' && d.status !== 'FAILED') await s.client.deployments.stop.mutate({ id: d.id }).catch(() => {});
      await s?.dispose();
      rmSync(dir, { recursive: true, force: true });
    });

    const dep = (id: string) => s.client.deployments.get.query({ id });
    const status = (id: string, want: string, what = `deployment ${want}`) =>
      eventually(async () => {
        const d = await dep(id);
        if (d.status === 'FAILED' && want !== 'FAILED') throw new Error(`deployment failed: ${d.error}`);
        return d.status === want ? d : null;
      }, what);
    const completed = async () => {
      const t = await s.client.tasks.create.mutate(simulated({ steps: 2, stepMs: 10 }));
      return eventually(async () => {
        const x = await s.client.tasks.get.query({ id: t.id });
        return x.status === 'COMPLETED' ? x : null;
      }, 'task to complete');
    };
    const chat = (model: string) =>
      fetch(`${s.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model, messages: [{ role: 'user', content: 'held' }] }),
      });

    it('a deployment that served stably between deaths gets its restart budget back: the third death starts it again', async () => {
      let d = await status((await s.client.deployments.create.mutate({ model: 'Qwen/Qwen2.5-0.5B-Instruct' })).id, 'SERVING');
      for (let death = 1; death <= 3; death++) {
        // Served for longer than TRAINYARD_DEPLOYMENT_STABLE_MS since it came up (or not, before the second death).
        if (death !== 2) await pause(STABLE_MS + 500);
        const pid = d.server!.pid;
        // A crash (exit 1) that frees its memory, as the driver does for a dead process.
        process.kill(pid, 'SIGUSR2');
        d = await eventually(async () => {
          const x = await dep(d.id);
          if (x.status === 'FAILED') throw new Error(`failed at death ${death}: ${x.error}`);
          return x.status === 'SERVING' && x.server!.pid !== pid ? x : null;
        }, `served again after death ${death}`);
        // 1st: the first restart; 2nd (within the stable time): the second; 3rd, after serving stably: 1 of a fresh budget.
        const expected = [1, 2, 1][death - 1]!;
        expect(d.restarts).toBe(expected);
        if (death === 3) expect(d.error).toMatch(/started again \(1 of 2 after serving stably since .*, its restart budget back\)/);
      }
      const events = (await s.client.events.list.query({ taskId: d.id, limit: 200 })).events.filter(
        (e) => (e.type as string) === 'DeploymentRestarting',
      );
      expect(events.map((e) => (e.data as unknown as { restarts: number }).restarts)).toEqual([1, 2, 1]);
      await s.client.deployments.stop.mutate({ id: d.id });
      await status(d.id, 'STOPPED');
    });

    it('a request while it sleeps for training is held and forwarded once it serves again; past the hold, 503 with Retry-After', async () => {
      const done = await completed();
      const d = await status((await s.client.deployments.create.mutate({ taskId: done.id })).id, 'SERVING');
      const training = await s.client.tasks.create.mutate(simulated({ steps: 600, stepMs: 100 }));
      await status(d.id, 'SLEEPING', 'asleep for the task');

      // The training lasts a minute: the hold runs out first.
      const refused = await chat(done.id);
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toBe('30');
      expect(((await refused.json()) as { error: { code: string; message: string } }).error).toMatchObject({
        code: 'deployment_not_serving',
        message: expect.stringMatching(
          new RegExp(
            `is SLEEPING, not SERVING \\(asleep while task ${training.id} trains; .*\\) and did not serve within the ${HOLD_MS} ms this request was held; retry after 30 s`,
          ),
        ),
      });

      // Asked while it sleeps, answered once it is woken after the task (cancelled here) ends.
      const asked = chat(done.id);
      await pause(300);
      expect((await dep(d.id)).status).toBe('SLEEPING');
      await s.client.tasks.cancel.mutate({ id: training.id });
      const answer = await asked;
      expect(answer.status).toBe(200);
      expect(answer.headers.get('x-trainyard-held-for')).toBe(d.id);
      expect(((await answer.json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content).toBe('echo: held');
      expect((await dep(d.id)).status).toBe('SERVING');
      await s.client.deployments.stop.mutate({ id: d.id });
      await status(d.id, 'STOPPED');
    });

    it('a completed task’s adapter is loaded into a SERVING deployment (recorded on its stream), listed and answered; removed, it is gone', async () => {
      const [first, second] = [await completed(), await completed()];
      const d = await status((await s.client.deployments.create.mutate({ taskId: first.id })).id, 'SERVING');
      const models = async () => ((await (await fetch(`${d.endpoint}/models`)).json()) as { data: { id: string }[] }).data.map((m) => m.id);
      expect(await models()).not.toContain(second.id);

      const added = await s.client.deployments.addAdapter.mutate({ id: d.id, taskId: second.id });
      expect(added.spec.adapters).toEqual([
        { name: first.id, path: first.artifacts.at(-1), taskId: first.id },
        { name: second.id, path: second.artifacts.at(-1), taskId: second.id },
      ]);
      expect(added.servedModels).toContain(second.id);
      expect(await models()).toContain(second.id);
      const answer = await chat(second.id);
      expect(answer.status).toBe(200);
      expect(((await answer.json()) as { model: string }).model).toBe(second.id);
      const events = (await s.client.events.list.query({ taskId: d.id, limit: 200 })).events;
      expect(events.find((e) => (e.type as string) === 'DeploymentAdapterAdded')?.data).toMatchObject({
        adapter: { name: second.id, taskId: second.id },
      });
      await expect(s.client.deployments.addAdapter.mutate({ id: d.id, taskId: second.id })).rejects.toThrow(/already serves/);

      const removed = await s.client.deployments.removeAdapter.mutate({ id: d.id, taskId: second.id });
      expect(removed.servedModels).not.toContain(second.id);
      expect(await models()).not.toContain(second.id);
      // No deployment serves it now: our /v1 knows no such model.
      expect((await chat(second.id)).status).toBe(404);
      await s.client.deployments.stop.mutate({ id: d.id });
      await status(d.id, 'STOPPED');
      await expect(s.client.deployments.addAdapter.mutate({ id: d.id, taskId: second.id })).rejects.toThrow(/is STOPPED/);
    });
  });
}
