// Preemption with checkpoint and resume, end to end on both databases: the real server over HTTP
// on one GPU, the simulated trainer (it checkpoints on SIGUSR1 and resumes for real). A low task
// training when an urgent one arrives is asked for a checkpoint, stopped, requeued in its place,
// and, once the urgent one has finished, completes from its checkpoint.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backendAvailable, backends } from '@trainyard/store/testing';
import { eventsOf, waitTerminal } from './lifecycle-support';
import { eventually, simulated, startServer, type RunningServer } from './harness';

const MIN = 60_000;
const ONE_GPU = JSON.stringify([{ name: 'A100', memoryGb: 80 }]);

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`preemption on ${backend.kind}`, () => {
    let s: RunningServer;
    beforeAll(async () => {
      s = await startServer({ backend, env: { TRAINYARD_GPU_INVENTORY: ONE_GPU, TRAINYARD_PREEMPT_GRACE_MS: '20000' } });
    });
    afterAll(async () => {
      await s?.dispose();
    });

    it('a low task is checkpointed, preempted, requeued, and completes from its checkpoint after the urgent one', async () => {
      const c = s.client;
      const low = await c.tasks.create.mutate(simulated({ steps: 60, stepMs: 100 }, { name: 'low', priority: 'low', timeoutMs: 10 * MIN }));
      await eventually(async () => {
        const t = await c.tasks.get.query({ id: low.id });
        return t.status === 'TRAINING' && (t.progress.step ?? 0) >= 10;
      }, 'the low task trains past step 10');
      const urgent = await c.tasks.create.mutate(
        simulated({ steps: 5, stepMs: 50 }, { name: 'urgent', priority: 'urgent', timeoutMs: 10 * MIN }),
      );
      expect(urgent.status).toBe('QUEUED');

      // The low task: asked to stop for the urgent one, reports its checkpoint, and goes back to the queue.
      const preempted = await eventually(async () => {
        const t = await c.tasks.get.query({ id: low.id });
        return t.preemptions === 1 ? t : null;
      }, 'the low task is preempted');
      expect(preempted.checkpoint).toMatchObject({ step: expect.any(Number), path: expect.stringContaining('/checkpoints/step-') });
      const savedStep = preempted.checkpoint!.step;
      expect(savedStep).toBeGreaterThanOrEqual(10);

      expect((await waitTerminal(c, urgent.id)).status).toBe('COMPLETED');
      const done = await waitTerminal(c, low.id);
      expect(done.status).toBe('COMPLETED');
      expect(done.attempt).toBe(2);

      const types = (await eventsOf(c, low.id)).map((e) => e.type);
      expect(types).toEqual(expect.arrayContaining(['StopRequested', 'CheckpointRecorded', 'TaskPreempted', 'TaskCompleted']));
      expect(types.filter((t) => t === 'TaskAssigned')).toHaveLength(2);
      const stop = (await eventsOf(c, low.id)).find((e) => e.type === 'StopRequested')!;
      expect(stop.data).toMatchObject({
        reason: 'preempt',
        message: expect.stringMatching(new RegExp(`^preempted for task ${urgent.id}`)),
      });

      // The second attempt resumed from the checkpoint, not from zero.
      const { lines } = await c.tasks.logs.query({ id: low.id, limit: 5000 });
      expect(lines.map((l) => l.line)).toEqual(
        expect.arrayContaining([expect.stringMatching(new RegExp(`^resuming from step ${savedStep} \\(`))]),
      );
    });
  });
}
