// The task lifecycle end to end, over real HTTP with the typed client, on PGlite and Postgres:
// the FIFO queue of the seed's FAQ, cancelling in every state, timeouts, failing and crashing
// trainers, a trainer that cannot start, listing/deleting, the long-queue warning, and a GPU held
// by another program (fake nvidia-smi). Waits are polls with generous limits, never durations.
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TaskView, TrainyardClient } from '@trainyard/client';
import { backendAvailable, backends } from '@trainyard/store/testing';
import { DATASET, eventually, simulated, startServer, type RunningServer } from './harness';
import {
  byType,
  drain,
  eventsOf,
  fakeNvidiaSmi,
  pos,
  rejection,
  serverOutputOnFailure,
  sleep,
  typesOf,
  waitFor,
  waitTerminal,
  WAIT_MS,
  type FakeGpu,
} from './lifecycle-support';

/** Runs long enough to be cancelled, timed out or to hold the slot (20 s), stopped by each test. */
const LONG = { steps: 200, stepMs: 100 };
/** Done in a moment. */
const SHORT = { steps: 2, stepMs: 20 };

/** Each task started only after the previous one finished, and they finished in this order. */
async function expectRanInOrder(client: TrainyardClient, ids: string[]): Promise<void> {
  const tasks = await Promise.all(ids.map((id) => client.tasks.get.query({ id })));
  const logs = await Promise.all(ids.map((id) => eventsOf(client, id)));
  for (let i = 1; i < ids.length; i++) {
    const prev = tasks[i - 1]!,
      next = tasks[i]!;
    expect(prev.finishedAt, `${prev.id} finished`).not.toBeNull();
    expect(next.finishedAt, `${next.id} finished`).not.toBeNull();
    // Times come from the log (millisecond resolution, one clock): never out of order.
    expect(Date.parse(next.startedAt!)).toBeGreaterThanOrEqual(Date.parse(prev.finishedAt!));
    expect(Date.parse(next.finishedAt!)).toBeGreaterThanOrEqual(Date.parse(prev.finishedAt!));
    // Positions are strict: the next one was assigned after the previous one's terminal event.
    const prevEnd = logs[i - 1]!.find((e) => ['TaskCompleted', 'TaskFailed', 'TaskCancelled'].includes(e.type));
    const nextStart = byType(logs[i]!, 'TaskAssigned');
    expect(prevEnd, `${prev.id} has a terminal event`).toBeDefined();
    expect(nextStart, `${next.id} was assigned`).toBeDefined();
    expect(pos(nextStart)).toBeGreaterThan(pos(prevEnd));
  }
}

async function logText(client: TrainyardClient, id: string): Promise<string> {
  const { lines } = await client.tasks.logs.query({ id, limit: 5000 });
  return lines.map((l) => l.line).join('\n');
}

/** Wait until the trainer printed its banner (its SIGTERM handler is installed by then). */
const waitForBanner = (client: TrainyardClient, id: string) =>
  eventually(async () => (await logText(client, id)).includes('trainyard simulated trainer'), `trainer of ${id} to start`, WAIT_MS);

const codes = (t: { warnings: { code: string }[] }) => t.warnings.map((w) => w.code);

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`lifecycle on ${backend.kind}`, () => {
    describe('one GPU slot, kill grace 500 ms, queue warning above 2', () => {
      let s: RunningServer;
      let c: TrainyardClient;
      beforeAll(async () => {
        s = await startServer({ backend, env: { TRAINYARD_KILL_GRACE_MS: '500', TRAINYARD_QUEUE_WARN: '2' } });
        c = s.client;
      });
      serverOutputOnFailure(() => s);
      afterEach(async () => {
        await drain(c);
      });
      afterAll(async () => {
        await s?.dispose();
      });

      it('FAQ: three tasks at once, one runs (PREPARING then TRAINING), two queue at positions 1 and 2, they finish in queue order', async () => {
        // Each runs long enough that the first is still running when the queue is read, on a
        // loaded machine too (the creates and the read took longer than a 900 ms run there).
        const sim = { steps: 4, stepMs: 150, startupMs: 1500 };
        const created = await Promise.all([1, 2, 3].map((i) => c.tasks.create.mutate(simulated(sim, { name: `faq at once ${i}` }))));
        const running = created.filter((t) => t.status === 'PREPARING');
        const waiting = created.filter((t) => t.status === 'QUEUED');
        expect(running, JSON.stringify(created.map((t) => t.status))).toHaveLength(1);
        expect(waiting).toHaveLength(2);

        const q = await c.queue.get.query();
        expect(q.devices).toHaveLength(1);
        expect(q.devices[0]!.blockedReason).toBeNull();
        expect(q.queuedCount).toBe(2);
        expect(q.queued.map((x) => x.position)).toEqual([1, 2]);
        expect(new Set(q.queued.map((x) => x.task.id))).toEqual(new Set(waiting.map((t) => t.id)));
        // Queue order is the order of the TaskQueued events.
        expect(BigInt(q.queued[0]!.task.queuedPosition!)).toBeLessThan(BigInt(q.queued[1]!.task.queuedPosition!));
        const order = [running[0]!.id, ...q.queued.map((x) => x.task.id)];

        for (const id of order) expect((await waitTerminal(c, id)).status).toBe('COMPLETED');
        await expectRanInOrder(c, order);

        // The one that ran at once never queued and went PREPARING → TRAINING → COMPLETED.
        const first = typesOf(await eventsOf(c, order[0]));
        expect(first).not.toContain('TaskQueued');
        expect(first.slice(0, 4)).toEqual(['TaskSubmitted', 'TaskAssigned', 'TrainerSpawned', 'TrainingStarted']);
        expect(first[first.length - 1]).toBe('TaskCompleted');
        for (const id of order.slice(1)) {
          const types = typesOf(await eventsOf(c, id));
          expect(types.slice(0, 3)).toEqual(['TaskSubmitted', 'TaskQueued', 'TaskAssigned']);
          expect(types).toContain('TrainingStarted');
        }
      });

      it('FAQ: three tasks back to back queue and finish in submission order', async () => {
        const sim = { steps: 3, stepMs: 150, startupMs: 300 };
        // The first still runs when the queue is read after three creates, on a loaded machine too.
        const a = await c.tasks.create.mutate(simulated({ ...sim, startupMs: 2500 }, { name: 'faq 1' }));
        const b = await c.tasks.create.mutate(simulated(sim, { name: 'faq 2' }));
        const d = await c.tasks.create.mutate(simulated(sim, { name: 'faq 3' }));
        expect([a.status, b.status, d.status]).toEqual(['PREPARING', 'QUEUED', 'QUEUED']);
        const q = await c.queue.get.query();
        expect(q.devices[0]!.holders[0]?.taskId).toBe(a.id);
        expect(q.queued.map((x) => [x.position, x.task.id])).toEqual([
          [1, b.id],
          [2, d.id],
        ]);
        for (const t of [a, b, d]) expect((await waitTerminal(c, t.id)).status).toBe('COMPLETED');
        await expectRanInOrder(c, [a.id, b.id, d.id]);
      });

      it('cancel QUEUED: cancelled at once, never assigned or spawned', async () => {
        const blocker = await c.tasks.create.mutate(simulated(LONG, { name: 'blocker' }));
        const q = await c.tasks.create.mutate(simulated(SHORT, { name: 'to cancel while queued' }));
        expect(q.status).toBe('QUEUED');
        const cancelled = await c.tasks.cancel.mutate({ id: q.id, reason: 'not needed' });
        expect(cancelled).toMatchObject({ status: 'CANCELLED', cancelReason: 'not needed', trainer: null, startedAt: null, attempt: 0 });
        expect(cancelled.finishedAt).not.toBeNull();
        expect(typesOf(await eventsOf(c, q.id))).toEqual(['TaskSubmitted', 'TaskQueued', 'TaskCancelled']);
        const queue = await c.queue.get.query();
        expect(queue.queued.map((x) => x.task.id)).not.toContain(q.id);
        expect(queue.devices[0]!.holders[0]?.taskId).toBe(blocker.id);
        // Nothing ever ran for it.
        expect(await logText(c, q.id)).toBe('');
      });

      it('cancel PREPARING: the trainer still starting up gets SIGTERM and the task is CANCELLED', async () => {
        const t = await c.tasks.create.mutate(simulated({ ...SHORT, startupMs: 600_000 }, { name: 'slow start' }));
        await waitFor(c, t.id, 'PREPARING', (x) => x.trainer !== null);
        await waitForBanner(c, t.id);
        const asked = await c.tasks.cancel.mutate({ id: t.id });
        expect(asked.status).toBe('PREPARING');
        expect(asked.stop).toMatchObject({ reason: 'cancel', by: 'e2e' });
        const done = await waitTerminal(c, t.id);
        expect(done).toMatchObject({ status: 'CANCELLED', trainingAt: null, error: null, devices: [] });
        const types = typesOf(await eventsOf(c, t.id));
        expect(types).not.toContain('TrainingStarted');
        expect(types.slice(-2)).toEqual(['StopRequested', 'TaskCancelled']);
        expect(await logText(c, t.id)).toContain('received SIGTERM');
        expect((await c.queue.get.query()).devices[0]!.holders).toEqual([]);
      });

      it('cancel TRAINING: the trainer exits on SIGTERM, the task is CANCELLED and the next queued one starts', async () => {
        const a = await c.tasks.create.mutate(simulated(LONG, { name: 'training, to cancel' }));
        const b = await c.tasks.create.mutate(simulated(SHORT, { name: 'next in line' }));
        expect(b.status).toBe('QUEUED');
        await waitFor(c, a.id, 'TRAINING');
        await waitForBanner(c, a.id);
        const asked = await c.tasks.cancel.mutate({ id: a.id, reason: 'wrong dataset' });
        expect(asked).toMatchObject({ status: 'TRAINING', stop: { reason: 'cancel', message: 'wrong dataset' } });
        const done = await waitTerminal(c, a.id);
        expect(done).toMatchObject({ status: 'CANCELLED', cancelReason: 'wrong dataset', error: null });
        expect(await logText(c, a.id)).toContain('received SIGTERM, saving checkpoint');
        expect((await waitTerminal(c, b.id)).status).toBe('COMPLETED');
        await expectRanInOrder(c, [a.id, b.id]);
      });

      it('cancel a trainer that ignores SIGTERM: SIGKILL after the grace period, then CANCELLED', async () => {
        const t = await c.tasks.create.mutate(simulated({ ...LONG, ignoreSigterm: true }, { name: 'stubborn' }));
        await waitFor(c, t.id, 'TRAINING');
        await waitForBanner(c, t.id);
        await c.tasks.cancel.mutate({ id: t.id });
        // A second cancel while it stops is refused: a stop was already requested.
        const again = await rejection(c.tasks.cancel.mutate({ id: t.id }));
        expect(again.code).toBe('CONFLICT');
        const done = await waitTerminal(c, t.id);
        expect(done.status).toBe('CANCELLED');
        expect(await logText(c, t.id)).toContain('warning: ignoring SIGTERM');
        await eventually(
          async () => s.output.some((l) => l.includes(`task ${t.id}: trainer ignored SIGTERM for 500 ms, sending SIGKILL`)),
          'the server to log the SIGKILL',
          WAIT_MS,
        );
      });

      it('cancelling a finished task is a CONFLICT naming the task, its status and the command', async () => {
        const t = await c.tasks.create.mutate(simulated(SHORT, { name: 'done already' }));
        expect((await waitTerminal(c, t.id)).status).toBe('COMPLETED');
        const err = await rejection(c.tasks.cancel.mutate({ id: t.id }));
        expect(err.code).toBe('CONFLICT');
        expect(err.httpStatus).toBe(409);
        expect(err.message).toContain(t.id);
        expect(err.message).toContain('COMPLETED');
        expect(err.message).toContain('cancel');
        expect(err.message).toContain('has already ended');
        expect(err.raw.data?.task).toEqual({ id: t.id, status: 'COMPLETED', command: 'cancel' });
        // The refused command left no trace in the log.
        expect(typesOf(await eventsOf(c, t.id))).not.toContain('StopRequested');
      });

      it('timeout: FAILED with reason timeout, the slot is freed and the next queued task starts', async () => {
        const a = await c.tasks.create.mutate(simulated(LONG, { name: 'too slow', timeoutMs: 1500 }));
        const b = await c.tasks.create.mutate(simulated(SHORT, { name: 'after the slow one' }));
        expect(b.status).toBe('QUEUED');
        const done = await waitTerminal(c, a.id);
        expect(done.status).toBe('FAILED');
        expect(done.error).toMatchObject({ reason: 'timeout' });
        expect(done.error!.message).toContain('timed out after 1.5 s');
        expect(done.stop).toMatchObject({ reason: 'timeout', by: 'timeout' });
        expect((await waitTerminal(c, b.id)).status).toBe('COMPLETED');
        await expectRanInOrder(c, [a.id, b.id]);
      });

      it('a failing trainer: FAILED with its exit code and the traceback from its last stderr lines', async () => {
        const t = await c.tasks.create.mutate(simulated({ steps: 5, stepMs: 20, failAtStep: 2, exitCode: 3 }, { name: 'fails' }));
        const done = await waitTerminal(c, t.id);
        expect(done.status).toBe('FAILED');
        expect(done.error).toMatchObject({ reason: 'exit', exitCode: 3, signal: null });
        const msg = done.error!.message;
        expect(msg).toContain('exited with code 3');
        expect(msg).toContain('Traceback (most recent call last):');
        expect(msg).toContain('RuntimeError: CUDA out of memory (simulated failure at step 2)');
        // The slot is free again.
        expect((await c.queue.get.query()).devices[0]!.holders).toEqual([]);
      });

      it('a crashing trainer: FAILED with the signal that killed it', async () => {
        const t = await c.tasks.create.mutate(simulated({ steps: 4, stepMs: 20, crashSignal: 'SIGKILL' }, { name: 'crashes' }));
        const done = await waitTerminal(c, t.id);
        expect(done.status).toBe('FAILED');
        expect(done.error).toMatchObject({ reason: 'signal', signal: 'SIGKILL', exitCode: null });
        expect(done.error!.message).toContain('killed by SIGKILL');
      });

      it('tasks.list: newest first, cursor pagination, status filter; tasks.delete only for finished tasks', async () => {
        const blocker = await c.tasks.create.mutate(simulated(LONG, { name: 'list blocker' }));
        const mine: TaskView[] = [];
        for (const i of [1, 2, 3]) mine.push(await c.tasks.create.mutate(simulated(SHORT, { name: `listed ${i}` })));
        expect(mine.map((t) => t.status)).toEqual(['QUEUED', 'QUEUED', 'QUEUED']);

        const firstPage = await c.tasks.list.query({ limit: 2 });
        expect(firstPage.items.map((t) => t.id)).toEqual([mine[2]!.id, mine[1]!.id]);
        expect(firstPage.nextCursor).not.toBeNull();
        // Page through everything two at a time: same as one big page, newest first, no repeats.
        const paged: TaskView[] = [...firstPage.items];
        let cursor = firstPage.nextCursor;
        while (cursor) {
          const page = await c.tasks.list.query({ limit: 2, cursor });
          expect(page.items.length).toBeGreaterThan(0);
          paged.push(...page.items);
          cursor = page.nextCursor;
        }
        const all = await c.tasks.list.query({ limit: 200 });
        expect(all.nextCursor).toBeNull();
        expect(paged.map((t) => t.id)).toEqual(all.items.map((t) => t.id));
        expect(new Set(paged.map((t) => t.id)).size).toBe(paged.length);
        expect(paged.map((t) => t.id).slice(0, 4)).toEqual([mine[2]!.id, mine[1]!.id, mine[0]!.id, blocker.id]);
        for (let i = 1; i < paged.length; i++) {
          const a = paged[i - 1]!,
            b = paged[i]!;
          expect(a.createdAt > b.createdAt || (a.createdAt === b.createdAt && a.id > b.id), `${a.id} before ${b.id}`).toBe(true);
        }
        const badCursor = await rejection(c.tasks.list.query({ cursor: 'not-a-cursor' }));
        expect(badCursor.code).toBe('BAD_REQUEST');

        // Status filter, one status and several.
        const queued = await c.tasks.list.query({ status: 'QUEUED' });
        expect(queued.items.map((t) => t.id)).toEqual([mine[2]!.id, mine[1]!.id, mine[0]!.id]);
        const live = await c.tasks.list.query({ status: ['QUEUED', 'PREPARING', 'TRAINING'] });
        expect(live.items.map((t) => t.id)).toEqual([mine[2]!.id, mine[1]!.id, mine[0]!.id, blocker.id]);
        const completed = await c.tasks.list.query({ status: 'COMPLETED', limit: 200 });
        expect(completed.items.every((t) => t.status === 'COMPLETED')).toBe(true);

        // Delete: refused while queued or running, allowed once finished.
        const victim = mine[0]!;
        for (const id of [victim.id, blocker.id]) {
          const err = await rejection(c.tasks.delete.mutate({ id }));
          expect(err.code).toBe('CONFLICT');
          expect(err.message).toContain(id);
          expect(err.message).toContain('delete');
        }
        await c.tasks.cancel.mutate({ id: victim.id });
        expect(await c.tasks.delete.mutate({ id: victim.id })).toEqual({ id: victim.id, deleted: true });
        const gone = await rejection(c.tasks.get.query({ id: victim.id }));
        expect(gone.code).toBe('NOT_FOUND');
        expect(gone.message).toContain(victim.id);
        expect((await rejection(c.tasks.delete.mutate({ id: victim.id }))).code).toBe('NOT_FOUND');
        expect((await rejection(c.tasks.cancel.mutate({ id: victim.id }))).code).toBe('NOT_FOUND');
        expect((await c.tasks.list.query({ limit: 200 })).items.map((t) => t.id)).not.toContain(victim.id);
        // The audit log keeps its whole history.
        expect(typesOf(await eventsOf(c, victim.id))).toEqual(['TaskSubmitted', 'TaskQueued', 'TaskCancelled', 'TaskDeleted']);
        const replayed = await c.events.replay.query({ taskId: victim.id });
        expect(replayed.state).toMatchObject({ status: 'CANCELLED', deleted: true });
      });

      it('queue.get warns when more than TRAINYARD_QUEUE_WARN (2) tasks are queued', async () => {
        await c.tasks.create.mutate(simulated(LONG, { name: 'queue blocker' }));
        const q1 = await c.tasks.create.mutate(simulated(SHORT, { name: 'q1' }));
        const q2 = await c.tasks.create.mutate(simulated(SHORT, { name: 'q2' }));
        expect(codes(q1)).not.toContain('QUEUE_LONG');
        expect(codes(q2)).not.toContain('QUEUE_LONG');
        const two = await c.queue.get.query();
        expect(two.queuedCount).toBe(2);
        expect(two.warning).toBeNull();
        const q3 = await c.tasks.create.mutate(simulated(SHORT, { name: 'q3' }));
        expect(q3.status).toBe('QUEUED');
        // Two were already queued when it came: it is told it waits for them.
        const long = q3.warnings.find((w) => w.code === 'QUEUE_LONG');
        expect(long?.message).toContain('2 tasks are already queued');
        const three = await c.queue.get.query();
        expect(three.queuedCount).toBe(3);
        expect(three.queued.map((x) => x.task.id)).toEqual([q1.id, q2.id, q3.id]);
        expect(three.warning).toContain('3 tasks are queued (more than 2)');
        // A page of the queue: the first to start, and how many wait in all.
        const page = await c.queue.get.query({ limit: 2 });
        expect(page.queued.map((x) => [x.position, x.task.id])).toEqual([
          [1, q1.id],
          [2, q2.id],
        ]);
        expect(page.queuedCount).toBe(3);
        expect((await rejection(c.queue.get.query({ limit: 0 }))).code).toBe('BAD_REQUEST');
      });
    });

    describe('a trainer program that does not exist', () => {
      let s: RunningServer;
      beforeAll(async () => {
        s = await startServer({ backend, env: { TRAINYARD_TRAINER: '["/nonexistent/trainer"]' } });
      });
      serverOutputOnFailure(() => s);
      afterAll(async () => {
        await s?.dispose();
      });

      it('FAILED with reason spawn and a message that says what to check; the next task gets the slot', async () => {
        const c = s.client;
        const a = await c.tasks.create.mutate(simulated(SHORT, { name: 'no trainer 1' }));
        const b = await c.tasks.create.mutate(simulated(SHORT, { name: 'no trainer 2' }));
        for (const t of [a, b]) {
          const done = await waitTerminal(c, t.id);
          expect(done.status).toBe('FAILED');
          expect(done.error).toMatchObject({ reason: 'spawn', exitCode: null, signal: null });
          expect(done.error!.message).toContain('/nonexistent/trainer');
          expect(done.error!.message).toContain('ENOENT');
          expect(done.error!.message).toContain('Check TRAINYARD_TRAINER');
          expect(typesOf(await eventsOf(c, t.id))).not.toContain('TrainerSpawned');
        }
        await expectRanInOrder(c, [a.id, b.id]);
        expect((await c.queue.get.query()).devices[0]!.holders).toEqual([]);
      });
    });

    describe('queued tasks whose dataset was removed: each fails at launch', () => {
      let s: RunningServer;
      let datasets: string;
      beforeAll(async () => {
        datasets = mkdtempSync(join(tmpdir(), 'trainyard-gone-datasets-'));
        s = await startServer({ backend, env: { TRAINYARD_DATASETS_ROOT: datasets } });
      });
      serverOutputOnFailure(() => s);
      afterAll(async () => {
        if (s) await drain(s.client).catch(() => {});
        await s?.dispose();
        rmSync(datasets, { recursive: true, force: true });
      });

      it('the service answers while the queue fails task after task (a launch that fails at once yields to requests first)', async () => {
        const c = s.client;
        const dataset = join(datasets, 'gone.jsonl');
        copyFileSync(DATASET, dataset);
        const holder = await c.tasks.create.mutate(simulated(LONG, { name: 'holds the slot', datasetPath: dataset }));
        await waitFor(c, holder.id, 'TRAINING');
        const QUEUED = 300;
        const { tasks } = await c.tasks.createMany.mutate({
          tasks: Array.from({ length: QUEUED }, (_, i) => simulated(SHORT, { name: `gone ${i}`, datasetPath: dataset })),
        });
        rmSync(dataset);
        await c.tasks.cancel.mutate({ id: holder.id });
        // The first answer that shows the failures under way must come while tasks still wait: a
        // service whose event loop the failures kept busy answered only once all had failed.
        const midway = await eventually(async () => {
          const q = await c.queue.get.query();
          return q.queuedCount < QUEUED ? q : null;
        }, 'the first queued task to fail');
        expect(midway.queuedCount).toBeGreaterThan(0);
        const last = await waitTerminal(c, tasks[QUEUED - 1]!.id);
        expect(last.status).toBe('FAILED');
        expect(last.error!.message).toContain('no longer there');
        expect((await c.queue.get.query()).queuedCount).toBe(0);
      });
    });

    describe('a GPU mostly held by another program (fake nvidia-smi)', () => {
      const GPU = (usedMiB: number) =>
        `0, GPU-4b1c9f3e-7d2a-5e8b-a1c6-93f0d2e4b7a1, NVIDIA GeForce RTX 3060, 12288, ${usedMiB}, 35, [N/A]\n`;
      const VLLM = 'GPU-4b1c9f3e-7d2a-5e8b-a1c6-93f0d2e4b7a1, 4242, /usr/local/bin/vllm, 9216\n';
      let s: RunningServer;
      let fake: FakeGpu;
      let dir: string;
      beforeAll(async () => {
        dir = mkdtempSync(join(tmpdir(), 'trainyard-fake-gpu-'));
        fake = fakeNvidiaSmi(dir);
        fake.set(GPU(9400), VLLM);
        s = await startServer({ backend, env: { TRAINYARD_NVIDIA_SMI: fake.path, TRAINYARD_EXTERNAL_GPU_SHARE: '0.5' } });
      });
      serverOutputOnFailure(() => s);
      afterAll(async () => {
        if (s) await drain(s.client).catch(() => {});
        await s?.dispose();
        rmSync(dir, { recursive: true, force: true });
      });

      it('a task waits QUEUED behind the other program, with GPU_BUSY and OOM_RISK warnings, and starts once the memory is freed', async () => {
        const c = s.client;
        const gpu = await c.system.gpuInfo.query();
        expect(gpu.available).toBe(true);
        expect(gpu.devices).toHaveLength(1);
        // External memory is the GPU's used memory minus ours: 9400 MiB.
        expect(gpu.devices[0]).toMatchObject({ id: 0, name: 'NVIDIA GeForce RTX 3060', memoryGb: 12, externalMemoryGb: 9.2 });
        expect(gpu.devices[0]!.processes).toEqual([{ pid: 4242, name: '/usr/local/bin/vllm', memoryUsedGb: 9, ours: false }]);

        const t = await c.tasks.create.mutate(simulated(SHORT, { name: 'waits for the GPU' }));
        expect(t.status).toBe('QUEUED');
        expect(codes(t)).not.toContain('NO_GPU');
        expect(codes(t)).not.toContain('OOM_RISK'); // 0.5B fits in 12 GB
        const busy = t.warnings.find((w) => w.code === 'GPU_BUSY');
        expect(busy?.message).toContain('/usr/local/bin/vllm (pid 4242');

        const q = await c.queue.get.query();
        expect(q.devices).toHaveLength(1);
        expect(q.devices[0]!.holders).toEqual([]);
        expect(q.devices[0]!.blockedReason).toContain('/usr/local/bin/vllm (pid 4242, 9 GB)');
        expect(q.devices[0]!.blockedReason).toContain('TRAINYARD_EXTERNAL_GPU_SHARE');
        expect(q.queued.map((x) => x.task.id)).toEqual([t.id]);

        // A 7B model with 4096 tokens on a 12 GB GPU: warned before it runs out of memory.
        const big = await c.tasks.create.mutate(
          simulated(SHORT, {
            model: 'Qwen/Qwen2.5-Coder-7B-Instruct',
            name: 'too big',
            config: { epochs: 1, maxLength: 4096, simulate: SHORT },
          }),
        );
        const oom = big.warnings.find((w) => w.code === 'OOM_RISK');
        expect(oom).toMatchObject({ level: 'high' });
        expect(oom!.message).toContain('12GB');
        expect(oom!.message).toContain('lower max length from 4096 to 2048');
        expect((await c.tasks.cancel.mutate({ id: big.id })).status).toBe('CANCELLED');

        // The scheduler keeps retrying (every second) and still does not start it.
        await sleep(2500);
        expect((await c.tasks.get.query({ id: t.id })).status).toBe('QUEUED');

        // The other program exits: the next GPU refresh unblocks the slot and the task runs.
        fake.set(GPU(300), '');
        const done = await waitTerminal(c, t.id);
        expect(done.status).toBe('COMPLETED');
        expect(done.devices).toEqual([]);
        const assigned = byType(await eventsOf(c, t.id), 'TaskAssigned');
        expect(assigned?.data).toMatchObject({ devices: [expect.objectContaining({ deviceId: 'gpu0', gpuIndex: 0 })] });
        // The trainer gets its GPU by UUID, and nvidia-smi's order (PCI bus) for anything counted by index.
        const lines = (await c.tasks.logs.query({ id: t.id })).lines.map((l) => l.line);
        expect(lines).toEqual(
          expect.arrayContaining(['CUDA_VISIBLE_DEVICES=GPU-4b1c9f3e-7d2a-5e8b-a1c6-93f0d2e4b7a1', 'CUDA_DEVICE_ORDER=PCI_BUS_ID']),
        );
        expect((await c.queue.get.query()).devices[0]!.blockedReason).toBeNull();
      });
    });
  });
}
