// trainers/tiny_torch_trainer.py for real, on the CPU with Debian's python3-torch: it trains (the
// loss falls), checkpoints every N steps and on SIGUSR1, stops on SIGTERM, and a run so
// interrupted and resumed from its checkpoint ends with the loss of a run never interrupted.
// In CI a missing /usr/bin/python3 or torch is a failure, not a skip.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DATASET, REPO_ROOT } from './harness';
import { PYTHON, torchAvailable } from './python-torch';
import { checkpointsOf, killLeftoverTrainers, progressOf, runTrainer, trainerEnv, type TrainerRun } from './trainer-child';

const TRAINER = join(REPO_ROOT, 'trainers/tiny_torch_trainer.py');
// 1050 windows of the example dataset, 16 a step: 66 steps an epoch, 660 in all (about a second).
const CONFIG = { epochs: 10, batchSize: 1, gradientAccumulation: 16, learningRate: 0.01, maxLength: 512, loraRank: 8, loraAlpha: 16 };
const TOTAL_STEPS = 660;
const SIGNAL_AT_STEP = 120;

const train = (env: Record<string, string>, onMessage?: Parameters<typeof runTrainer>[2]) => runTrainer([PYTHON, TRAINER], env, onMessage);
const lastLoss = (run: TrainerRun) => progressOf(run).at(-1)?.loss;
const output = (run: TrainerRun) => run.lines.join('\n');

describe.skipIf(!torchAvailable("the tiny torch trainer's specs"))('tiny_torch_trainer.py', () => {
  let root: string;
  let full: TrainerRun;
  let fullOutputDir: string;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'trainyard-tiny-torch-'));
    const env = trainerEnv(join(root, 'full'), { datasetPath: DATASET, config: CONFIG });
    fullOutputDir = env.TRAINYARD_OUTPUT_DIR!;
    full = await train(env);
  });
  afterEach(killLeftoverTrainers);
  afterAll(() => {
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('trains for real: every step reported, the loss falls, a checkpoint every 50 steps, the adapter as the artifact', () => {
    expect(full.code, output(full)).toBe(0);
    expect(full.messages[0]).toEqual({ type: 'phase', phase: 'training' });
    const progress = progressOf(full);
    expect(progress.map((p) => p.step)).toEqual(Array.from({ length: TOTAL_STEPS }, (_, i) => i + 1));
    expect(progress.every((p) => p.totalSteps === TOTAL_STEPS && p.totalEpochs === 10)).toBe(true);
    expect(progress.at(-1)).toMatchObject({ epoch: 10, learningRate: 0 });
    // Cross-entropy over 52 symbols starts near ln 52 ≈ 3.95; the adapters learn the text.
    expect(progress[0]!.loss).toBeGreaterThan(3.5);
    expect(lastLoss(full)).toBeLessThan(0.75 * progress[0]!.loss!);
    const checkpoints = checkpointsOf(full);
    expect(checkpoints.map((c) => c.step)).toEqual([50, 100, 150, 200, 250, 300, 350, 400, 450, 500, 550, 600, 650]);
    for (const c of checkpoints) {
      expect(c.path).toBe(join(fullOutputDir, 'checkpoints', `step-${c.step}`));
      expect(existsSync(c.path)).toBe(true);
    }
    const adapter = join(fullOutputDir, 'adapter_model.pt');
    expect(full.messages.at(-1)).toEqual({ type: 'artifact', path: adapter });
    expect(existsSync(adapter)).toBe(true);
    expect(existsSync(join(fullOutputDir, 'adapter_config.json'))).toBe(true);
    expect(output(full)).toContain(`trained ${TOTAL_STEPS} steps in this attempt (of ${TOTAL_STEPS})`);
  });

  it('checkpoints on SIGUSR1, stops on SIGTERM, and resumed from that checkpoint ends with the same loss', async () => {
    const env = trainerEnv(join(root, 'preempted'), { datasetPath: DATASET, config: CONFIG });
    let signalled = 0;
    let checkpoint: { path: string; step: number } | undefined;
    const first = await train(env, (m, child) => {
      if (m.type === 'progress' && signalled === 0 && (m.step ?? 0) >= SIGNAL_AT_STEP) {
        signalled = m.step!;
        child.kill('SIGUSR1');
      } else if (m.type === 'checkpoint' && signalled > 0 && !checkpoint) {
        checkpoint = m;
        child.kill('SIGTERM');
      }
    });
    expect(checkpoint, output(first)).toBeDefined();
    const at = checkpoint!.step;
    expect(at).toBeGreaterThanOrEqual(signalled);
    expect(at).toBeLessThan(TOTAL_STEPS);
    expect(checkpoint!.path).toBe(join(env.TRAINYARD_OUTPUT_DIR!, 'checkpoints', `step-${at}`));
    expect(output(first)).toContain('received SIGUSR1');
    expect(first.code, output(first)).toBe(143);
    expect(progressOf(first).at(-1)!.step).toBeLessThan(TOTAL_STEPS);
    expect(first.messages.some((m) => m.type === 'artifact')).toBe(false);

    const resumed = await train({ ...env, TRAINYARD_RESUME_FROM: checkpoint!.path });
    expect(resumed.code, output(resumed)).toBe(0);
    expect(output(resumed)).toContain(`resuming from step ${at} (${checkpoint!.path})`);
    const steps = progressOf(resumed).map((p) => p.step);
    expect(steps[0]).toBe(at);
    expect(steps).toEqual(Array.from({ length: TOTAL_STEPS - at + 1 }, (_, i) => at + i));
    // The step the checkpoint holds reports the loss the interrupted run reported for it.
    expect(progressOf(resumed)[0]!.loss).toBe(progressOf(first).find((p) => p.step === at)!.loss);
    expect(output(resumed)).toContain(`trained ${TOTAL_STEPS - at} steps in this attempt (of ${TOTAL_STEPS}, resumed after step ${at})`);
    const expected = lastLoss(full)!;
    const got = lastLoss(resumed)!;
    expect(Math.abs(got - expected) / expected, `resumed ${got}, uninterrupted ${expected}`).toBeLessThanOrEqual(1e-6);
    expect(resumed.messages.at(-1)).toEqual({ type: 'artifact', path: join(env.TRAINYARD_OUTPUT_DIR!, 'adapter_model.pt') });
  });

  it("refuses a checkpoint of another run's configuration, and one that is not a checkpoint (exit 2)", async () => {
    const other = trainerEnv(join(root, 'other'), { datasetPath: DATASET, config: { ...CONFIG, epochs: 3 } });
    const mismatch = await train({ ...other, TRAINYARD_RESUME_FROM: join(fullOutputDir, 'checkpoints', 'step-50') });
    expect(mismatch.code, output(mismatch)).toBe(2);
    expect(output(mismatch)).toMatch(/is not of this task's run \(differs in: totalSteps\)/);
    expect(progressOf(mismatch)).toEqual([]);

    const junk = join(root, 'junk');
    writeFileSync(junk, '{"step": 50}\n');
    const bad = await train({ ...other, TRAINYARD_RESUME_FROM: junk });
    expect(bad.code, output(bad)).toBe(2);
    expect(output(bad)).toContain(`cannot read checkpoint ${junk}`);
  });
});
