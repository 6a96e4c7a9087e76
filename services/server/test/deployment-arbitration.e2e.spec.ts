// Deployments and training on one GPU, over HTTP, on both databases, with a fake nvidia-smi
// (one 80 GB GPU) and the scripted vllm, which writes the memory it holds where that nvidia-smi
// reads it. A deployment holds gpuMemoryUtilization × 80 GB as a device holder (queue.get shows
// it, nvidia-smi's reading of it is ours, not another program's); a training task on the GPU puts
// it to sleep (/sleep?level=1, /is_sleeping), starts only after nvidia-smi shows the memory
// released, trains, and the deployment is woken and serves again; while it sleeps our /v1 answers
// 503 at once. `wait` and an urgent deployment keep the task waiting with HELD_BY_DEPLOYMENT;
// `stop` stops it and starts it again after; a deployment that does not fit is refused.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backendAvailable, backends } from '@trainyard/store/testing';
import { eventually, installFakeNvidiaSmi, simulated, startServer, type RunningServer } from './harness';
import { pathWithFakeVllm } from './fake-vllm';

const UUID = 'GPU-0c8e2d41-93a7-b6f2-11d4-7a5e0f9c3b26';

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`deployments arbitrated with training on ${backend.kind}`, () => {
    let s: RunningServer;
    let dir: string;
    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'ty-arb-'));
      const smi = installFakeNvidiaSmi(dir, { 'gpus.csv': `0, ${UUID}, NVIDIA A100-SXM4-80GB, 81920, 0, 0, Disabled\n`, 'apps.csv': '' });
      s = await startServer({
        backend,
        env: {
          PATH: pathWithFakeVllm(),
          TRAINYARD_NVIDIA_SMI: smi.path,
          TRAINYARD_GPU_REFRESH_MS: '200',
          // Generous: a scripted server killed before its SIGTERM handler ran leaves its line in apps.csv.
          TRAINYARD_KILL_GRACE_MS: '10000',
          TRAINYARD_TRAINER_ENV: 'FAKE_*',
          FAKE_NVIDIA_SMI_ANSWERS: join(dir, 'answers'),
        },
      });
    });
    afterAll(async () => {
      for (const d of (await s?.client.deployments.list.query().catch(() => [])) ?? [])
        if (d.status !== 'STOPPED' && d.status !== 'FAILED') await s.client.deployments.stop.mutate({ id: d.id }).catch(() => {});
      await s?.dispose();
      rmSync(dir, { recursive: true, force: true });
    });

    const task = (id: string) => s.client.tasks.get.query({ id });
    const dep = (id: string) => s.client.deployments.get.query({ id });
    const status = (id: string, want: string, what = `deployment ${want}`) =>
      eventually(async () => {
        const d = await dep(id);
        return d.status === want ? d : null;
      }, what);
    const taskStatus = (id: string, want: string[]) =>
      eventually(
        async () => {
          const t = await task(id);
          return want.includes(t.status) ? t : null;
        },
        `task ${want.join('/')}`,
      );
    const chat = (model: string) =>
      fetch(`${s.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
      });
    const events = async (id: string) =>
      (await s.client.events.list.query({ taskId: id, limit: 200 })).events.map((e) => ({ ...e, type: e.type as string }));
    const ended = async (id: string) => {
      await s.client.deployments.stop.mutate({ id });
      await status(id, 'STOPPED');
    };

    it('holds its memory on the GPU; a training task puts it to sleep, starts once nvidia-smi shows the memory released, trains, and it is woken', async () => {
      const t0 = await s.client.tasks.create.mutate(simulated({ steps: 2, stepMs: 10 }));
      const done = await taskStatus(t0.id, ['COMPLETED']);
      const created = await s.client.deployments.create.mutate({ taskId: done.id });
      expect(created).toMatchObject({ status: 'STARTING', holding: true, devices: [{ deviceId: 'gpu0', uuid: UUID, memoryMb: 24_576 }] });
      const serving = await status(created.id, 'SERVING');
      // nvidia-smi shows the scripted server holding 24 GB, and the service counts it as ours.
      expect(readFileSync(join(dir, 'answers/apps.csv'), 'utf8')).toContain(`${UUID}, ${serving.server!.pid}, vllm, 24576`);
      const q = await eventually(async () => {
        const x = await s.client.queue.get.query();
        return x.devices[0]!.holders.length ? x : null;
      }, 'the deployment among the holders');
      expect(q.devices[0]!.holders).toEqual([
        expect.objectContaining({
          taskId: created.id,
          memoryGb: 24,
          exclusive: false,
          task: null,
          // Named by what it serves (the panel and the CLI show this, not the dep- id).
          deployment: { id: created.id, owner: expect.any(String), serves: expect.arrayContaining([done.id]) },
        }),
      ]);
      await eventually(
        async () => ((await s.client.queue.get.query()).devices[0]!.externalMemoryGb === 0 ? true : null),
        'no external memory',
      );
      const answer = await chat(done.id);
      expect(answer.status).toBe(200);
      expect(((await answer.json()) as { model: string }).model).toBe(done.id);

      const seen: string[] = [];
      const sub = s.client.deployments.onUpdate.subscribe({ id: created.id }, { onData: (r) => seen.push(r.status) });
      const training = await s.client.tasks.create.mutate(simulated({ steps: 30, stepMs: 100 }));
      const asleep = await status(created.id, 'SLEEPING', 'the deployment asleep for the task');
      expect(asleep.yielding).toMatchObject({ mode: 'sleep', forTaskId: training.id });
      // While it sleeps our /v1 answers at once, and clearly.
      const refused = await chat(done.id);
      expect(refused.status).toBe(503);
      expect(((await refused.json()) as { error: { code: string; message: string } }).error).toMatchObject({
        code: 'deployment_not_serving',
        message: expect.stringMatching(/SLEEPING/),
      });
      await taskStatus(training.id, ['TRAINING', 'COMPLETED']);
      await taskStatus(training.id, ['COMPLETED']);
      const back = await status(created.id, 'SERVING', 'the deployment woken after the task');
      expect(back).toMatchObject({ holding: true, yielding: null, server: { pid: serving.server!.pid } });
      expect((await chat(done.id)).status).toBe(200);
      // The subscription's news of the wake may arrive after get already says SERVING.
      await eventually(
        async () => (seen.includes('SLEEPING') && seen.includes('SERVING') ? true : null),
        'the subscription to tell of sleep and wake',
      );
      sub.unsubscribe();

      // The order in the log: asked to give way, slept, memory seen released, then the task was assigned; then reclaimed and woken.
      const depEvents = await events(created.id);
      const types = depEvents.map((e) => e.type);
      expect(types).toEqual(
        expect.arrayContaining(['DeploymentYielding', 'DeploymentSlept', 'DeploymentReleased', 'DeploymentReclaimed', 'DeploymentWoken']),
      );
      const pos = (type: string) => BigInt(depEvents.find((e) => e.type === type)!.position);
      const assigned = (await events(training.id)).find((e) => e.type === 'TaskAssigned')!;
      expect((assigned.data as { devices: { deviceId: string }[] }).devices.map((d) => d.deviceId)).toEqual(['gpu0']);
      expect(BigInt(assigned.position) > pos('DeploymentReleased')).toBe(true);
      expect(pos('DeploymentReleased') > pos('DeploymentSlept')).toBe(true);
      const released = depEvents.find((e) => e.type === 'DeploymentReleased')!.data as unknown as { observed: string };
      // Asleep, the scripted server keeps 0.5 GB; a probe between its two answer files may see 0.
      expect(released.observed).toMatch(/nvidia-smi: gpu0 0(\.5)? GB \(held 24 GB\)/);
      const ended = (await events(training.id)).find((e) => e.type === 'TaskCompleted')!;
      expect(pos('DeploymentWoken') > BigInt(ended.position)).toBe(true);
      await s.client.deployments.stop.mutate({ id: created.id });
      await status(created.id, 'STOPPED');
      expect((await s.client.queue.get.query()).devices[0]!.holders).toEqual([]);
    });

    it('`wait` and an urgent deployment keep a normal task waiting with HELD_BY_DEPLOYMENT; stopped, the task runs', async () => {
      for (const input of [{ onTrainingDemand: 'wait' as const }, { priority: 'urgent' }]) {
        const d = await status((await s.client.deployments.create.mutate({ model: 'Qwen/Qwen2.5-0.5B-Instruct', ...input })).id, 'SERVING');
        const t = await s.client.tasks.create.mutate(simulated({ steps: 2, stepMs: 10 }));
        const reason = await eventually(async () => {
          const e = (await s.client.queue.get.query()).queued.find((x) => x.task.id === t.id);
          return e?.reason.code === 'HELD_BY_DEPLOYMENT' ? e.reason : null;
        }, 'HELD_BY_DEPLOYMENT');
        expect(reason.message).toMatch(input.priority ? /priority 20, above this task's 0/ : /onTrainingDemand wait/);
        expect((await dep(d.id)).status).toBe('SERVING');
        await ended(d.id);
        await taskStatus(t.id, ['COMPLETED']);
      }
    });

    it('`stop`: stopped for the task and started again once it ended', async () => {
      const d = await status(
        (await s.client.deployments.create.mutate({ model: 'Qwen/Qwen2.5-0.5B-Instruct', onTrainingDemand: 'stop' })).id,
        'SERVING',
      );
      const t = await s.client.tasks.create.mutate(simulated({ steps: 10, stepMs: 100 }));
      await taskStatus(t.id, ['COMPLETED']);
      const again = await eventually(async () => {
        const x = await dep(d.id);
        return x.status === 'SERVING' && x.server!.pid !== d.server!.pid ? x : null;
      }, 'served again by a new server');
      expect(again.restarts).toBe(0);
      const types = (await events(d.id)).map((e) => e.type);
      expect(types).toEqual(expect.arrayContaining(['DeploymentYielding', 'DeploymentRestarting', 'DeploymentPlaced']));
      await ended(d.id);
    });

    it('a deployment that does not fit the free memory is refused, naming gpuMemoryUtilization', async () => {
      // The servers of the cases before have released the GPU, as nvidia-smi sees it.
      await eventually(async () => {
        const d = (await s.client.queue.get.query()).devices[0]!;
        return d.holders.length === 0 && d.externalMemoryGb === 0 ? true : null;
      }, 'a clean GPU');
      const a = await status(
        (
          await s.client.deployments.create.mutate({
            model: 'Qwen/Qwen2.5-0.5B-Instruct',
            onTrainingDemand: 'wait',
            gpuMemoryUtilization: 0.6,
          })
        ).id,
        'SERVING',
      );
      await expect(s.client.deployments.create.mutate({ model: 'Qwen/Qwen2.5-7B-Instruct' })).rejects.toThrow(
        /gpuMemoryUtilization: needs 1 GPU with gpuMemoryUtilization 0.85 .*free now: GPU 0 32 of 80 GB/,
      );
      await ended(a.id);
    });
  });
}
