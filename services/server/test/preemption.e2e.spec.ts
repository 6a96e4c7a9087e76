// Preemption with checkpoint and resume, end to end on both databases: the real server over HTTP
// on one GPU, the simulated trainer (it checkpoints on SIGUSR1 and resumes for real). A low task
// training when an urgent one arrives is asked for a checkpoint, stopped, requeued in its place,
// and, once the urgent one has finished, completes from its checkpoint.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backendAvailable, backends } from '@trainyard/store/testing';
import { eventsOf, waitTerminal } from './lifecycle-support';
import { PYTHON, torchAvailable } from './python-torch';
import { DATASET, eventually, simulated, startServer, type RunningServer } from './harness';

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

// The same through the service with a real trainer: trainers/tiny_torch_trainer.py on the CPU
// (Debian's python3-torch), fixed seed. A run preempted and resumed from its checkpoint ends with
// the loss of one never interrupted. One backend: the trainer's determinism is what is checked.
describe.skipIf(!torchAvailable('the preemption e2e with the tiny torch trainer'))(
  'preemption with the tiny torch trainer (PGlite)',
  () => {
    let s: RunningServer;
    beforeAll(async () => {
      s = await startServer({
        backend: backends()[0]!,
        env: {
          TRAINYARD_GPU_INVENTORY: ONE_GPU,
          TRAINYARD_PREEMPT_GRACE_MS: '20000',
          TRAINYARD_TRAINER: JSON.stringify([PYTHON, 'trainers/tiny_torch_trainer.py']),
        },
      });
    });
    afterAll(async () => {
      await s?.dispose();
    });

    // 66 steps an epoch on the example dataset: 40 epochs are 2640 steps, a few seconds of CPU.
    const config = { epochs: 40, batchSize: 1, gradientAccumulation: 16, learningRate: 0.01, maxLength: 512, loraRank: 8, loraAlpha: 16 };
    const finalLoss = async (id: string) => {
      const { lines } = await s.client.tasks.logs.query({ id, limit: 5000, includeProtocol: true, afterSeq: 0 });
      const all = [...lines];
      for (let page = lines; page.length === 5000;) {
        page = (await s.client.tasks.logs.query({ id, limit: 5000, includeProtocol: true, afterSeq: all.at(-1)!.seq })).lines;
        all.push(...page);
      }
      const progress = all.map((l) => l.line).filter((l) => l.startsWith('{"type":"progress"'));
      return (JSON.parse(progress.at(-1)!) as { loss: number; step: number }).loss;
    };

    it('preempted and resumed from its checkpoint, it ends with the loss of a run never interrupted', async () => {
      const c = s.client;
      const model = 'Qwen/Qwen2.5-Coder-0.5B-Instruct';
      const whole = await c.tasks.create.mutate({ model, datasetPath: DATASET, config, name: 'whole', timeoutMs: 10 * MIN });
      expect((await waitTerminal(c, whole.id)).status).toBe('COMPLETED');

      const low = await c.tasks.create.mutate({ model, datasetPath: DATASET, config, name: 'low', priority: 'low', timeoutMs: 10 * MIN });
      await eventually(async () => (await c.tasks.get.query({ id: low.id })).status === 'TRAINING', 'the low task trains', 60_000, 20);
      const urgent = await c.tasks.create.mutate({
        model,
        datasetPath: DATASET,
        config: { ...config, epochs: 1 },
        name: 'urgent',
        priority: 'urgent',
        timeoutMs: 10 * MIN,
      });
      expect((await waitTerminal(c, urgent.id)).status).toBe('COMPLETED');
      const done = await waitTerminal(c, low.id);
      expect(done.status).toBe('COMPLETED');
      expect(done.preemptions).toBe(1);
      expect(done.checkpoint!.step).toBeGreaterThan(0);
      const [a, b] = [await finalLoss(whole.id), await finalLoss(low.id)];
      expect(Math.abs(a - b) / a).toBeLessThan(1e-6);
    });
  },
);
