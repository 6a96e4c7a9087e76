// trainers/simulated-trainer.mjs checkpoints and resumes for real: a checkpoint every
// simulate.checkpointEvery steps and on SIGUSR1 ({step, loss} in checkpoints/step-<N>), and a run
// stopped after one and started again with TRAINYARD_RESUME_FROM continues from its step and ends
// as a run never interrupted does.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DATASET, REPO_ROOT } from './harness';
import { checkpointsOf, killLeftoverTrainers, progressOf, runTrainer, trainerEnv, type TrainerRun } from './trainer-child';

const TRAINER = join(REPO_ROOT, 'trainers/simulated-trainer.mjs');
const TOTAL_STEPS = 40;
const SIGNAL_AT_STEP = 13;
const config = (simulate: Record<string, unknown> = {}) => ({
  epochs: 2,
  simulate: { steps: 20, stepMs: 15, startupMs: 0, checkpointEvery: 10, ...simulate },
});

const train = (env: Record<string, string>, onMessage?: Parameters<typeof runTrainer>[2]) =>
  runTrainer([process.execPath, TRAINER], env, onMessage);
const output = (run: TrainerRun) => run.lines.join('\n');

describe('the simulated trainer: checkpoint and resume', () => {
  let root: string;
  let full: TrainerRun;
  let fullOutputDir: string;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'trainyard-sim-resume-'));
    const env = trainerEnv(join(root, 'full'), { datasetPath: DATASET, config: config() });
    fullOutputDir = env.TRAINYARD_OUTPUT_DIR!;
    full = await train(env);
  });
  afterEach(killLeftoverTrainers);
  afterAll(() => {
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('writes {step, loss} every checkpointEvery steps (not at the end) and reports each', () => {
    expect(full.code, output(full)).toBe(0);
    expect(progressOf(full).map((p) => p.step)).toEqual(Array.from({ length: TOTAL_STEPS }, (_, i) => i + 1));
    const checkpoints = checkpointsOf(full);
    expect(checkpoints.map((c) => c.step)).toEqual([10, 20, 30]);
    for (const c of checkpoints) {
      expect(c.path).toBe(join(fullOutputDir, 'checkpoints', `step-${c.step}`));
      const loss = progressOf(full).find((p) => p.step === c.step)!.loss;
      expect(JSON.parse(readFileSync(c.path, 'utf8'))).toEqual({ step: c.step, loss });
    }
    expect(output(full)).toContain(`trained ${TOTAL_STEPS} steps in this attempt (of ${TOTAL_STEPS})`);
    expect(full.messages.at(-1)).toEqual({ type: 'artifact', path: fullOutputDir });
  });

  it('writes no checkpoint unless asked', async () => {
    const env = trainerEnv(join(root, 'plain'), { datasetPath: DATASET, config: { epochs: 1, simulate: { steps: 3, stepMs: 0 } } });
    const run = await train(env);
    expect(run.code, output(run)).toBe(0);
    expect(checkpointsOf(run)).toEqual([]);
  });

  it('checkpoints on SIGUSR1 and keeps going; stopped by SIGTERM and resumed, it continues from that step and ends the same', async () => {
    const env = trainerEnv(join(root, 'preempted'), { datasetPath: DATASET, config: config() });
    let signalled = 0;
    let checkpoint: { path: string; step: number } | undefined;
    let stoppedAt = 0;
    // SIGTERM only once it trained on past its checkpoint: a later attempt must start from the
    // checkpoint, not from the last step it reported.
    const first = await train(env, (m, child) => {
      if (m.type === 'progress' && signalled === 0 && (m.step ?? 0) >= SIGNAL_AT_STEP) {
        signalled = m.step!;
        child.kill('SIGUSR1');
      } else if (m.type === 'checkpoint' && signalled > 0 && !checkpoint) {
        checkpoint = m;
      } else if (m.type === 'progress' && checkpoint && !stoppedAt) {
        stoppedAt = m.step!;
        child.kill('SIGTERM');
      }
    });
    expect(checkpoint, output(first)).toBeDefined();
    const at = checkpoint!.step;
    expect(at).toBeGreaterThanOrEqual(signalled);
    expect(stoppedAt, output(first)).toBeGreaterThan(at);
    // The SIGUSR1 checkpoint (the first one after the signal may be a periodic one on a slow box).
    const usr1 = first.lines.indexOf('out: received SIGUSR1, writing a checkpoint');
    expect(usr1, output(first)).toBeGreaterThan(0);
    expect(first.lines[usr1 + 1]).toMatch(/^out: saved checkpoint at step \d+ to /);
    expect(first.lines[usr1 + 2]).toMatch(/^out: \{"type":"checkpoint",/);
    expect(first.code, output(first)).toBe(143);
    expect(progressOf(first).at(-1)!.step).toBeLessThan(TOTAL_STEPS);
    expect(first.messages.some((m) => m.type === 'artifact')).toBe(false);

    const resumed = await train({ ...env, TRAINYARD_RESUME_FROM: checkpoint!.path });
    expect(resumed.code, output(resumed)).toBe(0);
    expect(output(resumed)).toContain(`resuming from step ${at} (${checkpoint!.path})`);
    const progress = progressOf(resumed);
    expect(progress.map((p) => p.step)).toEqual(Array.from({ length: TOTAL_STEPS - at + 1 }, (_, i) => at + i));
    expect(progress[0]).toMatchObject({ step: at, epoch: at <= 20 ? 1 : 2, loss: progressOf(first).find((p) => p.step === at)!.loss });
    expect(progress.at(-1)).toEqual(progressOf(full).at(-1));
    expect(output(resumed)).toContain(`trained ${TOTAL_STEPS - at} steps in this attempt (of ${TOTAL_STEPS}, resumed after step ${at})`);
    expect(checkpointsOf(resumed).every((c) => c.step > at && c.step % 10 === 0)).toBe(true);
    expect(resumed.messages.at(-1)).toEqual({ type: 'artifact', path: env.TRAINYARD_OUTPUT_DIR });
  });

  it('resumed from the last step it trains nothing more; a crash knob at a step already done does not fire', async () => {
    const env = trainerEnv(join(root, 'done'), { datasetPath: DATASET, config: config({ failAtStep: 5 }) });
    const run = await train({ ...env, TRAINYARD_RESUME_FROM: join(fullOutputDir, 'checkpoints', 'step-30') });
    expect(run.code, output(run)).toBe(0);
    expect(progressOf(run).map((p) => p.step)).toEqual([30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40]);
    const last = join(root, 'step-40');
    writeFileSync(last, JSON.stringify({ step: TOTAL_STEPS, loss: 0.5 }));
    const none = await train({ ...env, TRAINYARD_RESUME_FROM: last });
    expect(none.code, output(none)).toBe(0);
    expect(progressOf(none).map((p) => p.step)).toEqual([TOTAL_STEPS]);
    expect(output(none)).toContain(`trained 0 steps in this attempt`);
  });

  it.each([
    ['a missing file', null, /cannot read checkpoint/],
    ['not JSON', 'step 3', /cannot read checkpoint/],
    ['no step', '{"loss":1}', /has no step between 0 and 40 \(it has undefined\)/],
    ['a step past the end', '{"step":41}', /has no step between 0 and 40 \(it has 41\)/],
    ['a fractional step', '{"step":2.5}', /has no step between 0 and 40/],
  ])('refuses a checkpoint with %s (exit 2, before training)', async (name, content, reason) => {
    const path = join(root, `bad-${name.replace(/\W+/g, '-')}`);
    if (content !== null) writeFileSync(path, content);
    const run = await train({ ...trainerEnv(join(root, 'bad'), { datasetPath: DATASET, config: config() }), TRAINYARD_RESUME_FROM: path });
    expect(run.code, output(run)).toBe(2);
    expect(output(run)).toMatch(reason);
    expect(run.messages).toEqual([]);
  });
});
