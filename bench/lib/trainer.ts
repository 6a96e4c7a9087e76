// Running a trainer outside the service (for the pg-boss baselines doing "the same work"), and
// the paths of the trainers the benchmarks use.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DATASET, onCleanup, removeDir, REPO_ROOT } from './common';

const SIMULATED_TRAINER = join(REPO_ROOT, 'trainers/simulated-trainer.mjs');
export const INSTANT_TRAINER = join(REPO_ROOT, 'bench/instant-trainer.mjs');

/**
 * A ready-made run folder for the simulated trainer with an instant config, and a function that
 * runs it to its exit (stdout and stderr drained, as the shepherd does), resolving with its code.
 */
export function simulatedTrainerRunner(): { run(): Promise<number | null>; dispose(): Promise<void> } {
  const dir = mkdtempSync(join(tmpdir(), 'trainyard-bench-trainer-'));
  const spec = join(dir, 'task.json');
  writeFileSync(
    spec,
    JSON.stringify({
      id: 'pgboss-job',
      name: 'pg-boss job',
      model: 'Qwen/Qwen2.5-Coder-0.5B-Instruct',
      datasetPath: DATASET,
      outputDir: join(dir, 'output'),
      config: { epochs: 1, simulate: { steps: 1, stepMs: 0, startupMs: 0 } },
    }),
  );
  const dispose = onCleanup(() => removeDir(dir));
  return {
    dispose,
    run: () =>
      new Promise((resolve, reject) => {
        const child = spawn(process.execPath, [SIMULATED_TRAINER], {
          cwd: REPO_ROOT,
          env: { ...process.env, TRAINYARD_TASK_SPEC: spec, TRAINYARD_OUTPUT_DIR: join(dir, 'output'), TRAINYARD_TASK_ID: 'pgboss-job' },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        child.stdout.resume();
        child.stderr.resume();
        child.once('error', reject);
        child.once('close', (code) => resolve(code));
      }),
  };
}
