// GPUs as resources, end to end on both databases: the real server over HTTP with a fake
// nvidia-smi describing four GPUs (two A100 80GB, one A100 40GB, and an A100 80GB in MIG mode
// with a 3g.40gb and two 1g.10gb instances), and the simulated trainer. A gang gets its devices
// by UUID, a task too big for what is free waits with its reason and a reservation while a short
// one backfills, a long one waits reserved for the head, two small shared tasks share one
// device, and a task fits a MIG instance by its memory. A 3-GPU gang stands for "all the whole
// GPUs of the host": a gang cannot use MIG instances (CUDA shows a process one of them).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backendAvailable, backends } from '@trainyard/store/testing';
import { byType, eventsOf, waitTerminal } from './lifecycle-support';
import {
  eventually,
  installFakeNvidiaSmi,
  NVIDIA_SMI_FIXTURES,
  simulated,
  startServer,
  type FakeNvidiaSmi,
  type RunningServer,
} from './harness';

const UUID = {
  gpu0: 'GPU-2f6c0a8e-91d4-7b35-c0e2-58a1f4d93b17',
  gpu2: 'GPU-c47e19a3-5d20-8e6b-3f91-0ab2d6c8e754',
};
const MIN = 60_000;
/** A trainer that runs until cancelled (or its timeout). */
const long = { steps: 100_000, stepMs: 100 };

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`GPUs as resources on ${backend.kind}`, () => {
    let s: RunningServer;
    let dir: string;
    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'trainyard-resources-'));
      const smi = installFakeNvidiaSmi(dir, 'four-gpus-mig');
      s = await startServer({ backend, env: { TRAINYARD_NVIDIA_SMI: smi.path, TRAINYARD_KILL_GRACE_MS: '1000' } });
    });
    afterAll(async () => {
      await s?.dispose();
      rmSync(dir, { recursive: true, force: true });
    });

    const create = (name: string, resources: Record<string, unknown>, timeoutMs: number, sim: Record<string, unknown> = long) =>
      s.client.tasks.create.mutate(simulated(sim, { name, resources, timeoutMs }));
    const devicesOf = async (id: string) =>
      (
        await eventually(async () => {
          const t = await s.client.tasks.get.query({ id });
          return t.devices.length ? t : null;
        }, `${id} placed`)
      ).devices.map((g) => g.deviceId);

    it('shows the MIG instances under their GPU', async () => {
      const info = await s.client.system.gpuInfo.query();
      expect(info.devices.map((d) => [d.id, d.migMode, d.instances.map((i) => i.profile)])).toEqual([
        [0, false, []],
        [1, false, []],
        [2, false, []],
        [3, true, ['3g.40gb', '1g.10gb', '1g.10gb']],
      ]);
      const q = await s.client.queue.get.query();
      expect(q.devices.map((d) => d.id)).toEqual(['gpu0', 'gpu1', 'gpu2', 'gpu3/mig0', 'gpu3/mig1', 'gpu3/mig2']);
    });

    it('refuses a request this host cannot meet, naming the field', async () => {
      await expect(create('too many', { gpus: 4 }, 10 * MIN)).rejects.toThrow(/resources\.gpus: .*3 whole GPU/);
      await expect(create('too big', { gpuMemoryGb: 100 }, 10 * MIN)).rejects.toThrow(
        /resources\.gpuMemoryGb: 100 GB per GPU does not fit/,
      );
      expect((await s.client.tasks.list.query({})).items).toEqual([]);
    });

    it('places gangs, backfills around a blocked head, packs shared tasks, fits MIG by memory', async () => {
      // A 2-GPU gang starts on two whole GPUs (best fit: the 40 GB one first), both in CUDA_VISIBLE_DEVICES.
      const gang = await create('gang', { gpus: 2 }, 10 * MIN);
      expect(await devicesOf(gang.id)).toEqual(['gpu2', 'gpu0']);
      await eventually(async () => {
        const { lines } = await s.client.tasks.logs.query({ id: gang.id, limit: 100 });
        return lines.some((l) => l.line === `CUDA_VISIBLE_DEVICES=${UUID.gpu2},${UUID.gpu0}`);
      }, 'the gang sees both its GPUs');

      // A 3-GPU task cannot start (one whole GPU free): it waits, first in the queue, with a
      // reservation from the gang's deadline.
      const head = await create('head', { gpus: 3 }, 30 * MIN);
      expect(head.status).toBe('QUEUED');
      let q = await s.client.queue.get.query();
      const headRow = q.queued.find((x) => x.task.id === head.id)!;
      expect(headRow.reason.code).toBe('WAITING_FOR_DEVICES');
      expect(headRow.reason.message).toMatch(/^Needs 3 GPUs, 1 free\. First in the queue: reserved gpu2, gpu0, gpu1 from /);
      expect(q.reservation).toMatchObject({ taskId: head.id, deviceIds: ['gpu2', 'gpu0', 'gpu1'] });

      // A short task ends before the reserved start: it backfills on the free GPU and completes.
      const short = await create('short', {}, 2 * MIN, { steps: 3, stepMs: 20 });
      expect((await waitTerminal(s.client, short.id)).status).toBe('COMPLETED');
      const assigned = byType(await eventsOf(s.client, short.id), 'TaskAssigned')!;
      expect(assigned.data).toMatchObject({
        devices: [expect.objectContaining({ deviceId: 'gpu1', exclusive: true })],
        grounds: { policy: 'backfill', backfilled: true, ahead: 1, reservation: { taskId: head.id } },
      });

      // A long task that needs a whole 30 GB could delay the head: it waits, reserved for the head.
      const patient = await create('patient', { gpuMemoryGb: 30 }, 60 * MIN);
      q = await s.client.queue.get.query();
      const patientRow = q.queued.find((x) => x.task.id === patient.id)!;
      expect(patientRow.reason.code).toBe('RESERVED_FOR_HEAD');
      expect(patientRow.reason.message).toMatch(new RegExp(`reserved for task ${head.id} from`));

      // Two small shared tasks sit side by side on one device (the smallest that fits: a 1g.10gb instance).
      const a = await create('shared a', { shared: true, gpuMemoryGb: 3 }, 60 * MIN);
      const b = await create('shared b', { shared: true, gpuMemoryGb: 3 }, 60 * MIN);
      expect(await devicesOf(a.id)).toEqual(['gpu3/mig1']);
      expect(await devicesOf(b.id)).toEqual(['gpu3/mig1']);
      q = await s.client.queue.get.query();
      expect(q.devices.find((d) => d.id === 'gpu3/mig1')!.holders.map((h) => [h.taskId, h.memoryGb, h.exclusive])).toEqual(
        [
          [a.id, 3, false],
          [b.id, 3, false],
        ].sort((x, y) => String(x[0]).localeCompare(String(y[0]))),
      );

      // An exclusive task of 8 GB fits the other 1g.10gb instance, by its UUID.
      const small = await create('small', { gpuMemoryGb: 8 }, 60 * MIN);
      expect(await devicesOf(small.id)).toEqual(['gpu3/mig2']);
      await eventually(async () => {
        const { lines } = await s.client.tasks.logs.query({ id: small.id, limit: 100 });
        return lines.some((l) => l.line === 'CUDA_VISIBLE_DEVICES=MIG-1b6f0d83-e4a2-5c97-b358-6d2e9f0a7c14');
      }, 'the MIG task sees its instance');

      // The gang ends: the head starts on the three whole GPUs, ahead of the patient one.
      await s.client.tasks.cancel.mutate({ id: gang.id });
      expect((await devicesOf(head.id)).sort()).toEqual(['gpu0', 'gpu1', 'gpu2']);
      expect((await s.client.tasks.get.query({ id: patient.id })).status).toBe('QUEUED');

      for (const t of [head, patient, a, b, small]) await s.client.tasks.cancel.mutate({ id: t.id });
      for (const t of [head, patient, a, b, small]) expect((await waitTerminal(s.client, t.id)).status).toBe('CANCELLED');
      q = await s.client.queue.get.query();
      expect(q.devices.every((d) => d.holders.length === 0)).toBe(true);
    });
  });
}

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`a GPU leaves the inventory on ${backend.kind}`, () => {
    let s: RunningServer;
    let dir: string;
    let smi: FakeNvidiaSmi;
    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'trainyard-vanish-'));
      smi = installFakeNvidiaSmi(dir, 'four-gpus-mig');
      s = await startServer({
        backend,
        env: { TRAINYARD_NVIDIA_SMI: smi.path, TRAINYARD_KILL_GRACE_MS: '1000', TRAINYARD_GPU_REFRESH_MS: '200' },
      });
    });
    afterAll(async () => {
      await s?.dispose();
      rmSync(dir, { recursive: true, force: true });
    });

    it('a task on a GPU that vanished is stopped and fails as lost, naming the device; the device takes no new work', async () => {
      const first = await s.client.tasks.create.mutate(simulated(long, { name: 'on gpu2', timeoutMs: 10 * MIN }));
      const onGpu0 = await s.client.tasks.create.mutate(simulated(long, { name: 'on gpu0', timeoutMs: 10 * MIN }));
      await eventually(async () => (await s.client.tasks.get.query({ id: onGpu0.id })).status === 'TRAINING', 'training');
      expect((await s.client.tasks.get.query({ id: first.id })).devices.map((g) => g.deviceId)).toEqual(['gpu2']);
      expect((await s.client.tasks.get.query({ id: onGpu0.id })).devices.map((g) => g.deviceId)).toEqual(['gpu0']);
      // GPU 0 falls off the bus: nvidia-smi lists three GPUs.
      const gpus = readFileSync(join(NVIDIA_SMI_FIXTURES, 'four-gpus-mig/gpus.csv'), 'utf8');
      const list = readFileSync(join(NVIDIA_SMI_FIXTURES, 'four-gpus-mig/list.txt'), 'utf8');
      smi.set({
        'gpus.csv': gpus
          .split('\n')
          .filter((l) => !l.startsWith('0,'))
          .join('\n'),
        'list.txt': list
          .split('\n')
          .filter((l) => !l.startsWith('GPU 0:'))
          .join('\n'),
      });
      const lost = await waitTerminal(s.client, onGpu0.id);
      expect(lost.status).toBe('FAILED');
      expect(lost.error).toMatchObject({ reason: 'lost', message: expect.stringMatching(/^gpu0 is no longer in the inventory/) });
      expect((await s.client.tasks.get.query({ id: first.id })).status).toBe('TRAINING');
      const q = await s.client.queue.get.query();
      expect(q.devices.map((d) => d.id)).toEqual(['gpu1', 'gpu2', 'gpu3/mig0', 'gpu3/mig1', 'gpu3/mig2']);
      // A new whole-GPU task goes to gpu1, never to the GPU that left.
      const next = await s.client.tasks.create.mutate(simulated(long, { name: 'after', timeoutMs: 10 * MIN }));
      expect((await s.client.tasks.get.query({ id: next.id })).devices.map((g) => g.deviceId)).toEqual(['gpu1']);
      for (const t of [first, next]) await s.client.tasks.cancel.mutate({ id: t.id });
      for (const t of [first, next]) expect((await waitTerminal(s.client, t.id)).status).toBe('CANCELLED');
    });

    it('a service that started while nvidia-smi failed takes the GPUs it finds once nvidia-smi answers', async () => {
      smi.set({ 'gpus.csv': readFileSync(join(NVIDIA_SMI_FIXTURES, 'four-gpus-mig/gpus.csv'), 'utf8'), 'exit-code': '9' });
      s = await s.restart();
      // Nothing probed: the one fallback device, of unknown memory.
      expect((await s.client.queue.get.query()).devices.map((d) => [d.id, d.memoryGb])).toEqual([['gpu0', 0]]);
      smi.set({ 'exit-code': undefined, 'list.txt': readFileSync(join(NVIDIA_SMI_FIXTURES, 'four-gpus-mig/list.txt'), 'utf8') });
      const q = await eventually(async () => {
        const x = await s.client.queue.get.query();
        return x.devices.length === 6 ? x : null;
      }, 'the probed GPUs in the queue view');
      expect(q.devices.map((d) => d.id)).toEqual(['gpu0', 'gpu1', 'gpu2', 'gpu3/mig0', 'gpu3/mig1', 'gpu3/mig2']);
    });
  });
}
