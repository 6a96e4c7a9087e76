import { describe, expect, it } from 'vitest';
import { ASSIGNMENT_ENV, assignmentOf, isReadyLine, trainerLevelEnv, warmMismatch, warmSpecOf } from './warm.mjs';

const launch = {
  argv: ['/usr/bin/python3', '/repo/trainers/tiny_torch_trainer.py'],
  cwd: '/repo',
  env: {
    PATH: '/usr/bin',
    CUDA_DEVICE_ORDER: 'PCI_BUS_ID',
    CUDA_VISIBLE_DEVICES: 'GPU-1,GPU-2',
    TRAINYARD_TASK_SPEC: '/runs/t1/attempt-1/task.json',
    TRAINYARD_TASK_ID: 't1',
    TRAINYARD_OUTPUT_DIR: '/outputs/t1',
  },
};

describe('warm trainers: what a trainer started ahead of need is, and what its assignment says', () => {
  it('a warm trainer is started as the launch less the task: no devices, spec, task or output folder', () => {
    expect(warmSpecOf(launch)).toEqual({ argv: launch.argv, cwd: '/repo', env: { PATH: '/usr/bin', CUDA_DEVICE_ORDER: 'PCI_BUS_ID' } });
    expect(trainerLevelEnv({ A: '1', TRAINYARD_STANDBY: '1', TRAINYARD_RESUME_FROM: '/x' })).toEqual({ A: '1' });
    expect(ASSIGNMENT_ENV).toContain('CUDA_VISIBLE_DEVICES');
  });

  it('it fits any launch of the same command, folder and environment, whatever the task', () => {
    const other = { ...launch, env: { ...launch.env, CUDA_VISIBLE_DEVICES: '3', TRAINYARD_TASK_ID: 't2', TRAINYARD_RESUME_FROM: '/c' } };
    expect(warmMismatch(warmSpecOf(launch), other)).toBeNull();
  });

  it('another command, folder or environment does not fit, and says why', () => {
    const w = warmSpecOf(launch);
    expect(warmMismatch(w, { ...launch, argv: ['node', 'trainers/simulated-trainer.mjs'] })).toBe('another trainer command');
    expect(warmMismatch(w, { ...launch, cwd: '/elsewhere' })).toBe('another working folder');
    expect(warmMismatch(w, { ...launch, env: { ...launch.env, HF_TOKEN: 'x' } })).toBe('another environment (HF_TOKEN)');
    expect(warmMismatch(w, { ...launch, env: { ...launch.env, PATH: '/bin' } })).toBe('another environment (PATH)');
  });

  it('the assignment carries the task variables to set, and names the spec, devices and output folder', () => {
    expect(assignmentOf(launch)).toEqual({
      type: 'assignment',
      env: {
        CUDA_VISIBLE_DEVICES: 'GPU-1,GPU-2',
        TRAINYARD_TASK_SPEC: '/runs/t1/attempt-1/task.json',
        TRAINYARD_TASK_ID: 't1',
        TRAINYARD_OUTPUT_DIR: '/outputs/t1',
      },
      specPath: '/runs/t1/attempt-1/task.json',
      taskId: 't1',
      outputDir: '/outputs/t1',
      devices: ['GPU-1', 'GPU-2'],
      resumeFrom: null,
    });
  });

  it('only {"type":"ready"} is the ready line', () => {
    expect(isReadyLine('{"type":"ready"}')).toBe(true);
    expect(isReadyLine(' {"type": "ready"} ')).toBe(true);
    expect(isReadyLine('ready')).toBe(false);
    expect(isReadyLine('{"type":"phase","phase":"training"}')).toBe(false);
    expect(isReadyLine('{"type":"ready"')).toBe(false);
  });
});
