import { describe, expect, it } from 'vitest';
import { sbatchArgv } from './slurm';

const req = { taskId: 't1', runDir: '/data/runs/t1/attempt-1', gpus: 2, timeoutMs: 90 * 60_000, checkpointWarningS: 120 };

describe('sbatch argv', () => {
  it("names the job, writes into the run folder, asks for the task's GPUs, time and checkpoint warning; Trainyard requeues, not Slurm", () => {
    expect(sbatchArgv(req, { extraArgs: [] }, '/data/runs/t1/attempt-1/slurm-job.mjs')).toEqual([
      '--parsable',
      '--job-name=trainyard-t1',
      '--chdir=/data/runs/t1/attempt-1',
      '--output=/data/runs/t1/attempt-1/slurm.out',
      '--gres=gpu:2',
      '--time=90',
      '--signal=B:USR1@120',
      '--no-requeue',
      '/data/runs/t1/attempt-1/slurm-job.mjs',
      '/data/runs/t1/attempt-1',
    ]);
  });

  it('adds partition, account, QOS and the extra options, each one argv element, before the script', () => {
    const argv = sbatchArgv(
      req,
      { partition: 'gpu', account: 'lab a', qos: 'high', extraArgs: ['--constraint=h100', '--comment=$(rm -rf /)'] },
      '/s.mjs',
    );
    expect(argv.slice(8)).toEqual([
      '--partition=gpu',
      '--account=lab a',
      '--qos=high',
      '--constraint=h100',
      '--comment=$(rm -rf /)',
      '/s.mjs',
      req.runDir,
    ]);
  });

  it('keeps the warning within what Slurm accepts', () => {
    expect(sbatchArgv({ ...req, checkpointWarningS: 0 }, { extraArgs: [] }, '/s')).toContain('--signal=B:USR1@1');
    expect(sbatchArgv({ ...req, checkpointWarningS: 1e9 }, { extraArgs: [] }, '/s')).toContain('--signal=B:USR1@65535');
  });
});
