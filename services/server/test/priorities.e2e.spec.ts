// Priorities and quotas, end to end on both databases: the real server over HTTP on a fixed
// inventory of two GPUs, users alice and bob (added to the database before the service starts),
// the admin's quotas.set, and the simulated trainer. A task over its owner's GPU quota waits with
// reason QUOTA while another user's starts; an urgent task starts before a low one queued
// earlier; a class above the user's cap, an unknown class, and a gang bigger than the quota are
// refused naming the field.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type TrainyardClient } from '@trainyard/client';
import { addUser, openDatabase, storageFromEnv } from '@trainyard/store';
import { backendAvailable, backends } from '@trainyard/store/testing';
import { waitTerminal } from './lifecycle-support';
import { DATASET, eventually, REPO_ROOT, simulated, newServiceData, startServer, type RunningServer } from './harness';

const MIN = 60_000;
const CLI = join(REPO_ROOT, 'packages/cli/bin/trainyard.mjs');

/** `trainyard ...args` as a child process against `url` (exit code and stdout). */
function trainyard(url: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) =>
    execFile(process.execPath, [CLI, ...args], { cwd: REPO_ROOT, env: { ...process.env, TRAINYARD_URL: url } }, (err, stdout, stderr) =>
      resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    ),
  );
}
const long = { steps: 100_000, stepMs: 100 };
const TWO_GPUS = JSON.stringify([
  { name: 'A100', memoryGb: 80 },
  { name: 'A100', memoryGb: 80 },
]);

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`priorities and quotas on ${backend.kind}`, () => {
    let s: RunningServer;
    let admin: TrainyardClient;
    let alice: TrainyardClient;
    let bob: TrainyardClient;
    beforeAll(async () => {
      const { dataDir, schema, env: dbEnv } = await newServiceData(backend, 'trainyard-priorities-');
      const database = await openDatabase(storageFromEnv(dbEnv));
      for (const name of ['alice', 'bob']) await addUser(database.db, { name, admin: false });
      await database.close();
      // Preemption off: these cases are about the queue's order and quotas (preemption.e2e has its own);
      // with the default (priority) the urgent task would also preempt a fill task, racing the cancels here.
      s = await startServer({
        backend,
        dataDir,
        ...(schema ? { schema } : {}),
        env: { TRAINYARD_GPU_INVENTORY: TWO_GPUS, TRAINYARD_PREEMPTION: 'off' },
      });
      // Local mode: every caller is an admin; the user header names who submits.
      admin = s.client;
      alice = await connect({ url: s.url, user: 'alice' });
      bob = await connect({ url: s.url, user: 'bob' });
    });
    afterAll(async () => {
      await s?.dispose();
    });

    const reasonOf = async (id: string) => (await admin.queue.get.query()).queued.find((q) => q.task.id === id)?.reason;

    it('a task over its owner’s GPU quota waits with QUOTA while another user’s starts; it starts when the first ends', async () => {
      const q = await admin.quotas.set.mutate({ user: 'alice', maxGpus: 1 });
      expect(q).toMatchObject({ name: 'alice', maxGpus: 1, gpuHoursUsed: 0 });
      const a1 = await alice.tasks.create.mutate(simulated(long, { name: 'a1', timeoutMs: 10 * MIN }));
      const a2 = await alice.tasks.create.mutate(simulated(long, { name: 'a2', timeoutMs: 10 * MIN }));
      expect([a1.status, a2.status]).toEqual(['PREPARING', 'QUEUED']);
      expect(await reasonOf(a2.id)).toMatchObject({
        code: 'QUOTA',
        message: expect.stringMatching(/^alice may use 1 GPU\(s\) at once and uses 1/),
      });
      const b1 = await bob.tasks.create.mutate(simulated(long, { name: 'b1', timeoutMs: 10 * MIN }));
      expect(b1.status).toBe('PREPARING');
      await alice.tasks.cancel.mutate({ id: a1.id });
      await eventually(async () => (await admin.tasks.get.query({ id: a2.id })).devices.length > 0, 'a2 starts once a1 has ended');
      const quotas = await admin.quotas.get.query();
      expect(quotas.find((x) => x.name === 'alice')).toMatchObject({ maxGpus: 1, weight: 1 });
      for (const t of [a2, b1]) await admin.tasks.cancel.mutate({ id: t.id });
      for (const t of [a2, b1]) await waitTerminal(admin, t.id);
      await admin.quotas.set.mutate({ user: 'alice', maxGpus: null });
    });

    it('an urgent task starts before a low one queued earlier', async () => {
      const fill = [
        await bob.tasks.create.mutate(simulated(long, { name: 'fill 1', timeoutMs: 10 * MIN })),
        await bob.tasks.create.mutate(simulated(long, { name: 'fill 2', timeoutMs: 10 * MIN })),
      ];
      const low = await bob.tasks.create.mutate(simulated(long, { name: 'low', priority: 'low', timeoutMs: 10 * MIN }));
      const urgent = await alice.tasks.create.mutate(simulated(long, { name: 'urgent', priority: 'urgent', timeoutMs: 10 * MIN }));
      expect([low.status, urgent.status]).toEqual(['QUEUED', 'QUEUED']);
      const queue = await admin.queue.get.query();
      expect(queue.queued.map((q) => q.task.id)).toEqual([urgent.id, low.id]);
      await bob.tasks.cancel.mutate({ id: fill[0]!.id });
      await eventually(async () => (await admin.tasks.get.query({ id: urgent.id })).devices.length > 0, 'the urgent task starts');
      expect((await admin.tasks.get.query({ id: low.id })).status).toBe('QUEUED');
      for (const t of [fill[1]!, low, urgent]) await admin.tasks.cancel.mutate({ id: t.id });
      for (const t of [fill[1]!, low, urgent]) await waitTerminal(admin, t.id);
    });

    it('the CLI sets and lists quotas, and submits with a priority', async () => {
      const set = await trainyard(s.url, ['quota', 'set', 'alice', '--max-gpus', '2', '--max-priority', 'high', '--weight', '2', '--json']);
      expect(set.code, set.stderr).toBe(0);
      expect(JSON.parse(set.stdout)).toMatchObject({ name: 'alice', maxGpus: 2, maxPriority: 'high', weight: 2 });
      const list = await trainyard(s.url, ['quota', 'list']);
      expect(list.stdout).toMatch(/^alice\s+2\s+.*high\s+2\s/m);
      const high = await trainyard(s.url, [
        '--user',
        'alice',
        'submit',
        '--model',
        'Qwen/Qwen2.5-Coder-0.5B-Instruct',
        '--dataset',
        DATASET,
        '--priority',
        'urgent',
        '--simulate',
        '{"steps":1}',
      ]);
      expect(high.code).not.toBe(0);
      expect(high.stderr).toMatch(/priority: alice may submit up to priority high/);
      await trainyard(s.url, ['quota', 'set', 'alice', '--max-gpus', 'none', '--max-priority', 'none', '--weight', '1']);
    });

    it('refuses a class above the user’s cap, an unknown class, and a gang bigger than the quota, naming the field', async () => {
      await admin.quotas.set.mutate({ user: 'bob', maxPriority: 'high', maxGpus: 1 });
      await expect(bob.tasks.create.mutate(simulated(long, { priority: 'urgent' }))).rejects.toThrow(
        /priority: bob may submit up to priority high/,
      );
      await expect(bob.tasks.create.mutate(simulated(long, { priority: 'asap' }))).rejects.toThrow(
        /priority: no priority class named asap; the classes are low, normal, high, urgent/,
      );
      await expect(bob.tasks.create.mutate(simulated(long, { resources: { gpus: 2 } }))).rejects.toThrow(
        /resources\.gpus: asks for 2 GPUs but bob may hold at most 1/,
      );
      await expect(admin.quotas.set.mutate({ user: 'carol', maxGpus: 1 })).rejects.toThrow(/user: no user named carol/);
      await expect(admin.quotas.set.mutate({ user: 'bob', maxPriority: 'asap' })).rejects.toThrow(
        /maxPriority: no priority class named asap/,
      );
    });
  });
}
