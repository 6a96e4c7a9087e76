// What a fine-tuning user reads besides a task's status, end to end on both databases (the real
// server over HTTP, the simulated trainer, a fake nvidia-smi with one GPU): a task's progress
// series with loss and learning rate (tasks.metrics, paged), the most GPU memory its trainer was
// seen holding, the GPU's memory and utilisation over time (system.gpuHistory), and when each
// queued task starts at the latest (queue.get's expectedStart, from the timeouts ahead).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backendAvailable, backends } from '@trainyard/store/testing';
import { waitTerminal } from './lifecycle-support';
import { eventually, installFakeNvidiaSmi, simulated, startServer, type FakeNvidiaSmi, type RunningServer } from './harness';

const MIN = 60_000;
const GPU_UUID = 'GPU-4b1c9f3e-7d2a-5e8b-a1c6-93f0d2e4b7a1';
const GRACE_MS = 1000;

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`task metrics on ${backend.kind}`, () => {
    let s: RunningServer;
    let dir: string;
    let smi: FakeNvidiaSmi;
    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'trainyard-metrics-'));
      smi = installFakeNvidiaSmi(dir, 'one-gpu');
      s = await startServer({
        backend,
        env: {
          TRAINYARD_NVIDIA_SMI: smi.path,
          TRAINYARD_GPU_REFRESH_MS: '200',
          TRAINYARD_KILL_GRACE_MS: String(GRACE_MS),
        },
      });
    });
    afterAll(async () => {
      await s?.dispose();
      rmSync(dir, { recursive: true, force: true });
    });

    it('serves a task’s progress reports as a series with loss and learning rate, a page at a time', async () => {
      const t = await s.client.tasks.create.mutate(
        // 2 epochs of 12 steps, 3.6 s: progress events at the first report, about every second, the epoch change and the last step.
        simulated({}, { name: 'series', config: { epochs: 2, learningRate: 0.001, simulate: { steps: 12, stepMs: 150 } } }),
      );
      expect((await waitTerminal(s.client, t.id)).status).toBe('COMPLETED');
      const all = await s.client.tasks.metrics.query({ id: t.id });
      expect(all.nextCursor).toBeNull();
      const steps = all.points.map((p) => p.step);
      expect(steps.length).toBeGreaterThan(3);
      expect(steps).toEqual([...steps].sort((a, b) => a! - b!));
      expect(steps.at(-1)).toBe(24);
      for (const p of all.points) {
        expect(p.totalSteps).toBe(24);
        expect(p.loss).toBeGreaterThan(0);
        // The simulated trainer's schedule: warm-up to 0.001, then cosine decay.
        expect(p.learningRate).toBeGreaterThanOrEqual(0);
        expect(p.learningRate).toBeLessThanOrEqual(0.001);
        expect(typeof p.at).toBe('number');
      }
      // …down to 0 at the last step.
      expect(all.points.some((p) => p.learningRate! > 0.0005)).toBe(true);
      expect(all.points.at(-1)!.learningRate).toBe(0);
      expect(all.points.map((p) => p.epoch)).toContain(2);
      // Paging: the pages together are the whole series.
      const first = await s.client.tasks.metrics.query({ id: t.id, limit: 2 });
      expect(first.points).toHaveLength(2);
      expect(first.nextCursor).toBe(first.points[1]!.position);
      const rest = await s.client.tasks.metrics.query({ id: t.id, after: first.nextCursor, limit: 5000 });
      expect([...first.points, ...rest.points]).toEqual(all.points);
      // The series is the task's ProgressRecorded events.
      const events = await s.client.events.list.query({ taskId: t.id, type: 'ProgressRecorded', limit: 1000 });
      expect(all.points.map((p) => p.position)).toEqual(events.events.map((e) => e.position));
    });

    it('refuses an unknown task and a bad page, naming the field', async () => {
      await expect(s.client.tasks.metrics.query({ id: 'tnope' })).rejects.toThrow(/not found/);
      await expect(s.client.tasks.metrics.query({ id: 'tnope', limit: 0 })).rejects.toThrow(/limit must be at least 1/);
      await expect(s.client.tasks.metrics.query({ id: 'tnope', after: 'x' })).rejects.toThrow(/position must be a log position/);
    });

    it('keeps the most GPU memory the trainer was seen holding, and the GPU’s last hour', async () => {
      const t = await s.client.tasks.create.mutate(simulated({ steps: 100_000, stepMs: 100 }, { name: 'memory', timeoutMs: 10 * MIN }));
      const pid = (await eventually(async () => (await s.client.tasks.get.query({ id: t.id })).trainer?.pid, 'trainer pid'))!;
      expect((await s.client.tasks.metrics.query({ id: t.id })).peakMemoryGb).toBeNull();
      const apps = (mib: number) => `${GPU_UUID}, 23817, /usr/bin/python3, 900\n${GPU_UUID}, ${pid}, python3, ${mib}\n`;
      smi.set({ 'apps.csv': apps(6144) });
      await eventually(async () => (await s.client.tasks.metrics.query({ id: t.id })).peakMemoryGb === 6, 'peak 6 GB');
      // Probes a few seconds apart are kept apart (closer ones are one sample).
      await new Promise((r) => setTimeout(r, 4500));
      // Less later: the peak stays.
      smi.set({ 'apps.csv': apps(2048), 'gpus.csv': `0, ${GPU_UUID}, NVIDIA GeForce RTX 3060, 12288, 3000, 88, [N/A]\n` });
      const history = await eventually(async () => {
        const h = await s.client.system.gpuHistory.query();
        return h.devices[0]?.samples.some((x) => x.utilization === 88) ? h : null;
      }, 'a sample at 88% utilisation');
      expect((await s.client.tasks.metrics.query({ id: t.id })).peakMemoryGb).toBe(6);
      const gpu = history.devices[0]!;
      expect([gpu.index, gpu.uuid, gpu.name, gpu.memoryGb]).toEqual([0, GPU_UUID, 'NVIDIA GeForce RTX 3060', 12]);
      expect(gpu.samples, JSON.stringify(gpu.samples)).toContainEqual(expect.objectContaining({ utilization: 7, memoryUsedGb: 1 }));
      expect(gpu.samples.at(-1)!.memoryUsedGb).toBe(2.9);
      const times = gpu.samples.map((x) => x.at);
      expect(times).toEqual([...times].sort((a, b) => a - b));
      expect(Date.parse(history.now) - times[0]!).toBeLessThan(3_600_000);
      await s.client.tasks.cancel.mutate({ id: t.id });
      await waitTerminal(s.client, t.id);
      // The GPU as it was (the trainer's memory would count as another program's now).
      installFakeNvidiaSmi(dir, 'one-gpu');
    });

    it('tells when each queued task starts at the latest, from the timeouts of those running and ahead', async () => {
      const running = await s.client.tasks.create.mutate(
        simulated({ steps: 100_000, stepMs: 100 }, { name: 'holder', timeoutMs: 10 * MIN }),
      );
      await eventually(async () => (await s.client.tasks.get.query({ id: running.id })).status === 'TRAINING', 'holder training');
      const head = await s.client.tasks.create.mutate(simulated({ steps: 5 }, { name: 'head', timeoutMs: 20 * MIN }));
      const next = await s.client.tasks.create.mutate(simulated({ steps: 5 }, { name: 'next', timeoutMs: 5 * MIN }));
      const q = await s.client.queue.get.query();
      const endsBy = Date.parse(q.devices[0]!.holders[0]!.endsBy!);
      const at = (id: string) => q.queued.find((e) => e.task.id === id)!.expectedStart;
      expect(Date.parse(at(head.id)!)).toBe(endsBy + GRACE_MS);
      // The head's figure is the policy's reservation.
      expect(q.reservation!.startAt).toBe(at(head.id));
      expect(Date.parse(at(next.id)!)).toBe(endsBy + GRACE_MS + 20 * MIN + GRACE_MS);
      for (const id of [running.id, head.id, next.id]) await s.client.tasks.cancel.mutate({ id }).catch(() => {});
      for (const id of [running.id, head.id, next.id]) await waitTerminal(s.client, id);
    });
  });
}
